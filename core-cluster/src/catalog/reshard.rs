//! Resharding (pure logic): which shards `stream split | merge | scale`
//! closes and which children it creates, with their hash-key ranges and
//! parents (lineage).
//!
//! The open shards of a stream always cover the whole hash-key space without
//! overlap; a reshard keeps that: the children cover exactly the ranges of
//! the shards it closes. Closed shards stay (their records are readable and
//! tier like any other) and keep their ranges, so a reader can follow a key
//! from a parent to its child. Child ids continue after the stream's highest
//! id, so a child's id is always above its parents' ids.
//!
//! How a closing shard ends: its leader appends a seal to the shard's own
//! Raft log; appends ordered after the seal are refused, so the final
//! offset is fixed inside the log with no race against in-flight writes.
//! A writer that is refused (`SHARD_CLOSED`) learns where its own records in
//! the parent end and sends the rest to the children (see the edge agent's
//! `route` module). One reshard at a time per stream: a new one is refused
//! while shards are still closing (the seal takes one Raft round trip).

use super::model::{ShardMeta, StreamMeta};
use strata_schema::hashkey::{self, HashRange};

/// What the operator asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReshardOp {
    /// Split one shard in two at `at`, the first hash key of the upper child
    /// (None: the middle of its range).
    Split { shard: u32, at: Option<u128> },
    /// Merge two shards with adjacent ranges into one.
    Merge { shards: [u32; 2] },
    /// Close every open shard and create `count` with uniform ranges.
    Scale { count: u32 },
}

/// A shard to create: its range and parents (replicas are placed later).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewShard {
    pub id: u32,
    pub range: HashRange,
    pub parents: Vec<u32>,
}

/// Why a reshard is refused; each names what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReshardError {
    #[error("stream {stream} has no shard {shard}")]
    NoShard { stream: String, shard: u32 },
    #[error("shard {shard} of {stream} is {state} (resharded before); pick an open shard (strata stream describe {stream})")]
    NotOpen {
        stream: String,
        shard: u32,
        state: &'static str,
    },
    #[error("stream {stream} is still closing shards {closing:?} from the last reshard; retry in a moment")]
    StillClosing { stream: String, closing: Vec<u32> },
    #[error("shard {0} owns one hash key; it cannot split")]
    OneKey(u32),
    #[error("--at {at} must be in ({start}, {end}]: the first hash key of the upper half of shard {shard}")]
    SplitOutside {
        at: u128,
        start: u128,
        end: u128,
        shard: u32,
    },
    #[error("cannot merge shard {0} with itself")]
    MergeSelf(u32),
    #[error("shards {a} and {b} are not adjacent: their hash-key ranges must touch ({}..={} and {}..={})", lo.start, lo.end, hi.start, hi.end)]
    NotAdjacent {
        a: u32,
        b: u32,
        lo: HashRange,
        hi: HashRange,
    },
    #[error("--shards {count} must be between 1 and {max}")]
    ScaleCount { count: u32, max: u32 },
    #[error("{stream} would have {open} open shards; the core allows {max} (shards_max)")]
    TooMany {
        stream: String,
        open: usize,
        max: u32,
    },
    #[error("shard id {0} is taken")]
    IdTaken(u32),
    #[error("shard {shard} must have parents among {close:?}")]
    Parents { shard: u32, close: Vec<u32> },
    #[error("the children must cover exactly the closed shards' ranges")]
    Coverage,
    #[error("a stored hash-key range: {0}")]
    BadRange(strata_schema::hashkey::HashKeyError),
}

/// The shards a reshard closes and the children it creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub close: Vec<u32>,
    pub children: Vec<NewShard>,
}

fn open_shard(s: &StreamMeta, id: u32) -> Result<&ShardMeta, ReshardError> {
    let sh = s
        .shards
        .iter()
        .find(|sh| sh.id == id)
        .ok_or_else(|| ReshardError::NoShard {
            stream: s.name.clone(),
            shard: id,
        })?;
    if sh.closing {
        return Err(ReshardError::NotOpen {
            stream: s.name.clone(),
            shard: id,
            state: sh.state(),
        });
    }
    Ok(sh)
}

/// Plans `op` on `s`; refused (with the reason) when it does not fit.
/// `shards_max` caps the open shards after the reshard.
pub fn plan(s: &StreamMeta, op: &ReshardOp, shards_max: u32) -> Result<Plan, ReshardError> {
    let closing: Vec<u32> = s
        .shards
        .iter()
        .filter(|sh| sh.closing && sh.end_offset.is_none())
        .map(|sh| sh.id)
        .collect();
    if !closing.is_empty() {
        return Err(ReshardError::StillClosing {
            stream: s.name.clone(),
            closing,
        });
    }
    let mut next_id = s.shards.iter().map(|sh| sh.id + 1).max().unwrap_or(0);
    let mut child = |range: HashRange, parents: Vec<u32>| {
        let c = NewShard {
            id: next_id,
            range,
            parents,
        };
        next_id += 1;
        c
    };
    let open: Vec<&ShardMeta> = s.shards.iter().filter(|sh| !sh.closing).collect();
    let plan = match op {
        ReshardOp::Split { shard, at } => {
            let sh = open_shard(s, *shard)?;
            let r = sh.range().map_err(ReshardError::BadRange)?;
            if r.start == r.end {
                return Err(ReshardError::OneKey(*shard));
            }
            let at = at.unwrap_or(r.start + (r.end - r.start) / 2 + 1);
            if at <= r.start || at > r.end {
                return Err(ReshardError::SplitOutside {
                    at,
                    start: r.start,
                    end: r.end,
                    shard: *shard,
                });
            }
            Plan {
                close: vec![*shard],
                children: vec![
                    child(
                        HashRange {
                            start: r.start,
                            end: at - 1,
                        },
                        vec![*shard],
                    ),
                    child(
                        HashRange {
                            start: at,
                            end: r.end,
                        },
                        vec![*shard],
                    ),
                ],
            }
        }
        ReshardOp::Merge { shards: [a, b] } => {
            if a == b {
                return Err(ReshardError::MergeSelf(*a));
            }
            let range =
                |id| open_shard(s, id).and_then(|sh| sh.range().map_err(ReshardError::BadRange));
            let (ra, rb) = (range(*a)?, range(*b)?);
            let (lo, hi, ids) = if ra.start < rb.start {
                (ra, rb, vec![*a, *b])
            } else {
                (rb, ra, vec![*b, *a])
            };
            if lo.end.checked_add(1) != Some(hi.start) {
                return Err(ReshardError::NotAdjacent {
                    a: *a,
                    b: *b,
                    lo,
                    hi,
                });
            }
            Plan {
                close: ids.clone(),
                children: vec![child(
                    HashRange {
                        start: lo.start,
                        end: hi.end,
                    },
                    ids,
                )],
            }
        }
        ReshardOp::Scale { count } => {
            if *count == 0 || *count > shards_max {
                return Err(ReshardError::ScaleCount {
                    count: *count,
                    max: shards_max,
                });
            }
            let ranges: Vec<(u32, HashRange)> = open
                .iter()
                .map(|sh| Ok((sh.id, sh.range().map_err(ReshardError::BadRange)?)))
                .collect::<Result<_, ReshardError>>()?;
            let children = hashkey::even_ranges(*count)
                .into_iter()
                .map(|r| {
                    let parents = ranges
                        .iter()
                        .filter(|(_, p)| p.start <= r.end && r.start <= p.end)
                        .map(|(id, _)| *id)
                        .collect();
                    child(r, parents)
                })
                .collect();
            Plan {
                close: ranges.iter().map(|(id, _)| *id).collect(),
                children,
            }
        }
    };
    let open_after = open.len() - plan.close.len() + plan.children.len();
    if open_after > shards_max as usize {
        return Err(ReshardError::TooMany {
            stream: s.name.clone(),
            open: open_after,
            max: shards_max,
        });
    }
    Ok(plan)
}

/// Checks a planned reshard against the catalog at apply time (the catalog
/// may have changed since the leader planned it): the closed shards are
/// open, the new ids are free, and the children cover exactly the closed
/// ranges.
pub fn check(s: &StreamMeta, close: &[u32], children: &[ShardMeta]) -> Result<(), ReshardError> {
    let mut closed = Vec::new();
    for id in close {
        closed.push(
            open_shard(s, *id)?
                .range()
                .map_err(ReshardError::BadRange)?,
        );
    }
    let mut kids = Vec::new();
    for c in children {
        if s.shards.iter().any(|sh| sh.id == c.id) {
            return Err(ReshardError::IdTaken(c.id));
        }
        if c.parents.iter().any(|p| !close.contains(p)) || c.parents.is_empty() {
            return Err(ReshardError::Parents {
                shard: c.id,
                close: close.to_vec(),
            });
        }
        kids.push(c.range().map_err(ReshardError::BadRange)?);
    }
    let covered = |mut rs: Vec<HashRange>| {
        rs.sort_by_key(|r| r.start);
        let contiguous = rs
            .windows(2)
            .all(|w| w[0].end.checked_add(1) == Some(w[1].start));
        contiguous.then(|| (rs[0].start, rs[rs.len() - 1].end))
    };
    if closed.is_empty() || kids.is_empty() || covered(closed) != covered(kids) {
        return Err(ReshardError::Coverage);
    }
    Ok(())
}

#[cfg(test)]
#[path = "reshard_tests.rs"]
mod tests;
