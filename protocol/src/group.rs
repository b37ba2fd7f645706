//! Consumer groups as clients see them: checkpoints, owners, lag, a
//! member's assignment, and the `GroupDescription` table.

use serde::{Deserialize, Serialize};
use strata_schema::fb;

/// Where a group stands in one shard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The next offset to read.
    pub offset: u64,
    /// Timestamp of the last record before `offset` (0 if unknown).
    pub timestamp_ms: i64,
}

/// One shard of a group as `describe` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupShardInfo {
    pub shard: u32,
    /// The member reading it ("" when none).
    pub owner: String,
    pub checkpoint: Option<Checkpoint>,
}

/// A consumer group of a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupInfo {
    pub name: String,
    pub generation: u64,
    pub members: Vec<String>,
    pub shards: Vec<GroupShardInfo>,
}

/// How far a group is behind in one shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ShardLag {
    pub shard: u32,
    /// Records between the checkpoint and the shard's end.
    pub records: u64,
    /// Newest record's timestamp minus the checkpoint's (0 when caught up).
    pub ms: i64,
}

impl GroupInfo {
    pub fn from_fb(g: &fb::GroupDescription<'_>) -> Self {
        Self {
            name: g.name().to_string(),
            generation: g.generation(),
            members: g
                .members()
                .map(|ms| ms.iter().map(str::to_string).collect())
                .unwrap_or_default(),
            shards: g
                .shards()
                .map(|ss| {
                    ss.iter()
                        .map(|s| GroupShardInfo {
                            shard: s.shard(),
                            owner: s.owner().unwrap_or("").to_string(),
                            checkpoint: s.has_checkpoint().then(|| Checkpoint {
                                offset: s.offset(),
                                timestamp_ms: s.timestamp_ms(),
                            }),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// How far `cp` is behind a shard holding offsets `[first, next)` whose
/// newest record is stamped `newest_ms`: (records, ms). Without a
/// checkpoint the lag counts from `first`; ms is 0 when caught up or when
/// the checkpoint has no timestamp.
pub fn shard_lag(first: u64, next: u64, newest_ms: i64, cp: Option<Checkpoint>) -> (u64, i64) {
    let from = cp.map_or(first, |c| c.offset.max(first));
    let records = next.saturating_sub(from);
    let ms = match cp {
        // Both timestamps may come from a server (or a producer's clock):
        // saturate rather than overflow.
        Some(c) if records > 0 && c.timestamp_ms > 0 => {
            newest_ms.saturating_sub(c.timestamp_ms).max(0)
        }
        _ => 0,
    };
    (records, ms)
}

/// Writes a `GroupDescription` table.
pub fn build_group_description<'a>(
    fbb: &mut flatbuffers::FlatBufferBuilder<'a>,
    g: &GroupInfo,
) -> flatbuffers::WIPOffset<fb::GroupDescription<'a>> {
    let shards: Vec<_> = g
        .shards
        .iter()
        .map(|s| {
            let owner = Some(fbb.create_string(&s.owner));
            let cp = s.checkpoint.unwrap_or_default();
            fb::GroupShard::create(
                fbb,
                &fb::GroupShardArgs {
                    shard: s.shard,
                    owner,
                    has_checkpoint: s.checkpoint.is_some(),
                    offset: cp.offset,
                    timestamp_ms: cp.timestamp_ms,
                },
            )
        })
        .collect();
    let shards = Some(fbb.create_vector(&shards));
    let members: Vec<_> = g.members.iter().map(|m| fbb.create_string(m)).collect();
    let members = Some(fbb.create_vector(&members));
    let name = Some(fbb.create_string(&g.name));
    fb::GroupDescription::create(
        fbb,
        &fb::GroupDescriptionArgs {
            name,
            generation: g.generation,
            members,
            shards,
        },
    )
}

/// A member's shards after a heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub generation: u64,
    /// The member's shards, with the group's checkpoint where there is one.
    pub shards: Vec<(u32, Option<Checkpoint>)>,
    pub members: u32,
    /// Commits refused: shards the member did not own in that generation.
    pub refused_commits: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found reading the SDK paths the wire_request fuzz target covers: a
    /// newest timestamp far below a checkpoint's made the lag overflow.
    #[test]
    fn shard_lag_saturates() {
        let cp = |offset, timestamp_ms| {
            Some(Checkpoint {
                offset,
                timestamp_ms,
            })
        };
        assert_eq!(shard_lag(0, 10, 50, cp(4, 20)), (6, 30));
        assert_eq!(shard_lag(0, 10, i64::MIN, cp(4, 1)), (6, 0));
        assert_eq!(shard_lag(0, 10, i64::MAX, cp(4, 1)), (6, i64::MAX - 1));
        assert_eq!(shard_lag(8, 3, 50, cp(4, 20)), (0, 0));
        assert_eq!(shard_lag(0, 10, 50, None), (10, 0));
    }
}
