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

use crate::meta::{ShardMeta, StreamMeta};
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

/// The shards a reshard closes and the children it creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub close: Vec<u32>,
    pub children: Vec<NewShard>,
}

fn open_shard(s: &StreamMeta, id: u32) -> Result<&ShardMeta, String> {
    let sh = s
        .shards
        .iter()
        .find(|sh| sh.id == id)
        .ok_or_else(|| format!("stream {} has no shard {id}", s.name))?;
    if sh.closing {
        return Err(format!(
            "shard {id} of {} is {} (resharded before); pick an open shard (strata stream describe {})",
            s.name,
            sh.state(),
            s.name
        ));
    }
    Ok(sh)
}

/// Plans `op` on `s`; refused (with the reason) when it does not fit.
/// `shards_max` caps the open shards after the reshard.
pub fn plan(s: &StreamMeta, op: &ReshardOp, shards_max: u32) -> Result<Plan, String> {
    let closing: Vec<u32> = s
        .shards
        .iter()
        .filter(|sh| sh.closing && sh.end_offset.is_none())
        .map(|sh| sh.id)
        .collect();
    if !closing.is_empty() {
        return Err(format!(
            "stream {} is still closing shards {closing:?} from the last reshard; retry in a moment",
            s.name
        ));
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
            let r = sh.range()?;
            if r.start == r.end {
                return Err(format!("shard {shard} owns one hash key; it cannot split"));
            }
            let at = at.unwrap_or(r.start + (r.end - r.start) / 2 + 1);
            if at <= r.start || at > r.end {
                return Err(format!(
                    "--at {at} must be in ({}, {}]: the first hash key of the upper half of shard {shard}",
                    r.start, r.end
                ));
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
                return Err(format!("cannot merge shard {a} with itself"));
            }
            let (ra, rb) = (open_shard(s, *a)?.range()?, open_shard(s, *b)?.range()?);
            let (lo, hi, ids) = if ra.start < rb.start {
                (ra, rb, vec![*a, *b])
            } else {
                (rb, ra, vec![*b, *a])
            };
            if lo.end.checked_add(1) != Some(hi.start) {
                return Err(format!(
                    "shards {a} and {b} are not adjacent: their hash-key ranges must touch ({}..={} and {}..={})",
                    lo.start, lo.end, hi.start, hi.end
                ));
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
                return Err(format!(
                    "--shards {count} must be between 1 and {shards_max}"
                ));
            }
            let ranges: Vec<(u32, HashRange)> = open
                .iter()
                .map(|sh| Ok((sh.id, sh.range()?)))
                .collect::<Result<_, String>>()?;
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
        return Err(format!(
            "{} would have {open_after} open shards; the core allows {shards_max} (shards_max)",
            s.name
        ));
    }
    Ok(plan)
}

/// Checks a planned reshard against the catalog at apply time (the catalog
/// may have changed since the leader planned it): the closed shards are
/// open, the new ids are free, and the children cover exactly the closed
/// ranges.
pub fn check(s: &StreamMeta, close: &[u32], children: &[ShardMeta]) -> Result<(), String> {
    let mut closed = Vec::new();
    for id in close {
        closed.push(open_shard(s, *id)?.range()?);
    }
    let mut kids = Vec::new();
    for c in children {
        if s.shards.iter().any(|sh| sh.id == c.id) {
            return Err(format!("shard id {} is taken", c.id));
        }
        if c.parents.iter().any(|p| !close.contains(p)) || c.parents.is_empty() {
            return Err(format!("shard {} must have parents among {close:?}", c.id));
        }
        kids.push(c.range()?);
    }
    let covered = |mut rs: Vec<HashRange>| {
        rs.sort_by_key(|r| r.start);
        let contiguous = rs
            .windows(2)
            .all(|w| w[0].end.checked_add(1) == Some(w[1].start));
        contiguous.then(|| (rs[0].start, rs[rs.len() - 1].end))
    };
    if closed.is_empty() || kids.is_empty() || covered(closed) != covered(kids) {
        return Err("the children must cover exactly the closed shards' ranges".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::{Catalog, MetaCommand, MetaResponse};

    /// A catalog with stream "s" over `ranges`.
    fn catalog(ranges: &[HashRange]) -> Catalog {
        let mut c = Catalog::default();
        let s = StreamMeta {
            name: "s".into(),
            replication: 1,
            created_ms: 0,
            retention: Default::default(),
            restore_from: None,
            shards: ranges
                .iter()
                .enumerate()
                .map(|(i, r)| ShardMeta::new(i as u32, *r, vec![1], vec![]))
                .collect(),
        };
        c.apply(&MetaCommand::CreateStream(s));
        c
    }

    /// Commits `p` as the metadata leader would, then seals the parents.
    fn apply(c: &mut Catalog, p: &Plan) {
        let children = p
            .children
            .iter()
            .map(|k| ShardMeta::new(k.id, k.range, vec![1], k.parents.clone()))
            .collect();
        let stream = "s".to_string();
        let cmd = MetaCommand::Reshard {
            stream: stream.clone(),
            close: p.close.clone(),
            children,
        };
        assert_eq!(c.apply(&cmd), MetaResponse::Done);
        for &shard in &p.close {
            let sealed = MetaCommand::ShardSealed {
                stream: stream.clone(),
                shard,
                end_offset: 0,
            };
            assert_eq!(c.apply(&sealed), MetaResponse::Done);
        }
    }

    /// The open shards cover the key space exactly.
    fn assert_covers(s: &StreamMeta) {
        let mut open: Vec<HashRange> = s
            .shards
            .iter()
            .filter(|sh| !sh.closing)
            .map(|sh| sh.range().unwrap())
            .collect();
        open.sort_by_key(|r| r.start);
        assert_eq!(open[0].start, 0);
        assert_eq!(open.last().unwrap().end, u128::MAX);
        for w in open.windows(2) {
            assert_eq!(w[0].end + 1, w[1].start);
        }
    }

    /// A child as the plan should list it.
    fn kid(id: u32, start: u128, end: u128, parents: &[u32]) -> NewShard {
        NewShard {
            id,
            range: HashRange { start, end },
            parents: parents.to_vec(),
        }
    }

    // Boundaries written out (not computed with `even_ranges`) so that a
    // change in how ranges are cut fails here. even_ranges(2) cuts at
    // u128::MAX / 2 = 2^127 - 1; even_ranges(3) at multiples of
    // u128::MAX / 3 = 0x5555...55.
    const HALF: u128 = 0x7fff_ffff_ffff_ffff_ffff_ffff_ffff_ffff;
    const QUARTER: u128 = 0x4000_0000_0000_0000_0000_0000_0000_0000;
    const THIRD: u128 = 0x5555_5555_5555_5555_5555_5555_5555_5555;

    #[test]
    fn split_merge_and_scale_keep_the_key_space_covered_with_lineage() {
        let mut c = catalog(&hashkey::even_ranges(2));
        // Shards: 0 = [0, HALF-1], 1 = [HALF, MAX].
        let p = plan(
            &c.streams["s"],
            &ReshardOp::Split { shard: 0, at: None },
            64,
        )
        .unwrap();
        // The middle of [0, HALF-1] is (HALF-1)/2 + 1 = 2^126.
        let want = Plan {
            close: vec![0],
            children: vec![
                kid(2, 0, QUARTER - 1, &[0]),
                kid(3, QUARTER, HALF - 1, &[0]),
            ],
        };
        assert_eq!(p, want);
        apply(&mut c, &p);
        assert_covers(&c.streams["s"]);
        // Shard 0 is closed now.
        let err = plan(
            &c.streams["s"],
            &ReshardOp::Split { shard: 0, at: None },
            64,
        )
        .unwrap_err();
        assert!(err.contains("closed"), "{err}");
        // 2 and 1 are not adjacent (3 is between them).
        let err = plan(&c.streams["s"], &ReshardOp::Merge { shards: [2, 1] }, 64).unwrap_err();
        assert!(err.contains("not adjacent"), "{err}");
        // Merge lists the lower range first, whatever order was asked.
        let p = plan(&c.streams["s"], &ReshardOp::Merge { shards: [1, 3] }, 64).unwrap();
        let want = Plan {
            close: vec![3, 1],
            children: vec![kid(4, QUARTER, u128::MAX, &[3, 1])],
        };
        assert_eq!(p, want);
        apply(&mut c, &p);
        assert_covers(&c.streams["s"]);
        // Open now: 2 = [0, 2^126-1], 4 = [2^126, MAX]. Each child's parents
        // are the closed shards its range overlaps: THIRD-1 > 2^126, so the
        // first third overlaps both.
        let p = plan(&c.streams["s"], &ReshardOp::Scale { count: 3 }, 64).unwrap();
        let want = Plan {
            close: vec![2, 4],
            children: vec![
                kid(5, 0, THIRD - 1, &[2, 4]),
                kid(6, THIRD, 2 * THIRD - 1, &[4]),
                kid(7, 2 * THIRD, u128::MAX, &[4]),
            ],
        };
        assert_eq!(p, want);
        apply(&mut c, &p);
        assert_covers(&c.streams["s"]);
        let open: Vec<u32> = c.streams["s"]
            .shards
            .iter()
            .filter(|sh| !sh.closing)
            .map(|sh| sh.id)
            .collect();
        assert_eq!(open, vec![5, 6, 7]);
    }

    #[test]
    fn bad_reshards_are_refused_with_the_reason() {
        let s = catalog(&hashkey::even_ranges(2)).streams["s"].clone();
        let cases = [
            (ReshardOp::Split { shard: 9, at: None }, "no shard 9"),
            (
                ReshardOp::Split {
                    shard: 0,
                    at: Some(0),
                },
                "must be in",
            ),
            (
                ReshardOp::Split {
                    shard: 0,
                    at: Some(u128::MAX),
                },
                "must be in",
            ),
            (ReshardOp::Merge { shards: [1, 1] }, "itself"),
            (ReshardOp::Scale { count: 0 }, "between 1 and"),
            (ReshardOp::Scale { count: 65 }, "between 1 and"),
        ];
        for (op, want) in cases {
            let err = plan(&s, &op, 64).unwrap_err();
            assert!(err.contains(want), "{op:?}: {err}");
        }
        let err = plan(&s, &ReshardOp::Split { shard: 0, at: None }, 2).unwrap_err();
        assert!(err.contains("shards_max"), "{err}");
        // While a shard is still closing, the next reshard waits.
        let mut busy = s.clone();
        busy.shards[0].closing = true;
        let err = plan(&busy, &ReshardOp::Scale { count: 4 }, 64).unwrap_err();
        assert!(err.contains("still closing"), "{err}");
        // A split at an explicit key: the last key of the space is the
        // highest allowed `at`; the upper child owns that one key.
        let p = plan(
            &s,
            &ReshardOp::Split {
                shard: 1,
                at: Some(u128::MAX),
            },
            64,
        )
        .unwrap();
        let want = Plan {
            close: vec![1],
            children: vec![
                kid(2, HALF, u128::MAX - 1, &[1]),
                kid(3, u128::MAX, u128::MAX, &[1]),
            ],
        };
        assert_eq!(p, want);
        // The lowest allowed `at` is one above the shard's first key.
        let p = plan(
            &s,
            &ReshardOp::Split {
                shard: 0,
                at: Some(1),
            },
            64,
        )
        .unwrap();
        let want = Plan {
            close: vec![0],
            children: vec![kid(2, 0, 0, &[0]), kid(3, 1, HALF - 1, &[0])],
        };
        assert_eq!(p, want);
    }
}
