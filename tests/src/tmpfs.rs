//! A small filesystem for disk-full tests: a tmpfs of a few MiB mounted on a
//! fresh temporary directory, unmounted when the guard is dropped (also when
//! the test panics or times out). Mounting needs root (or CAP_SYS_ADMIN);
//! where it is refused, [`SmallDisk::mount`] says why and the test skips.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs of a fixed size mounted on a fresh temporary directory.
pub struct SmallDisk {
    /// Removed (empty) after the unmount: declared after nothing that
    /// depends on it, dropped after [`Drop::drop`] ran.
    dir: tempfile::TempDir,
    mounted: bool,
}

/// Runs `cmd args`; an error with its stderr unless it exited 0.
fn run(cmd: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .with_context(|| format!("running {cmd}"))?;
    if !out.status.success() {
        bail!(
            "`{cmd} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    Ok(())
}

impl SmallDisk {
    /// Mounts a tmpfs of `mib` MiB on a fresh temporary directory. An error
    /// (not root, no CAP_SYS_ADMIN, no `mount`) means the caller should skip.
    pub fn mount(mib: u64) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("strata-small-disk")
            .tempdir()?;
        let path = dir.path().to_string_lossy().into_owned();
        run(
            "mount",
            &["-t", "tmpfs", "-o", &format!("size={mib}M"), "tmpfs", &path],
        )?;
        Ok(Self { dir, mounted: true })
    }

    /// [`SmallDisk::mount`], or `None` after printing
    /// `skipped: cannot mount a tmpfs (<error>)` to stderr.
    pub fn mount_or_skip(mib: u64) -> Option<Self> {
        match Self::mount(mib) {
            Ok(d) => Some(d),
            Err(e) => {
                eprintln!("skipped: cannot mount a tmpfs ({e:#})");
                None
            }
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Changes the size of the mounted tmpfs to `mib` MiB (files stay).
    pub fn resize(&self, mib: u64) -> Result<()> {
        let path = self.dir.path().to_string_lossy().into_owned();
        run("mount", &["-o", &format!("remount,size={mib}M"), &path])
    }

    /// Bytes still free on the filesystem, as `df` reports them.
    pub fn free_bytes(&self) -> Result<u64> {
        let out = Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(self.dir.path())
            .output()
            .context("running df")?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .with_context(|| format!("df printed {text:?}"))
    }

    /// Unmounts (lazily if the filesystem is still busy); idempotent.
    pub fn unmount(&mut self) -> Result<()> {
        if !self.mounted {
            return Ok(());
        }
        let path: PathBuf = self.dir.path().to_path_buf();
        let p = path.to_string_lossy();
        let r = run("umount", &[&p])
            .or_else(|e| run("umount", &["-l", &p]).with_context(|| format!("after {e:#}")));
        if r.is_ok() {
            self.mounted = false;
        }
        r
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        if let Err(e) = self.unmount() {
            eprintln!(
                "warning: could not unmount the test tmpfs at {}: {e:#}",
                self.dir.path().display()
            );
        }
    }
}
