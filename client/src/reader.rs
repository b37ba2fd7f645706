//! Reading a whole stream (every shard) from one starting point.
//!
//! [`StreamReader`] resolves the start (oldest, latest, a timestamp) in each
//! shard, then returns pages of records shard by shard as they are there;
//! each shard is read in offset order, so records with the same key come in
//! order. Across a split or merge too: a closed shard is read to its end
//! before its children ([`crate::lineage`]). Reads go to a replica in the
//! reader's zone when the cluster client has one (see [`Cluster::with_zone`]).

use crate::api::{self, ConsumedRecord, Start};
use crate::cluster::Cluster;
use crate::lineage::Lineage;
use crate::transport::ClientError;
use std::time::Duration;

/// Reads every shard of a stream (see the module docs).
pub struct StreamReader<'a> {
    cluster: &'a Cluster,
    stream: String,
    /// (shard, next offset) in shard order.
    positions: Vec<(u32, u64)>,
    /// Where the next page is read from (round robin over the shards).
    turn: usize,
    max_records: u32,
    /// The whole stream: which shards come next (None: one shard).
    lineage: Option<Lineage>,
}

impl<'a> StreamReader<'a> {
    /// Positions a reader at `start` in every shard. `Start::Offset` needs a
    /// single shard: offsets are per shard.
    pub async fn open(
        cluster: &'a Cluster,
        stream: &str,
        start: Start,
    ) -> Result<StreamReader<'a>, ClientError> {
        let info = cluster.describe(stream).await?;
        let shards: Vec<u32> = info.shards.iter().map(|s| s.id).collect();
        if matches!(start, Start::Offset(_)) && shards.len() > 1 {
            return Err(ClientError::Remote(strata_schema::wire::RemoteError::new(
                strata_schema::fb::ErrorCode::InvalidArgument,
                format!(
                    "Start::Offset needs one shard: {stream} has {} (use StreamReader::open_shard)",
                    shards.len()
                ),
            )));
        }
        let mut reader = Self {
            cluster,
            stream: stream.into(),
            positions: Vec::new(),
            turn: 0,
            max_records: 5000,
            lineage: Some(Lineage::new(&info, start)),
        };
        reader.start_ready().await?;
        Ok(reader)
    }

    /// Seeks the shards that became readable.
    async fn start_ready(&mut self) -> Result<(), ClientError> {
        let Some(lineage) = self.lineage.as_mut() else {
            return Ok(());
        };
        let stream = self.stream.as_str();
        for (shard, start) in lineage.ready() {
            let offset = self
                .cluster
                .to_reader(stream, shard, |c| async move {
                    api::seek(&c, stream, shard, start).await
                })
                .await?;
            self.positions.push((shard, offset));
        }
        Ok(())
    }

    /// `shard` ended (closed and read to its end): its children come next.
    async fn finished(&mut self, idx: usize) -> Result<(), ClientError> {
        let (shard, _) = self.positions.remove(idx);
        if let Some(lineage) = self.lineage.as_mut() {
            lineage.finished(shard);
            let info = self.cluster.describe(&self.stream).await?;
            if let Some(lineage) = self.lineage.as_mut() {
                lineage.update(&info);
            }
            self.start_ready().await?;
        }
        Ok(())
    }

    /// A reader of one shard from `start`.
    pub async fn open_shard(
        cluster: &'a Cluster,
        stream: &str,
        shard: u32,
        start: Start,
    ) -> Result<StreamReader<'a>, ClientError> {
        let offset = cluster
            .to_reader(stream, shard, |c| async move {
                api::seek(&c, stream, shard, start).await
            })
            .await?;
        Ok(Self {
            cluster,
            stream: stream.into(),
            positions: vec![(shard, offset)],
            turn: 0,
            max_records: 5000,
            lineage: None,
        })
    }

    /// Where the reader is: (shard, next offset) per shard.
    pub fn positions(&self) -> &[(u32, u64)] {
        &self.positions
    }

    /// The next records of one shard, or an empty page when no shard has
    /// new records within `wait` (each shard is asked in turn). A reader of
    /// one shard that was closed returns empty pages once past its end.
    pub async fn next(&mut self, wait: Duration) -> Result<Vec<ConsumedRecord>, ClientError> {
        'round: loop {
            let n = self.positions.len();
            if n == 0 {
                tokio::time::sleep(wait).await;
                return Ok(Vec::new());
            }
            for i in 0..n {
                let idx = (self.turn + i) % n;
                let (shard, offset) = self.positions[idx];
                // Only the last shard asked in a round waits for new records.
                let w = if i + 1 == n { wait } else { Duration::ZERO };
                let stream = self.stream.as_str();
                let max = self.max_records;
                let page = self
                    .cluster
                    .to_reader(stream, shard, |c| async move {
                        api::fetch(&c, stream, shard, offset, max, w).await
                    })
                    .await?;
                self.positions[idx].1 = page.next_offset;
                if page.end_of_shard && self.lineage.is_some() {
                    // Its children take its place; ask again if it had nothing.
                    self.finished(idx).await?;
                    self.turn = 0;
                    if page.records.is_empty() {
                        continue 'round;
                    }
                    return Ok(page.records);
                }
                if !page.records.is_empty() {
                    self.turn = (idx + 1) % n;
                    return Ok(page.records);
                }
            }
            return Ok(Vec::new());
        }
    }
}
