//! Kinesis-style partitioning: a partition key maps through MD5 to a 128-bit
//! hash key (big-endian); each shard owns a contiguous inclusive range, and the
//! ranges of a stream's open shards cover 0..=2^128-1 without overlap.
//! Hash keys are printed as decimal strings, as Kinesis does.

use md5::{Digest, Md5};

/// MD5 of the partition key as a big-endian u128.
pub fn hash_key(partition_key: &[u8]) -> u128 {
    let digest = Md5::digest(partition_key);
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest);
    u128::from_be_bytes(bytes)
}

/// An inclusive hash-key range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashRange {
    pub start: u128,
    pub end: u128,
}

impl HashRange {
    pub fn contains(&self, key: u128) -> bool {
        self.start <= key && key <= self.end
    }
}

/// Splits the whole hash-key space evenly into `n` contiguous ranges.
pub fn even_ranges(n: u32) -> Vec<HashRange> {
    assert!(n > 0, "a stream has at least one shard");
    let n = u128::from(n);
    let step = u128::MAX / n;
    (0..n)
        .map(|i| HashRange {
            start: step * i,
            end: if i + 1 == n {
                u128::MAX
            } else {
                step * (i + 1) - 1
            },
        })
        .collect()
}

/// Index of the range containing `key`; `ranges` must be sorted and cover the
/// key space (as `even_ranges` returns).
pub fn route(ranges: &[HashRange], key: u128) -> usize {
    let i = ranges.partition_point(|r| r.end < key);
    assert!(i < ranges.len(), "hash ranges cover the whole key space");
    i
}

/// Parses a decimal hash key.
pub fn parse_hash_key(s: &str) -> Result<u128, String> {
    s.parse::<u128>()
        .map_err(|e| format!("hash key {s:?} is not a decimal 128-bit number: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn md5_matches_kinesis() {
        // MD5("") = d41d8cd98f00b204e9800998ecf8427e
        assert_eq!(hash_key(b""), 0xd41d8cd98f00b204e9800998ecf8427e);
    }

    #[test]
    fn ranges_cover_space() {
        for n in [1u32, 2, 3, 7, 64] {
            let r = even_ranges(n);
            assert_eq!(r.len(), n as usize);
            assert_eq!(r[0].start, 0);
            assert_eq!(r.last().unwrap().end, u128::MAX);
            for w in r.windows(2) {
                assert_eq!(w[0].end + 1, w[1].start);
            }
        }
    }

    proptest! {
        #[test]
        fn route_finds_owner(n in 1u32..200, key in any::<u128>()) {
            let r = even_ranges(n);
            let i = route(&r, key);
            prop_assert!(r[i].contains(key));
        }
    }
}
