//! AWS shared-credentials files (`~/.aws/credentials` format) for the
//! edge's Kinesis API: reading a profile's key and writing or replacing a
//! profile while keeping every other line as it was. The file is written
//! readable by its owner only (0600): it holds a secret.
//!
//! Format: INI sections `[profile]` with `aws_access_key_id` and
//! `aws_secret_access_key` lines (`key = value`; `#`/`;` comments).

use anyhow::{Context, Result};
use std::path::Path;

/// The key id and secret of `profile` in the file's `text`, if it has both.
pub fn read_profile(text: &str, profile: &str) -> Option<(String, String)> {
    let mut in_profile = false;
    let (mut id, mut secret) = (None, None);
    for line in text.lines().map(str::trim) {
        if let Some(name) = section(line) {
            in_profile = name == profile;
            continue;
        }
        if !in_profile {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            match k.trim() {
                "aws_access_key_id" => id = Some(v.trim().to_string()),
                "aws_secret_access_key" => secret = Some(v.trim().to_string()),
                _ => {}
            }
        }
    }
    Some((id?, secret?))
}

fn section(line: &str) -> Option<&str> {
    line.strip_prefix('[')?.strip_suffix(']').map(str::trim)
}

/// `text` with `profile` holding this key: the profile's section is
/// replaced where it is (or appended), every other section kept.
pub fn merge_profile(text: &str, profile: &str, id: &str, secret: &str) -> String {
    let block =
        format!("[{profile}]\naws_access_key_id = {id}\naws_secret_access_key = {secret}\n");
    let mut out = String::new();
    let mut placed = false;
    let mut skipping = false;
    for line in text.lines() {
        if let Some(name) = section(line.trim()) {
            skipping = name == profile;
            if skipping && !placed {
                out.push_str(&block);
                placed = true;
            }
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !placed {
        if !out.is_empty() && !out.ends_with("\n\n") {
            out.push('\n');
        }
        out.push_str(&block);
    }
    out
}

/// Writes (or merges into) the credentials file at `path`, mode 0600.
pub fn write_profile(path: &Path, profile: &str, id: &str, secret: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let old = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    // An existing file keeps its mode on open: make it private too.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .and_then(|()| f.write_all(merge_profile(&old, profile, id, secret).as_bytes()))
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_is_added_then_replaced_in_place() {
        let old = "# mine\n[default]\naws_access_key_id = AKIA1\naws_secret_access_key = s1\n\n[other]\nregion=x\n";
        let once = merge_profile(old, "strata", "SKA", "secretA");
        assert!(once.starts_with(old), "{once}");
        assert_eq!(
            read_profile(&once, "strata"),
            Some(("SKA".into(), "secretA".into()))
        );
        let twice = merge_profile(&once, "strata", "SKB", "secretB");
        assert_eq!(
            read_profile(&twice, "strata"),
            Some(("SKB".into(), "secretB".into()))
        );
        assert_eq!(twice.matches("[strata]").count(), 1);
        assert_eq!(
            read_profile(&twice, "default"),
            Some(("AKIA1".into(), "s1".into()))
        );
        assert!(twice.contains("[other]\nregion=x"));
        // Replaced where it stands, not moved to the end.
        let first = merge_profile("[strata]\nx=1\n[default]\ny=2\n", "strata", "SKC", "c");
        assert!(
            first.starts_with("[strata]\naws_access_key_id = SKC"),
            "{first}"
        );
        assert!(first.ends_with("[default]\ny=2\n"), "{first}");
        assert_eq!(read_profile("", "strata"), None);
        assert_eq!(
            read_profile("[strata]\naws_access_key_id=a\n", "strata"),
            None
        );
    }

    #[test]
    fn the_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aws/credentials");
        write_profile(&path, "strata", "SKA", "s").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_profile(&path, "strata", "SKB", "t").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            read_profile(&text, "strata"),
            Some(("SKB".into(), "t".into()))
        );
    }
}
