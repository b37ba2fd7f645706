//! Consumer groups: members of a group share a stream's shards and keep
//! checkpoints in the core's replicated metadata.
//!
//! [`GroupConsumer`] is the SDK's group member: it joins with a heartbeat,
//! reads the shards it is assigned (from the group's checkpoint, else from
//! its configured start), hands each batch to a callback, and commits the
//! position after the callback returns, with the next heartbeat. A member
//! that stops heartbeating loses its shards after its session time; another
//! member resumes them from the last checkpoint, so records are delivered at
//! least once and re-delivery is bounded by what was read since that
//! checkpoint.

use crate::api::{self, bad, open, ConsumedRecord, Start};
use crate::cluster::Cluster;
use crate::transport::{Client, ClientError};
use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};
use strata_schema::fb;
use strata_schema::wire;
use tokio::sync::watch;

pub use strata_protocol::group::{
    build_group_description, shard_lag, Assignment, Checkpoint, GroupInfo, GroupShardInfo, ShardLag,
};

/// One heartbeat of a group member.
#[derive(Debug, Clone, Default)]
pub struct Heartbeat<'a> {
    pub stream: &'a str,
    pub group: &'a str,
    pub member: &'a str,
    pub session: Duration,
    pub generation: u64,
    pub commits: &'a [(u32, Checkpoint)],
    pub leave: bool,
}

/// Sends a heartbeat (join, keep the lease, commit, or leave). The metadata
/// leader answers; others say NOT_LEADER with its address.
pub async fn heartbeat(c: &Client, hb: &Heartbeat<'_>) -> Result<Assignment, ClientError> {
    let req = wire::request(fb::RequestBody::GroupHeartbeatRequest, |fbb| {
        let commits: Vec<_> = hb
            .commits
            .iter()
            .map(|(shard, cp)| {
                fb::GroupCheckpoint::create(
                    fbb,
                    &fb::GroupCheckpointArgs {
                        shard: *shard,
                        offset: cp.offset,
                        timestamp_ms: cp.timestamp_ms,
                    },
                )
            })
            .collect();
        let commits = Some(fbb.create_vector(&commits));
        let stream = Some(fbb.create_string(hb.stream));
        let group = Some(fbb.create_string(hb.group));
        let member = Some(fbb.create_string(hb.member));
        fb::GroupHeartbeatRequest::create(
            fbb,
            &fb::GroupHeartbeatRequestArgs {
                stream,
                group,
                member,
                session_ms: hb.session.as_millis().min(u32::MAX as u128) as u32,
                generation: hb.generation,
                commits,
                leave: hb.leave,
            },
        )
        .as_union_value()
    });
    let reply = c.call(&req).await?;
    let r = open(&reply);
    let a = r
        .body_as_group_assignment()
        .ok_or_else(|| bad(c, "GroupAssignment"))?;
    Ok(Assignment {
        generation: a.generation(),
        shards: a
            .shards()
            .map(|ss| {
                ss.iter()
                    .map(|s| {
                        let cp =
                            s.checkpoint()
                                .filter(|_| s.has_checkpoint())
                                .map(|c| Checkpoint {
                                    offset: c.offset(),
                                    timestamp_ms: c.timestamp_ms(),
                                });
                        (s.shard(), cp)
                    })
                    .collect()
            })
            .unwrap_or_default(),
        members: a.members(),
        refused_commits: a.refused_commits(),
    })
}

/// Settings of a [`GroupConsumer`].
#[derive(Debug, Clone)]
pub struct GroupConfig {
    pub stream: String,
    pub group: String,
    /// Unique within the group; a restarted member may reuse its name.
    pub member: String,
    /// Lease: without a heartbeat for this long the member loses its shards.
    pub session: Duration,
    /// Where to start in a shard the group has no checkpoint in.
    pub start: Start,
    /// Most records handed to the callback at once.
    pub max_records: u32,
    /// Stop once every assigned shard is read to its end (else keep waiting
    /// for new records).
    pub stop_at_end: bool,
}

impl GroupConfig {
    pub fn new(stream: &str, group: &str, member: &str) -> Self {
        Self {
            stream: stream.into(),
            group: group.into(),
            member: member.into(),
            session: Duration::from_secs(10),
            start: Start::Oldest,
            max_records: 1000,
            stop_at_end: false,
        }
    }
}

/// A shard this member reads.
struct Owned {
    next: u64,
    /// What to commit (the position after the last handled batch).
    done: Option<Checkpoint>,
    committed: Option<Checkpoint>,
    at_end: bool,
    /// A closed shard read to its end: nothing to fetch; the next heartbeat
    /// commits the end and the group moves on to its children.
    finished: bool,
}

/// A consumer-group member (see the module docs).
pub struct GroupConsumer<'a> {
    cluster: &'a Cluster,
    cfg: GroupConfig,
    generation: u64,
    owned: BTreeMap<u32, Owned>,
}

/// What [`GroupConsumer::run`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunStats {
    pub records: u64,
    pub rebalances: u64,
}

impl<'a> GroupConsumer<'a> {
    pub fn new(cluster: &'a Cluster, cfg: GroupConfig) -> Self {
        Self {
            cluster,
            cfg,
            generation: 0,
            owned: BTreeMap::new(),
        }
    }

    /// The shards this member holds now.
    pub fn shards(&self) -> Vec<u32> {
        self.owned.keys().copied().collect()
    }

    async fn heartbeat(&mut self, leave: bool) -> Result<bool, ClientError> {
        let commits: Vec<(u32, Checkpoint)> = self
            .owned
            .iter()
            .filter_map(|(s, o)| o.done.filter(|d| Some(*d) != o.committed).map(|d| (*s, d)))
            .collect();
        let hb = Heartbeat {
            stream: &self.cfg.stream,
            group: &self.cfg.group,
            member: &self.cfg.member,
            session: self.cfg.session,
            generation: self.generation,
            commits: &commits,
            leave,
        };
        let hb = &hb;
        let a = self
            .cluster
            .any(|c| async move { heartbeat(&c, hb).await })
            .await?;
        if a.refused_commits == 0 {
            for (s, cp) in &commits {
                if let Some(o) = self.owned.get_mut(s) {
                    o.committed = Some(*cp);
                }
            }
        }
        if leave {
            return Ok(false);
        }
        let changed = a.generation != self.generation;
        self.generation = a.generation;
        let mut owned = BTreeMap::new();
        for (shard, cp) in a.shards {
            let o = match self.owned.remove(&shard) {
                // Still ours: go on from where this member is (commits that
                // were refused for an old generation are sent again).
                Some(o) => o,
                None => {
                    let next = match cp {
                        Some(c) => c.offset,
                        None => {
                            let (stream, start) = (self.cfg.stream.as_str(), self.cfg.start);
                            self.cluster
                                .to_reader(stream, shard, |c| async move {
                                    api::seek(&c, stream, shard, start).await
                                })
                                .await?
                        }
                    };
                    Owned {
                        next,
                        done: cp,
                        committed: cp,
                        at_end: false,
                        finished: false,
                    }
                }
            };
            owned.insert(shard, o);
        }
        self.owned = owned;
        Ok(changed)
    }

    /// Reads the member's shards until `stop` turns true (or, with
    /// `stop_at_end`, until every shard is read to its end), calling
    /// `handle` with each batch of one shard in offset order. `handle`
    /// returns how many records of the batch it handled (a prefix: the whole
    /// batch, or fewer to checkpoint record by record); the position after
    /// them is committed with the next heartbeat, and reading goes on from
    /// there. An error from `handle` stops the member (after it leaves the
    /// group) without committing that batch.
    pub async fn run<F, Fut, E>(
        &mut self,
        mut handle: F,
        mut stop: watch::Receiver<bool>,
    ) -> Result<RunStats, GroupError<E>>
    where
        F: FnMut(u32, Vec<ConsumedRecord>) -> Fut,
        Fut: Future<Output = Result<usize, E>>,
    {
        let interval = (self.cfg.session / 4).max(Duration::from_millis(100));
        let mut stats = RunStats::default();
        let mut beat_at = Instant::now();
        let result = loop {
            if *stop.borrow() {
                break Ok(());
            }
            if Instant::now() >= beat_at {
                match self.heartbeat(false).await {
                    Ok(true) => stats.rebalances += 1,
                    Ok(false) => {}
                    Err(e) => break Err(GroupError::Core(e)),
                }
                beat_at = Instant::now() + interval;
            }
            if self.cfg.stop_at_end && self.owned.values().all(|o| o.at_end) {
                break Ok(());
            }
            let wait = if self.owned.values().any(|o| !o.at_end) {
                Duration::ZERO
            } else {
                beat_at
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_secs(1))
            };
            if self.owned.values().all(|o| o.finished) {
                tokio::select! {
                    _ = tokio::time::sleep(wait.max(Duration::from_millis(50))) => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
            let stream = self.cfg.stream.as_str();
            let max = self.cfg.max_records;
            let cluster = self.cluster;
            let fetches = self
                .owned
                .iter()
                .filter(|(_, o)| !o.finished)
                .map(|(&shard, o)| {
                    let offset = o.next;
                    async move {
                        let r = cluster
                            .to_reader(stream, shard, |c| async move {
                                api::fetch(&c, stream, shard, offset, max, wait).await
                            })
                            .await;
                        (shard, r)
                    }
                });
            let pages = tokio::select! {
                p = futures::future::join_all(fetches) => p,
                _ = stop.changed() => continue,
            };
            let mut failed = None;
            for (shard, page) in pages {
                let page = match page {
                    Ok(p) => p,
                    Err(e) => {
                        failed = Some(e);
                        continue;
                    }
                };
                let Some(o) = self.owned.get_mut(&shard) else {
                    continue;
                };
                o.at_end = page.next_offset >= page.high_watermark;
                let positions: Vec<(u64, i64)> = page
                    .records
                    .iter()
                    .map(|r| (r.offset, r.timestamp_ms))
                    .collect();
                if positions.is_empty() {
                    if page.end_of_shard {
                        finished_shard(o, page.next_offset);
                        beat_at = Instant::now();
                    }
                    continue;
                }
                let handled = match handle(shard, page.records).await {
                    Ok(k) => k.min(positions.len()),
                    Err(e) => {
                        let _ = self.heartbeat(true).await;
                        return Err(GroupError::Handler(e));
                    }
                };
                if handled < positions.len() {
                    o.at_end = false;
                }
                if page.end_of_shard && handled == positions.len() {
                    finished_shard(o, page.next_offset);
                    beat_at = Instant::now();
                }
                if let Some(&(offset, timestamp_ms)) = handled.checked_sub(1).map(|i| &positions[i])
                {
                    stats.records += handled as u64;
                    o.next = offset + 1;
                    o.done = Some(Checkpoint {
                        offset: offset + 1,
                        timestamp_ms,
                    });
                }
            }
            if let Some(e) = failed {
                tracing::warn!(error = %e, "group consumer: a fetch failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    _ = stop.changed() => {}
                }
            }
        };
        // Commit what was handled, then hand the shards over.
        let left = self.heartbeat(true).await;
        result?;
        left.map_err(GroupError::Core)?;
        Ok(stats)
    }
}

/// `o` is a closed shard read to its end `end`: commit that with the next
/// heartbeat (which is due at once).
fn finished_shard(o: &mut Owned, end: u64) {
    o.finished = true;
    o.at_end = true;
    o.next = end;
    let timestamp_ms = o.done.map_or(0, |d| d.timestamp_ms);
    o.done = Some(Checkpoint {
        offset: end,
        timestamp_ms,
    });
}

/// Why [`GroupConsumer::run`] stopped early.
#[derive(Debug, thiserror::Error)]
pub enum GroupError<E> {
    #[error("{0}")]
    Core(#[from] ClientError),
    #[error("the record handler failed: {0}")]
    Handler(E),
}
