//! The Parquet format of a tiered object, and its encoder.
//!
//! Columns (one row per record, in offset order):
//!
//! | column | Parquet / Arrow type | notes |
//! | --- | --- | --- |
//! | `offset` | int64 | dense: row `i` is `first_offset + i`; page statistics, delta encoded |
//! | `timestamp` | timestamp(ms, UTC) | producer time; page statistics |
//! | `partition_key` | utf8, nullable | null when the record has no key |
//! | `data` | binary | the record's value |
//! | `headers` | map<utf8, binary> | in the producer's order, duplicates kept |
//! | `shard` | int64 | the shard id (u32 widened: engines have no unsigned type) |
//! | `stream` | utf8 | dictionary encoded, so it costs nothing per row |
//!
//! `stream` repeats the `stream=` partition of the key on purpose: a file
//! copied out of its directory still says where it came from. DuckDB's
//! `hive_partitioning=true` takes the value from the path for a column that
//! is both in the file and in the path (checked with DuckDB 1.4.4: no error,
//! one `stream` column); both always agree here.
//!
//! Two things a SQL user meets (DuckDB 1.4.4): `offset` is a keyword, so it
//! is written `"offset"` in queries; and a `headers` value with a repeated
//! key (allowed: Strata keeps headers as sent) makes `SELECT headers` fail
//! with "Map keys must be unique", while `map_entries(headers)`,
//! `map_keys`/`map_values` and `headers['k']` work.
//!
//! Every column is zstd compressed. `offset` and `timestamp` carry statistics
//! per row group and per page (column index + offset index), so a reader
//! fetches only the row groups and pages holding the offsets it wants, and
//! engines prune by time. Row groups are bounded by rows and by bytes.
//! Key-value metadata records the format version, stream and shard.

use crate::keys;
use crate::manifest::{BlockChecksums, TieredObject, CHECKSUM_BLOCK_BYTES};
use crate::TierError;
use arrow::array::{
    ArrayRef, BinaryBuilder, Int64Array, Int64Builder, MapBuilder, MapFieldNames, RecordBatch,
    StringArray, StringBuilder, TimestampMillisecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use bytes::Bytes;
use object_store::path::Path;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use std::sync::{Arc, LazyLock};
use strata_schema::{batch, fb};

/// Value of the `strata.format` key-value metadata entry.
pub const FORMAT_VERSION: &str = "1";

/// Column names, in file order.
pub const COL_OFFSET: &str = "offset";
pub const COL_TIMESTAMP: &str = "timestamp";
pub const COL_PARTITION_KEY: &str = "partition_key";
pub const COL_DATA: &str = "data";
pub const COL_HEADERS: &str = "headers";
pub const COL_SHARD: &str = "shard";
pub const COL_STREAM: &str = "stream";

/// Records are handed to the Parquet writer in chunks of at most this many
/// rows or bytes: bounds the Arrow buffers (and keeps their i32 offsets far
/// from overflow) independently of the row group size.
const CHUNK_ROWS: usize = 4096;
const CHUNK_BYTES: usize = 8 << 20;

/// The Arrow schema of every tiered object.
pub fn schema() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        Arc::new(Schema::new(vec![
            Field::new(COL_OFFSET, DataType::Int64, false),
            Field::new(
                COL_TIMESTAMP,
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                false,
            ),
            Field::new(COL_PARTITION_KEY, DataType::Utf8, true),
            Field::new(COL_DATA, DataType::Binary, false),
            Field::new(COL_HEADERS, headers_type(), false),
            Field::new(COL_SHARD, DataType::Int64, false),
            Field::new(COL_STREAM, DataType::Utf8, false),
        ]))
    });
    Arc::clone(&SCHEMA)
}

/// Parquet's standard names for a MAP's repeated group and its fields.
fn map_field_names() -> MapFieldNames {
    MapFieldNames {
        entry: "key_value".into(),
        key: "key".into(),
        value: "value".into(),
    }
}

fn header_value_field() -> Field {
    Field::new("value", DataType::Binary, false)
}

fn headers_type() -> DataType {
    let names = map_field_names();
    let entries = Field::new(
        names.entry,
        DataType::Struct(
            vec![
                Field::new(names.key, DataType::Utf8, false),
                header_value_field(),
            ]
            .into(),
        ),
        false,
    );
    DataType::Map(Arc::new(entries), false)
}

/// Encoder settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterOptions {
    /// Most rows in one row group: the unit a read fetches.
    pub row_group_rows_max: usize,
    /// Row groups are also cut when their encoded size passes this.
    pub row_group_bytes_max: usize,
    /// zstd level (1-22).
    pub zstd_level: i32,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self {
            row_group_rows_max: 64 * 1024,
            row_group_bytes_max: 64 << 20,
            zstd_level: 3,
        }
    }
}

impl WriterOptions {
    fn properties(&self, stream: &str, shard: u32) -> Result<WriterProperties, TierError> {
        if self.row_group_rows_max == 0 || self.row_group_bytes_max == 0 {
            return Err(TierError::Options(format!(
                "row_group_rows_max = {} and row_group_bytes_max = {} must be at least 1",
                self.row_group_rows_max, self.row_group_bytes_max
            )));
        }
        let level = ZstdLevel::try_new(self.zstd_level)
            .map_err(|e| TierError::Options(format!("zstd_level = {}: {e}", self.zstd_level)))?;
        let col = |name: &str| ColumnPath::from(name);
        let page_stats = [COL_OFFSET, COL_TIMESTAMP];
        let mut props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(level))
            .set_max_row_group_row_count(Some(self.row_group_rows_max))
            .set_max_row_group_bytes(Some(self.row_group_bytes_max))
            // Values and headers are opaque: min/max of them is noise.
            .set_statistics_enabled(EnabledStatistics::None)
            .set_column_statistics_enabled(col(COL_PARTITION_KEY), EnabledStatistics::Chunk)
            .set_column_statistics_enabled(col(COL_SHARD), EnabledStatistics::Chunk)
            .set_column_statistics_enabled(col(COL_STREAM), EnabledStatistics::Chunk)
            // Random payloads make a dictionary pure overhead.
            .set_column_dictionary_enabled(col(COL_DATA), false)
            .set_sorting_columns(Some(vec![SortingColumn {
                column_idx: 0,
                descending: false,
                nulls_first: false,
            }]))
            .set_key_value_metadata(Some(vec![
                KeyValue::new("strata.format".into(), FORMAT_VERSION.to_string()),
                KeyValue::new("strata.stream".into(), stream.to_string()),
                KeyValue::new("strata.shard".into(), shard.to_string()),
            ]));
        for name in page_stats {
            // Offsets are dense and timestamps mostly ascending: delta
            // encoding stores them in a few bits per row.
            props = props
                .set_column_statistics_enabled(col(name), EnabledStatistics::Page)
                .set_column_dictionary_enabled(col(name), false)
                .set_column_encoding(col(name), Encoding::DELTA_BINARY_PACKED);
        }
        Ok(props.build())
    }
}

/// A finished object: its bytes and what the manifest records about it.
#[derive(Debug, Clone)]
pub struct EncodedObject {
    pub parquet: Bytes,
    pub first_offset: u64,
    /// One past the last offset.
    pub next_offset: u64,
    pub records: u64,
    pub min_timestamp_ms: i64,
    pub max_timestamp_ms: i64,
    /// First record's timestamp: it names the object's date/hour partition.
    pub first_timestamp_ms: i64,
    /// Keys, values and headers, bytes (as `batch::record_len` counts them).
    pub payload_bytes: u64,
}

impl EncodedObject {
    /// Size of the Parquet object, bytes.
    pub fn object_bytes(&self) -> u64 {
        self.parquet.len() as u64
    }

    /// Where this object goes under `prefix` when the shard leader of
    /// Raft term `term` writes it (see [`keys::data_key`]).
    pub fn key(&self, prefix: &Path, stream: &str, shard: u32, term: u64) -> Path {
        keys::data_key(
            prefix,
            stream,
            shard,
            self.first_offset..self.next_offset,
            term,
            self.first_timestamp_ms,
        )
    }

    /// The manifest entry for this object stored at `key`, with the
    /// checksums a read verifies.
    pub fn tiered_object(&self, key: &Path) -> TieredObject {
        TieredObject {
            key: key.to_string(),
            first_offset: self.first_offset,
            next_offset: self.next_offset,
            records: self.records,
            min_timestamp_ms: self.min_timestamp_ms,
            max_timestamp_ms: self.max_timestamp_ms,
            bytes: self.object_bytes(),
            payload_bytes: self.payload_bytes,
            checksums: Some(BlockChecksums::of(&self.parquet, CHECKSUM_BLOCK_BYTES)),
            // The core sets it: only it knows when it appended the records.
            max_appended_ms: None,
        }
    }
}

/// Builds Arrow record batches in the archive [`schema`]: the rows of a
/// Parquet object, or records read from the log (the query engine's hot
/// tail) in the same shape.
pub struct RowsBuilder {
    offset: Int64Builder,
    timestamp: TimestampMillisecondBuilder,
    partition_key: StringBuilder,
    data: BinaryBuilder,
    headers: MapBuilder<StringBuilder, BinaryBuilder>,
    rows: usize,
    bytes: usize,
}

impl Default for RowsBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl RowsBuilder {
    pub fn new() -> Self {
        Self {
            offset: Int64Builder::new(),
            timestamp: TimestampMillisecondBuilder::new().with_timezone("UTC"),
            partition_key: StringBuilder::new(),
            data: BinaryBuilder::new(),
            headers: MapBuilder::new(
                Some(map_field_names()),
                StringBuilder::new(),
                BinaryBuilder::new(),
            )
            .with_values_field(header_value_field()),
            rows: 0,
            bytes: 0,
        }
    }

    /// Rows added since the last [`RowsBuilder::finish`].
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Adds one row; `len` counts towards [`RowsBuilder::bytes`].
    pub fn push<'a>(
        &mut self,
        offset: i64,
        timestamp_ms: i64,
        key: Option<&str>,
        data: &[u8],
        headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
        len: usize,
    ) -> Result<(), arrow::error::ArrowError> {
        self.offset.append_value(offset);
        self.timestamp.append_value(timestamp_ms);
        self.partition_key.append_option(key);
        self.data.append_value(data);
        for (k, v) in headers {
            self.headers.keys().append_value(k);
            self.headers.values().append_value(v);
        }
        self.headers.append(true)?;
        self.rows += 1;
        self.bytes += len;
        Ok(())
    }

    /// The rows added since the last call, as one batch of `shard` of `stream`.
    pub fn finish(
        &mut self,
        shard: u32,
        stream: &str,
    ) -> Result<RecordBatch, arrow::error::ArrowError> {
        let rows = std::mem::take(&mut self.rows);
        self.bytes = 0;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.offset.finish()),
            Arc::new(self.timestamp.finish()),
            Arc::new(self.partition_key.finish()),
            Arc::new(self.data.finish()),
            Arc::new(self.headers.finish()),
            Arc::new(Int64Array::from_value(i64::from(shard), rows)),
            Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
                stream, rows,
            ))),
        ];
        RecordBatch::try_new(schema(), columns)
    }
}

/// Encodes a contiguous run of a shard's records as one Parquet object.
///
/// Push records in offset order with [`SegmentWriter::push`], then
/// [`SegmentWriter::finish`]. Memory stays near one row group's encoded size
/// plus the output, since rows are handed to the Parquet writer in chunks.
pub struct SegmentWriter {
    stream: String,
    shard: u32,
    writer: ArrowWriter<Vec<u8>>,
    chunk: RowsBuilder,
    first: Option<(u64, i64)>,
    next_offset: u64,
    min_timestamp_ms: i64,
    max_timestamp_ms: i64,
    payload_bytes: u64,
}

impl SegmentWriter {
    pub fn new(stream: &str, shard: u32, opts: WriterOptions) -> Result<Self, TierError> {
        let props = opts.properties(stream, shard)?;
        let writer = ArrowWriter::try_new(Vec::new(), schema(), Some(props))
            .map_err(|source| encode_error(stream, shard, source))?;
        Ok(Self {
            stream: stream.to_string(),
            shard,
            writer,
            chunk: RowsBuilder::new(),
            first: None,
            next_offset: 0,
            min_timestamp_ms: i64::MAX,
            max_timestamp_ms: i64::MIN,
            payload_bytes: 0,
        })
    }

    /// Records pushed so far.
    pub fn records(&self) -> u64 {
        self.first.map_or(0, |(first, _)| self.next_offset - first)
    }

    /// Adds the record at `offset`, which must follow the previous one.
    /// A refused offset leaves the writer usable; after any other error the
    /// writer is in an unknown state and must be dropped.
    pub fn push(&mut self, offset: u64, record: &fb::Record<'_>) -> Result<(), TierError> {
        if self.first.is_some() && offset != self.next_offset {
            return Err(TierError::NonContiguous {
                expected: self.next_offset,
                got: offset,
            });
        }
        let offset_i64 = i64::try_from(offset).map_err(|_| TierError::OffsetTooLarge(offset))?;
        let next = offset
            .checked_add(1)
            .ok_or(TierError::OffsetTooLarge(offset))?;
        let len = batch::record_len(record);
        if self.chunk.rows > 0 && self.chunk.bytes + len > CHUNK_BYTES {
            self.write_chunk()?;
        }
        let ts = record.timestamp_ms();
        let headers = record.headers().into_iter().flatten().map(|h| {
            let v: &[u8] = h.value().map_or(&[][..], |v| v.bytes());
            (h.key(), v)
        });
        let data = record.value().map_or(&[][..], |v| v.bytes());
        if let Err(e) = self
            .chunk
            .push(offset_i64, ts, record.key(), data, headers, len)
        {
            return Err(self.encode_error(e.into()));
        }

        self.first.get_or_insert((offset, ts));
        self.next_offset = next;
        self.min_timestamp_ms = self.min_timestamp_ms.min(ts);
        self.max_timestamp_ms = self.max_timestamp_ms.max(ts);
        self.payload_bytes += len as u64;
        if self.chunk.rows >= CHUNK_ROWS {
            self.write_chunk()?;
        }
        Ok(())
    }

    /// Writes the footer and returns the object.
    pub fn finish(mut self) -> Result<EncodedObject, TierError> {
        let Some((first_offset, first_timestamp_ms)) = self.first else {
            return Err(TierError::Empty);
        };
        if self.chunk.rows > 0 {
            self.write_chunk()?;
        }
        let (stream, shard) = (self.stream, self.shard);
        let parquet = self
            .writer
            .into_inner()
            .map_err(|source| encode_error(&stream, shard, source))?;
        Ok(EncodedObject {
            parquet: Bytes::from(parquet),
            first_offset,
            next_offset: self.next_offset,
            records: self.next_offset - first_offset,
            min_timestamp_ms: self.min_timestamp_ms,
            max_timestamp_ms: self.max_timestamp_ms,
            first_timestamp_ms,
            payload_bytes: self.payload_bytes,
        })
    }

    fn write_chunk(&mut self) -> Result<(), TierError> {
        let batch = self
            .chunk
            .finish(self.shard, &self.stream)
            .map_err(|e| self.encode_error(e.into()))?;
        self.writer.write(&batch).map_err(|e| self.encode_error(e))
    }

    fn encode_error(&self, source: parquet::errors::ParquetError) -> TierError {
        encode_error(&self.stream, self.shard, source)
    }
}

fn encode_error(stream: &str, shard: u32, source: parquet::errors::ParquetError) -> TierError {
    TierError::Encode {
        stream: stream.to_string(),
        shard,
        source,
    }
}
