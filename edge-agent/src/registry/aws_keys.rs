//! The AWS access keys this agent verifies Kinesis API signatures with: a
//! copy of the core's keys, kept in `<data_dir>/aws_keys.json` (mode 0600:
//! it holds the secrets) so the agent goes on verifying signatures while
//! the core is unreachable. The same sync loop that keeps the access rules
//! ([`super::rules::sync`]) replaces the copy when the core's version
//! differs. Before the first copy arrives no key is known (every signed
//! request is refused).

use super::cache::write_private_durably;
use super::RegistryError;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use strata_protocol::aws_key::{AwsKey, AwsKeys};

/// The access keys known to this agent.
pub struct AwsKeyStore {
    keys: RwLock<AwsKeys>,
    path: PathBuf,
}

impl AwsKeyStore {
    /// Opens the agent's copy in `data_dir` (none yet: no keys).
    pub fn open(data_dir: &Path) -> Result<Arc<Self>, RegistryError> {
        let path = data_dir.join("aws_keys.json");
        let keys = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|source| RegistryError::BadCache {
                path: path.clone(),
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => AwsKeys::default(),
            Err(e) => return Err(RegistryError::io("reading", &path, e)),
        };
        Ok(Arc::new(Self {
            keys: RwLock::new(keys),
            path,
        }))
    }

    /// The key with this id, secret included.
    pub fn lookup(&self, access_key_id: &str) -> Option<AwsKey> {
        self.keys
            .read()
            .expect("aws keys lock")
            .find(access_key_id)
            .cloned()
    }

    pub fn version(&self) -> u64 {
        self.keys.read().expect("aws keys lock").version
    }

    /// Replaces the copy (persisted first) when `keys` differ from it.
    /// Returns whether it changed.
    pub fn update(&self, keys: AwsKeys) -> Result<bool, RegistryError> {
        if keys == *self.keys.read().expect("aws keys lock") {
            return Ok(false);
        }
        let bytes = serde_json::to_vec(&keys).map_err(RegistryError::EncodeCache)?;
        write_private_durably(&self.path, &bytes)?;
        *self.keys.write().expect("aws keys lock") = keys;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_copy_survives_a_restart_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let store = AwsKeyStore::open(dir.path()).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let key = AwsKey::generate("sensor-1", &mut rng);
        assert_eq!(store.lookup(&key.access_key_id), None);
        let mut keys = AwsKeys::default();
        keys.add(key.clone());
        assert!(store.update(keys.clone()).unwrap());
        assert!(!store.update(keys).unwrap());
        assert_eq!(store.lookup(&key.access_key_id), Some(key.clone()));
        let path = dir.path().join("aws_keys.json");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        drop(store);
        let again = AwsKeyStore::open(dir.path()).unwrap();
        assert_eq!(again.version(), 1);
        assert_eq!(again.lookup(&key.access_key_id), Some(key));
        std::fs::write(&path, b"{").unwrap();
        assert!(matches!(
            AwsKeyStore::open(dir.path()),
            Err(RegistryError::BadCache { .. })
        ));
    }
}
