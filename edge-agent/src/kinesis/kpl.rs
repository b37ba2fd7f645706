//! De-aggregation of KPL aggregated records (pure).
//!
//! The Kinesis Producer Library packs many user records into one Kinesis
//! record: the magic `F3 89 9A C2`, a protobuf `AggregatedRecord`, and the
//! MD5 of that protobuf (16 bytes). The message:
//!
//! ```text
//! message AggregatedRecord {
//!   repeated string partition_key_table     = 1;
//!   repeated string explicit_hash_key_table = 2;
//!   repeated Record records                 = 3;
//! }
//! message Record {
//!   required uint64 partition_key_index     = 1;
//!   optional uint64 explicit_hash_key_index = 2;
//!   required bytes  data                    = 3;
//!   repeated Tag    tags                    = 4;  // ignored
//! }
//! ```
//!
//! The edge stores each user record as its own Strata record with its own
//! partition key, so every consumer (Strata's or Kinesis's) sees them
//! individually. The decoder is hand-written (about a hundred lines) rather
//! than generated with prost: it reads three fields, bounds every length
//! by the input, and keeps a proc-macro tree off the edge. A record that
//! starts with the magic but does not verify (MD5, protobuf, indexes) is
//! refused: the whole request then fails with `InvalidArgumentException`.

/// What starts an aggregated record.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];

/// One user record of an aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord<'a> {
    pub partition_key: &'a str,
    pub explicit_hash_key: Option<&'a str>,
    pub data: &'a [u8],
}

/// Why an aggregate is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KplError {
    #[error("KPL aggregated record: the MD5 trailer does not match its content")]
    Checksum,
    #[error("KPL aggregated record: malformed protobuf ({0})")]
    Protobuf(&'static str),
    #[error("KPL aggregated record: user record {record} names {table} index {index}, but the table has {len} entries")]
    Index {
        record: usize,
        table: &'static str,
        index: u64,
        len: usize,
    },
    #[error("KPL aggregated record: a partition key or explicit hash key is not UTF-8")]
    Utf8,
}

/// Whether `data` is an aggregate (starts with the magic).
pub fn is_aggregated(data: &[u8]) -> bool {
    data.len() >= MAGIC.len() + 16 && data.starts_with(&MAGIC)
}

/// The user records of an aggregate (`is_aggregated(data)` must hold).
pub fn deaggregate(data: &[u8]) -> Result<Vec<UserRecord<'_>>, KplError> {
    let body = &data[MAGIC.len()..data.len() - 16];
    let trailer = &data[data.len() - 16..];
    if strata_schema::hashkey::hash_key(body).to_be_bytes() != trailer {
        return Err(KplError::Checksum);
    }
    let mut keys: Vec<&str> = Vec::new();
    let mut hash_keys: Vec<&str> = Vec::new();
    let mut raw_records: Vec<&[u8]> = Vec::new();
    let mut r = Reader(body);
    while let Some((field, value)) = r.field()? {
        match (field, value) {
            (1, Value::Bytes(b)) => keys.push(std::str::from_utf8(b).map_err(|_| KplError::Utf8)?),
            (2, Value::Bytes(b)) => {
                hash_keys.push(std::str::from_utf8(b).map_err(|_| KplError::Utf8)?)
            }
            (3, Value::Bytes(b)) => raw_records.push(b),
            (1..=3, _) => return Err(KplError::Protobuf("a field has the wrong wire type")),
            _ => {}
        }
    }
    raw_records
        .into_iter()
        .enumerate()
        .map(|(i, raw)| user_record(i, raw, &keys, &hash_keys))
        .collect()
}

fn user_record<'a>(
    i: usize,
    raw: &'a [u8],
    keys: &[&'a str],
    hash_keys: &[&'a str],
) -> Result<UserRecord<'a>, KplError> {
    let (mut pk, mut ehk, mut data) = (None, None, None);
    let mut r = Reader(raw);
    while let Some((field, value)) = r.field()? {
        match (field, value) {
            (1, Value::Varint(v)) => pk = Some(v),
            (2, Value::Varint(v)) => ehk = Some(v),
            (3, Value::Bytes(b)) => data = Some(b),
            (1..=3, _) => return Err(KplError::Protobuf("a field has the wrong wire type")),
            _ => {}
        }
    }
    let lookup = |table: &'static str, t: &[&'a str], index: u64| {
        usize::try_from(index)
            .ok()
            .and_then(|x| t.get(x).copied())
            .ok_or(KplError::Index {
                record: i,
                table,
                index,
                len: t.len(),
            })
    };
    let pk = pk.ok_or(KplError::Protobuf(
        "a user record has no partition_key_index",
    ))?;
    Ok(UserRecord {
        partition_key: lookup("partition_key_table", keys, pk)?,
        explicit_hash_key: ehk
            .map(|x| lookup("explicit_hash_key_table", hash_keys, x))
            .transpose()?,
        data: data.ok_or(KplError::Protobuf("a user record has no data"))?,
    })
}

enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, KplError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let (&b, rest) = self
                .0
                .split_first()
                .ok_or(KplError::Protobuf("truncated varint"))?;
            self.0 = rest;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(KplError::Protobuf("varint longer than 10 bytes"))
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], KplError> {
        let n = usize::try_from(n).map_err(|_| KplError::Protobuf("length too large"))?;
        if n > self.0.len() {
            return Err(KplError::Protobuf("a length runs past the end"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    /// The next field, or `None` at the end.
    fn field(&mut self) -> Result<Option<(u64, Value<'a>)>, KplError> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let tag = self.varint()?;
        let value = match tag & 7 {
            0 => Value::Varint(self.varint()?),
            1 => self.take(8).map(|_| Value::Fixed)?,
            2 => {
                let n = self.varint()?;
                Value::Bytes(self.take(n)?)
            }
            5 => self.take(4).map(|_| Value::Fixed)?,
            _ => return Err(KplError::Protobuf("unsupported wire type")),
        };
        Ok(Some((tag >> 3, value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn bytes_field(field: u64, b: &[u8], out: &mut Vec<u8>) {
        varint(field << 3 | 2, out);
        varint(b.len() as u64, out);
        out.extend_from_slice(b);
    }

    /// An aggregate as the KPL (and aws-kinesis-agg) builds it.
    fn aggregate(
        keys: &[&str],
        hash_keys: &[&str],
        records: &[(u64, Option<u64>, &[u8])],
    ) -> Vec<u8> {
        let mut body = Vec::new();
        for k in keys {
            bytes_field(1, k.as_bytes(), &mut body);
        }
        for k in hash_keys {
            bytes_field(2, k.as_bytes(), &mut body);
        }
        for (pk, ehk, data) in records {
            let mut r = Vec::new();
            varint(1 << 3, &mut r);
            varint(*pk, &mut r);
            if let Some(e) = ehk {
                varint(2 << 3, &mut r);
                varint(*e, &mut r);
            }
            bytes_field(3, data, &mut r);
            bytes_field(3, &r, &mut body);
        }
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&body);
        out.extend_from_slice(&strata_schema::hashkey::hash_key(&body).to_be_bytes());
        out
    }

    #[test]
    fn an_aggregate_yields_its_user_records_in_order() {
        let agg = aggregate(
            &["a", "b"],
            &["42"],
            &[(0, None, b"one"), (1, Some(0), b"two"), (0, None, b"")],
        );
        assert!(is_aggregated(&agg));
        let recs = deaggregate(&agg).unwrap();
        assert_eq!(
            recs,
            vec![
                UserRecord {
                    partition_key: "a",
                    explicit_hash_key: None,
                    data: b"one"
                },
                UserRecord {
                    partition_key: "b",
                    explicit_hash_key: Some("42"),
                    data: b"two"
                },
                UserRecord {
                    partition_key: "a",
                    explicit_hash_key: None,
                    data: b""
                },
            ]
        );
        assert!(!is_aggregated(b"plain data"));
    }

    #[test]
    fn a_bad_aggregate_is_refused_with_the_reason() {
        let mut agg = aggregate(&["a"], &[], &[(0, None, b"x")]);
        let n = agg.len();
        agg[n - 1] ^= 1;
        assert_eq!(deaggregate(&agg).unwrap_err(), KplError::Checksum);
        let agg = aggregate(&["a"], &[], &[(3, None, b"x")]);
        assert!(matches!(
            deaggregate(&agg).unwrap_err(),
            KplError::Index { index: 3, .. }
        ));
        let agg = aggregate(&["a"], &[], &[(0, Some(0), b"x")]);
        assert!(matches!(
            deaggregate(&agg).unwrap_err(),
            KplError::Index {
                table: "explicit_hash_key_table",
                ..
            }
        ));
        // A length past the end, with a matching checksum.
        let body = [0x0a, 0x7f, b'a'];
        let mut agg = MAGIC.to_vec();
        agg.extend_from_slice(&body);
        agg.extend_from_slice(&strata_schema::hashkey::hash_key(&body).to_be_bytes());
        assert!(matches!(
            deaggregate(&agg).unwrap_err(),
            KplError::Protobuf(_)
        ));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for len in 0..300 {
            let mut body = Vec::new();
            for _ in 0..len {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                body.push(seed as u8);
            }
            let mut agg = MAGIC.to_vec();
            agg.extend_from_slice(&body);
            agg.extend_from_slice(&strata_schema::hashkey::hash_key(&body).to_be_bytes());
            let _ = deaggregate(&agg);
        }
    }
}
