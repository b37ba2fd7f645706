//! Tests of the reshard plans, committed through the catalog's own apply.
use super::*;
use crate::catalog::{Catalog, MetaCommand, MetaResponse};

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
    assert!(err.to_string().contains("closed"), "{err}");
    // 2 and 1 are not adjacent (3 is between them).
    let err = plan(&c.streams["s"], &ReshardOp::Merge { shards: [2, 1] }, 64).unwrap_err();
    assert!(err.to_string().contains("not adjacent"), "{err}");
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
        assert!(err.to_string().contains(want), "{op:?}: {err}");
    }
    let err = plan(&s, &ReshardOp::Split { shard: 0, at: None }, 2).unwrap_err();
    assert!(err.to_string().contains("shards_max"), "{err}");
    // While a shard is still closing, the next reshard waits.
    let mut busy = s.clone();
    busy.shards[0].closing = true;
    let err = plan(&busy, &ReshardOp::Scale { count: 4 }, 64).unwrap_err();
    assert!(err.to_string().contains("still closing"), "{err}");
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
