//! Record batches: the unit on the hot path. A producer encodes a batch once
//! as a `RecordBatch` flatbuffer; the edge buffer, the Raft log and fetch
//! responses carry those bytes unchanged.
//!
//! [`verify`] is the single gate for untrusted batch bytes: it runs the
//! flatbuffers verifier with bounded options and checks every record against
//! the configured [`Limits`], returning a [`Summary`] used for indexing.

use crate::fb;
use bytes::Bytes;
use flatbuffers::{FlatBufferBuilder, VerifierOptions, WIPOffset};

/// Limits applied to every batch accepted from the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest single record (key + value + headers), bytes.
    pub record_bytes_max: usize,
    /// Most records in one batch.
    pub batch_records_max: usize,
    /// Largest encoded batch, bytes.
    pub batch_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            record_bytes_max: 1024 * 1024,
            batch_records_max: 100_000,
            batch_bytes_max: 16 * 1024 * 1024,
        }
    }
}

/// Why a batch was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("batch is not a valid RecordBatch flatbuffer: {0}")]
    Malformed(String),
    #[error("batch is empty")]
    Empty,
    #[error("batch of {len} bytes exceeds batch_bytes_max = {max}")]
    TooManyBytes { len: usize, max: usize },
    #[error("batch of {count} records exceeds batch_records_max = {max}")]
    TooManyRecords { count: usize, max: usize },
    #[error("record {index} is {len} bytes, over record_bytes_max = {max}")]
    RecordTooLarge {
        index: usize,
        len: usize,
        max: usize,
    },
}

impl BatchError {
    /// The stable wire error code for this refusal.
    pub fn code(&self) -> crate::fb::ErrorCode {
        use crate::fb::ErrorCode;
        match self {
            BatchError::RecordTooLarge { .. } => ErrorCode::RecordTooLarge,
            BatchError::TooManyBytes { .. } | BatchError::TooManyRecords { .. } => {
                ErrorCode::BatchTooLarge
            }
            BatchError::Malformed(_) | BatchError::Empty => ErrorCode::MalformedRequest,
        }
    }
}

/// Configured limits that do not fit together; names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitsError {
    #[error("record_bytes_max = {record_bytes_max} must be between 1 and batch_bytes_max = {batch_bytes_max}")]
    RecordBytes {
        record_bytes_max: usize,
        batch_bytes_max: usize,
    },
    #[error("batch_bytes_max = {batch_bytes_max} exceeds the limit {max}")]
    BatchBytes { batch_bytes_max: usize, max: usize },
    #[error("batch_records_max must be at least 1")]
    BatchRecords,
}

impl Limits {
    /// Checks configured limits; the error names the key.
    pub fn validate(&self) -> Result<(), LimitsError> {
        if self.record_bytes_max == 0 || self.record_bytes_max > self.batch_bytes_max {
            return Err(LimitsError::RecordBytes {
                record_bytes_max: self.record_bytes_max,
                batch_bytes_max: self.batch_bytes_max,
            });
        }
        let max = crate::frame::FRAME_BYTES_MAX / 2;
        if self.batch_bytes_max > max {
            return Err(LimitsError::BatchBytes {
                batch_bytes_max: self.batch_bytes_max,
                max,
            });
        }
        if self.batch_records_max == 0 {
            return Err(LimitsError::BatchRecords);
        }
        Ok(())
    }
}

/// What [`verify`] learned about a valid batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub records: usize,
    pub max_timestamp_ms: i64,
    pub payload_bytes: usize,
}

fn verifier_options(len: usize) -> VerifierOptions {
    VerifierOptions {
        max_depth: 16,
        // Each record is at most a handful of tables; bound by size, not by a guess.
        max_tables: len / 4 + 16,
        max_apparent_size: len.saturating_mul(2).max(1 << 16),
        ..Default::default()
    }
}

/// Opens bytes already verified once (read back from our own storage, which
/// is CRC-protected). Still verifies: a bug must not become a panic.
pub fn open(bytes: &[u8]) -> Result<fb::RecordBatch<'_>, BatchError> {
    flatbuffers::root_with_opts::<fb::RecordBatch>(&verifier_options(bytes.len()), bytes)
        .map_err(|e| BatchError::Malformed(e.to_string()))
}

/// Size of a record for `record_bytes_max`: key + value + header keys and values.
pub fn record_len(r: &fb::Record<'_>) -> usize {
    let headers = r.headers().map_or(0, |hs| {
        hs.iter()
            .map(|h| h.key().len() + h.value().map_or(0, |v| v.len()))
            .sum()
    });
    r.key().map_or(0, str::len) + r.value().map_or(0, |v| v.len()) + headers
}

/// Verifies untrusted batch bytes against `limits`.
pub fn verify(bytes: &[u8], limits: &Limits) -> Result<Summary, BatchError> {
    if bytes.len() > limits.batch_bytes_max {
        return Err(BatchError::TooManyBytes {
            len: bytes.len(),
            max: limits.batch_bytes_max,
        });
    }
    let batch = open(bytes)?;
    let records = batch.records();
    if records.is_empty() {
        return Err(BatchError::Empty);
    }
    if records.len() > limits.batch_records_max {
        return Err(BatchError::TooManyRecords {
            count: records.len(),
            max: limits.batch_records_max,
        });
    }
    let mut summary = Summary {
        records: records.len(),
        max_timestamp_ms: i64::MIN,
        payload_bytes: 0,
    };
    for (index, r) in records.iter().enumerate() {
        let len = record_len(&r);
        if len > limits.record_bytes_max {
            return Err(BatchError::RecordTooLarge {
                index,
                len,
                max: limits.record_bytes_max,
            });
        }
        summary.payload_bytes += len;
        summary.max_timestamp_ms = summary.max_timestamp_ms.max(r.timestamp_ms());
    }
    Ok(summary)
}

/// A record to encode.
#[derive(Debug, Clone, Copy, Default)]
pub struct NewRecord<'a> {
    pub key: Option<&'a str>,
    pub value: &'a [u8],
    pub timestamp_ms: i64,
    pub headers: &'a [(&'a str, &'a [u8])],
}

/// Builds one `RecordBatch`.
pub struct Builder {
    fbb: FlatBufferBuilder<'static>,
    records: Vec<WIPOffset<fb::Record<'static>>>,
    bytes: usize,
}

impl Default for Builder {
    fn default() -> Self {
        Self::with_capacity(64 * 1024)
    }
}

impl Builder {
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            fbb: FlatBufferBuilder::with_capacity(bytes),
            records: Vec::new(),
            bytes: 0,
        }
    }

    /// Records pushed so far.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Approximate encoded size so far, bytes.
    pub fn encoded_len(&self) -> usize {
        self.fbb.unfinished_data().len() + 4 * self.records.len() + 16
    }

    /// Payload bytes (keys, values, headers) pushed so far.
    pub fn payload_bytes(&self) -> usize {
        self.bytes
    }

    pub fn push(&mut self, r: &NewRecord<'_>) {
        let key = r.key.map(|k| self.fbb.create_string(k));
        let value = self.fbb.create_vector(r.value);
        let headers = if r.headers.is_empty() {
            None
        } else {
            let hs: Vec<_> = r
                .headers
                .iter()
                .map(|(k, v)| {
                    let key = Some(self.fbb.create_string(k));
                    let value = Some(self.fbb.create_vector(v));
                    fb::Header::create(&mut self.fbb, &fb::HeaderArgs { key, value })
                })
                .collect();
            Some(self.fbb.create_vector(&hs))
        };
        let rec = fb::Record::create(
            &mut self.fbb,
            &fb::RecordArgs {
                key,
                value: Some(value),
                timestamp_ms: r.timestamp_ms,
                headers,
            },
        );
        self.bytes += r.key.map_or(0, str::len)
            + r.value.len()
            + r.headers
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>();
        self.records.push(rec);
    }

    /// Copies a record from another (verified) batch.
    pub fn push_from(&mut self, r: &fb::Record<'_>) {
        let headers: Vec<(&str, &[u8])> = r
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h.key(), h.value().map_or(&[][..], |v| v.bytes())))
                    .collect()
            })
            .unwrap_or_default();
        self.push(&NewRecord {
            key: r.key(),
            value: r.value().map_or(&[][..], |v| v.bytes()),
            timestamp_ms: r.timestamp_ms(),
            headers: &headers,
        });
    }

    /// Finishes the batch and resets the builder for reuse.
    pub fn finish(&mut self) -> Bytes {
        let records = self.fbb.create_vector(&self.records);
        let batch = fb::RecordBatch::create(
            &mut self.fbb,
            &fb::RecordBatchArgs {
                records: Some(records),
            },
        );
        self.fbb.finish(batch, None);
        let out = Bytes::copy_from_slice(self.fbb.finished_data());
        self.fbb.reset();
        self.records.clear();
        self.bytes = 0;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn builds_and_verifies() {
        let mut b = Builder::default();
        b.push(&NewRecord {
            key: Some("k1"),
            value: b"hello",
            timestamp_ms: 5,
            headers: &[("h", b"v")],
        });
        b.push(&NewRecord {
            key: None,
            value: b"",
            timestamp_ms: 9,
            headers: &[],
        });
        let bytes = b.finish();
        let s = verify(&bytes, &Limits::default()).unwrap();
        assert_eq!(s.records, 2);
        assert_eq!(s.max_timestamp_ms, 9);
        let batch = open(&bytes).unwrap();
        let r0 = batch.records().get(0);
        assert_eq!(r0.key(), Some("k1"));
        assert_eq!(r0.value().unwrap().bytes(), b"hello");
        assert_eq!(r0.headers().unwrap().get(0).key(), "h");
    }

    #[test]
    fn limits_are_enforced() {
        let mut b = Builder::default();
        b.push(&NewRecord {
            key: Some("k"),
            value: &[0u8; 100],
            ..Default::default()
        });
        let bytes = b.finish();
        let small = Limits {
            record_bytes_max: 50,
            ..Limits::default()
        };
        assert_eq!(
            verify(&bytes, &small),
            Err(BatchError::RecordTooLarge {
                index: 0,
                len: 101,
                max: 50
            })
        );
        let few = Limits {
            batch_bytes_max: 10,
            ..Limits::default()
        };
        assert!(matches!(
            verify(&bytes, &few),
            Err(BatchError::TooManyBytes { .. })
        ));
        assert_eq!(
            verify(&Builder::default().finish(), &Limits::default()),
            Err(BatchError::Empty)
        );
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = verify(&bytes, &Limits::default());
        }

        #[test]
        fn flipped_bytes_never_panic(pos in 0usize..200, val in any::<u8>()) {
            let mut b = Builder::default();
            for i in 0..5 {
                b.push(&NewRecord { key: Some("key"), value: format!("v{i}").as_bytes(), timestamp_ms: i, headers: &[] });
            }
            let mut bytes = b.finish().to_vec();
            let p = pos % bytes.len();
            bytes[p] = val;
            if let Ok(s) = verify(&bytes, &Limits::default()) {
                // Whatever verified must be safely readable.
                let batch = open(&bytes).unwrap();
                prop_assert_eq!(batch.records().len(), s.records);
                for r in batch.records().iter() { let _ = record_len(&r); }
            }
        }
    }
}
