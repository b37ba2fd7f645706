//! Loading a daemon's TOML config: the file, then `PREFIX_*` environment
//! variables (e.g. `STRATA_CORE_LISTEN_ADDR` overrides `listen_addr`), then
//! serde with `deny_unknown_fields`, so an unknown or mistyped key is rejected
//! at start with its name.

use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// Why a config could not be loaded; names the file (or the environment).
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("config file {} does not exist", .0.display())]
    Missing(PathBuf),
    #[error("reading config {what}: {source}")]
    Read {
        what: String,
        source: config::ConfigError,
    },
    #[error("invalid config {what}: {source}")]
    Invalid {
        what: String,
        source: config::ConfigError,
    },
}

/// Loads `T` from `path` (optional) and the environment under `env_prefix`.
pub fn load<T: DeserializeOwned>(
    path: Option<&Path>,
    env_prefix: &str,
) -> Result<T, SettingsError> {
    let mut b = config::Config::builder();
    if let Some(p) = path {
        if !p.exists() {
            return Err(SettingsError::Missing(p.to_path_buf()));
        }
        b = b.add_source(config::File::from(p).format(config::FileFormat::Toml));
    }
    b = b.add_source(
        config::Environment::with_prefix(env_prefix)
            .prefix_separator("_")
            .try_parsing(true),
    );
    let what = path.map_or_else(
        || format!("{env_prefix}_* environment"),
        |p| p.display().to_string(),
    );
    let cfg = b.build().map_err(|source| SettingsError::Read {
        what: what.clone(),
        source,
    })?;
    cfg.try_deserialize::<T>()
        .map_err(|source| SettingsError::Invalid { what, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Demo {
        #[allow(dead_code)]
        listen_addr: String,
        #[serde(default)]
        #[allow(dead_code)]
        size_bytes_max: u64,
    }

    #[test]
    fn unknown_key_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "listen_addr = \"x\"\nsize_bytes_mx = 3\n").unwrap();
        let err = load::<Demo>(Some(&p), "STRATA_TEST_UNKNOWN")
            .unwrap_err()
            .to_string();
        assert!(err.contains("size_bytes_mx"), "{err}");
    }

    #[test]
    fn bad_type_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "listen_addr = \"x\"\nsize_bytes_max = \"lots\"\n").unwrap();
        let err = load::<Demo>(Some(&p), "STRATA_TEST_BADTYPE")
            .unwrap_err()
            .to_string();
        assert!(err.contains("size_bytes_max"), "{err}");
    }
}
