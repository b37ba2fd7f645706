//! Reading a whole stream (every shard) from one starting point.
//!
//! [`StreamReader`] resolves the start (oldest, latest, a timestamp) in each
//! shard, then returns pages of records shard by shard as they are there;
//! each shard is read in offset order, so records with the same key come in
//! order. Reads go to a replica in the reader's zone when the cluster client
//! has one (see [`Cluster::with_zone`]).

use crate::api::{self, ConsumedRecord, Start};
use crate::cluster::Cluster;
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
        let mut positions = Vec::new();
        for shard in shards {
            let offset = cluster
                .to_reader(stream, shard, |c| async move {
                    api::seek(&c, stream, shard, start).await
                })
                .await?;
            positions.push((shard, offset));
        }
        Ok(Self {
            cluster,
            stream: stream.into(),
            positions,
            turn: 0,
            max_records: 5000,
        })
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
        })
    }

    /// Where the reader is: (shard, next offset) per shard.
    pub fn positions(&self) -> &[(u32, u64)] {
        &self.positions
    }

    /// The next records of one shard, or an empty page when no shard has
    /// new records within `wait` (each shard is asked in turn).
    pub async fn next(&mut self, wait: Duration) -> Result<Vec<ConsumedRecord>, ClientError> {
        let n = self.positions.len();
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
            if !page.records.is_empty() {
                self.turn = (idx + 1) % n;
                return Ok(page.records);
            }
        }
        Ok(Vec::new())
    }
}
