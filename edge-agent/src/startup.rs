//! The high-water check and `--retire-producer`: the I/O around the pure
//! decisions of [`crate::registry::high_water`].
//!
//! - [`check_at_start`]: before anything is accepted or forwarded, the
//!   agent asks the leader of every shard of every buffered stream where
//!   this producer id's records end. A buffer behind any of them refuses
//!   the start (the error names streams, shards, positions and the fix). If
//!   the core does not answer within [`START_CHECK`], the agent starts
//!   anyway (it must accept writes while the core is down) and leaves the
//!   check to each stream's forwarder.
//! - [`gate`]: a forwarder's first step. It asks until the core answers,
//!   then lets the forwarder go on, or halts the whole agent: the records
//!   accepted since the start were numbered at positions the core would
//!   drop, and stopping (nothing more accepted, nothing forwarded, exit
//!   non-zero) loses none of them: they stay in the buffer, and
//!   `--retire-producer` forwards them under a new id.
//! - [`retire`]: `--retire-producer`. Needs the core: it reads the retired
//!   id's marks (and logs them), registers the new id before any record is
//!   numbered under it, and acknowledges what the core provably holds.
//!   Buffered records before the switch position stay under the retired id
//!   (the core's dedup keeps what it lacks of them); those from the switch
//!   on, and every new record, go under the new id.

use crate::buffer::BufferError;
use crate::registry::high_water::{self, BehindCore, ShardMark};
use crate::registry::identity::{self, Retired};
use crate::registry::{Registry, RegistryError, StreamState};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use strata_client::api;
use strata_client::cluster::Cluster;
use strata_client::ClientError;
use strata_schema::fb::ErrorCode;
use tokio::sync::watch;

/// How long the start waits for the core before leaving the check to the
/// forwarders.
pub const START_CHECK: Duration = Duration::from_secs(5);
/// How long `--retire-producer` waits for the core before giving up.
pub const RETIRE_DEADLINE: Duration = Duration::from_secs(30);
/// The longest pause between a forwarder's attempts to hear the marks.
const GATE_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Why the agent does not start (or stops).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("{0}")]
    Behind(BehindCore),
    #[error("--retire-producer needs the core, which it asks what it holds under producer id {old} and where it registers the new id: {what} failed: {source}")]
    RetireUnreachable {
        old: u64,
        what: &'static str,
        source: ClientError,
    },
    #[error("--retire-producer needs the core, which did not answer within {} s (asking what it holds under producer id {old} and registering the new id); start the agent with --retire-producer again once the core is reachable", RETIRE_DEADLINE.as_secs())]
    RetireTimeout { old: u64 },
    #[error(
        "--retire-producer: acknowledging the records of stream {stream} the core holds: {source}"
    )]
    Ack { stream: String, source: BufferError },
}

/// Whether the core is too old to answer high-water requests.
fn unsupported(e: &ClientError) -> bool {
    e.code() == Some(ErrorCode::MalformedRequest)
}

/// Whether the core answered and refused (not unreachable, not electing).
fn refused(e: &ClientError) -> bool {
    e.code()
        .is_some_and(|c| !matches!(c, ErrorCode::Unavailable | ErrorCode::NotLeader))
}

/// Registers `id` with the metadata group (idempotent).
async fn register(core: &Cluster, id: u64, who: &str) -> Result<(), ClientError> {
    core.any(|c| async move { api::register_producer(&c, id, who).await })
        .await
        .map(|_| ())
}

/// `stream`'s marks under `id`: its shard map refreshed from the core, then
/// every shard's leader (open and closed shards: records below a closed
/// shard's mark are routed to it).
async fn marks(
    registry: &Registry,
    stream: &StreamState,
    id: u64,
) -> Result<Vec<ShardMark>, ClientError> {
    registry.refresh(stream).await?;
    let shards: Vec<u32> = stream
        .info
        .lock()
        .expect("info lock")
        .shards
        .iter()
        .map(|s| s.id)
        .collect();
    let name = stream.name.as_str();
    let asks = shards.into_iter().map(|shard| async move {
        let hw = registry
            .core()
            .to_leader(name, shard, |c| async move {
                api::producer_high_water(&c, name, shard, id).await
            })
            .await?;
        Ok::<_, ClientError>(ShardMark {
            shard,
            core_next_seq: hw.producer_next_seq,
        })
    });
    futures::future::try_join_all(asks).await
}

/// The start's check (see the module doc). `who` names the agent for the
/// producer registration.
pub async fn check_at_start(registry: &Registry, who: &str) -> Result<(), StartError> {
    let id = registry.producer_id();
    let streams: Vec<(String, Arc<StreamState>, u64)> = registry
        .streams()
        .into_iter()
        .filter_map(|(name, s)| registry.unchecked_from(&name).map(|from| (name, s, from)))
        .collect();
    if streams.is_empty() {
        return Ok(());
    }
    let asked = tokio::time::timeout(START_CHECK, async {
        register(registry.core(), id, who).await?;
        let mut all = Vec::with_capacity(streams.len());
        for (_, s, _) in &streams {
            all.push(marks(registry, s, id).await?);
        }
        Ok::<_, ClientError>(all)
    })
    .await;
    let all = match asked {
        Ok(Ok(all)) => all,
        Ok(Err(e)) if unsupported(&e) => {
            tracing::warn!(error = %e, "the core does not answer high-water requests (an older version): buffer positions are not checked against it");
            let names: Vec<&str> = streams.iter().map(|(n, _, _)| n.as_str()).collect();
            registry.mark_checked(&names)?;
            return Ok(());
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not ask the core for this producer's high-water marks; starting, and each stream forwards once its check passed");
            return Ok(());
        }
        Err(_) => {
            tracing::warn!(
                timeout_ms = START_CHECK.as_millis() as u64,
                "the core did not answer the high-water check; starting, and each stream forwards once its check passed"
            );
            return Ok(());
        }
    };
    let mut behind = Vec::new();
    for ((name, _, from), marks) in streams.iter().zip(&all) {
        if let Err(b) = high_water::check(name, *from, marks) {
            behind.push(b);
        }
    }
    if !behind.is_empty() {
        return Err(StartError::Behind(BehindCore {
            producer_id: id,
            streams: behind,
        }));
    }
    let names: Vec<&str> = streams.iter().map(|(n, _, _)| n.as_str()).collect();
    registry.mark_checked(&names)?;
    tracing::info!(
        producer_id = id,
        streams = names.len(),
        "buffer positions checked against the core's high-water marks"
    );
    Ok(())
}

/// A forwarder's first step (see the module doc): returns whether it may
/// forward; `false` when the agent halts or shuts down.
pub async fn gate(
    registry: &Registry,
    stream: &StreamState,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let name = stream.name.as_str();
    let mut backoff = Duration::from_millis(100);
    loop {
        if registry.is_halted() {
            return false;
        }
        let Some(from) = registry.unchecked_from(name) else {
            return true;
        };
        let id = registry.producer_id();
        let decided = match marks(registry, stream, id).await {
            Ok(marks) => match high_water::check(name, from, &marks) {
                Ok(()) => registry
                    .mark_checked(&[name])
                    .map_err(|e| (e.to_string(), true)),
                Err(b) => {
                    let why = BehindCore {
                        producer_id: id,
                        streams: vec![b],
                    };
                    tracing::error!(stream = %name, "{why}");
                    registry.halt(why);
                    return false;
                }
            },
            Err(e) if unsupported(&e) => {
                tracing::warn!(stream = %name, error = %e, "the core does not answer high-water requests (an older version): buffer positions are not checked against it");
                registry
                    .mark_checked(&[name])
                    .map_err(|e| (e.to_string(), true))
            }
            // Refused by a core that answered (e.g. PERMISSION_DENIED) is
            // worth a warning; an unreachable core or an election is not.
            Err(e) => Err((e.to_string(), refused(&e))),
        };
        match decided {
            Ok(()) => {
                tracing::info!(stream = %name, producer_id = id, "buffer positions checked against the core's high-water marks");
                return true;
            }
            Err((e, true)) => {
                tracing::warn!(stream = %name, error = %e, "high-water check before forwarding failed; nothing is forwarded until it passes; will retry");
            }
            Err((e, false)) => {
                tracing::debug!(stream = %name, error = %e, "high-water check before forwarding; will retry");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.wait_for(|s| *s) => return false,
        }
        backoff = (backoff * 2).min(GATE_BACKOFF_MAX);
    }
}

/// `--retire-producer` (see the module doc). `who` names the agent for the
/// producer registrations.
pub async fn retire(registry: &Registry, who: &str) -> Result<(), StartError> {
    let old = registry.producer_id();
    let mut streams = registry.streams();
    streams.sort_by(|a, b| a.0.cmp(&b.0));
    let new = identity::fresh_id(old, &registry.identity().retired);
    let unreachable = |what| move |source| StartError::RetireUnreachable { old, what, source };
    let all = tokio::time::timeout(RETIRE_DEADLINE, async {
        register(registry.core(), old, who)
            .await
            .map_err(unreachable("registering the retired id"))?;
        let mut all = Vec::with_capacity(streams.len());
        for (_, s) in &streams {
            all.push(
                marks(registry, s, old)
                    .await
                    .map_err(unreachable("reading the retired id's high-water marks"))?,
            );
        }
        register(registry.core(), new, who)
            .await
            .map_err(unreachable("registering the new id"))?;
        Ok::<_, StartError>(all)
    })
    .await
    .map_err(|_| StartError::RetireTimeout { old })??;
    let mut switch_at = BTreeMap::new();
    for ((name, s), marks) in streams.iter().zip(&all) {
        let st = s.buffer.stats();
        let from = registry.unchecked_from(name).unwrap_or(st.next_seq);
        let plan = high_water::plan_retire(st.acked_seq, from, marks);
        if let Some(to) = plan.ack_to {
            s.buffer.ack(to).await.map_err(|source| StartError::Ack {
                stream: name.clone(),
                source,
            })?;
        }
        let core_ends: Vec<(u32, u64)> = marks.iter().map(|m| (m.shard, m.core_next_seq)).collect();
        tracing::info!(
            stream = %name,
            acked = st.acked_seq,
            switch_at = plan.switch_at,
            next = st.next_seq,
            acknowledged_as_held = plan.ack_to.map_or(0, |to| to - st.acked_seq),
            sent_again_under_retired_id = plan.switch_at - plan.ack_to.unwrap_or(st.acked_seq),
            under_new_id = st.next_seq - plan.switch_at,
            core_next_seq_per_shard = ?core_ends,
            "retiring producer id {old}: records below switch_at stay under it (the core keeps only those it lacks), the rest go under {new}"
        );
        switch_at.insert(name.clone(), plan.switch_at);
    }
    registry.retire(
        Retired {
            producer_id: old,
            retired_ms: now_ms(),
            switch_at,
        },
        new,
    )?;
    tracing::warn!(
        retired = old,
        producer_id = new,
        record = %identity::retired_path(&registry.cfg().data_dir).display(),
        "producer id retired: this agent forwards under its new id from now on"
    );
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
