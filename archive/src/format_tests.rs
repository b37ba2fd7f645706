//! Tests of the Parquet encoder and reader against an in-memory store.

use crate::format::{SegmentWriter, WriterOptions};
use crate::manifest::BlockChecksums;
use crate::read::{read_records, OffsetLayout, SegmentFormatError};
use crate::TierError;
use arrow::array::{Int64Array, RecordBatch};
use bytes::Bytes;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::PageIndexPolicy;
use std::sync::Arc;
use strata_schema::batch::{self, Builder, NewRecord};

/// An owned record, to compare with what comes back.
#[derive(Debug, Clone)]
struct Rec {
    key: Option<String>,
    value: Vec<u8>,
    timestamp_ms: i64,
    headers: Vec<(String, Vec<u8>)>,
}

impl Rec {
    fn push_to(&self, b: &mut Builder) {
        let hs: Vec<(&str, &[u8])> = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        b.push(&NewRecord {
            key: self.key.as_deref(),
            value: &self.value,
            timestamp_ms: self.timestamp_ms,
            headers: &hs,
        });
    }
}

/// Awkward records first (null and empty key, empty value, duplicate and
/// unicode headers, a negative timestamp), then `n` ordinary ones whose
/// values are pseudo-random (incompressible) `value_len` bytes.
fn records(n: usize, value_len: usize) -> Vec<Rec> {
    let mut out = vec![
        Rec {
            key: None,
            value: b"no key".to_vec(),
            timestamp_ms: 1_795_410_367_089,
            headers: vec![],
        },
        Rec {
            key: Some(String::new()),
            value: vec![],
            timestamp_ms: -5,
            headers: vec![("".into(), vec![]), ("".into(), vec![0, 1])],
        },
        Rec {
            key: Some("ключ-🔑".into()),
            value: "значение ✓".as_bytes().to_vec(),
            timestamp_ms: 0,
            headers: vec![
                ("trace".into(), b"abc".to_vec()),
                ("trace".into(), b"dup".to_vec()),
                ("émoji-😀".into(), vec![0xff, 0x00, 0xfe]),
            ],
        },
    ];
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    for i in 0..n {
        let value = (0..value_len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        out.push(Rec {
            key: Some(format!("device-{}", i % 17)),
            value,
            timestamp_ms: 1_795_410_367_089 + i as i64,
            headers: if i % 3 == 0 {
                vec![("seq".into(), i.to_string().into_bytes())]
            } else {
                vec![]
            },
        });
    }
    out
}

fn batch_of(recs: &[Rec]) -> Bytes {
    let mut b = Builder::default();
    recs.iter().for_each(|r| r.push_to(&mut b));
    b.finish()
}

fn encode(first_offset: u64, recs: &[Rec], opts: WriterOptions) -> crate::EncodedObject {
    let bytes = batch_of(recs);
    let fb = batch::open(&bytes).unwrap();
    let mut w = SegmentWriter::new("orders", 7, opts).unwrap();
    for (i, r) in fb.records().iter().enumerate() {
        w.push(first_offset + i as u64, &r).unwrap();
    }
    w.finish().unwrap()
}

fn small_groups(rows: usize) -> WriterOptions {
    WriterOptions {
        row_group_rows_max: rows,
        ..WriterOptions::default()
    }
}

async fn stored(obj: &Bytes) -> (Arc<dyn ObjectStore>, Path) {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let path = Path::from("obj.parquet");
    store
        .put(&path, PutPayload::from(obj.clone()))
        .await
        .unwrap();
    (store, path)
}

#[tokio::test]
async fn records_round_trip_byte_identical() {
    let recs = records(500, 40);
    let obj = encode(1000, &recs, small_groups(64));
    assert_eq!(obj.first_offset, 1000);
    assert_eq!(obj.next_offset, 1000 + recs.len() as u64);
    assert_eq!(obj.records, recs.len() as u64);
    assert_eq!(obj.min_timestamp_ms, -5);
    assert_eq!(obj.max_timestamp_ms, 1_795_410_367_089 + 499);
    assert_eq!(obj.first_timestamp_ms, 1_795_410_367_089);
    let payload: usize = batch::open(&batch_of(&recs))
        .unwrap()
        .records()
        .iter()
        .map(|r| batch::record_len(&r))
        .sum();
    assert_eq!(obj.payload_bytes, payload as u64);

    let (store, path) = stored(&obj.parquet).await;
    // With the manifest's size and checksums (in blocks of the default size
    // and of 4 KiB, so ranges span blocks), and with neither.
    let sums = [
        obj.tiered_object(&path).checksums,
        Some(BlockChecksums::of(&obj.parquet, 4096)),
    ];
    let size = Some(obj.object_bytes());
    for (size, sums) in [
        (size, sums[0].as_ref()),
        (size, sums[1].as_ref()),
        (None, None),
    ] {
        let read = read_records(
            Arc::clone(&store),
            &path,
            size,
            sums,
            1000,
            usize::MAX,
            usize::MAX,
        )
        .await
        .unwrap();
        assert_eq!(
            (read.first_offset, read.next_offset),
            (1000, obj.next_offset)
        );
        assert_eq!(read.records, recs.len());
        assert_eq!(read.batch, batch_of(&recs), "rebuilt batch differs");
    }

    // From the middle, across row groups: exactly the requested records.
    let small = sums[1].as_ref();
    let read = read_records(
        Arc::clone(&store),
        &path,
        size,
        small,
        1100,
        150,
        usize::MAX,
    )
    .await
    .unwrap();
    assert_eq!(
        (read.first_offset, read.next_offset, read.records),
        (1100, 1250, 150)
    );
    assert_eq!(read.batch, batch_of(&recs[100..250]));
}

#[tokio::test]
async fn reads_respect_max_bytes_but_return_at_least_one_record() {
    let recs = records(100, 1000);
    let obj = encode(0, &recs, WriterOptions::default());
    let (store, path) = stored(&obj.parquet).await;
    let one = read_records(Arc::clone(&store), &path, None, None, 10, 100, 1)
        .await
        .unwrap();
    assert_eq!((one.records, one.next_offset), (1, 11));
    let some = read_records(Arc::clone(&store), &path, None, None, 10, 100, 10_000)
        .await
        .unwrap();
    assert!(some.records > 1 && some.records < 10, "{}", some.records);
    assert!(some.batch.len() <= 10_000, "{}", some.batch.len());
    assert_eq!(some.batch, batch_of(&recs[10..10 + some.records]));
}

#[tokio::test]
async fn offsets_outside_the_object_are_refused() {
    let obj = encode(50, &records(10, 8), WriterOptions::default());
    let (store, path) = stored(&obj.parquet).await;
    for offset in [0, 49, 63, u64::MAX] {
        let err = read_records(Arc::clone(&store), &path, None, None, offset, 10, 1 << 20)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                TierError::OffsetOutOfRange {
                    first_offset: 50,
                    next_offset: 63,
                    ..
                }
            ),
            "{err}"
        );
    }
}

#[test]
fn footer_has_zstd_statistics_and_page_index_on_offset_and_timestamp() {
    let recs = records(1000, 16);
    let obj = encode(0, &recs, small_groups(256));
    let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required);
    let reader =
        ParquetRecordBatchReaderBuilder::try_new_with_options(obj.parquet.clone(), options)
            .unwrap();
    let md = reader.metadata();
    assert_eq!(md.num_row_groups(), 4); // 1003 rows in groups of 256
    let kv = md.file_metadata().key_value_metadata().unwrap();
    let get = |k: &str| kv.iter().find(|e| e.key == k).and_then(|e| e.value.clone());
    assert_eq!(get("strata.format").as_deref(), Some("1"));
    assert_eq!(get("strata.stream").as_deref(), Some("orders"));
    assert_eq!(get("strata.shard").as_deref(), Some("7"));
    let column_index = md.column_index().expect("column index");
    let offset_index = md.offset_index().expect("offset index");
    for (i, rg) in md.row_groups().iter().enumerate() {
        for (c, col) in rg.columns().iter().enumerate() {
            assert!(matches!(col.compression(), Compression::ZSTD(_)), "{c}");
            assert!(!offset_index[i][c].page_locations().is_empty());
        }
        for c in [0, 1] {
            let stats = rg.column(c).statistics().expect("statistics");
            assert!(stats.min_bytes_opt().is_some() && stats.max_bytes_opt().is_some());
            assert!(
                !matches!(
                    column_index[i][c],
                    parquet::file::page_index::column_index::ColumnIndexMetaData::NONE
                ),
                "row group {i} column {c} has no column index"
            );
        }
        // The payload column carries no statistics (they would be noise).
        let data = md
            .file_metadata()
            .schema_descr()
            .columns()
            .iter()
            .position(|c| c.name() == "data")
            .unwrap();
        assert!(rg.column(data).statistics().is_none());
    }
    let layout = OffsetLayout::from_metadata(md).unwrap();
    assert_eq!((layout.first_offset, layout.next_offset), (0, 1003));
    assert_eq!(layout.row_group_rows, vec![256, 256, 256, 235]);
}

#[test]
fn plans_select_only_the_row_groups_holding_the_wanted_offsets() {
    let layout = OffsetLayout {
        first_offset: 100,
        next_offset: 400,
        row_group_rows: vec![100, 100, 100],
    };
    let p = layout.plan(250, 10);
    assert_eq!((p.row_groups.clone(), p.rows), (vec![1], 10));
    assert_eq!(p.selection.row_count(), 10);
    assert_eq!(p.selection.skipped_row_count(), 90);
    let p = layout.plan(195, 10);
    assert_eq!((p.row_groups.clone(), p.rows), (vec![0, 1], 10));
    let p = layout.plan(390, usize::MAX);
    assert_eq!((p.row_groups.clone(), p.rows), (vec![2], 10));
    let p = layout.plan(100, usize::MAX);
    assert_eq!((p.row_groups, p.rows), (vec![0, 1, 2], 300));
}

#[tokio::test]
async fn a_read_from_the_end_fetches_only_the_last_row_groups() {
    // ~10 row groups of ~100 KiB of incompressible data each.
    let recs = records(2000, 500);
    let obj = encode(0, &recs, small_groups(200));
    let (store, path) = stored(&obj.parquet).await;
    let size = Some(obj.object_bytes());
    // Unverified, and verified in 16 KiB blocks (a read fetches whole blocks).
    let sums = BlockChecksums::of(&obj.parquet, 16 * 1024);
    for sums in [None, Some(&sums)] {
        let all = read_records(
            Arc::clone(&store),
            &path,
            size,
            sums,
            0,
            usize::MAX,
            usize::MAX,
        )
        .await
        .unwrap();
        let tail = read_records(Arc::clone(&store), &path, size, sums, 1900, 10, usize::MAX)
            .await
            .unwrap();
        assert_eq!(tail.batch, batch_of(&recs[1900..1910]));
        assert!(all.fetched_bytes >= obj.object_bytes() * 9 / 10);
        // One row group's pages plus the footer prefetch.
        assert!(
            tail.fetched_bytes < obj.object_bytes() / 5,
            "fetched {} of {}",
            tail.fetched_bytes,
            obj.object_bytes()
        );
    }
}

#[test]
fn the_writer_refuses_gaps_empty_objects_and_bad_options() {
    let bytes = batch_of(&records(3, 4));
    let fb = batch::open(&bytes).unwrap();
    let r = fb.records();
    let mut w = SegmentWriter::new("s", 0, WriterOptions::default()).unwrap();
    w.push(5, &r.get(0)).unwrap();
    let err = w.push(7, &r.get(1)).unwrap_err();
    assert!(
        matches!(
            err,
            TierError::NonContiguous {
                expected: 6,
                got: 7
            }
        ),
        "{err}"
    );
    w.push(6, &r.get(1)).unwrap();
    assert_eq!(w.records(), 2);
    let mut w = SegmentWriter::new("s", 0, WriterOptions::default()).unwrap();
    let err = w.push(u64::MAX, &r.get(0)).unwrap_err();
    assert!(matches!(err, TierError::OffsetTooLarge(_)), "{err}");
    let w = SegmentWriter::new("s", 0, WriterOptions::default()).unwrap();
    assert!(matches!(w.finish(), Err(TierError::Empty)));
    for opts in [
        small_groups(0),
        WriterOptions {
            zstd_level: 99,
            ..WriterOptions::default()
        },
    ] {
        assert!(matches!(
            SegmentWriter::new("s", 0, opts),
            Err(TierError::Options(_))
        ));
    }
}

/// Every way to damage `good`: truncations, and one byte flipped at
/// positions spread over the whole object plus every byte of its last 64
/// (the footer length and magic).
fn corruptions(good: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut bad = vec![
        ("empty".to_string(), vec![]),
        ("magic only".to_string(), b"PAR1".to_vec()),
    ];
    for keep in [good.len() / 2, good.len() - 8, good.len() - 1] {
        bad.push((format!("truncated to {keep}"), good[..keep].to_vec()));
    }
    for pos in (0..good.len())
        .step_by(good.len() / 400 + 1)
        .chain(good.len() - 64..good.len())
    {
        let mut b = good.to_vec();
        b[pos] ^= 0x5a;
        bad.push((format!("byte {pos} flipped"), b));
    }
    bad
}

/// A corrupted object read through its manifest entry (size and checksums
/// of what was written) gives an error naming the object, or exactly the
/// records an intact read gives; never other records.
#[tokio::test]
async fn corrupted_objects_give_an_error_naming_the_object_or_identical_data() {
    // ~200 KB in 10 row groups: larger than the footer prefetch, so a read
    // leaves most of the object unfetched.
    let obj = encode(0, &records(2000, 100), small_groups(200));
    let good = obj.parquet.to_vec();
    let size = Some(obj.object_bytes());
    // Default blocks (one block here) and 1 KiB blocks (a read verifies only
    // the blocks it fetches, and the others may be damaged).
    let sums = [
        obj.tiered_object(&Path::from("obj.parquet"))
            .checksums
            .unwrap(),
        BlockChecksums::of(&good, 1024),
    ];
    // From the start, the middle (one row group) and the last record.
    let reads = [(0, 50), (1000, 20), (2002, 1)];
    let (store, path) = stored(&obj.parquet).await;
    let mut intact = Vec::new();
    for (from, n) in reads {
        let r = read_records(
            Arc::clone(&store),
            &path,
            size,
            Some(&sums[1]),
            from,
            n,
            1 << 20,
        )
        .await
        .unwrap();
        intact.push((r.first_offset, r.next_offset, r.records, r.batch));
    }
    let (mut errors, mut corrupt, mut identical) = (0, 0, 0);
    for (what, b) in corruptions(&good) {
        let (store, path) = stored(&Bytes::from(b)).await;
        for sums in &sums {
            for (i, &(from, n)) in reads.iter().enumerate() {
                match read_records(
                    Arc::clone(&store),
                    &path,
                    size,
                    Some(sums),
                    from,
                    n,
                    1 << 20,
                )
                .await
                {
                    Ok(r) => {
                        let got = (r.first_offset, r.next_offset, r.records, r.batch);
                        // Not assert_eq: the batches are kilobytes of binary.
                        assert!(
                            got == intact[i],
                            "{what}: a read from {from} succeeded with other data \
                             ({} records in {} bytes, intact: {} in {})",
                            got.2,
                            got.3.len(),
                            intact[i].2,
                            intact[i].3.len()
                        );
                        identical += 1;
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        assert!(msg.contains("obj.parquet"), "{what}: {msg}");
                        errors += 1;
                        corrupt += usize::from(matches!(e, TierError::Corrupt { .. }));
                    }
                }
            }
        }
    }
    // The checksums did the catching, and with 1 KiB blocks a damaged
    // block a read does not fetch leaves it intact.
    assert!(
        corrupt * 10 >= errors * 9,
        "{corrupt} of {errors} errors are checksum errors"
    );
    assert!(
        identical > 0,
        "no read passed over a damaged block it did not need"
    );
}

/// Objects from manifests without checksums (written before they existed)
/// are read unverified: damage is an error or a well-formed batch, never a
/// panic. This is the only case a damaged object can return other data.
#[tokio::test]
async fn unverified_corrupted_objects_are_errors_not_panics() {
    let obj = encode(0, &records(300, 30), small_groups(100));
    for (what, b) in corruptions(&obj.parquet) {
        let (store, path) = stored(&Bytes::from(b)).await;
        if let Ok(read) = read_records(store, &path, None, None, 10, 50, 1 << 20).await {
            assert_eq!(
                read.records,
                batch::open(&read.batch).unwrap().records().len(),
                "{what}"
            );
        }
    }
}

#[tokio::test]
async fn foreign_or_missing_objects_are_errors() {
    // Valid Parquet, but not ours.
    let col = Arc::new(Int64Array::from(vec![1, 2, 3]));
    let rb = RecordBatch::try_from_iter([("offset", col as _)]).unwrap();
    let mut w = ArrowWriter::try_new(Vec::new(), rb.schema(), None).unwrap();
    w.write(&rb).unwrap();
    let (store, path) = stored(&Bytes::from(w.into_inner().unwrap())).await;
    let err = read_records(store, &path, None, None, 1, 1, 1)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TierError::Format { reason: SegmentFormatError::MissingColumn { name }, .. } if name == "timestamp"),
        "{err}"
    );
    assert!(
        err.to_string().contains("column \"timestamp\" is missing"),
        "{err}"
    );

    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let err = read_records(store, &Path::from("missing"), None, None, 0, 1, 1)
        .await
        .unwrap_err();
    assert!(matches!(err, TierError::ObjectStore { .. }), "{err}");
    assert!(!err.is_retryable(), "not found is permanent: {err}");
}
