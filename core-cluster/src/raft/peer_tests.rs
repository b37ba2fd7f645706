//! Tests of the peer wire format: round trips, typed decoding by group
//! kind, truncation and arbitrary bytes.

use super::*;
use crate::raft::command::{AppendCmd, ShardCommand};
use crate::raft::types::Entry;
use openraft::{BasicNode, EntryPayload, Membership, SnapshotMeta, StoredMembership};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

fn lid(term: u64, node: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, node), index)
}

fn sample_append() -> AppendEntriesRequest<ShardTypes> {
    let members = BTreeMap::from([
        (1, BasicNode::new("127.0.0.1:1")),
        (2, BasicNode::new("127.0.0.1:2")),
    ]);
    let membership = Membership::new(vec![BTreeSet::from([1, 2])], members);
    AppendEntriesRequest {
        vote: Vote {
            leader_id: LeaderId::new(3, 2),
            committed: true,
        },
        prev_log_id: Some(lid(2, 1, 9)),
        leader_commit: None,
        entries: vec![
            Entry {
                log_id: lid(3, 2, 10),
                payload: EntryPayload::Blank,
            },
            Entry {
                log_id: lid(3, 2, 11),
                payload: EntryPayload::Normal(ShardCommand::Append(AppendCmd {
                    producer_id: 7,
                    first_seq: 100,
                    seq_deltas: Some(vec![0, 2, 5]),
                    max_timestamp_ms: -4,
                    records: 3,
                    batch: Bytes::from_static(b"batch bytes, unchanged"),
                })),
            },
            Entry {
                log_id: lid(3, 2, 12),
                payload: EntryPayload::Membership(membership),
            },
        ],
    }
}

/// The frame body: what the server's `read_frame` hands over.
fn body(frame: Vec<u8>) -> Bytes {
    let len = frame::parse_header(frame[..4].try_into().unwrap(), usize::MAX).unwrap();
    assert_eq!(len, frame.len() - 4);
    Bytes::from(frame).slice(4..)
}

#[test]
fn append_entries_round_trips() {
    let req = sample_append();
    let frame = encode_request("s/0", &PeerRequest::Append(req.clone())).unwrap();
    let (group, GroupRequest::Shard(PeerRequest::Append(got))) =
        decode_request(body(frame)).unwrap()
    else {
        panic!("not an append");
    };
    assert_eq!(group, "s/0");
    assert_eq!(got.vote, req.vote);
    assert_eq!(got.prev_log_id, req.prev_log_id);
    assert_eq!(got.leader_commit, req.leader_commit);
    assert_eq!(got.entries, req.entries);
}

#[test]
fn vote_and_snapshot_round_trip() {
    let vote = VoteRequest {
        vote: Vote::new(4, 1),
        last_log_id: Some(lid(3, 2, 12)),
    };
    let frame = encode_request("meta", &PeerRequest::<MetaTypes>::Vote(vote.clone())).unwrap();
    let (group, GroupRequest::Meta(PeerRequest::Vote(got))) = decode_request(body(frame)).unwrap()
    else {
        panic!("not a vote");
    };
    assert_eq!((group.as_str(), got), ("meta", vote));

    let snap = InstallSnapshotRequest::<ShardTypes> {
        vote: Vote::new(4, 1),
        meta: SnapshotMeta {
            last_log_id: Some(lid(3, 2, 12)),
            last_membership: StoredMembership::default(),
            snapshot_id: "3-12".into(),
        },
        offset: 5,
        data: (0..=255).collect(),
        done: true,
    };
    let frame = encode_request("s/1", &PeerRequest::Snapshot(snap.clone())).unwrap();
    let (_, GroupRequest::Shard(PeerRequest::Snapshot(got))) = decode_request(body(frame)).unwrap()
    else {
        panic!("not a snapshot");
    };
    assert_eq!(got, snap);
}

#[test]
fn entries_decode_as_the_command_type_of_the_named_group() {
    // The same bytes: fine for a shard group, refused for the metadata
    // group, whose entries are metadata commands.
    let shard = PeerRequest::Append(sample_append());
    let to_meta = encode_request(META_GROUP, &shard).unwrap();
    let err = decode_request(body(to_meta)).unwrap_err();
    assert!(
        matches!(
            &err,
            WireError::Entry {
                i: 1,
                source: StoreError::Codec {
                    source: crate::raft::command::CodecError::WrongGroup { tag: 1, .. },
                    ..
                }
            }
        ),
        "{err}"
    );
    let meta_entry = Entry::<MetaTypes> {
        log_id: lid(3, 2, 10),
        payload: EntryPayload::Normal(MetaCommand::ForgetNode(4)),
    };
    let meta = AppendEntriesRequest::<MetaTypes> {
        vote: Vote::new(3, 2),
        prev_log_id: None,
        leader_commit: None,
        entries: vec![meta_entry.clone()],
    };
    let frame = encode_request(META_GROUP, &PeerRequest::Append(meta.clone())).unwrap();
    let (_, GroupRequest::Meta(PeerRequest::Append(got))) = decode_request(body(frame)).unwrap()
    else {
        panic!("not a metadata append");
    };
    assert_eq!(got.entries, vec![meta_entry]);
    let to_shard = encode_request("s/0", &PeerRequest::Append(meta)).unwrap();
    assert!(matches!(
        decode_request(body(to_shard)),
        Err(WireError::Entry { i: 0, .. })
    ));
}

/// Every proper prefix of the request body `full` and the body with one
/// byte more are refused.
fn refuses_bad_lengths(full: &Bytes) {
    for n in 0..full.len() {
        assert!(
            decode_request(full.slice(..n)).is_err(),
            "prefix of {n} bytes"
        );
    }
    let mut extra = full.to_vec();
    extra.push(0);
    assert!(matches!(
        decode_request(Bytes::from(extra)),
        Err(WireError::Trailing(1))
    ));
}

#[test]
fn every_truncation_is_an_error() {
    let frame = encode_request("s/0", &PeerRequest::Append(sample_append())).unwrap();
    let full = body(frame);
    refuses_bad_lengths(&full);
}

#[test]
fn quiesce_and_ping_round_trip_and_refuse_bad_lengths() {
    let q = QuiesceRequest {
        leader: 1,
        term: 7,
        last_log_index: 42,
        committed_index: 41,
    };
    let frame = encode_request("s/2", &PeerRequest::<ShardTypes>::Quiesce(q)).unwrap();
    let full = body(frame);
    let (group, GroupRequest::Shard(PeerRequest::Quiesce(got))) =
        decode_request(full.clone()).unwrap()
    else {
        panic!("not a quiesce");
    };
    assert_eq!((group.as_str(), got), ("s/2", q));
    refuses_bad_lengths(&full);
    let frame = encode_request("meta", &PeerRequest::<MetaTypes>::Ping).unwrap();
    let mut ping = body(frame).to_vec();
    assert!(matches!(
        decode_request(Bytes::from(ping.clone())).unwrap(),
        (_, GroupRequest::Meta(PeerRequest::Ping))
    ));
    ping.push(1);
    assert!(matches!(
        decode_request(Bytes::from(ping)),
        Err(WireError::Trailing(1))
    ));
    let frame = encode_request("meta", &PeerRequest::<MetaTypes>::ReadIndex).unwrap();
    let mut read = body(frame).to_vec();
    assert!(matches!(
        decode_request(Bytes::from(read.clone())).unwrap(),
        (_, GroupRequest::Meta(PeerRequest::ReadIndex))
    ));
    read.push(1);
    assert!(matches!(
        decode_request(Bytes::from(read)),
        Err(WireError::Trailing(1))
    ));
}

#[test]
fn replies_round_trip() {
    type R = Result<u32, String>;
    let ok = decode_reply::<R>(&body(encode_reply(&R::Ok(5)))).unwrap();
    assert!(matches!(ok, PeerReply::Ok(Ok(5))));
    let e = decode_reply::<R>(&body(encode_reply_error(STATUS_UNKNOWN_GROUP, "g"))).unwrap();
    assert!(matches!(e, PeerReply::UnknownGroup(m) if m == "g"));
    assert!(decode_reply::<R>(&[9]).is_err());
    assert!(decode_reply::<R>(&[]).is_err());
}

proptest! {
    #[test]
    fn decoding_arbitrary_bytes_never_panics(
        kind in 0u8..9,
        group in "[a-z/0-9]{0,8}",
        rest in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut b = vec![kind];
        b.extend_from_slice(&(group.len() as u16).to_le_bytes());
        b.extend_from_slice(group.as_bytes());
        b.extend_from_slice(&rest);
        let _ = decode_request(Bytes::from(b));
        let _ = decode_reply::<Result<u64, String>>(&rest);
    }
}
