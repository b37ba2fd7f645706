//! The per-shard manifest of tiered objects.
//!
//! The shard's snapshot carries it (the Raft state is the source of truth);
//! a JSON copy is written next to the data (see [`crate::keys::manifest_key`])
//! so that an operator or a recovery tool can find every object of a shard
//! without listing the bucket.
//!
//! Objects are kept in offset order and are contiguous: each one starts where
//! the previous one ended, so [`Manifest::locate`] is a binary search and
//! [`Manifest::tiered_to`] is where the next object starts.
//!
//! JSON format (version 1):
//! `{"version":1,"stream":"s","shard":0,"objects":[{"key":"…","first_offset":0,…}]}`
//!
//! An object entry may carry `checksums`, `{"block_bytes":1048576,"crc32c":[…]}`:
//! the CRC32C of each `block_bytes` block of the object (the last block may
//! be shorter). A read verifies every block it fetches, so a corrupted
//! object gives an error, never wrong records. The field is optional:
//! manifests written before it existed still load, and their objects are
//! read unverified.
//!
//! An object entry may carry `max_appended_ms`: when the core appended
//! (committed) the object's newest record, by the clock of the shard leader
//! that tiered it. Total retention counts from it, not from the producers'
//! timestamps. Also optional: for entries written before it existed, total
//! retention counts from `max_timestamp_ms` as it used to.

use crate::TierError;
use object_store::path::Path;
use serde::{Deserialize, Serialize};

/// The JSON format version this build writes and reads.
pub const MANIFEST_VERSION: u32 = 1;

/// One Parquet object holding offsets `[first_offset, next_offset)` of a shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TieredObject {
    /// The object's key in the store (includes the store's prefix).
    pub key: String,
    pub first_offset: u64,
    /// One past the last offset in the object.
    pub next_offset: u64,
    pub records: u64,
    pub min_timestamp_ms: i64,
    pub max_timestamp_ms: i64,
    /// Size of the Parquet object, bytes.
    pub bytes: u64,
    /// Keys, values and headers of the records, bytes (before encoding).
    pub payload_bytes: u64,
    /// Per-block CRC32C of the object; absent in entries written before
    /// checksums existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksums: Option<BlockChecksums>,
    /// When the core appended the object's newest record (ms, the clock of
    /// the shard leader that tiered it): total retention counts from here.
    /// Absent in entries written before it existed (total retention then
    /// counts from `max_timestamp_ms`) and in objects encoded outside the
    /// core.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_appended_ms: Option<i64>,
}

/// The size of the blocks [`BlockChecksums::of`] cuts by default: a read
/// fetches whole blocks, so this bounds the extra bytes a ranged read costs
/// (at most two blocks per range), while a 128 MiB object needs 128 sums.
pub const CHECKSUM_BLOCK_BYTES: u32 = 1 << 20;

/// CRC32C of each fixed-size block of an object: lets a ranged read verify
/// exactly the bytes it fetched, without reading the whole object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockChecksums {
    /// Block size, bytes; the last block may be shorter.
    pub block_bytes: u32,
    /// CRC32C of each block, in order.
    pub crc32c: Vec<u32>,
}

impl BlockChecksums {
    /// The checksums of `object` in blocks of `block_bytes` (at least 1).
    pub fn of(object: &[u8], block_bytes: u32) -> Self {
        assert!(block_bytes > 0, "checksum blocks hold at least one byte");
        Self {
            block_bytes,
            crc32c: object
                .chunks(block_bytes as usize)
                .map(crc32c::crc32c)
                .collect(),
        }
    }

    /// The byte range of block `i` in an object of `size` bytes.
    pub fn block_range(&self, i: u64, size: u64) -> std::ops::Range<u64> {
        let bs = u64::from(self.block_bytes);
        i * bs..((i + 1) * bs).min(size)
    }

    /// Whether these checksums can describe an object of `size` bytes.
    pub fn covers(&self, size: u64) -> Result<(), ChecksumsMismatch> {
        let blocks = size.div_ceil(u64::from(self.block_bytes.max(1)));
        if self.block_bytes == 0 || self.crc32c.len() as u64 != blocks {
            return Err(ChecksumsMismatch {
                checksums: self.crc32c.len(),
                block_bytes: self.block_bytes,
                size,
            });
        }
        Ok(())
    }
}

/// [`BlockChecksums`] that cannot describe an object of the given size
/// (wrong count, or blocks of 0 bytes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{checksums} checksums of {block_bytes}-byte blocks cannot cover {size} bytes")]
pub struct ChecksumsMismatch {
    pub checksums: usize,
    pub block_bytes: u32,
    /// Size of the object, bytes.
    pub size: u64,
}

impl TieredObject {
    /// The object's path in the store. Keys come from [`crate::keys`], so
    /// parsing only fails on a hand-edited or corrupt manifest.
    pub fn path(&self) -> Result<Path, TierError> {
        Path::parse(&self.key)
            .map_err(|e| TierError::Manifest(format!("object key {:?}: {e}", self.key)))
    }

    /// Checks the entry is consistent with itself ([`TierError::Manifest`]
    /// naming the object otherwise).
    fn check(&self) -> Result<(), TierError> {
        if self.next_offset <= self.first_offset
            || self.records != self.next_offset - self.first_offset
        {
            return Err(TierError::Manifest(format!(
                "object {} holds offsets [{}, {}) but says it has {} records",
                self.key, self.first_offset, self.next_offset, self.records
            )));
        }
        if let Some(sums) = &self.checksums {
            sums.covers(self.bytes)
                .map_err(|e| TierError::Manifest(format!("object {}: {e}", self.key)))?;
        }
        if self.min_timestamp_ms > self.max_timestamp_ms {
            return Err(TierError::Manifest(format!(
                "object {} has min_timestamp_ms {} after max_timestamp_ms {}",
                self.key, self.min_timestamp_ms, self.max_timestamp_ms
            )));
        }
        Ok(())
    }
}

/// Every tiered object of one shard, in offset order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub stream: String,
    pub shard: u32,
    pub objects: Vec<TieredObject>,
}

/// The JSON envelope: the version travels with the data so that an older
/// build refuses a newer manifest instead of misreading it.
#[derive(Serialize, Deserialize)]
struct Versioned<M> {
    version: u32,
    #[serde(flatten)]
    manifest: M,
}

#[derive(Deserialize)]
struct VersionOnly {
    version: u32,
}

impl Manifest {
    pub fn new(stream: impl Into<String>, shard: u32) -> Self {
        Self {
            stream: stream.into(),
            shard,
            objects: Vec::new(),
        }
    }

    /// One past the last tiered offset, or 0 if nothing is tiered: where the
    /// next object must start.
    pub fn tiered_to(&self) -> u64 {
        self.objects.last().map_or(0, |o| o.next_offset)
    }

    /// The first tiered offset, if any (older objects may have been expired).
    pub fn first_offset(&self) -> Option<u64> {
        self.objects.first().map(|o| o.first_offset)
    }

    /// The object holding `offset`, if it is tiered.
    pub fn locate(&self, offset: u64) -> Option<&TieredObject> {
        let i = self.objects.partition_point(|o| o.next_offset <= offset);
        self.objects.get(i).filter(|o| o.first_offset <= offset)
    }

    /// Appends a newly uploaded object; it must start at [`Self::tiered_to`]
    /// (unless it is the first one) and be well formed.
    pub fn push(&mut self, object: TieredObject) -> Result<(), TierError> {
        object.check()?;
        if let Some(last) = self.objects.last() {
            if object.first_offset != last.next_offset {
                return Err(TierError::Manifest(format!(
                    "object {} starts at offset {} but the shard is tiered to {}",
                    object.key, object.first_offset, last.next_offset
                )));
            }
        }
        self.objects.push(object);
        Ok(())
    }

    /// Checks the invariants [`Self::push`] keeps: for manifests read back.
    pub fn validate(&self) -> Result<(), TierError> {
        let mut rebuilt = Manifest::new(self.stream.clone(), self.shard);
        for o in &self.objects {
            rebuilt.push(o.clone())?;
        }
        Ok(())
    }

    /// Encodes as versioned JSON.
    pub fn to_json(&self) -> Vec<u8> {
        let v = Versioned {
            version: MANIFEST_VERSION,
            manifest: self,
        };
        // Serializing plain structs of strings and integers cannot fail.
        serde_json::to_vec_pretty(&v).expect("manifest serializes")
    }

    /// Decodes versioned JSON and checks the invariants.
    pub fn from_json(bytes: &[u8]) -> Result<Self, TierError> {
        let bad = |e: serde_json::Error| TierError::Manifest(format!("invalid JSON: {e}"));
        let v: VersionOnly = serde_json::from_slice(bytes).map_err(bad)?;
        if v.version != MANIFEST_VERSION {
            return Err(TierError::Manifest(format!(
                "version {} is not supported (this build reads version {MANIFEST_VERSION})",
                v.version
            )));
        }
        let v: Versioned<Manifest> = serde_json::from_slice(bytes).map_err(bad)?;
        v.manifest.validate()?;
        Ok(v.manifest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(first: u64, next: u64) -> TieredObject {
        TieredObject {
            key: format!("stream=s/date=2026-01-01/hour=00/shard-0-{first:020}.parquet"),
            first_offset: first,
            next_offset: next,
            records: next - first,
            min_timestamp_ms: 1,
            max_timestamp_ms: 2,
            bytes: 100,
            payload_bytes: 80,
            checksums: Some(BlockChecksums {
                block_bytes: 64,
                crc32c: vec![1, 2],
            }),
            max_appended_ms: Some(1_764_806_400_000),
        }
    }

    fn manifest() -> Manifest {
        let mut m = Manifest::new("s", 0);
        for (a, b) in [(10, 20), (20, 25), (25, 100)] {
            m.push(obj(a, b)).unwrap();
        }
        m
    }

    #[test]
    fn locate_finds_the_object_holding_an_offset() {
        let m = manifest();
        assert_eq!(m.tiered_to(), 100);
        assert_eq!(m.first_offset(), Some(10));
        assert!(m.locate(0).is_none());
        assert!(m.locate(9).is_none());
        assert_eq!(m.locate(10).unwrap().first_offset, 10);
        assert_eq!(m.locate(19).unwrap().first_offset, 10);
        assert_eq!(m.locate(20).unwrap().first_offset, 20);
        assert_eq!(m.locate(99).unwrap().first_offset, 25);
        assert!(m.locate(100).is_none());
        let empty = Manifest::new("s", 0);
        assert_eq!(empty.tiered_to(), 0);
        assert!(empty.locate(0).is_none());
    }

    #[test]
    fn push_refuses_gaps_overlaps_and_inconsistent_objects() {
        let mut m = manifest();
        assert!(m.push(obj(101, 110)).is_err());
        assert!(m.push(obj(99, 110)).is_err());
        assert!(m.push(obj(100, 100)).is_err());
        let mut bad = obj(100, 110);
        bad.records = 3;
        assert!(m.push(bad).is_err());
        let mut bad = obj(100, 110);
        bad.min_timestamp_ms = 5;
        assert!(m.push(bad).is_err());
        m.push(obj(100, 110)).unwrap();
        assert_eq!(m.tiered_to(), 110);
    }

    #[test]
    fn json_round_trips_with_a_version() {
        let m = manifest();
        let json = m.to_json();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["objects"][2]["next_offset"], 100);
        assert_eq!(Manifest::from_json(&json).unwrap(), m);
        assert_eq!(
            m.objects[0].path().unwrap().as_ref(),
            "stream=s/date=2026-01-01/hour=00/shard-0-00000000000000000010.parquet"
        );
    }

    /// A manifest as builds before per-object checksums wrote it (no
    /// `checksums` field) still loads; its objects have no checksums.
    #[test]
    fn a_manifest_without_checksums_still_loads() {
        let old = br#"{
  "version": 1,
  "stream": "s",
  "shard": 0,
  "objects": [
    {
      "key": "stream=s/date=2026-01-01/hour=00/shard-0-00000000000000000010.parquet",
      "first_offset": 10,
      "next_offset": 20,
      "records": 10,
      "min_timestamp_ms": 1,
      "max_timestamp_ms": 2,
      "bytes": 100,
      "payload_bytes": 80
    }
  ]
}"#;
        let m = Manifest::from_json(old).unwrap();
        let mut want = obj(10, 20);
        want.checksums = None;
        want.max_appended_ms = None;
        assert_eq!(m.objects, vec![want]);
        // Written back, it is the same JSON (no `checksums: null`).
        let back: serde_json::Value = serde_json::from_slice(&m.to_json()).unwrap();
        let old: serde_json::Value = serde_json::from_slice(old).unwrap();
        assert_eq!(back, old);
    }

    /// `max_appended_ms` travels in the JSON when known and is left out
    /// (not `null`) when not.
    #[test]
    fn max_appended_ms_round_trips_and_is_optional() {
        let m = manifest();
        let v: serde_json::Value = serde_json::from_slice(&m.to_json()).unwrap();
        assert_eq!(v["objects"][0]["max_appended_ms"], 1_764_806_400_000i64);
        let mut m = manifest();
        m.objects[1].max_appended_ms = None;
        let v: serde_json::Value = serde_json::from_slice(&m.to_json()).unwrap();
        assert!(v["objects"][1].get("max_appended_ms").is_none());
        assert_eq!(Manifest::from_json(&m.to_json()).unwrap(), m);
    }

    #[test]
    fn checksums_must_cover_the_object() {
        let sums = BlockChecksums::of(&[7u8; 100], 64);
        assert_eq!(sums.crc32c.len(), 2);
        assert_eq!(sums.crc32c[1], crc32c::crc32c(&[7u8; 36]));
        assert_eq!(sums.block_range(1, 100), 64..100);
        assert_eq!(sums.covers(100), Ok(()));
        assert_eq!(
            sums.covers(129),
            Err(ChecksumsMismatch {
                checksums: 2,
                block_bytes: 64,
                size: 129
            })
        );
        let mut m = Manifest::new("s", 0);
        for (block_bytes, crc32c) in [(64, vec![1]), (64, vec![1, 2, 3]), (0, vec![])] {
            let mut o = obj(0, 10);
            o.checksums = Some(BlockChecksums {
                block_bytes,
                crc32c,
            });
            let err = m.push(o).unwrap_err().to_string();
            assert!(err.contains("cannot cover 100 bytes"), "{err}");
        }
        m.push(obj(0, 10)).unwrap();
    }

    #[test]
    fn bad_json_is_an_error_with_a_reason() {
        let err = |b: &[u8]| Manifest::from_json(b).unwrap_err().to_string();
        assert!(err(b"not json").contains("invalid JSON"));
        assert!(err(br#"{"version":2,"stream":"s","shard":0,"objects":[]}"#).contains("version 2"));
        assert!(err(br#"{"version":1,"stream":"s","objects":[]}"#).contains("shard"));
        let mut m = manifest();
        m.objects.swap(0, 1);
        assert!(err(&m.to_json()).contains("starts at offset"));
    }
}
