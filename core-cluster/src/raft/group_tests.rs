//! The metadata group's log stays bounded: snapshots and purges behind them.

use super::*;
use crate::catalog::groups::{Checkpoint, Heartbeat};
use crate::catalog::{MetaCommand, ShardMeta, StreamMeta};
use crate::raft::meta_state::META_SNAPSHOT_EVERY;
use crate::raft::net::NetworkFactory;

/// Bytes of the group's log segments on disk.
fn log_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir.join("log"))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Waits until the log is purged behind the last snapshot due after
/// `written` entries (snapshots and purges run in the background).
async fn wait_purged(g: &Group<Catalog>, written: u64) -> openraft::RaftMetrics<NodeId, BasicNode> {
    g.raft
        .wait(Some(Duration::from_secs(30)))
        .metrics(
            |m| {
                m.purged.map_or(0, |p| p.index) + META_SNAPSHOT_EVERY + KEEP_BEHIND_SNAPSHOT
                    >= written
            },
            "the log purged behind the last snapshot",
        )
        .await
        .unwrap()
}

/// A week of one member's heartbeats at one per second is 604,800 metadata
/// entries; neither the log nor the catalog may keep them. Consumer-group
/// heartbeats (4 members taking turns, each committing its shard's offset)
/// go through a single-node metadata group: the log is purged behind each
/// snapshot, so what stays on disk is bounded by one interval plus what is
/// kept behind the snapshot, whatever the number written; the catalog's
/// snapshot does not grow with the count; and the state reopens from the
/// snapshot plus the log after it. 3.5 snapshot intervals by default;
/// `STRATA_META_LOG_ENTRIES=604800` runs the whole week (about 3 minutes
/// in a debug build).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metadata_log_is_purged_behind_snapshots() {
    // tmpfs when there is one: fsyncs cost nothing there.
    let shm = std::path::Path::new("/dev/shm");
    let tmp = if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let dir = tmp.path().join("meta");
    let seg = SegmentLogOptions {
        segment_bytes_max: 256 * 1024,
        ..SegmentLogOptions::default()
    };
    let open = || {
        Group::<Catalog>::open(
            "meta",
            &dir,
            1,
            seg.clone(),
            NetworkFactory::SingleNode.network("meta"),
        )
    };
    let g = open().await.unwrap();
    g.initialize("meta", [(1, BasicNode::new("127.0.0.1:1"))].into())
        .await
        .unwrap();
    g.wait_leader("meta", Duration::from_secs(10))
        .await
        .unwrap();
    let total: u64 = std::env::var("STRATA_META_LOG_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(META_SNAPSHOT_EVERY * 7 / 2)
        .max(META_SNAPSHOT_EVERY * 3);
    let shards = 4u32;
    let stream = StreamMeta {
        name: "sensors".into(),
        replication: 1,
        created_ms: 0,
        retention: Default::default(),
        restore_from: None,
        shards: strata_schema::hashkey::even_ranges(shards)
            .iter()
            .enumerate()
            .map(|(i, r)| ShardMeta::new(i as u32, *r, vec![1], Vec::new()))
            .collect(),
    };
    g.raft
        .client_write(MetaCommand::CreateStream(stream))
        .await
        .unwrap();
    let mut sizes = Vec::new();
    let mut state_sizes = Vec::new();
    let mut pending = Vec::new();
    for i in 1..=total {
        // One heartbeat a second, the members taking turns, each
        // committing the next offset of the shard it reads.
        let member = i % 4;
        let cmd = MetaCommand::GroupHeartbeat {
            stream: "sensors".into(),
            group: "archiver".into(),
            heartbeat: Heartbeat {
                member: format!("member-{member}"),
                now_ms: (i * 1_000) as i64,
                session_ms: 10_000,
                generation: 0,
                commits: vec![(
                    member as u32,
                    Checkpoint {
                        offset: i,
                        timestamp_ms: (i * 1_000) as i64,
                    },
                )],
                leave: false,
            },
        };
        pending.push(g.raft.client_write_ff(cmd).await.unwrap());
        if pending.len() == 256 {
            for rx in pending.drain(..) {
                rx.await.unwrap().unwrap();
            }
        }
        if i % (META_SNAPSHOT_EVERY / 2) == 0 {
            for rx in pending.drain(..) {
                rx.await.unwrap().unwrap();
            }
            wait_purged(&g, i + 1).await;
            sizes.push(log_bytes(&dir));
            state_sizes.push(g.sm.read(|c| serde_json::to_vec(c).unwrap().len()));
        }
    }
    for rx in pending.drain(..) {
        rx.await.unwrap().unwrap();
    }
    let m = wait_purged(&g, total + 1).await;
    let kept = m.last_log_index.unwrap() - m.purged.unwrap().index;
    assert!(
        kept <= META_SNAPSHOT_EVERY + KEEP_BEHIND_SNAPSHOT,
        "{kept} entries kept"
    );
    // The bytes on disk stay within what the entries kept take (measured
    // on the first half interval, before any purge) plus two segments (a
    // purge removes whole segments only), wherever the count is: a
    // sawtooth, not a ramp (without purging the last is 7x the first).
    eprintln!(
        "{total} heartbeats; log bytes every {} entries: {sizes:?}; catalog bytes: {state_sizes:?}",
        META_SNAPSHOT_EVERY / 2
    );
    let per_entry = sizes[0] / (META_SNAPSHOT_EVERY / 2);
    let bound =
        per_entry * (META_SNAPSHOT_EVERY + KEEP_BEHIND_SNAPSHOT) + 2 * seg.segment_bytes_max;
    let most = *sizes.iter().max().unwrap();
    assert!(
        most <= bound,
        "log grew to {most} bytes, over {bound} ({sizes:?})"
    );
    // The catalog holds the members and their checkpoints, not the
    // heartbeats: flat (within a few digits of the growing offsets).
    let (first, last) = (state_sizes[0], *state_sizes.last().unwrap());
    assert!(
        last <= first + 64,
        "the catalog grew from {first} to {last} bytes ({state_sizes:?})"
    );
    let groups = g.sm.read(|c| c.groups.clone());
    g.raft.shutdown().await.unwrap();
    drop(g);
    let g = open().await.unwrap();
    g.wait_leader("meta", Duration::from_secs(10))
        .await
        .unwrap();
    g.raft
        .wait(Some(Duration::from_secs(10)))
        .metrics(
            |m| m.last_applied.map(|l| l.index) > Some(total),
            "re-applied",
        )
        .await
        .unwrap();
    assert_eq!(g.sm.read(|c| c.groups.clone()), groups);
    let members = groups["sensors"]["archiver"].members.len();
    assert_eq!(members, 4);
    g.raft.shutdown().await.unwrap();
}
