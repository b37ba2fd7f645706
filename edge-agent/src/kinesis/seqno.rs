//! Kinesis names for Strata positions (pure).
//!
//! - **Shard ids**: `shardId-` and the Strata shard id in 12 digits, as
//!   Kinesis prints them (`shardId-000000000003`).
//! - **Canonical sequence numbers** (what `GetRecords` returns): `4`, the
//!   shard id in 10 digits, the core offset in 20 digits — 31 decimal
//!   digits, so string order is numeric order within a shard, and a number
//!   round-trips through `AT_SEQUENCE_NUMBER`/`AFTER_SEQUENCE_NUMBER`.
//! - **Edge sequence numbers** (what `PutRecord(s)` returns when the edge
//!   acknowledges, before the core assigned an offset): `9` and the record's
//!   position in this edge's stream buffer in 20 digits — 21 digits, so they
//!   can never be taken for canonical ones. They increase with every record
//!   this edge takes for the stream (in every shard), which is what
//!   `SequenceNumberForOrdering` needs; as read positions they are refused
//!   with a message saying so.
//! - **Shard iterators**: URL-safe base64 of (version, stream, shard,
//!   offset, expiry in ms) followed by its HMAC-SHA256 under
//!   a secret drawn when the agent starts, so a client cannot forge or alter
//!   one. They expire after [`ITERATOR_TTL_MS`] (`ExpiredIteratorException`)
//!   and with the agent's restart.

use super::error::KinesisError;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::hmac;

/// A shard iterator is valid this long (Kinesis: 5 minutes).
pub const ITERATOR_TTL_MS: i64 = 5 * 60 * 1000;

const ITERATOR_VERSION: u8 = 1;
const ITERATOR_MAC_BYTES: usize = 32;

pub fn shard_id(shard: u32) -> String {
    format!("shardId-{shard:012}")
}

/// The Strata shard of a Kinesis shard id (`shardId-000000000003`, or a
/// bare number).
pub fn parse_shard_id(s: &str) -> Result<u32, KinesisError> {
    let digits = s.strip_prefix("shardId-").unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(KinesisError::invalid(format!(
            "ShardId {s:?} is not of the form shardId-000000000000"
        )));
    }
    digits
        .parse()
        .map_err(|_| KinesisError::not_found(format!("no shard {s:?}")))
}

/// The canonical sequence number of offset `offset` in `shard`.
pub fn canonical(shard: u32, offset: u64) -> String {
    format!("4{shard:010}{offset:020}")
}

/// The sequence number an edge acknowledgement returns for a record at
/// buffer position `seq`.
pub fn edge(seq: u64) -> String {
    format!("9{seq:020}")
}

/// The offset a canonical sequence number names in `shard`.
pub fn parse_canonical(s: &str, shard: u32) -> Result<u64, KinesisError> {
    let bad = || {
        KinesisError::invalid(format!(
            "StartingSequenceNumber {s:?} is not a sequence number returned by GetRecords"
        ))
    };
    if s.len() == 21 && s.starts_with('9') {
        return Err(KinesisError::invalid(format!(
            "StartingSequenceNumber {s:?} is an edge acknowledgement's number (PutRecord before the core assigned an offset): read positions take the numbers GetRecords returns"
        )));
    }
    if s.len() != 31 || !s.starts_with('4') || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let of_shard: u32 = s[1..11].parse().map_err(|_| bad())?;
    if of_shard != shard {
        return Err(KinesisError::invalid(format!(
            "StartingSequenceNumber {s:?} belongs to {}, not {}",
            shard_id(of_shard),
            shard_id(shard)
        )));
    }
    s[11..].parse().map_err(|_| bad())
}

/// Where an iterator points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub stream: String,
    pub shard: u32,
    pub offset: u64,
}

/// Signs and checks shard iterators with this agent's secret.
pub struct Iterators {
    key: hmac::Key,
}

impl Iterators {
    /// `secret`: at least 32 random bytes, drawn at start.
    pub fn new(secret: &[u8]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    /// A fresh iterator for `pos`, valid until `now_ms + ITERATOR_TTL_MS`.
    pub fn issue(&self, pos: &Position, now_ms: i64) -> String {
        let name = pos.stream.as_bytes();
        let mut b = Vec::with_capacity(22 + name.len() + ITERATOR_MAC_BYTES);
        b.push(ITERATOR_VERSION);
        b.extend_from_slice(&(name.len() as u16).to_be_bytes());
        b.extend_from_slice(name);
        b.extend_from_slice(&pos.shard.to_be_bytes());
        b.extend_from_slice(&pos.offset.to_be_bytes());
        b.extend_from_slice(&(now_ms + ITERATOR_TTL_MS).to_be_bytes());
        let mac = hmac::sign(&self.key, &b);
        b.extend_from_slice(mac.as_ref());
        URL_SAFE_NO_PAD.encode(b)
    }

    /// The position of an iterator this agent issued and that has not
    /// expired at `now_ms`.
    pub fn open(&self, it: &str, now_ms: i64) -> Result<Position, KinesisError> {
        let bad = || {
            KinesisError::invalid("ShardIterator is not an iterator this edge agent issued (or it was altered, or the agent restarted since)")
        };
        if it.len() > 1024 {
            return Err(bad());
        }
        let b = URL_SAFE_NO_PAD.decode(it).map_err(|_| bad())?;
        if b.len() < 1 + 2 + 4 + 8 + 8 + ITERATOR_MAC_BYTES || b[0] != ITERATOR_VERSION {
            return Err(bad());
        }
        let (body, mac) = b.split_at(b.len() - ITERATOR_MAC_BYTES);
        hmac::verify(&self.key, body, mac).map_err(|_| bad())?;
        let name_len = usize::from(u16::from_be_bytes([body[1], body[2]]));
        if body.len() != 3 + name_len + 20 {
            return Err(bad());
        }
        let stream = String::from_utf8(body[3..3 + name_len].to_vec()).map_err(|_| bad())?;
        let rest = &body[3 + name_len..];
        let shard = u32::from_be_bytes(rest[0..4].try_into().expect("4 bytes"));
        let offset = u64::from_be_bytes(rest[4..12].try_into().expect("8 bytes"));
        let expires = i64::from_be_bytes(rest[12..20].try_into().expect("8 bytes"));
        if now_ms > expires {
            return Err(KinesisError::new(
                "ExpiredIteratorException",
                format!(
                    "Iterator expired: it was valid for {} minutes, until {expires} ms; get a new one with GetShardIterator",
                    ITERATOR_TTL_MS / 60_000
                ),
            ));
        }
        Ok(Position {
            stream,
            shard,
            offset,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_numbers_round_trip_and_sort_as_numbers() {
        let a = canonical(3, 9);
        let b = canonical(3, 10);
        let c = canonical(3, u64::MAX);
        assert!(a < b && b < c);
        assert!(a.parse::<u128>().unwrap() < b.parse::<u128>().unwrap());
        assert_eq!(a.len(), 31);
        assert_eq!(parse_canonical(&c, 3).unwrap(), u64::MAX);
        assert_eq!(parse_canonical(&a, 3).unwrap(), 9);
        let e = parse_canonical(&a, 4).unwrap_err();
        assert!(e.message.contains("shardId-000000000003"), "{e}");
        let e = parse_canonical(&edge(5), 3).unwrap_err();
        assert!(e.message.contains("edge acknowledgement"), "{e}");
        for bad in ["", "x", "40000000003", &format!("5{}", &a[1..])] {
            assert_eq!(
                parse_canonical(bad, 3).unwrap_err().kind,
                "InvalidArgumentException"
            );
        }
        assert!(edge(1) < edge(2));
    }

    #[test]
    fn shard_ids_are_kinesis_shaped() {
        assert_eq!(shard_id(3), "shardId-000000000003");
        assert_eq!(parse_shard_id("shardId-000000000003").unwrap(), 3);
        assert_eq!(parse_shard_id("7").unwrap(), 7);
        assert!(parse_shard_id("shardId-").is_err());
        assert!(parse_shard_id("shard-x").is_err());
        assert!(parse_shard_id("shardId-99999999999999").is_err());
    }

    #[test]
    fn iterators_round_trip_expire_and_cannot_be_forged() {
        let its = Iterators::new(&[7u8; 32]);
        let pos = Position {
            stream: "sensors".into(),
            shard: 2,
            offset: 41,
        };
        let it = its.issue(&pos, 1_000);
        assert!(it.len() <= 512);
        assert_eq!(its.open(&it, 1_000 + ITERATOR_TTL_MS).unwrap(), pos);
        let e = its.open(&it, 1_001 + ITERATOR_TTL_MS).unwrap_err();
        assert_eq!(e.kind, "ExpiredIteratorException");
        // Another agent's secret, or one changed byte, is refused.
        assert!(Iterators::new(&[8u8; 32]).open(&it, 1_000).is_err());
        let mut raw = URL_SAFE_NO_PAD.decode(&it).unwrap();
        raw[12] ^= 1;
        let forged = URL_SAFE_NO_PAD.encode(&raw);
        assert_eq!(
            its.open(&forged, 1_000).unwrap_err().kind,
            "InvalidArgumentException"
        );
        for junk in ["", "!!", "AAAA", &"A".repeat(2000)] {
            assert!(its.open(junk, 0).is_err(), "{junk}");
        }
    }
}
