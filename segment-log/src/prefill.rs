//! Zero-filling the active segment ahead of its writes, so that a small
//! group commit is a data write and a flush, not a change of file size.
//!
//! An `fdatasync` after an append that grew the file must also commit the
//! new size (on ext4 a journal commit: more write operations and a second
//! flush); after a write into bytes the file already holds it need not.
//! Measured on this project's machine (`docs/benchmarks.md`, "On a slower
//! disk"): 1 KB write + `fdatasync`, appending, 3,100–4,200/s; into a
//! zero-filled file, 5,300–6,500/s; with the disk limited to 3,000 write
//! operations/s, 900/s with a p99 of 70 ms against 1,450/s with a p99 of
//! 4 ms. The saving is per fsync, so it matters when groups are small
//! (low rates, latency); large groups amortise the size change, and
//! zero-filling ahead of them would write every byte twice. So a log asks
//! [`Prefill::plan`] after each group it is about to sync: zero-fill only
//! after small groups, as far ahead as the segment already holds (up to a
//! chunk, so that quiet segments stay small), and never past the
//! segment's size limit.
//!
//! What a log must keep true (both logs do, and their crash models check
//! it): every byte past the end of its valid frames is zero (a zero frame
//! header is invalid: no log accepts an empty body), so recovery stops
//! there. Therefore a log cuts the file back to its valid end whenever
//! that end moves backwards (a torn tail, a truncation), before it writes
//! again, and when it seals a segment, so that sealed segments hold only
//! frames. [`zero_tail`] tells recovery whether the bytes after the last
//! valid frame are such a tail (not worth a warning) or damage.

use std::io;

use crate::fs::File;

/// When and how far to zero-fill; see the module documentation.
///
/// The zeros kept ahead grow with the segment: as many bytes as the
/// segment already holds, up to `chunk_bytes`. A busy segment soon has a
/// full chunk ahead (a 1 MiB chunk is reached after about a dozen fills
/// whatever the group size), while a quiet one (an idle shard's, or one
/// just rolled after tiering) never holds more zeros than data: thousands
/// of shards on a node do not each take a chunk of disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefill {
    /// Most bytes zero-filled ahead of the end.
    pub chunk_bytes: u64,
    /// Only after groups of at most this many bytes.
    pub group_bytes_max: u64,
}

impl Default for Prefill {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl Prefill {
    /// Up to 1 MiB ahead, after groups of up to 64 KiB.
    pub const DEFAULT: Self = Self {
        chunk_bytes: 1 << 20,
        group_bytes_max: 64 << 10,
    };

    /// Never zero-fill (tests that look at file sizes, or a caller that
    /// turns the optimisation off).
    pub const OFF: Self = Self {
        chunk_bytes: 0,
        group_bytes_max: 0,
    };

    /// [`Self::DEFAULT`] if `on` (a log's `segment_prefill` setting), else
    /// [`Self::OFF`].
    pub const fn enabled(on: bool) -> Self {
        if on {
            Self::DEFAULT
        } else {
            Self::OFF
        }
    }

    /// Where the file should be zero-filled to after a group of
    /// `group_bytes` that leaves the valid frames ending at `end` (the
    /// bytes the segment holds), the file holding `file_len` bytes and the
    /// segment limited to `limit` bytes; `None`: leave it. It fills
    /// `min(end, chunk_bytes)` ahead once less than a quarter of that is
    /// left.
    pub fn plan(&self, end: u64, group_bytes: u64, file_len: u64, limit: u64) -> Option<u64> {
        if self.chunk_bytes == 0 || group_bytes == 0 || group_bytes > self.group_bytes_max {
            return None;
        }
        let ahead = end.min(self.chunk_bytes);
        if file_len.saturating_sub(end) >= ahead / 4 {
            return None;
        }
        let to = end.saturating_add(ahead).min(limit);
        (to > file_len.max(end)).then_some(to)
    }

    /// [`Self::plan`], then [`fill_ahead`] if it asks: returns the file's
    /// length afterwards (at least `end`: the group's frames are written).
    pub fn fill_after_group(
        &self,
        file: &dyn File,
        end: u64,
        group_bytes: u64,
        file_len: u64,
        limit: u64,
    ) -> io::Result<u64> {
        let file_len = file_len.max(end);
        match self.plan(end, group_bytes, file_len, limit) {
            Some(to) => fill_ahead(file, file_len, to),
            None => Ok(file_len),
        }
    }
}

/// Writes zeros over `from..to` of `file` (not synced).
pub fn zero_fill(file: &dyn File, from: u64, to: u64) -> io::Result<()> {
    const PIECE: usize = 64 << 10;
    let zeros = [0u8; PIECE];
    let mut at = from;
    while at < to {
        let n = usize::try_from(to - at).map_or(PIECE, |left| left.min(PIECE));
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// Zero-fills `file` from `file_len` (its current length, at least the
/// end of its frames) to `to`, as [`Prefill::plan`] asked, and returns the
/// file's new length. Not synced: the group's own sync covers it.
///
/// A fill that fails (a full disk, say) is undone, the file cut back to
/// `file_len`, and `Ok(file_len)` returned: zero-filling only saves work,
/// and a full disk is reported by the write that needs the space. `Err`
/// only if the cut failed too, when the file's tail is unknown and the
/// log must reopen.
pub fn fill_ahead(file: &dyn File, file_len: u64, to: u64) -> io::Result<u64> {
    match zero_fill(file, file_len, to) {
        Ok(()) => Ok(to.max(file_len)),
        Err(_) => {
            file.set_len(file_len)?;
            Ok(file_len)
        }
    }
}

/// Whether `from..to` of `file` holds only zeros: the zero-filled tail
/// after a segment's last valid frame, as opposed to a torn or damaged one.
pub fn zero_tail(file: &dyn File, from: u64, to: u64) -> io::Result<bool> {
    let mut buf = vec![0u8; 64 << 10];
    let mut at = from;
    while at < to {
        let n = usize::try_from(to - at).map_or(buf.len(), |left| left.min(buf.len()));
        file.read_exact_at(&mut buf[..n], at)?;
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        at += n as u64;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::{Fs, OpenMode};
    use crate::sim::SimFs;
    use std::path::Path;

    const MIB: u64 = 1 << 20;
    const KIB: u64 = 1 << 10;

    #[test]
    fn small_groups_fill_ahead_as_much_as_the_segment_holds_up_to_a_chunk() {
        let p = Prefill::default();
        // A young segment: as many zeros as data.
        assert_eq!(p.plan(1000, 1000, 1000, 128 * MIB), Some(2000));
        // A quarter of that still ahead: nothing; less: fill again.
        assert_eq!(p.plan(1600, 600, 2000, 128 * MIB), None);
        assert_eq!(p.plan(1800, 200, 2000, 128 * MIB), Some(3600));
        // A grown segment: one chunk ahead, refilled below a quarter chunk.
        assert_eq!(p.plan(10 * MIB, 1000, 10 * MIB, 128 * MIB), Some(11 * MIB));
        assert_eq!(
            p.plan(10 * MIB, 1000, 10 * MIB + 256 * KIB, 128 * MIB),
            None
        );
        assert_eq!(
            p.plan(10 * MIB, 1000, 10 * MIB + 256 * KIB - 1, 128 * MIB),
            Some(11 * MIB)
        );
    }

    #[test]
    fn a_busy_segment_reaches_a_full_chunk_after_few_fills() {
        let p = Prefill::default();
        let (mut end, mut file_len, mut fills) = (0u64, 0u64, 0);
        while file_len < end + MIB || end < 2 * MIB {
            end += 1000;
            file_len = file_len.max(end);
            if let Some(to) = p.plan(end, 1000, file_len, 128 * MIB) {
                file_len = to;
                fills += 1;
            }
            if end > 4 * MIB {
                break;
            }
        }
        // Each fill at least doubles the segment's file, so a few dozen
        // fills at most reach the full chunk ahead.
        assert!(fills <= 25, "{fills} fills");
        assert!(file_len - end >= 3 * MIB / 4);
    }

    #[test]
    fn large_or_empty_groups_and_full_segments_fill_nothing() {
        let p = Prefill::default();
        assert_eq!(p.plan(10 * MIB, 64 * KIB + 1, 10 * MIB, 128 * MIB), None);
        assert_eq!(p.plan(10 * MIB, 0, 10 * MIB, 128 * MIB), None);
        // Never past the segment's limit, and nothing if already there.
        assert_eq!(
            p.plan(128 * MIB - 100, 100, 128 * MIB - 100, 128 * MIB),
            Some(128 * MIB)
        );
        assert_eq!(p.plan(128 * MIB, 100, 128 * MIB, 128 * MIB), None);
        // A frame may overshoot the limit (a segment holds at least one).
        assert_eq!(p.plan(129 * MIB, 100, 129 * MIB, 128 * MIB), None);
        assert_eq!(Prefill::OFF.plan(0, 1, 0, 128 * MIB), None);
    }

    #[test]
    fn zero_fill_writes_zeros_only_in_its_range_and_zero_tail_sees_them() {
        let fs = SimFs::new();
        let file = fs
            .open(Path::new("/seg"), OpenMode::CreateNew)
            .expect("create");
        file.write_all_at(b"frames", 0).expect("write");
        zero_fill(&*file, 6, 6 + 200_000).expect("fill");
        assert_eq!(file.size().expect("size"), 200_006);
        let mut head = [0u8; 6];
        file.read_exact_at(&mut head, 0).expect("read");
        assert_eq!(&head, b"frames");
        assert!(zero_tail(&*file, 6, 200_006).expect("scan"));
        assert!(!zero_tail(&*file, 0, 200_006).expect("scan"));
        file.write_all_at(&[1], 150_000).expect("write");
        assert!(!zero_tail(&*file, 6, 200_006).expect("scan"));
        assert!(zero_tail(&*file, 150_001, 200_006).expect("scan"));
        assert_eq!(fill_ahead(&*file, 200_006, 300_000).expect("fill"), 300_000);
        assert_eq!(file.size().expect("size"), 300_000);
        assert!(zero_tail(&*file, 200_006, 300_000).expect("scan"));
    }
}
