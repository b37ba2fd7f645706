//! Tiering: sealed ranges of a shard become Parquet objects in the object
//! store, and local log entries that are tiered and older than the local
//! retention are deleted.
//!
//! - Only the shard leader uploads. A range is sealed once its batches reach
//!   `segment_bytes_max` or its first record is `segment_age_max_ms` old. The
//!   leader writes the object, then commits `ShardCommand::Tier` through the
//!   shard's Raft group (the manifest is replicated state), then writes a copy
//!   of the manifest next to the data. A crash between upload and commit
//!   leaves an object the manifest does not name, under a key of its own
//!   (range and term: a late upload never replaces a committed object); the
//!   leader that commits that range deletes it. Never a gap.
//! - Every replica deletes on its own: once entries are tiered and older than
//!   `local_retention_ms`, it drops their index entries, persists a
//!   snapshot (the shard state: offsets, dedup table, index, manifest) and
//!   purges its Raft log up to them, so the in-memory index grows with the
//!   local log, not with the stream's history. A
//!   replica that falls behind the purge point gets that snapshot, not the
//!   tiered bytes. Reads of purged offsets go to the object store.
//! - If the store is unreachable, uploads retry with backoff and nothing is
//!   deleted locally; ingestion goes on while local disk lasts.
//!
//! What to upload, purge or expire is decided by the pure planners in
//! `shard::tier_plan`; the functions here read the state and the clock, ask
//! the planner, and act. The loop that drives them per shard (when to
//! upload, back off, purge) is `control::tiering`.

use crate::clock::now_ms;
use crate::raft::command::{ShardCommand, ShardResponse};
use crate::raft::group::ShardGroup;
use crate::raft::runs::RunReader;
use crate::shard::tier_plan::{self, Expiry, UploadLimits};
use crate::tier::format::{SegmentWriter, WriterOptions};
use crate::tier::manifest::Manifest;
use crate::tier::{keys, store, TierError};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_protocol::Retention;
use strata_schema::batch;

/// Why a tiering step failed (retried by `control::tiering`).
#[derive(Debug, thiserror::Error)]
pub enum TieringError {
    #[error("opening the object store {url}: {source}")]
    Open { url: String, source: Box<TierError> },
    #[error(transparent)]
    Tier(Box<TierError>),
    #[error("a logged batch: {0}")]
    Batch(#[from] strata_schema::batch::BatchError),
    #[error("reading the log: {0}")]
    Log(Box<crate::raft::log_store::StoreError>),
    #[error("reading a logged run: {0}")]
    Run(#[from] crate::raft::runs::RunError),
    /// A Raft call failed; `what` names the step.
    #[error("{what}: {detail}")]
    Raft { what: &'static str, detail: String },
    #[error("{what}: {source}")]
    Store {
        what: String,
        source: Box<object_store::Error>,
    },
    #[error("{0}")]
    Refused(String),
    #[error("upload pass exceeded {0:?}")]
    Timeout(Duration),
}

impl From<TierError> for TieringError {
    fn from(e: TierError) -> Self {
        Self::Tier(Box::new(e))
    }
}

impl From<crate::raft::log_store::StoreError> for TieringError {
    fn from(e: crate::raft::log_store::StoreError) -> Self {
        Self::Log(Box::new(e))
    }
}

fn raft<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> TieringError {
    move |e| TieringError::Raft {
        what,
        detail: e.to_string(),
    }
}

type Result<T, E = TieringError> = std::result::Result<T, E>;

/// The object store and the tiering settings of a node.
pub struct Tier {
    /// Off in a multi-node cluster without an `object_store`: each node's
    /// local default could not serve the others' objects.
    pub enabled: bool,
    pub url: String,
    pub store: Arc<dyn ObjectStore>,
    pub prefix: Path,
    pub segment_bytes_max: u64,
    pub segment_age_max_ms: u64,
    pub local_retention_ms: u64,
    pub writer: WriterOptions,
    /// What this node last wrote to each shard's manifest copy
    /// ([`ManifestMark`]): a copy whose write failed is written again by
    /// the next upload pass, even with nothing left to upload.
    pub manifests_written: std::sync::Mutex<HashMap<(String, u32), ManifestMark>>,
}

/// What a shard's manifest holds, as far as its copy in the store goes:
/// the number of objects and the offsets they cover. Objects are
/// contiguous and a manifest only grows at its end (`Tier`) and shrinks
/// at its start (`Expire`), so two manifests of a shard with the same mark
/// are the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManifestMark {
    pub objects: usize,
    pub first_offset: u64,
    pub tiered_to: u64,
}

impl ManifestMark {
    fn of(s: &crate::raft::shard::ShardState) -> Self {
        Self {
            objects: s.tiered.len(),
            first_offset: s.tiered.first().map_or(s.first_offset, |o| o.first_offset),
            tiered_to: s.tiered_to(),
        }
    }
}

impl Tier {
    /// When a range is sealed for upload (`tier_plan::next_upload`).
    pub fn upload_limits(&self) -> UploadLimits {
        UploadLimits {
            segment_bytes_max: self.segment_bytes_max,
            segment_age_max_ms: self.segment_age_max_ms,
        }
    }

    pub fn open(cfg: &crate::config::CoreConfig) -> Result<Self> {
        let url = cfg.object_store_url();
        let enabled = cfg.peers.is_empty() || cfg.object_store.is_some();
        if !enabled {
            tracing::warn!("tiering is off: a cluster needs object_store set to a store every node can read (s3://bucket/prefix)");
        }
        let (store, prefix) =
            store::open_encrypted(&url, &cfg.object_store_encryption()).map_err(|source| {
                TieringError::Open {
                    url: url.clone(),
                    source: Box::new(source),
                }
            })?;
        Ok(Self {
            enabled,
            url,
            store,
            prefix,
            segment_bytes_max: cfg.segment_bytes_max,
            segment_age_max_ms: cfg.segment_age_max_ms,
            local_retention_ms: cfg.local_retention_ms,
            writer: WriterOptions::default(),
            manifests_written: Default::default(),
        })
    }
}

/// Uploads every sealed range of the shard, oldest first. Returns the
/// number of objects written.
pub async fn upload_sealed(tier: &Tier, stream: &str, shard: u32, g: &ShardGroup) -> Result<usize> {
    let mut n = 0;
    loop {
        let now = now_ms();
        let entries = g.sm.read(|s| {
            tier_plan::next_upload(s, now, tier.upload_limits()).map(|r| s.index[r].to_vec())
        });
        let Some(entries) = entries else {
            // A manifest write that failed after its `Tier` or `Expire`
            // was committed is retried here, or the copy would stay behind
            // (a restore from it would miss the newest objects) until the
            // shard tiers again, maybe never.
            if manifest_behind(tier, stream, shard, g) {
                write_manifest(tier, stream, shard, g).await?;
            }
            return Ok(n);
        };
        let started = Instant::now();
        // Reading the log and encoding Parquet is blocking work (hundreds of
        // ms per object): keep it off the async workers that serve requests.
        let enc = tokio::task::block_in_place(|| encode(tier, stream, shard, g, &entries))?;
        // The key names this leader's term: a late upload by a deposed
        // leader never replaces an object a manifest names (archive keys).
        let term = g.raft.metrics().borrow().current_term;
        let key = enc.key(&tier.prefix, stream, shard, term);
        store::put_object(&tier.store, &key, enc.parquet.clone()).await?;
        // Total retention counts from when the core appended the records
        // (this leader's clock), not from the producers' timestamps.
        let mut obj = enc.tiered_object(&key);
        obj.max_appended_ms = tier_plan::max_appended_ms(&entries);
        // The manifest entry starts a new log segment, so the segment with
        // the data just tiered can be deleted whole by a purge (no entry
        // after the data keeps it alive).
        g.log.roll_next();
        let resp = g
            .raft
            .client_write(ShardCommand::Tier(obj.clone()))
            .await
            .map_err(raft("committing the manifest entry"))?;
        match resp.data {
            ShardResponse::Tiered { .. } => {}
            other => {
                return Err(TieringError::Refused(format!(
                    "manifest entry for {key} refused: {other:?}"
                )))
            }
        }
        delete_stale_uploads(tier, stream, shard, &enc, &key).await;
        metrics::counter!("strata_core_tier_objects_total").increment(1);
        metrics::counter!("strata_core_tier_records_total").increment(obj.records);
        metrics::counter!("strata_core_tier_payload_bytes_total").increment(obj.payload_bytes);
        metrics::counter!("strata_core_tier_object_bytes_total").increment(obj.bytes);
        tracing::info!(
            key = %key,
            records = obj.records,
            payload_bytes = obj.payload_bytes,
            object_bytes = obj.bytes,
            ms = started.elapsed().as_millis() as u64,
            "tiered a segment"
        );
        write_manifest(tier, stream, shard, g).await?;
        n += 1;
    }
}

/// Encodes the records of `entries` (whole log entries, in offset order) as
/// one Parquet object.
fn encode(
    tier: &Tier,
    stream: &str,
    shard: u32,
    g: &ShardGroup,
    entries: &[crate::raft::shard::IndexEntry],
) -> Result<crate::tier::EncodedObject> {
    let mut w = SegmentWriter::new(stream, shard, tier.writer)?;
    let mut runs = RunReader::new(&g.log);
    for e in entries {
        let cmd = runs.run(e)?;
        let b = batch::open(&cmd.batch)?;
        for (i, rec) in b
            .records()
            .iter()
            .enumerate()
            .skip(e.skip as usize)
            .take(e.count as usize)
        {
            w.push(e.base_offset + (i - e.skip as usize) as u64, &rec)?;
        }
    }
    Ok(w.finish()?)
}

/// Deletes the objects of this shard and first offset other than `key`,
/// the one just committed: uploads whose commit failed (this leader's
/// earlier try, or a deposed leader's), which no manifest names and which
/// would otherwise show their records twice to engines that read the
/// partition tree directly. Best effort: a failure leaves an orphan and a
/// warning, nothing else.
async fn delete_stale_uploads(
    tier: &Tier,
    stream: &str,
    shard: u32,
    enc: &crate::tier::EncodedObject,
    key: &Path,
) {
    use futures::TryStreamExt;
    let (dir, start) = keys::same_start_prefix(
        &tier.prefix,
        stream,
        shard,
        enc.first_offset,
        enc.first_timestamp_ms,
    );
    let listed: Result<Vec<_>, _> = tier.store.list(Some(&dir)).try_collect().await;
    let stale = match listed {
        Ok(objects) => objects
            .into_iter()
            .map(|o| o.location)
            .filter(|l| l != key && l.filename().is_some_and(|n| n.starts_with(&start))),
        Err(e) => {
            tracing::warn!(dir = %dir, error = %e, "listing uploads to clean up");
            return;
        }
    };
    for location in stale {
        match tier.store.delete(&location).await {
            Ok(()) => tracing::info!(key = %location, "deleted an upload no manifest names"),
            Err(e) => {
                tracing::warn!(key = %location, error = %e, "deleting an upload no manifest names")
            }
        }
    }
}

/// Writes the shard's manifest copy next to its data (for restore and for
/// readers outside Strata).
async fn write_manifest(tier: &Tier, stream: &str, shard: u32, g: &ShardGroup) -> Result<()> {
    let (objects, mark) = g.sm.read(|s| (s.tiered.clone(), ManifestMark::of(s)));
    let mut m = Manifest::new(stream, shard);
    for o in objects {
        m.push(o)?;
    }
    let key = keys::manifest_key(&tier.prefix, stream, shard);
    store::put_object(&tier.store, &key, m.to_json().into()).await?;
    tier.manifests_written
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert((stream.to_string(), shard), mark);
    Ok(())
}

/// Whether the shard's manifest copy may be behind its manifest: this node
/// wrote a different one last, or, having written none (a new leader, a
/// restart), the shard has tiered or expired anything. A shard with no
/// history yet writes nothing: a copy in the store may be what a restore
/// is about to read.
fn manifest_behind(tier: &Tier, stream: &str, shard: u32, g: &ShardGroup) -> bool {
    let mark = g.sm.read(ManifestMark::of);
    let written = tier
        .manifests_written
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&(stream.to_string(), shard))
        .copied();
    match written {
        Some(w) => w != mark,
        None => mark.objects > 0 || mark.first_offset > 0,
    }
}

/// Purges local log entries that are tiered and past the local retention
/// (older than its time, or beyond its bytes counted from the newest entry),
/// behind a persisted snapshot. Returns whether it purged.
pub(crate) async fn purge_local(
    tier: &Tier,
    g: &ShardGroup,
    retention: &Retention,
) -> Result<bool> {
    let now = now_ms();
    let purged = g.log.purged_index();
    let upto =
        g.sm.read(|s| tier_plan::purge_point(s, retention, tier.local_retention_ms, purged, now));
    let Some(upto) = upto else {
        return Ok(false);
    };
    // The entries about to be purged are tiered: reads of them go to the
    // object store, so their index entries go too (in the snapshot below).
    let dropped = g.sm.trim(|s| s.compact_index(upto));
    tracing::debug!(dropped, "index entries of tiered offsets dropped");
    g.raft
        .trigger()
        .snapshot()
        .await
        .map_err(raft("triggering a snapshot"))?;
    g.raft
        .wait(Some(Duration::from_secs(30)))
        .metrics(
            |m| m.snapshot.is_some_and(|s| s.index >= upto),
            "snapshot covering the tiered entries",
        )
        .await
        .map_err(raft("waiting for the snapshot"))?;
    g.raft
        .trigger()
        .purge_log(upto)
        .await
        .map_err(raft("purging the log"))?;
    tracing::info!(
        upto,
        "deleting local log entries that are tiered and past local retention"
    );
    Ok(true)
}

/// Total retention (shard leader): objects whose records were all appended
/// longer than the stream's retention ago (by the core's clock, see
/// `tier_plan::expiry`), or the oldest ones beyond its byte budget, are
/// deleted from the store first, then `ShardCommand::Expire` moves the shard's
/// first offset past them. A crash in between leaves the manifest naming
/// deleted objects of expiring offsets; the next pass deletes (not found is
/// fine) and commits again, so no object outlives its retention unnamed.
pub(crate) async fn expire(
    tier: &Tier,
    stream: &str,
    shard: u32,
    g: &ShardGroup,
    retention: &Retention,
) -> Result<()> {
    let now = now_ms();
    let Some(Expiry {
        first_offset: first,
        objects: gone,
    }) = g.sm.read(|s| tier_plan::expiry(s, retention, now))
    else {
        return Ok(());
    };
    for o in &gone {
        match tier.store.delete(&o.path()?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(source) => {
                return Err(TieringError::Store {
                    what: format!("deleting expired object {}", o.key),
                    source: Box::new(source),
                })
            }
        }
    }
    let resp = g
        .raft
        .client_write(ShardCommand::Expire {
            first_offset: first,
        })
        .await
        .map_err(raft("committing the expiry"))?;
    if !matches!(resp.data, ShardResponse::Expired { .. }) {
        return Err(TieringError::Refused(format!(
            "expiry to offset {first} refused: {:?}",
            resp.data
        )));
    }
    let records: u64 = gone.iter().map(|o| o.records).sum();
    metrics::counter!("strata_core_expired_records_total").increment(records);
    tracing::info!(
        stream,
        shard,
        first_offset = first,
        objects = gone.len(),
        records,
        "total retention: expired the oldest records"
    );
    write_manifest(tier, stream, shard, g).await
}

/// Number of shards with a manifest of `stream` in the store (shards are
/// numbered from 0 without gaps).
pub async fn archived_shards(tier: &Tier, stream: &str) -> Result<u32> {
    let mut n = 0;
    loop {
        let key = keys::manifest_key(&tier.prefix, stream, n);
        match tier.store.head(&key).await {
            Ok(_) => n += 1,
            Err(object_store::Error::NotFound { .. }) => return Ok(n),
            Err(source) => {
                return Err(TieringError::Store {
                    what: format!("looking for {key}"),
                    source: Box::new(source),
                })
            }
        }
    }
}

/// Loads shard `shard`'s manifest from the store into the empty shard.
pub(crate) async fn restore_shard(
    tier: &Tier,
    stream: &str,
    shard: u32,
    g: &ShardGroup,
) -> Result<()> {
    let key = keys::manifest_key(&tier.prefix, stream, shard);
    let store_err = |source| TieringError::Store {
        what: format!("reading {key}"),
        source: Box::new(source),
    };
    let bytes = tier
        .store
        .get(&key)
        .await
        .map_err(store_err)?
        .bytes()
        .await
        .map_err(store_err)?;
    let m = Manifest::from_json(&bytes)?;
    if m.stream != stream || m.shard != shard {
        return Err(TieringError::Refused(format!(
            "{key} describes {}/{}, not {stream}/{shard}",
            m.stream, m.shard
        )));
    }
    if m.objects.is_empty() {
        return Ok(());
    }
    let records: u64 = m.objects.iter().map(|o| o.records).sum();
    let resp = g
        .raft
        .client_write(ShardCommand::Restore(m.objects))
        .await
        .map_err(raft("committing the restored manifest"))?;
    tracing::info!(stream, shard, records, result = ?resp.data, "restored the shard's history from its manifest");
    Ok(())
}

/// Reads records at `offset` from the tiered object holding it.
pub async fn read_tiered(
    tier: &Tier,
    g: &ShardGroup,
    offset: u64,
    max_records: usize,
    max_bytes: usize,
) -> Result<crate::tier::read::TierRead, TierError> {
    let obj = g
        .sm
        .read(|s| s.tiered_object(offset).cloned())
        .ok_or_else(|| TierError::Manifest(format!("no tiered object holds offset {offset}")))?;
    // The entry's size and checksums: the read verifies what it fetches.
    crate::tier::read::read_object(tier.store.clone(), &obj, offset, max_records, max_bytes).await
}

#[cfg(test)]
#[path = "tiering_fault_tests.rs"]
mod fault_tests;
