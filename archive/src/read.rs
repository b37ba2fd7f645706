//! Reading records back from a tiered object.
//!
//! [`read_records`] turns "records from offset N" into byte-range requests
//! for only what is needed: the footer (with the page index), then the pages
//! of the row groups that hold `[N, N + max_records)`. Offsets are dense in
//! an object, so the row-group offset statistics alone say which rows to
//! read; the decoded offset column is still checked against them.
//!
//! The records come back as one `RecordBatch` flatbuffer built with
//! [`batch::Builder`], the form fetch responses carry.
//!
//! Integrity: when the manifest entry has [`BlockChecksums`], every range
//! the Parquet reader asks for is widened to whole checksum blocks, and each
//! block is checked against its CRC32C before any byte of it is decoded. So
//! a corrupted or truncated object gives [`TierError::Corrupt`] (or another
//! error naming the object), never records that differ from those written.
//! A range costs at most two extra partial blocks; blocks are fetched once
//! per read. Objects from manifests written before checksums existed are
//! read unverified. (The `strata query` CLI reads the archive through
//! DataFusion's own Parquet reader and does not verify these checksums.)

use crate::format::{schema, COL_DATA, COL_HEADERS, COL_OFFSET, COL_PARTITION_KEY, COL_TIMESTAMP};
use crate::manifest::{BlockChecksums, TieredObject};
use crate::TierError;
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type, TimestampMillisecondType};
use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::{ArrowReaderOptions, RowSelection, RowSelector};
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
use parquet::errors::ParquetError;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};
use parquet::file::statistics::Statistics;
use std::collections::{BTreeSet, HashMap};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use strata_schema::batch;

/// Bytes fetched from the end of an object in the first request: enough for
/// the footer and page index of a typical object, so opening costs one GET.
const FOOTER_PREFETCH_BYTES: usize = 64 * 1024;

/// Rows decoded per Arrow batch.
const DECODE_BATCH_ROWS: usize = 4096;

/// Estimated flatbuffer overhead of one record beyond its payload (table,
/// vtable, vector headers, offsets): keeps the built batch near `max_bytes`.
const RECORD_OVERHEAD_BYTES: usize = 48;

/// Records read from one object.
#[derive(Debug, Clone)]
pub struct TierRead {
    /// Offset of the first record in `batch` (the requested offset).
    pub first_offset: u64,
    /// One past the last record in `batch`: where the next read starts.
    pub next_offset: u64,
    pub records: usize,
    /// A `RecordBatch` flatbuffer (see `strata_schema::batch`).
    pub batch: Bytes,
    /// Bytes fetched from the object store for this read (footer included).
    pub fetched_bytes: u64,
}

/// [`read_records`] from the object a manifest entry describes, with the
/// entry's size and checksums.
pub async fn read_object(
    store: Arc<dyn ObjectStore>,
    object: &TieredObject,
    from_offset: u64,
    max_records: usize,
    max_bytes: usize,
) -> Result<TierRead, TierError> {
    read_records(
        store,
        &object.path()?,
        Some(object.bytes),
        object.checksums.as_ref(),
        from_offset,
        max_records,
        max_bytes,
    )
    .await
}

/// Reads up to `max_records` records starting at `from_offset` from the
/// object at `path`, stopping before the batch would pass `max_bytes` (at
/// least one record is always returned, so a consumer can pass any record).
///
/// `object_bytes` is the object's size if known (the manifest has it);
/// without it a HEAD request finds it. (Not a suffix range: parquet 59.3's
/// suffix path mis-slices the page index of objects larger than its prefetch.)
/// With `checksums`, every fetched byte is verified (see the module doc).
pub async fn read_records(
    store: Arc<dyn ObjectStore>,
    path: &Path,
    object_bytes: Option<u64>,
    checksums: Option<&BlockChecksums>,
    from_offset: u64,
    max_records: usize,
    max_bytes: usize,
) -> Result<TierRead, TierError> {
    let size = match object_bytes {
        Some(size) => size,
        None => {
            let meta = store
                .head(path)
                .await
                .map_err(|source| TierError::ObjectStore {
                    op: "head",
                    path: path.to_string(),
                    source,
                })?;
            meta.size
        }
    };
    let verified = match checksums {
        Some(sums) => {
            sums.covers(size).map_err(|e| TierError::Corrupt {
                path: path.to_string(),
                reason: e.to_string(),
            })?;
            Some(VerifiedBlocks {
                sums: sums.clone(),
                blocks: HashMap::new(),
            })
        }
        None => None,
    };
    let fetched = Arc::new(AtomicU64::new(0));
    let reader = ObjectReader {
        store,
        path: path.clone(),
        size,
        fetched: Arc::clone(&fetched),
        verified,
    };
    let decode = |e| decode_error(path, e);
    let builder =
        ParquetRecordBatchStreamBuilder::new_with_options(reader, ArrowReaderOptions::new())
            .await
            .map_err(decode)?;
    let format = |reason: SegmentFormatError| TierError::Format {
        path: path.to_string(),
        reason,
    };
    let columns = [
        COL_OFFSET,
        COL_TIMESTAMP,
        COL_PARTITION_KEY,
        COL_DATA,
        COL_HEADERS,
    ];
    let roots = check_schema(builder.schema(), &columns).map_err(format)?;
    let layout = OffsetLayout::from_metadata(builder.metadata()).map_err(format)?;
    if !layout.contains(from_offset) {
        return Err(TierError::OffsetOutOfRange {
            path: path.to_string(),
            offset: from_offset,
            first_offset: layout.first_offset,
            next_offset: layout.next_offset,
        });
    }
    let plan = layout.plan(from_offset, max_records.max(1));
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let mut stream = builder
        .with_projection(mask)
        .with_row_groups(plan.row_groups)
        .with_row_selection(plan.selection)
        .with_batch_size(DECODE_BATCH_ROWS.min(plan.rows))
        .build()
        .map_err(decode)?;

    let mut out = Decoder::new(from_offset, plan.rows, max_bytes);
    // The stream fetches a row group only when polled for it: stopping here
    // leaves the rest of the object unread.
    while !out.done() {
        let Some(rb) = stream.next().await else { break };
        out.push(&rb.map_err(decode)?).map_err(format)?;
    }
    if out.records == 0 {
        return Err(format(SegmentFormatError::NoRows { from_offset }));
    }
    Ok(TierRead {
        first_offset: from_offset,
        next_offset: out.next_offset,
        records: out.records,
        batch: out.builder.finish(),
        fetched_bytes: fetched.load(Ordering::Relaxed),
    })
}

fn decode_error(path: &Path, e: ParquetError) -> TierError {
    // I/O failures and checksum mismatches reach us wrapped by the Parquet
    // reader: unwrap them so that they keep their kind.
    match e {
        ParquetError::External(inner) => match inner.downcast::<object_store::Error>() {
            Ok(source) => TierError::ObjectStore {
                op: "get",
                path: path.to_string(),
                source: *source,
            },
            Err(inner) => match inner.downcast::<Corrupt>() {
                Ok(c) => TierError::Corrupt {
                    path: path.to_string(),
                    reason: c.0,
                },
                Err(inner) => decode_error_plain(path, ParquetError::External(inner)),
            },
        },
        e => decode_error_plain(path, e),
    }
}

/// Fetched bytes that do not match the manifest's checksums.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Corrupt(String);

fn corrupt(reason: String) -> ParquetError {
    ParquetError::External(Box::new(Corrupt(reason)))
}

fn decode_error_plain(path: &Path, source: ParquetError) -> TierError {
    TierError::Decode {
        path: path.to_string(),
        source,
    }
}

/// Why a valid Parquet object is not a Strata tiered segment (the reason
/// of [`TierError::Format`]).
#[derive(Debug, thiserror::Error)]
pub enum SegmentFormatError {
    #[error("column {name:?} is missing")]
    MissingColumn { name: String },
    #[error("column {name:?} is {found}, expected {expected}")]
    ColumnType {
        name: String,
        found: DataType,
        expected: DataType,
    },
    #[error("no offset column")]
    NoOffsetColumn,
    #[error("row group {row_group} has no offset statistics")]
    NoOffsetStatistics { row_group: usize },
    #[error("row group {row_group} has no offset min/max")]
    NoOffsetMinMax { row_group: usize },
    #[error("row group {row_group} holds offsets [{min}, {max}] in {rows} rows, expected a dense run from {start}")]
    NotDense {
        row_group: usize,
        min: i64,
        max: i64,
        rows: i64,
        start: u64,
    },
    #[error("the object has no row groups")]
    NoRowGroups,
    #[error("column {name:?} missing from decoded batch")]
    MissingDecodedColumn { name: String },
    #[error("row holds offset {found} where offset {expected} was expected")]
    UnexpectedOffset { found: i64, expected: u64 },
    #[error("no rows decoded for offset {from_offset}")]
    NoRows { from_offset: u64 },
}

/// Root indices of `columns` in `schema`, checking each has the type the
/// writer gives it. `columns` are columns of [`schema`].
fn check_schema(
    file: &arrow::datatypes::Schema,
    columns: &[&str],
) -> Result<Vec<usize>, SegmentFormatError> {
    let ours = schema();
    columns
        .iter()
        .map(|&name| {
            let (i, field) =
                file.column_with_name(name)
                    .ok_or_else(|| SegmentFormatError::MissingColumn {
                        name: name.to_owned(),
                    })?;
            let want = ours
                .field_with_name(name)
                .expect("check_schema is asked only for columns of the writer's schema");
            if field.data_type() != want.data_type() {
                return Err(SegmentFormatError::ColumnType {
                    name: name.to_owned(),
                    found: field.data_type().clone(),
                    expected: want.data_type().clone(),
                });
            }
            Ok(i)
        })
        .collect()
}

/// Which offsets each row group holds, from the footer statistics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OffsetLayout {
    pub first_offset: u64,
    pub next_offset: u64,
    /// Rows per row group.
    pub row_group_rows: Vec<u64>,
}

/// What to ask the Parquet reader for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReadPlan {
    pub row_groups: Vec<usize>,
    pub selection: RowSelection,
    /// Rows the selection selects.
    pub rows: usize,
}

impl OffsetLayout {
    /// Reads the `offset` column's row-group statistics and checks they
    /// describe one dense run of offsets.
    pub fn from_metadata(md: &ParquetMetaData) -> Result<Self, SegmentFormatError> {
        let col = md
            .file_metadata()
            .schema_descr()
            .columns()
            .iter()
            .position(|c| c.path().string() == COL_OFFSET)
            .ok_or(SegmentFormatError::NoOffsetColumn)?;
        let mut layout: Option<OffsetLayout> = None;
        for (i, rg) in md.row_groups().iter().enumerate() {
            let Some(Statistics::Int64(s)) = rg.column(col).statistics() else {
                return Err(SegmentFormatError::NoOffsetStatistics { row_group: i });
            };
            let (Some(&min), Some(&max)) = (s.min_opt(), s.max_opt()) else {
                return Err(SegmentFormatError::NoOffsetMinMax { row_group: i });
            };
            let rows = rg.num_rows();
            let l = layout.get_or_insert_with(|| OffsetLayout {
                first_offset: u64::try_from(min).unwrap_or(u64::MAX),
                next_offset: u64::try_from(min).unwrap_or(u64::MAX),
                row_group_rows: Vec::with_capacity(md.num_row_groups()),
            });
            let start = l.next_offset;
            let end = u64::try_from(rows)
                .ok()
                .filter(|&n| n > 0)
                .and_then(|n| start.checked_add(n));
            let dense = end.is_some_and(|end| {
                u64::try_from(min) == Ok(start) && u64::try_from(max) == Ok(end - 1)
            });
            let Some(end) = end.filter(|_| dense) else {
                return Err(SegmentFormatError::NotDense {
                    row_group: i,
                    min,
                    max,
                    rows,
                    start,
                });
            };
            l.row_group_rows.push(end - start);
            l.next_offset = end;
        }
        layout.ok_or(SegmentFormatError::NoRowGroups)
    }

    pub fn contains(&self, offset: u64) -> bool {
        (self.first_offset..self.next_offset).contains(&offset)
    }

    /// The row groups and rows holding `[from, from + max_records)`, clipped
    /// to the object. `from` must be inside the object.
    pub fn plan(&self, from: u64, max_records: usize) -> ReadPlan {
        let total = self.next_offset - self.first_offset;
        let skip = from - self.first_offset;
        let want = skip..skip.saturating_add(max_records as u64).min(total);
        let mut row_groups = Vec::new();
        let mut selectors = Vec::new();
        let mut start = 0u64;
        for (i, &rows) in self.row_group_rows.iter().enumerate() {
            let rg = start..start + rows;
            start += rows;
            let take = want.start.max(rg.start)..want.end.min(rg.end);
            if take.is_empty() {
                continue;
            }
            row_groups.push(i);
            selectors.extend([
                RowSelector::skip(len(take.start - rg.start)),
                RowSelector::select(len(take.end - take.start)),
                RowSelector::skip(len(rg.end - take.end)),
            ]);
        }
        ReadPlan {
            row_groups,
            selection: RowSelection::from(selectors),
            rows: len(want.end - want.start),
        }
    }
}

fn len(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Rebuilds records from decoded Arrow batches.
struct Decoder {
    builder: batch::Builder,
    next_offset: u64,
    records: usize,
    records_max: usize,
    bytes_max: usize,
    full: bool,
}

impl Decoder {
    fn new(from_offset: u64, records_max: usize, bytes_max: usize) -> Self {
        Self {
            builder: batch::Builder::with_capacity(bytes_max.min(1 << 20)),
            next_offset: from_offset,
            records: 0,
            records_max,
            bytes_max,
            full: false,
        }
    }

    fn done(&self) -> bool {
        self.full || self.records >= self.records_max
    }

    fn push(&mut self, rb: &RecordBatch) -> Result<(), SegmentFormatError> {
        let col = |name: &str| {
            rb.column_by_name(name)
                .ok_or_else(|| SegmentFormatError::MissingDecodedColumn {
                    name: name.to_owned(),
                })
        };
        let offsets = col(COL_OFFSET)?.as_primitive::<Int64Type>();
        let timestamps = col(COL_TIMESTAMP)?.as_primitive::<TimestampMillisecondType>();
        let keys = col(COL_PARTITION_KEY)?.as_string::<i32>();
        let data = col(COL_DATA)?.as_binary::<i32>();
        let headers = col(COL_HEADERS)?.as_map();
        let header_keys = headers.keys().as_string::<i32>();
        let header_values = headers.values().as_binary::<i32>();
        let header_offsets = headers.value_offsets();
        let mut hs: Vec<(&str, &[u8])> = Vec::new();
        for row in 0..rb.num_rows() {
            if self.done() {
                break;
            }
            let offset = offsets.value(row);
            if u64::try_from(offset).ok() != Some(self.next_offset) {
                return Err(SegmentFormatError::UnexpectedOffset {
                    found: offset,
                    expected: self.next_offset,
                });
            }
            hs.clear();
            let (lo, hi) = (header_offsets[row], header_offsets[row + 1]);
            for h in usize::try_from(lo).unwrap_or(0)..usize::try_from(hi).unwrap_or(0) {
                hs.push((header_keys.value(h), header_values.value(h)));
            }
            let record = batch::NewRecord {
                key: keys.is_valid(row).then(|| keys.value(row)),
                value: data.value(row),
                timestamp_ms: timestamps.value(row),
                headers: &hs,
            };
            let len = record.key.map_or(0, str::len)
                + record.value.len()
                + hs.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
            if self.records > 0
                && self.builder.encoded_len() + len + RECORD_OVERHEAD_BYTES > self.bytes_max
            {
                self.full = true;
                break;
            }
            self.builder.push(&record);
            self.records += 1;
            self.next_offset += 1;
        }
        Ok(())
    }
}

/// An [`AsyncFileReader`] over one object, as `parquet/examples/object_store.rs`
/// recommends in place of the deprecated `ParquetObjectReader`. Counts the
/// bytes it fetches so callers (and tests) see what a read cost.
struct ObjectReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
    fetched: Arc<AtomicU64>,
    /// Set when the manifest has checksums: only verified bytes are served.
    verified: Option<VerifiedBlocks>,
}

/// The checksums of the object being read and the blocks fetched and
/// verified so far (kept for the read: the footer, page index and pages
/// often share blocks).
struct VerifiedBlocks {
    sums: BlockChecksums,
    blocks: HashMap<u64, Bytes>,
}

impl ObjectReader {
    fn count(&self, bytes: &Bytes) {
        self.fetched
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
    }

    async fn get(&mut self, ranges: Vec<Range<u64>>) -> parquet::errors::Result<Vec<Bytes>> {
        if self.verified.is_none() {
            let parts = self
                .store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(external)?;
            parts.iter().for_each(|b| self.count(b));
            return Ok(parts);
        }
        self.fetch_blocks(&ranges).await?;
        let v = self.verified.as_ref().expect("checked above");
        Ok(ranges.iter().map(|r| v.slice(r, self.size)).collect())
    }

    /// Fetches and verifies the blocks `ranges` touch that are not held yet
    /// (consecutive blocks in one request).
    async fn fetch_blocks(&mut self, ranges: &[Range<u64>]) -> parquet::errors::Result<()> {
        let (size, v) = (self.size, self.verified.as_ref().expect("verified read"));
        let mut need = BTreeSet::new();
        for r in ranges {
            if r.start > r.end || r.end > size {
                return Err(corrupt(format!(
                    "the reader asked for bytes [{}, {}) of a {size}-byte object",
                    r.start, r.end
                )));
            }
            need.extend(v.blocks_of(r).filter(|b| !v.blocks.contains_key(b)));
        }
        let mut runs: Vec<Range<u64>> = Vec::new();
        for b in need {
            match runs.last_mut() {
                Some(run) if run.end == b => run.end += 1,
                _ => runs.push(b..b + 1),
            }
        }
        let byte_ranges: Vec<Range<u64>> = runs
            .iter()
            .map(|run| {
                v.sums.block_range(run.start, size).start..v.sums.block_range(run.end - 1, size).end
            })
            .collect();
        let parts = self
            .store
            .get_ranges(&self.path, &byte_ranges)
            .await
            .map_err(external)?;
        parts.iter().for_each(|b| self.count(b));
        let v = self.verified.as_mut().expect("verified read");
        for ((run, range), part) in runs.into_iter().zip(&byte_ranges).zip(parts) {
            if part.len() as u64 != range.end - range.start {
                return Err(corrupt(format!(
                    "bytes [{}, {}) came back as {} bytes",
                    range.start,
                    range.end,
                    part.len()
                )));
            }
            for b in run {
                let br = v.sums.block_range(b, size);
                let block = part.slice(len(br.start - range.start)..len(br.end - range.start));
                let (got, want) = (crc32c::crc32c(&block), v.sums.crc32c[len(b)]);
                if got != want {
                    return Err(corrupt(format!(
                        "block {b} (bytes [{}, {})) has CRC32C {got:#010x}, the manifest says {want:#010x}",
                        br.start, br.end
                    )));
                }
                v.blocks.insert(b, block);
            }
        }
        Ok(())
    }
}

impl VerifiedBlocks {
    /// Indices of the blocks holding bytes of `r`.
    fn blocks_of(&self, r: &Range<u64>) -> Range<u64> {
        let bs = u64::from(self.sums.block_bytes);
        if r.start == r.end {
            return 0..0;
        }
        r.start / bs..(r.end - 1) / bs + 1
    }

    /// Bytes `r` from held blocks (no copy when one block holds them).
    fn slice(&self, r: &Range<u64>, size: u64) -> Bytes {
        let mut blocks = self
            .blocks_of(r)
            .map(|b| (self.sums.block_range(b, size), &self.blocks[&b]));
        let part = |(br, block): (Range<u64>, &Bytes)| {
            block.slice(len(r.start.max(br.start) - br.start)..len(r.end.min(br.end) - br.start))
        };
        match (blocks.next(), blocks.next()) {
            (None, _) => Bytes::new(),
            (Some(one), None) => part(one),
            (Some(a), Some(b)) => {
                let mut out = BytesMut::with_capacity(len(r.end - r.start));
                for p in [a, b].into_iter().chain(blocks) {
                    out.extend_from_slice(&part(p));
                }
                out.freeze()
            }
        }
    }
}

fn external(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for ObjectReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            if self.verified.is_some() {
                let mut parts = self.get(vec![range]).await?;
                return Ok(parts.pop().unwrap_or_default());
            }
            let bytes = self
                .store
                .get_range(&self.path, range)
                .await
                .map_err(external)?;
            self.count(&bytes);
            Ok(bytes)
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        self.get(ranges).boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let reader = ParquetMetaDataReader::new()
                .with_page_index_policy(PageIndexPolicy::Optional)
                .with_prefetch_hint(Some(FOOTER_PREFETCH_BYTES));
            let size = self.size;
            Ok(Arc::new(reader.load_and_finish(self, size).await?))
        }
        .boxed()
    }
}
