//! The agent's producer id: durable, random, non-zero, in
//! `<data_dir>/producer_id` (decimal text). The core deduplicates forwarded
//! records by (producer id, buffer position), so the id must survive restarts.

use super::cache::write_durably;
use super::RegistryError;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use strata_client::api;
use strata_client::cluster::Cluster;
use tokio::sync::watch;

/// Reads or creates the agent's durable producer id (random, non-zero).
/// A missing id next to existing buffers is an error, never a silent new
/// id: the buffered records were numbered under the lost id, and a new one
/// would make the core store again what it already has.
pub fn producer_id(data_dir: &Path) -> Result<u64, RegistryError> {
    if let Some(id) = read(data_dir)? {
        return Ok(id);
    }
    let path = data_dir.join("producer_id");
    let buffers = data_dir.join("buffers");
    let has_buffers = std::fs::read_dir(&buffers)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    if has_buffers {
        return Err(RegistryError::LostProducerId { path, buffers });
    }
    let id = loop {
        let id: u64 = rand::random();
        if id != 0 {
            break id;
        }
    };
    write_durably(&path, id.to_string().as_bytes())?;
    Ok(id)
}

/// The durable producer id, if `<data_dir>/producer_id` exists.
pub fn read(data_dir: &Path) -> Result<Option<u64>, RegistryError> {
    let path = data_dir.join("producer_id");
    match std::fs::read_to_string(&path) {
        Ok(s) => parse(&s)
            .map(Some)
            .ok_or(RegistryError::BadProducerId { path }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(RegistryError::io("reading", &path, e)),
    }
}

fn parse(s: &str) -> Option<u64> {
    s.trim().parse::<u64>().ok().filter(|&id| id != 0)
}

/// How often a running agent registers its producer id again. Registering
/// a known id changes nothing; one the core forgot after
/// `producer_idle_expiry_ms` of silence (docs/operations.md) is registered
/// again, so the agent's forwards are refused for at most this long.
pub const REGISTER_AGAIN_EVERY: Duration = Duration::from_secs(300);

/// Registers the agent's producer id with the core's metadata group,
/// retrying (with backoff) until it succeeds, and again every
/// [`REGISTER_AGAIN_EVERY`], until the agent stops. Forwarding does not
/// wait for it: dedup works on the id either way.
pub async fn register(
    core: Arc<Cluster>,
    id: u64,
    who: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(200);
    let mut registered = false;
    loop {
        let who = who.as_str();
        let wait = match core
            .any(|c| async move { api::register_producer(&c, id, who).await })
            .await
        {
            Ok((since, producers)) => {
                if !registered {
                    tracing::info!(
                        producer_id = id,
                        registered_ms = since,
                        producers,
                        "producer id registered with the core"
                    );
                }
                registered = true;
                backoff = Duration::from_millis(200);
                REGISTER_AGAIN_EVERY
            }
            Err(e) => {
                tracing::debug!(error = %e, "registering the producer id; will retry");
                let wait = backoff;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                wait
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_id_beside_buffers_is_an_error_not_a_new_id() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("buffers/telemetry")).unwrap();
        let e = producer_id(dir.path()).unwrap_err();
        assert!(matches!(e, RegistryError::LostProducerId { .. }), "{e}");
        assert!(e.to_string().contains("producer_id"), "{e}");
        assert!(!dir.path().join("producer_id").exists(), "nothing written");
    }

    #[test]
    fn the_id_is_created_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let id = producer_id(dir.path()).unwrap();
        assert_ne!(id, 0);
        assert_eq!(producer_id(dir.path()).unwrap(), id);
        let text = std::fs::read_to_string(dir.path().join("producer_id")).unwrap();
        assert_eq!(text, id.to_string());
    }

    #[test]
    fn a_file_without_an_id_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["", "0", "x12", "-3"] {
            std::fs::write(dir.path().join("producer_id"), bad).unwrap();
            let err = producer_id(dir.path()).unwrap_err().to_string();
            assert!(
                err.contains("does not hold a producer id"),
                "{bad:?}: {err}"
            );
        }
        std::fs::write(dir.path().join("producer_id"), "77\n").unwrap();
        assert_eq!(producer_id(dir.path()).unwrap(), 77);
    }
}
