//! A slower disk for one benchmark run: the bench process moves itself into
//! a block-I/O cgroup that limits write operations per second on the disk
//! under a directory, so every server it starts afterwards (they inherit
//! the cgroup) and its own fsync probe see a slower disk. Works with cgroup
//! v1 (`blkio.throttle.write_iops_device`) and v2 (`io.max` `wiops=`);
//! needs root. Dropping the guard moves the process back and removes the
//! cgroup.

use anyhow::{bail, Context, Result};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The process is throttled while this lives.
#[derive(Debug)]
pub struct DiskThrottle {
    cgroup: PathBuf,
    /// Where the process goes back to.
    parent: PathBuf,
    /// `major:minor` of the throttled disk.
    pub device: String,
    pub write_iops: u32,
    pub kind: &'static str,
}

const V1: &str = "/sys/fs/cgroup/blkio";
const V2: &str = "/sys/fs/cgroup";

impl DiskThrottle {
    /// Limits writes to the disk holding `dir` to `write_iops` per second
    /// for this process and its future children.
    pub fn apply(dir: &Path, write_iops: u32) -> Result<Self> {
        if write_iops == 0 {
            bail!("--throttle-write-iops must be > 0");
        }
        let device = whole_disk(dir)?;
        let name = format!("strata-bench-{}", std::process::id());
        let v2_has_io = std::fs::read_to_string(Path::new(V2).join("cgroup.controllers"))
            .is_ok_and(|c| c.split_whitespace().any(|c| c == "io"));
        let (parent, limit_file, limit, kind) = if Path::new(V1).join("cgroup.procs").exists() {
            (
                PathBuf::from(V1),
                "blkio.throttle.write_iops_device",
                format!("{device} {write_iops}"),
                "cgroup v1 blkio.throttle.write_iops_device",
            )
        } else if v2_has_io {
            // The root may hold processes and still delegate controllers.
            std::fs::write(Path::new(V2).join("cgroup.subtree_control"), "+io")
                .context("enabling the io controller for child cgroups")?;
            (
                PathBuf::from(V2),
                "io.max",
                format!("{device} wiops={write_iops}"),
                "cgroup v2 io.max wiops",
            )
        } else {
            bail!(
                "cannot throttle the disk: neither a cgroup v1 blkio hierarchy at {V1} nor a \
                 cgroup v2 io controller at {V2}"
            );
        };
        let cgroup = parent.join(&name);
        std::fs::create_dir_all(&cgroup)
            .with_context(|| format!("creating {} (needs root)", cgroup.display()))?;
        let me = Self {
            cgroup,
            parent,
            device,
            write_iops,
            kind,
        };
        std::fs::write(me.cgroup.join(limit_file), &limit)
            .with_context(|| format!("writing {limit:?} to {limit_file}"))?;
        std::fs::write(
            me.cgroup.join("cgroup.procs"),
            std::process::id().to_string(),
        )
        .context("moving this process into the throttled cgroup")?;
        Ok(me)
    }
}

impl Drop for DiskThrottle {
    fn drop(&mut self) {
        let _ = std::fs::write(
            self.parent.join("cgroup.procs"),
            std::process::id().to_string(),
        );
        // Fails while a child is still inside; the name has our pid, so a
        // leftover is recognisable.
        let _ = std::fs::remove_dir(&self.cgroup);
    }
}

/// `major:minor` of the whole disk under `dir` (a partition's parent: the
/// throttle applies to disks, not partitions).
fn whole_disk(dir: &Path) -> Result<String> {
    let dev = std::fs::metadata(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .dev();
    let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff);
    let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0xff);
    let sys = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    if !sys.exists() {
        bail!(
            "{} is on device {major}:{minor}, which is not a block device (tmpfs or overlay?): \
             nothing to throttle",
            dir.display()
        );
    }
    if sys.join("partition").exists() {
        let parent = std::fs::read_to_string(sys.join("../dev"))
            .with_context(|| format!("reading the disk of partition {major}:{minor}"))?;
        return Ok(parent.trim().to_string());
    }
    Ok(format!("{major}:{minor}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_iops_is_refused_before_anything_changes() {
        let e = DiskThrottle::apply(Path::new("/"), 0).unwrap_err();
        assert!(e.to_string().contains("must be > 0"), "{e}");
    }
}
