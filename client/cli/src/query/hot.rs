//! The hot tail: records of a shard not yet in its manifest, read from the
//! core as committed records, as Arrow batches in the archive schema.

use anyhow::{Context, Result};
use datafusion::arrow::record_batch::RecordBatch;
use std::time::Duration;
use strata_archive::RowsBuilder;
use strata_client::api;
use strata_client::cluster::Cluster;

/// Records asked for per fetch.
const PAGE_RECORDS: u32 = 10_000;
/// Rows per Arrow batch.
const BATCH_ROWS: usize = 8192;

/// Reads offsets `[from, to)` of `shard`: exactly the records after the
/// archive's last object up to the end of the shard when the query started,
/// so the union with the archive has no gap and no duplicate at the seam.
pub async fn read_shard(
    cluster: &Cluster,
    stream: &str,
    shard: u32,
    from: u64,
    to: u64,
) -> Result<Vec<RecordBatch>> {
    let mut rows = RowsBuilder::new();
    let mut batches = Vec::new();
    let mut offset = from;
    while offset < to {
        let page = cluster
            .to_reader(stream, shard, |c| async move {
                api::fetch(&c, stream, shard, offset, PAGE_RECORDS, Duration::ZERO).await
            })
            .await
            .with_context(|| {
                format!("reading the hot tail of {stream}/{shard} at offset {offset}")
            })?;
        if page.records.is_empty() {
            anyhow::bail!(
                "{stream}/{shard}: the core returned no records at offset {offset}, below the end {to} it reported"
            );
        }
        for r in page.records.iter().take_while(|r| r.offset < to) {
            if r.offset != offset {
                anyhow::bail!(
                    "{stream}/{shard}: expected offset {offset} from the core, got {}",
                    r.offset
                );
            }
            let offset_i64 = i64::try_from(r.offset).context("offset beyond i64")?;
            let headers = r.headers.iter().map(|(k, v)| (k.as_str(), &v[..]));
            rows.push(
                offset_i64,
                r.timestamp_ms,
                r.key.as_deref(),
                &r.data,
                headers,
                r.data.len(),
            )?;
            offset += 1;
            if rows.rows() >= BATCH_ROWS {
                batches.push(rows.finish(shard, stream)?);
            }
        }
    }
    if rows.rows() > 0 {
        batches.push(rows.finish(shard, stream)?);
    }
    Ok(batches)
}
