//! The client API seeds of [`super`]: record batches, requests and the
//! replies the SDK reads, built with the daemons' builders.

use super::{device_rule, seed, Seed};
use bytes::Bytes;
use strata_protocol::{GroupInfo, GroupShardInfo, NodeInfo, ShardInfo, StreamInfo};
use strata_schema::{batch, fb, frame, wire};

pub(super) fn wire_seeds(batches: &[Bytes], out: &mut Vec<Seed>) {
    // Record batches: the fixture's, and one with every field set.
    let mut b = batch::Builder::default();
    b.push(&batch::NewRecord {
        key: Some("device-1/temp"),
        value: b"21.5",
        timestamp_ms: 1_764_806_400_000,
        headers: &[("unit", b"C"), ("fw", b"1.2.3")],
    });
    b.push(&batch::NewRecord {
        key: None,
        value: b"",
        timestamp_ms: -1,
        headers: &[],
    });
    let full = b.finish();
    let mut all: Vec<Bytes> = batches.to_vec();
    all.push(full.clone());
    for (i, batch) in all.iter().enumerate() {
        seed(out, "record_batch", format!("batch-{i}"), batch.to_vec());
    }
    let first = all.first().cloned().unwrap_or_else(|| full.clone());

    let mut requests: Vec<(&str, Bytes)> = Vec::new();
    requests.push((
        "produce",
        wire::request(fb::RequestBody::ProduceRequest, |fbb| {
            let stream = Some(fbb.create_string("telemetry"));
            let batch = Some(fbb.create_vector(&full));
            fb::ProduceRequest::create(fbb, &fb::ProduceRequestArgs { stream, batch })
                .as_union_value()
        }),
    ));
    requests.push((
        "forward",
        wire::request(fb::RequestBody::ForwardRequest, |fbb| {
            let b1 = Some(fbb.create_vector(&first));
            let b2 = Some(fbb.create_vector(&full));
            let deltas = Some(fbb.create_vector(&[0u32, 5]));
            let p1 = fb::ForwardPiece::create(
                fbb,
                &fb::ForwardPieceArgs {
                    first_seq: 100,
                    seq_deltas: None,
                    max_timestamp_ms: 1_764_806_400_000,
                    batch: b1,
                },
            );
            let p2 = fb::ForwardPiece::create(
                fbb,
                &fb::ForwardPieceArgs {
                    first_seq: 200,
                    seq_deltas: deltas,
                    max_timestamp_ms: 1_764_806_400_000,
                    batch: b2,
                },
            );
            let pieces = Some(fbb.create_vector(&[p1, p2]));
            let stream = Some(fbb.create_string("fixture"));
            fb::ForwardRequest::create(
                fbb,
                &fb::ForwardRequestArgs {
                    stream,
                    shard: 1,
                    producer_id: 7,
                    pieces,
                },
            )
            .as_union_value()
        }),
    ));
    requests.push((
        "fetch",
        wire::request(fb::RequestBody::FetchRequest, |fbb| {
            let stream = Some(fbb.create_string("fixture"));
            fb::FetchRequest::create(
                fbb,
                &fb::FetchRequestArgs {
                    stream,
                    shard: 0,
                    offset: 10,
                    max_records: 100,
                    max_bytes: 1 << 20,
                    wait_ms: 500,
                },
            )
            .as_union_value()
        }),
    ));
    requests.push((
        "heartbeat",
        wire::request(fb::RequestBody::GroupHeartbeatRequest, |fbb| {
            let stream = Some(fbb.create_string("fixture"));
            let group = Some(fbb.create_string("dashboards"));
            let member = Some(fbb.create_string("dash-1"));
            let cp = fb::GroupCheckpoint::create(
                fbb,
                &fb::GroupCheckpointArgs {
                    shard: 0,
                    offset: 12,
                    timestamp_ms: 1_764_806_400_000,
                },
            );
            let commits = Some(fbb.create_vector(&[cp]));
            fb::GroupHeartbeatRequest::create(
                fbb,
                &fb::GroupHeartbeatRequestArgs {
                    stream,
                    group,
                    member,
                    session_ms: 10_000,
                    generation: 3,
                    commits,
                    leave: false,
                },
            )
            .as_union_value()
        }),
    ));
    requests.push((
        "acl-add",
        wire::request(fb::RequestBody::AclChangeRequest, |fbb| {
            let add = Some(strata_protocol::acl::rule_to_fb(fbb, &device_rule()));
            fb::AclChangeRequest::create(fbb, &fb::AclChangeRequestArgs { add, remove_id: 0 })
                .as_union_value()
        }),
    ));
    requests.push((
        "reshard",
        wire::request(fb::RequestBody::ReshardRequest, |fbb| {
            let stream = Some(fbb.create_string("fixture"));
            let shards = Some(fbb.create_vector(&[0u32]));
            let at = Some(fbb.create_string("170141183460469231731687303715884105728"));
            fb::ReshardRequest::create(
                fbb,
                &fb::ReshardRequestArgs {
                    stream,
                    op: fb::ReshardOp::Split,
                    shards,
                    at_hash_key: at,
                    count: 0,
                },
            )
            .as_union_value()
        }),
    ));
    for (name, bytes) in &requests {
        seed(
            out,
            "wire_request",
            format!("request-{name}"),
            bytes.to_vec(),
        );
    }
    if let Some((_, produce)) = requests.first() {
        // The same request as a frame on the QUIC stream.
        let mut framed = frame::header(produce.len()).to_vec();
        framed.extend_from_slice(produce);
        seed(out, "wire_request", "framed-produce", framed);
    }

    let info = stream_info();
    let mut responses: Vec<(&str, Bytes)> = vec![
        (
            "error-not-leader",
            wire::RemoteError::not_leader("not the leader", Some("127.0.0.1:7501".into())).encode(),
        ),
        (
            "error-shard-closed",
            wire::RemoteError::shard_closed("shard 0 is closed", 117).encode(),
        ),
    ];
    responses.push((
        "fetch",
        wire::response(fb::ResponseBody::FetchResponse, |fbb| {
            let mut fetched = Vec::new();
            for (i, b) in all.iter().enumerate() {
                let batch = Some(fbb.create_vector(b));
                fetched.push(fb::FetchedBatch::create(
                    fbb,
                    &fb::FetchedBatchArgs {
                        base_offset: 10 * i as u64,
                        skip: u32::from(i == 0),
                        batch,
                    },
                ));
            }
            let batches = Some(fbb.create_vector(&fetched));
            fb::FetchResponse::create(
                fbb,
                &fb::FetchResponseArgs {
                    batches,
                    next_offset: 40,
                    high_watermark: 50,
                    end_of_shard: false,
                },
            )
            .as_union_value()
        }),
    ));
    responses.push((
        "describe",
        wire::response(fb::ResponseBody::StreamDescription, |fbb| {
            strata_protocol::build_stream_description(fbb, &info).as_union_value()
        }),
    ));
    responses.push((
        "list",
        wire::response(fb::ResponseBody::StreamList, |fbb| {
            let s = strata_protocol::build_stream_description(fbb, &info);
            let streams = Some(fbb.create_vector(&[s]));
            fb::StreamList::create(fbb, &fb::StreamListArgs { streams }).as_union_value()
        }),
    ));
    responses.push((
        "cluster-status",
        wire::response(fb::ResponseBody::ClusterStatus, |fbb| {
            let nodes: Vec<_> = info
                .nodes
                .iter()
                .map(|n| strata_protocol::build_node_description(fbb, n))
                .collect();
            let nodes = Some(fbb.create_vector(&nodes));
            let replica = fb::ReplicaStatus::create(
                fbb,
                &fb::ReplicaStatusArgs {
                    node: 2,
                    matched_index: 40,
                    lag: 2,
                },
            );
            let replicas = Some(fbb.create_vector(&[replica]));
            let stream = Some(fbb.create_string("fixture"));
            let shard = fb::ShardStatus::create(
                fbb,
                &fb::ShardStatusArgs {
                    stream,
                    shard: 0,
                    leader: 1,
                    term: 3,
                    last_log_index: 42,
                    replicas,
                },
            );
            let shards = Some(fbb.create_vector(&[shard]));
            fb::ClusterStatus::create(
                fbb,
                &fb::ClusterStatusArgs {
                    node: 1,
                    meta_leader: 1,
                    nodes,
                    shards,
                    producers: 2,
                },
            )
            .as_union_value()
        }),
    ));
    responses.push((
        "acl-list",
        wire::response(fb::ResponseBody::AclList, |fbb| {
            let rule = strata_protocol::acl::rule_to_fb(fbb, &device_rule());
            let rules = Some(fbb.create_vector(&[rule]));
            fb::AclList::create(
                fbb,
                &fb::AclListArgs {
                    rules,
                    version: 4,
                    added_id: 1,
                },
            )
            .as_union_value()
        }),
    ));
    for (name, bytes) in &responses {
        seed(
            out,
            "wire_request",
            format!("response-{name}"),
            bytes.to_vec(),
        );
    }
}

fn stream_info() -> StreamInfo {
    let shard = |id: u32, start: &str, end: &str| ShardInfo {
        id,
        start_hash_key: start.into(),
        end_hash_key: end.into(),
        first_offset: 0,
        next_offset: 50,
        leader_node: 1,
        replicas: vec![1, 2],
        state: "open".into(),
        ..ShardInfo::default()
    };
    StreamInfo {
        name: "fixture".into(),
        replication: 2,
        created_ms: 1_764_806_400_000,
        shards: vec![
            shard(0, "0", "170141183460469231731687303715884105727"),
            shard(
                1,
                "170141183460469231731687303715884105728",
                &u128::MAX.to_string(),
            ),
        ],
        nodes: vec![NodeInfo {
            id: 1,
            zone: "a".into(),
            addr: "127.0.0.1:7500".into(),
            peer_addr: "127.0.0.1:7600".into(),
            state: "active".into(),
            replicas: Some(2),
        }],
        archive_url: "file:///tmp/archive/stream=fixture".into(),
        retention: strata_protocol::Retention::default(),
        groups: vec![GroupInfo {
            name: "dashboards".into(),
            generation: 3,
            members: vec!["dash-1".into()],
            shards: vec![GroupShardInfo {
                shard: 0,
                owner: "dash-1".into(),
                checkpoint: Some(strata_protocol::Checkpoint {
                    offset: 12,
                    timestamp_ms: 1_764_806_400_000,
                }),
            }],
        }],
    }
}
