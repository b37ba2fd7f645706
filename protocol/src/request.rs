//! Request arguments and results shared by the SDK, the edge and the core.

use bytes::Bytes;

/// One run of records of a forward (edge to core): the batch bytes and the
/// producer positions of its records.
#[derive(Debug, Clone)]
pub struct Piece {
    pub first_seq: u64,
    pub seq_deltas: Option<Vec<u32>>,
    pub max_timestamp_ms: i64,
    pub batch: Bytes,
}

/// Result of a forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forwarded {
    pub appended: u64,
    pub duplicates: u64,
    pub next_offset: u64,
}

/// A reshard (`strata stream split | merge | scale`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reshard {
    /// Split `shard` in two at hash key `at` (the upper child's first key;
    /// None: the middle).
    Split { shard: u32, at: Option<u128> },
    /// Merge two shards with adjacent hash-key ranges.
    Merge { shards: [u32; 2] },
    /// Close every open shard and create `count` with uniform ranges.
    Scale { count: u32 },
}

/// Where to start reading a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Oldest,
    Latest,
    Offset(u64),
    TimestampMs(i64),
}
