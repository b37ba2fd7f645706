//! Seed inputs for the fuzz targets: valid messages and files of every
//! format, so that the fuzzer starts from inputs that get past the first
//! checks. The disk and Raft seeds come from the 0.1 data directory in
//! `tests/fixtures/dev-data-v0.1` (real segment files, real commands); the
//! network seeds are built with the same builders the daemons use.
//!
//! `cargo test -p strata-tests --test fuzz_replay write_seeds -- --ignored`
//! writes them into `tests/fuzz/corpus/<target>/seed-*` (then `cargo fuzz
//! cmin` keeps those that add coverage). The input layouts of the disk
//! harnesses are documented in `harness.rs` (`LogDir`).

use bytes::Bytes;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, ClientWriteResponse, InstallSnapshotRequest,
    InstallSnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{CommittedLeaderId, EntryPayload, SnapshotMeta, StoredMembership};
use std::path::Path;
use strata_archive::manifest::{BlockChecksums, Manifest, TieredObject};
use strata_core::catalog::{Catalog, MetaCommand};
use strata_core::log::segment::{SegmentLog, SegmentLogOptions};
use strata_core::raft::command::{GroupCommand, MetaReply, ShardCommand};
use strata_core::raft::log_store::{decode_entry_record, encode_entry_record};
use strata_core::raft::peer::{encode_reply, encode_request, PeerRequest};
use strata_core::raft::shard::ShardState;
use strata_core::raft::sm::{Applied, GroupState};
use strata_core::raft::types::{Entry, GroupConfig, LogId, MetaTypes, NodeId, ShardTypes, Vote};
use strata_protocol::acl::{Operation, Rule};
use strata_schema::{batch, frame};

#[path = "seeds_wire.rs"]
mod wire;

/// One seed: `(target, file name, bytes)`.
pub type Seed = (&'static str, String, Vec<u8>);

/// Every seed of every target; `fixtures` is `tests/fixtures/dev-data-v0.1`.
pub fn all(fixtures: &Path) -> std::io::Result<Vec<Seed>> {
    let meta = log_entries::<MetaTypes>(&fixtures.join("core/meta/log"))?;
    let shard = log_entries::<ShardTypes>(&fixtures.join("core/shards/fixture/00000/log"))?;
    let mut out = Vec::new();
    disk_seeds(fixtures, &mut out)?;
    command_seeds(&meta, &shard, &mut out);
    peer_seeds(&meta, &shard, &mut out);
    snapshot_seeds(&meta, &shard, &mut out);
    let batches: Vec<Bytes> = shard
        .iter()
        .filter_map(|e| match &e.payload {
            EntryPayload::Normal(ShardCommand::Append(a)) => Some(a.batch.clone()),
            _ => None,
        })
        .take(4)
        .collect();
    wire::wire_seeds(&batches, &mut out);
    manifest_seeds(&mut out);
    Ok(out)
}

/// The entries of a fixture Raft log (read from a copy: opening a log may
/// repair it, and the fixture is never rewritten).
fn log_entries<C: GroupConfig>(dir: &Path) -> std::io::Result<Vec<Entry<C>>> {
    let copy = tempfile::tempdir()?;
    for f in std::fs::read_dir(dir)? {
        let f = f?;
        std::fs::copy(f.path(), copy.path().join(f.file_name()))?;
    }
    let (log, _) = SegmentLog::open(copy.path(), SegmentLogOptions::default())
        .map_err(std::io::Error::other)?;
    let mut out = Vec::new();
    if let (Some(first), Some(last)) = (log.first_index(), log.last_index()) {
        for index in first..=last {
            let rec = log
                .read(index)
                .map_err(std::io::Error::other)?
                .expect("every index of a fixture log is there");
            let mut body = Vec::new();
            body.extend_from_slice(&rec.term.to_le_bytes());
            body.extend_from_slice(&rec.node_id.to_le_bytes());
            body.extend_from_slice(&rec.index.to_le_bytes());
            body.push(rec.kind);
            body.extend_from_slice(&rec.payload);
            out.push(decode_entry_record::<C>(Bytes::from(body)).map_err(std::io::Error::other)?);
        }
    }
    Ok(out)
}

pub(crate) fn seed(
    out: &mut Vec<Seed>,
    target: &'static str,
    name: impl Into<String>,
    bytes: Vec<u8>,
) {
    out.push((target, format!("seed-{}", name.into()), bytes));
}

/// Ends of the whole frames of a segment file (`[u32 LE len][crc][body]`).
fn frame_ends(bytes: &[u8]) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut pos = 0;
    while let Some(len) = bytes.get(pos..pos + 4) {
        let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
        pos += 8 + len;
        if pos > bytes.len() {
            break;
        }
        ends.push(pos);
    }
    ends
}

/// Disk-harness input: flags, [acked], first name, [split, second name], bytes.
fn disk_input(flags: u8, acked: Option<u64>, first: u64, second: Option<(u16, u64)>) -> Vec<u8> {
    let mut v = vec![flags];
    if let Some(a) = acked {
        v.extend_from_slice(&a.to_le_bytes());
    }
    v.extend_from_slice(&first.to_le_bytes());
    if let Some((split, name)) = second {
        v.extend_from_slice(&split.to_le_bytes());
        v.extend_from_slice(&name.to_le_bytes());
    }
    v
}

fn disk_seeds(fixtures: &Path, out: &mut Vec<Seed>) -> std::io::Result<()> {
    // The edge buffer: the fixture segment with its acked position, whole
    // and cut in two segments at a frame boundary.
    let edge = std::fs::read(fixtures.join("edge/buffers/fixture/00000000000000000000.buf"))?;
    let acked = std::fs::read(fixtures.join("edge/buffers/fixture/acked"))?;
    let acked = u64::from_le_bytes(acked[..8].try_into().expect("8 bytes"));
    let mut whole = disk_input(4, Some(acked), 0, None);
    whole.extend_from_slice(&edge);
    seed(out, "edge_buffer_frame", "fixture", whole);
    let mut unacked = disk_input(0, None, 0, None);
    unacked.extend_from_slice(&edge);
    seed(out, "edge_buffer_frame", "fixture-unacked", unacked);
    let ends = frame_ends(&edge);
    if let Some(&cut) = ends.get(ends.len() / 2) {
        // The second segment starts at the first seq of the frame at `cut`.
        let seq = u64::from_le_bytes(edge[cut + 8..cut + 16].try_into().expect("8 bytes"));
        let split = u16::try_from(cut).expect("the fixture is small");
        let mut two = disk_input(2 | 4, Some(acked), 0, Some((split, seq)));
        two.extend_from_slice(&edge);
        seed(out, "edge_buffer_frame", "fixture-two-segments", two);
    }
    if let Some(&first) = ends.first() {
        let mut one = disk_input(0, None, 0, None);
        one.extend_from_slice(&edge[..first]);
        seed(out, "edge_buffer_frame", "one-frame", one);
    }
    let mut sealed = disk_input(8, None, 0, None);
    sealed.extend_from_slice(&encrypted_segment()?);
    seed(out, "edge_buffer_frame", "encrypted", sealed);
    // The core logs: the metadata log and a shard log, whole and in two.
    for (name, path) in [
        ("meta", "core/meta/log/00000000000000000000.log"),
        (
            "shard",
            "core/shards/fixture/00000/log/00000000000000000000.log",
        ),
    ] {
        let log = std::fs::read(fixtures.join(path))?;
        let mut whole = disk_input(0, None, 0, None);
        whole.extend_from_slice(&log);
        seed(out, "core_log_segment", format!("fixture-{name}"), whole);
        let ends = frame_ends(&log);
        if let Some(&cut) = ends.get(ends.len() / 2) {
            let index = u64::from_le_bytes(log[cut + 24..cut + 32].try_into().expect("8 bytes"));
            let split = u16::try_from(cut).expect("the fixture is small");
            let mut two = disk_input(2, None, 0, Some((split, index)));
            two.extend_from_slice(&log);
            seed(
                out,
                "core_log_segment",
                format!("fixture-{name}-two-segments"),
                two,
            );
        }
    }
    Ok(())
}

/// An encrypted edge segment (`.ebuf`) of three batches, written by the
/// edge buffer with the harness's key.
fn encrypted_segment() -> std::io::Result<Vec<u8>> {
    use std::sync::Arc;
    use strata_edge::buffer::{BufferOptions, StreamBuffer};
    let fs = strata_segment_log::sim::SimFs::new();
    let dir = Path::new("/buffer");
    let keys = Some(Arc::new(crate::harness::edge_test_keys()));
    let (mut buffer, _) =
        StreamBuffer::open_with_keys(fs.shared(), dir, BufferOptions::default(), keys)
            .map_err(std::io::Error::other)?;
    for i in 0..3u8 {
        let mut b = batch::Builder::default();
        b.push(&batch::NewRecord {
            key: Some("device-1"),
            value: &[i; 40],
            timestamp_ms: 1_764_806_400_000 + i64::from(i),
            headers: &[],
        });
        buffer
            .append(1, 0, &b.finish())
            .map_err(std::io::Error::other)?;
    }
    buffer.sync().map_err(std::io::Error::other)?;
    let shared = fs.shared();
    let names = shared.list_dir(dir)?;
    let name = names
        .iter()
        .find(|n| n.to_string_lossy().ends_with(".ebuf"))
        .expect("the buffer wrote an encrypted segment");
    shared.read(&dir.join(name))
}

fn command_seeds(meta: &[Entry<MetaTypes>], shard: &[Entry<ShardTypes>], out: &mut Vec<Seed>) {
    let mut commands: Vec<(String, Vec<u8>)> = Vec::new();
    for (i, e) in meta.iter().enumerate() {
        if let EntryPayload::Normal(c) = &e.payload {
            let mut b = Vec::new();
            c.encode(&mut b);
            commands.push((format!("meta-{i}"), b));
        }
    }
    let extra_meta = [
        MetaCommand::DrainNode(2),
        MetaCommand::ChangeAcl {
            add: Some(device_rule()),
            remove: 3,
        },
        MetaCommand::ShardSealed {
            stream: "fixture".into(),
            shard: 0,
            end_offset: 42,
        },
    ];
    for (i, c) in extra_meta.iter().enumerate() {
        let mut b = Vec::new();
        c.encode(&mut b);
        commands.push((format!("meta-extra-{i}"), b));
    }
    for (i, e) in shard.iter().enumerate().take(3) {
        if let EntryPayload::Normal(c) = &e.payload {
            let mut b = Vec::new();
            c.encode(&mut b);
            commands.push((format!("shard-{i}"), b));
        }
    }
    let extra_shard = [
        ShardCommand::Tier(object(0, 10)),
        ShardCommand::Expire { first_offset: 10 },
        ShardCommand::Restore(vec![object(0, 10), object(10, 25)]),
        ShardCommand::Seal,
    ];
    for (i, c) in extra_shard.iter().enumerate() {
        let mut b = Vec::new();
        c.encode(&mut b);
        commands.push((format!("shard-extra-{i}"), b));
    }
    for (name, bytes) in commands {
        seed(out, "raft_command", name, bytes);
    }
    for (i, e) in meta.iter().enumerate().take(6) {
        let mut b = Vec::new();
        encode_entry_record(e, &mut b).expect("fixture entries encode");
        seed(out, "raft_command", format!("entry-meta-{i}"), b);
    }
    for (i, e) in shard.iter().enumerate().take(3) {
        let mut b = Vec::new();
        encode_entry_record(e, &mut b).expect("fixture entries encode");
        seed(out, "raft_command", format!("entry-shard-{i}"), b);
    }
}

pub(crate) fn device_rule() -> Rule {
    Rule {
        id: 0,
        principal: "device-*".into(),
        operations: vec![Operation::Produce, Operation::Describe],
        stream: "telemetry".into(),
        key_prefix: Some("${principal}/".into()),
    }
}

fn object(first: u64, next: u64) -> TieredObject {
    TieredObject {
        key: format!("stream=fixture/date=2026-12-04/hour=00/shard-0-{first:020}.parquet"),
        first_offset: first,
        next_offset: next,
        records: next - first,
        min_timestamp_ms: 1_764_806_400_000,
        max_timestamp_ms: 1_764_806_460_000,
        bytes: 2048,
        payload_bytes: 1500,
        checksums: Some(BlockChecksums::of(&[7u8; 2048], 1024)),
        max_appended_ms: None,
    }
}

fn log_id(term: u64, node: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, node), index)
}

/// A peer request frame body (without its length prefix).
fn peer_body<C: GroupConfig>(group: &str, req: &PeerRequest<C>) -> Vec<u8> {
    let frame = encode_request(group, req).expect("a seed request encodes");
    frame[frame::FRAME_HEADER_BYTES..].to_vec()
}

/// A peer reply seed: the harness's type selector, then the reply body.
fn reply_seed(which: u8, frame: &[u8]) -> Vec<u8> {
    let mut v = vec![which];
    v.extend_from_slice(&frame[frame::FRAME_HEADER_BYTES..]);
    v
}

fn peer_seeds(meta: &[Entry<MetaTypes>], shard: &[Entry<ShardTypes>], out: &mut Vec<Seed>) {
    let vote = Vote::new_committed(3, 1);
    let append_meta = PeerRequest::<MetaTypes>::Append(AppendEntriesRequest {
        vote,
        prev_log_id: Some(log_id(1, 1, 0)),
        leader_commit: Some(log_id(1, 1, 2)),
        entries: meta.iter().take(4).cloned().collect(),
    });
    seed(
        out,
        "peer_message",
        "append-meta",
        peer_body("meta", &append_meta),
    );
    let append_shard = PeerRequest::<ShardTypes>::Append(AppendEntriesRequest {
        vote,
        prev_log_id: None,
        leader_commit: None,
        entries: shard.iter().take(3).cloned().collect(),
    });
    seed(
        out,
        "peer_message",
        "append-shard",
        peer_body("fixture/0", &append_shard),
    );
    let heartbeat = PeerRequest::<ShardTypes>::Append(AppendEntriesRequest {
        vote,
        prev_log_id: Some(log_id(3, 1, 7)),
        leader_commit: Some(log_id(3, 1, 7)),
        entries: Vec::new(),
    });
    seed(
        out,
        "peer_message",
        "heartbeat",
        peer_body("fixture/1", &heartbeat),
    );
    let vote_req = PeerRequest::<MetaTypes>::Vote(VoteRequest {
        vote: Vote::new(4, 2),
        last_log_id: Some(log_id(3, 1, 9)),
    });
    seed(out, "peer_message", "vote", peer_body("meta", &vote_req));
    let applied = Applied::<ShardState> {
        last_applied: Some(log_id(3, 1, 9)),
        membership: StoredMembership::default(),
        state: ShardState::default(),
    };
    let snapshot = PeerRequest::<ShardTypes>::Snapshot(InstallSnapshotRequest {
        vote,
        meta: SnapshotMeta {
            last_log_id: Some(log_id(3, 1, 9)),
            last_membership: StoredMembership::default(),
            snapshot_id: "3-9".into(),
        },
        offset: 0,
        data: serde_json::to_vec(&applied).expect("a state serializes"),
        done: true,
    });
    seed(
        out,
        "peer_message",
        "snapshot",
        peer_body("fixture/0", &snapshot),
    );
    let write = PeerRequest::<MetaTypes>::MetaWrite(MetaCommand::ReplicasSettled {
        stream: "fixture".into(),
        shard: 1,
        replicas: vec![1, 2, 3],
    });
    seed(out, "peer_message", "meta-write", peer_body("meta", &write));
    let elect = PeerRequest::<ShardTypes>::Elect;
    seed(out, "peer_message", "elect", peer_body("fixture/0", &elect));

    type R<T, E = openraft::error::Infallible> = Result<T, openraft::error::RaftError<NodeId, E>>;
    let append: R<AppendEntriesResponse<NodeId>> = Ok(AppendEntriesResponse::Success);
    seed(
        out,
        "peer_message",
        "reply-append",
        reply_seed(0, &encode_reply(&append)),
    );
    let conflict: R<AppendEntriesResponse<NodeId>> = Ok(AppendEntriesResponse::HigherVote(vote));
    seed(
        out,
        "peer_message",
        "reply-higher-vote",
        reply_seed(0, &encode_reply(&conflict)),
    );
    let voted: R<VoteResponse<NodeId>> = Ok(VoteResponse {
        vote,
        vote_granted: true,
        last_log_id: Some(log_id(3, 1, 9)),
    });
    seed(
        out,
        "peer_message",
        "reply-vote",
        reply_seed(1, &encode_reply(&voted)),
    );
    let installed: R<InstallSnapshotResponse<NodeId>, openraft::error::InstallSnapshotError> =
        Ok(InstallSnapshotResponse { vote });
    seed(
        out,
        "peer_message",
        "reply-snapshot",
        reply_seed(2, &encode_reply(&installed)),
    );
    let written: R<
        ClientWriteResponse<MetaTypes>,
        openraft::error::ClientWriteError<NodeId, openraft::BasicNode>,
    > = Ok(ClientWriteResponse {
        log_id: log_id(3, 1, 10),
        data: MetaReply::NoCommand,
        membership: None,
    });
    seed(
        out,
        "peer_message",
        "reply-write",
        reply_seed(3, &encode_reply(&written)),
    );
    let elected: Result<(), String> = Err("not a member".into());
    seed(
        out,
        "peer_message",
        "reply-elect",
        reply_seed(4, &encode_reply(&elected)),
    );
    let refused = strata_core::raft::peer::encode_reply_error(
        strata_core::raft::peer::STATUS_FORBIDDEN,
        "node 9 is not a member",
    );
    seed(
        out,
        "peer_message",
        "reply-forbidden",
        reply_seed(4, &refused),
    );
}

/// Applies every normal entry of `entries` to a fresh state, as a replica
/// does, and saves it as a snapshot document.
fn applied<S: GroupState>(entries: &[Entry<S::Config>]) -> Applied<S> {
    let mut a = Applied::<S>::default();
    for e in entries {
        a.last_applied = Some(e.log_id);
        match &e.payload {
            EntryPayload::Normal(cmd) => {
                let _ = a.state.apply(&e.log_id, cmd, 1_764_806_400_000);
            }
            EntryPayload::Membership(m) => {
                a.membership = StoredMembership::new(Some(e.log_id), m.clone());
            }
            EntryPayload::Blank => {}
        }
    }
    a
}

fn snapshot_seeds(meta: &[Entry<MetaTypes>], shard: &[Entry<ShardTypes>], out: &mut Vec<Seed>) {
    let mut catalog = applied::<Catalog>(meta);
    let _ = catalog.state.apply(&MetaCommand::ChangeAcl {
        add: Some(device_rule()),
        remove: 0,
    });
    let json = serde_json::to_vec(&catalog).expect("a catalog serializes");
    seed(out, "snapshot", "catalog", json);
    let mut state = applied::<ShardState>(shard);
    let json = serde_json::to_vec(&state).expect("a state serializes");
    seed(out, "snapshot", "shard", json);
    // A shard with part of its history tiered and a seal.
    let to = state
        .state
        .index
        .get(1)
        .map_or(0, |e| e.base_offset + u64::from(e.count));
    let last = state.last_applied.expect("the fixture shard has entries");
    let next = log_id(last.leader_id.term, last.leader_id.node_id, last.index + 1);
    let _ = state
        .state
        .apply(&next, &ShardCommand::Tier(object(0, to)), 0);
    let _ = state.state.apply(&next, &ShardCommand::Seal, 0);
    let json = serde_json::to_vec_pretty(&state).expect("a state serializes");
    seed(out, "snapshot", "shard-tiered-sealed", json);
}

fn manifest_seeds(out: &mut Vec<Seed>) {
    let mut m = Manifest::new("fixture", 0);
    seed(out, "manifest", "empty", m.to_json());
    m.push(object(0, 10)).expect("a seed object fits");
    m.push(object(10, 25)).expect("a seed object fits");
    seed(out, "manifest", "two-objects", m.to_json());
}
