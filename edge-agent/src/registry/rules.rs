//! The access rules this agent enforces for the devices that produce to it:
//! a copy of the core's rules, kept in `<data_dir>/acl.json` so the agent
//! goes on enforcing them (and accepting what they allow) while the core is
//! unreachable. [`sync`] asks the core every [`SYNC_INTERVAL`] and replaces
//! the copy when the core's version differs (and does the same for the AWS
//! access keys, [`super::aws_keys`]). Before the first copy arrives
//! only the configured superusers may produce (default deny).

use super::aws_keys::AwsKeyStore;
use super::cache::write_durably;
use super::RegistryError;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use strata_client::cluster::Cluster;
use strata_protocol::acl::{Acl, Grant, Operation};
use strata_runtime::server::Caller;
use strata_schema::fb::ErrorCode;
use strata_schema::wire::RemoteError;
use tokio::sync::watch;

/// How often the agent asks the core for its rules: a rule change reaches
/// a connected agent within this (plus one round trip).
pub const SYNC_INTERVAL: Duration = Duration::from_secs(2);

/// The rules in force at this agent.
pub struct Rules {
    acl: RwLock<Acl>,
    path: PathBuf,
    superusers: Vec<String>,
}

impl Rules {
    /// Opens the agent's copy in `data_dir` (none yet: no rules).
    pub fn open(data_dir: &Path, superusers: Vec<String>) -> Result<Arc<Self>, RegistryError> {
        let path = data_dir.join("acl.json");
        let acl = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|source| RegistryError::BadCache {
                path: path.clone(),
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Acl::default(),
            Err(e) => return Err(RegistryError::io("reading", &path, e)),
        };
        Ok(Arc::new(Self {
            acl: RwLock::new(acl),
            path,
            superusers,
        }))
    }

    /// Whether `caller` may produce to `stream`, and under which keys.
    /// Without client authentication everything is allowed.
    pub fn authorize_produce(&self, caller: &Caller, stream: &str) -> Result<Grant, RemoteError> {
        self.authorize(caller, Operation::Produce, stream)
    }

    /// Whether `caller` may do `op` on `stream` (the edge's Kinesis API
    /// checks reads and stream changes here too, as the core would).
    pub fn authorize(
        &self,
        caller: &Caller,
        op: Operation,
        stream: &str,
    ) -> Result<Grant, RemoteError> {
        let Some(principal) = caller.principal.as_deref() else {
            return Ok(Grant::All);
        };
        self.acl
            .read()
            .expect("rules lock")
            .authorize(&self.superusers, principal, op, stream)
            .map_err(|d| RemoteError::new(ErrorCode::PermissionDenied, d.to_string()))
    }

    pub fn version(&self) -> u64 {
        self.acl.read().expect("rules lock").version
    }

    /// Replaces the copy (persisted first) when `acl` is another version.
    /// Returns whether it changed.
    pub fn update(&self, acl: Acl) -> Result<bool, RegistryError> {
        if acl == *self.acl.read().expect("rules lock") {
            return Ok(false);
        }
        let bytes = serde_json::to_vec(&acl).map_err(RegistryError::EncodeCache)?;
        write_durably(&self.path, &bytes)?;
        *self.acl.write().expect("rules lock") = acl;
        Ok(true)
    }
}

/// Keeps `rules` and `keys` equal to the core's until `shutdown`: one
/// round trip for each every [`SYNC_INTERVAL`].
pub async fn sync(
    rules: Arc<Rules>,
    keys: Arc<AwsKeyStore>,
    core: Arc<Cluster>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut keys_denied = false;
    loop {
        match core
            .any(|c| async move { strata_client::access::acl_list(&c).await })
            .await
        {
            Ok(acl) => {
                let version = acl.version;
                match rules.update(acl) {
                    Ok(true) => tracing::info!(version, "access rules updated from the core"),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot keep the access rules"),
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "asking the core for the access rules; will retry")
            }
        }
        match core
            .any(|c| async move { strata_client::access::aws_keys_for_edge(&c).await })
            .await
        {
            Ok(k) => {
                keys_denied = false;
                let version = k.version;
                match keys.update(k) {
                    Ok(true) => tracing::info!(version, "AWS access keys updated from the core"),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot keep the AWS access keys"),
                }
            }
            Err(strata_client::ClientError::Remote(e))
                if e.code == ErrorCode::PermissionDenied && !keys_denied =>
            {
                keys_denied = true;
                tracing::warn!(error = %e, "the core does not let this agent read AWS access keys: the Kinesis API cannot verify signatures; grant the agent's principal `verify` on `*` (docs/security.md)");
            }
            Err(e) => {
                tracing::debug!(error = %e, "asking the core for the AWS access keys; will retry")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(SYNC_INTERVAL) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_protocol::acl::{parse_operations, Rule};

    fn caller(name: Option<&str>) -> Caller {
        Caller {
            addr: "127.0.0.1:1".parse().unwrap(),
            principal: name.map(Arc::from),
        }
    }

    #[test]
    fn the_copy_survives_a_restart_and_decides_like_the_core() {
        let dir = tempfile::tempdir().unwrap();
        let rules = Rules::open(dir.path(), vec!["admin".into()]).unwrap();
        let dev = caller(Some("sensor-1"));
        assert!(rules.authorize_produce(&dev, "telemetry").is_err());
        assert!(rules
            .authorize_produce(&caller(Some("admin")), "telemetry")
            .is_ok());
        assert!(rules.authorize_produce(&caller(None), "telemetry").is_ok());
        let mut acl = Acl::default();
        acl.add(Rule {
            id: 0,
            principal: "sensor-*".into(),
            operations: parse_operations("produce").unwrap(),
            stream: "telemetry".into(),
            key_prefix: Some("${principal}".into()),
        })
        .unwrap();
        assert!(rules.update(acl.clone()).unwrap());
        assert!(!rules.update(acl).unwrap());
        drop(rules);
        let again = Rules::open(dir.path(), vec![]).unwrap();
        assert_eq!(again.version(), 1);
        let g = again.authorize_produce(&dev, "telemetry").unwrap();
        assert_eq!(g, Grant::KeyPrefixes(vec!["sensor-1".into()]));
        let e = again.authorize_produce(&dev, "billing").unwrap_err();
        assert_eq!(e.code, ErrorCode::PermissionDenied);
        std::fs::write(dir.path().join("acl.json"), b"{").unwrap();
        assert!(matches!(
            Rules::open(dir.path(), vec![]),
            Err(RegistryError::BadCache { .. })
        ));
    }
}
