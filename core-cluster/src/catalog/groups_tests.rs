use super::*;
use proptest::prelude::*;

fn hb(member: &str, now_ms: i64) -> Heartbeat {
    Heartbeat {
        member: member.into(),
        now_ms,
        session_ms: 1_000,
        generation: 0,
        commits: Vec::new(),
        leave: false,
    }
}

fn lin(id: u32, parents: &[u32], end_offset: Option<u64>) -> ShardLineage {
    ShardLineage {
        id,
        parents: parents.to_vec(),
        end_offset,
    }
}

/// A commit of `offset` (the next to read) in `shard`.
fn commit(shard: u32, offset: u64, timestamp_ms: i64) -> (u32, Checkpoint) {
    (
        shard,
        Checkpoint {
            offset,
            timestamp_ms,
        },
    )
}

/// Shards without lineage.
fn flat(ids: &[u32]) -> Vec<ShardLineage> {
    ids.iter().map(|&id| lin(id, &[], None)).collect()
}

fn owned(g: &Group, m: &str) -> Vec<u32> {
    g.owners
        .iter()
        .filter(|(_, o)| *o == m)
        .map(|(s, _)| *s)
        .collect()
}

#[test]
fn members_share_shards_and_a_silent_member_loses_them() {
    let shards = flat(&[0, 1, 2, 3]);
    let mut g = Group::default();
    let a = g.heartbeat(&shards, &hb("a", 0));
    assert_eq!(a.shards.len(), 4);
    assert_eq!(a.generation, 1);
    // b joins: two shards are revoked from a, which keeps them until its
    // next heartbeat commits them; only then does b get them.
    let b = g.heartbeat(&shards, &hb("b", 100));
    assert_eq!((b.generation, b.shards.len()), (2, 0));
    assert_eq!(g.revoking.len(), 2);
    let a = g.heartbeat(&shards, &hb("a", 200));
    assert_eq!((a.generation, a.shards.len()), (2, 2));
    let b = g.heartbeat(&shards, &hb("b", 300));
    assert_eq!(b.shards.len(), 2);
    assert!(g.revoking.is_empty());
    // Within the lease nothing changes.
    let a = g.heartbeat(&shards, &hb("a", 900));
    assert_eq!((a.generation, a.shards.len()), (2, 2));
    // b says nothing for longer than its session: a takes everything back.
    let a = g.heartbeat(&shards, &hb("a", 1_400));
    assert_eq!((a.generation, a.shards.len(), a.members), (3, 4, 1));
}

#[test]
fn only_the_owner_in_the_current_generation_moves_a_checkpoint() {
    let shards = flat(&[0, 1]);
    let mut g = Group::default();
    g.heartbeat(&shards, &hb("a", 0));
    g.heartbeat(&shards, &hb("b", 10));
    let b_shard = *g.revoking.keys().next().expect("one shard moves to b");
    let a_shard = 1 - b_shard;
    let cp = Checkpoint {
        offset: 42,
        timestamp_ms: 7,
    };
    // a still owns both until this heartbeat, which commits and hands b's over.
    let mut h = hb("a", 20);
    h.generation = 1;
    h.commits = vec![(b_shard, cp)];
    let r = g.heartbeat(&shards, &h);
    assert_eq!(r.refused_commits, 0);
    assert_eq!(r.shards, vec![(a_shard, None)]);
    assert_eq!(g.owners.get(&b_shard).map(String::as_str), Some("b"));
    // b resumes from a's checkpoint.
    let mut hb_b = hb("b", 30);
    let b = g.heartbeat(&shards, &hb_b);
    assert_eq!(b.shards, vec![(b_shard, Some(cp))]);
    // a can no longer move b's shard; b can, once it has seen its assignment.
    h.commits = vec![(b_shard, Checkpoint::default()), (a_shard, cp)];
    assert_eq!(g.heartbeat(&shards, &h).refused_commits, 1);
    assert_eq!(g.checkpoints.get(&b_shard), Some(&cp));
    assert_eq!(g.checkpoints.get(&a_shard), Some(&cp));
    let later = Checkpoint {
        offset: 50,
        timestamp_ms: 9,
    };
    hb_b.commits = vec![(b_shard, later)];
    hb_b.generation = 1;
    assert_eq!(g.heartbeat(&shards, &hb_b).refused_commits, 1);
    hb_b.generation = b.generation;
    assert_eq!(g.heartbeat(&shards, &hb_b).refused_commits, 0);
    assert_eq!(g.checkpoints.get(&b_shard), Some(&later));
    // Leaving hands the shard, with its checkpoint, to the other member.
    let mut l = hb("a", 40);
    l.leave = true;
    g.heartbeat(&shards, &l);
    let b = g.heartbeat(&shards, &hb("b", 50));
    assert!(b.shards.contains(&(a_shard, Some(cp))));
}

#[test]
fn names_are_checked() {
    assert!(validate_name("group", "billing-v2.eu_1").is_ok());
    assert!(validate_name("group", "").is_err());
    assert!(validate_name("group", "..").is_err());
    assert!(validate_name("group", "a:b").is_err());
    assert!(validate_name("member", "a b")
        .unwrap_err()
        .to_string()
        .contains("' '"));
}

proptest! {
    /// Whatever joins and leaves, every shard has exactly one live owner, the
    /// load differs by at most one, and a heartbeat that changes no member
    /// moves no shard.
    #[test]
    fn assignment_stays_balanced_and_sticky(
        shard_count in 1u32..20,
        steps in proptest::collection::vec((0usize..6, any::<bool>()), 1..40),
    ) {
        let shards = flat(&(0..shard_count).collect::<Vec<u32>>());
        let mut g = Group::default();
        for (i, (m, leave)) in steps.into_iter().enumerate() {
            let mut h = hb(&format!("m{m}"), i as i64);
            h.session_ms = 1_000_000;
            h.leave = leave;
            let before = g.clone();
            g.heartbeat(&shards, &h);
            if g.members.is_empty() {
                prop_assert!(g.owners.is_empty());
                continue;
            }
            prop_assert_eq!(g.owners.len(), shards.len());
            for o in g.owners.values().chain(g.revoking.values()) {
                prop_assert!(g.members.contains_key(o));
            }
            // Once every revoked shard is handed over, the load is balanced.
            let mut target = g.clone();
            target.owners.extend(target.revoking.clone());
            let loads: Vec<usize> = g.members.keys().map(|m| owned(&target, m).len()).collect();
            let (lo, hi) = (loads.iter().min().unwrap(), loads.iter().max().unwrap());
            prop_assert!(hi - lo <= 1, "loads {:?}", loads);
            if before.members.keys().eq(g.members.keys()) && !before.owners.is_empty() {
                prop_assert_eq!(before.generation, g.generation);
                // At most the member's own revoked shards moved.
                for (s, o) in &g.owners {
                    if before.owners.get(s) != Some(o) {
                        prop_assert_eq!(before.owners.get(s), Some(&h.member));
                        prop_assert_eq!(before.revoking.get(s), Some(o));
                    }
                }
            }
        }
    }
}

#[test]
fn children_are_read_only_after_their_parents_are_finished() {
    // Shard 0 split into 2 and 3; shards 1 and 2 then merged into 4.
    let mut lineage = vec![
        lin(0, &[], Some(10)),
        lin(1, &[], None),
        lin(2, &[0], None),
        lin(3, &[0], None),
    ];
    let mut g = Group::default();
    let a = g.heartbeat(&lineage, &hb("a", 0));
    assert_eq!(a.shards, vec![(0, None), (1, None)]);
    // Not yet at the end of 0: still no children.
    let mut h = hb("a", 10);
    h.generation = a.generation;
    h.commits = vec![commit(0, 9, 1)];
    let a = g.heartbeat(&lineage, &h);
    assert_eq!(a.shards.len(), 2);
    // At its end: 0 is done, its children come from their first record.
    h.commits = vec![commit(0, 10, 1)];
    let a = g.heartbeat(&lineage, &h);
    assert_eq!(
        a.shards,
        vec![
            (1, None),
            (2, Some(Checkpoint::default())),
            (3, Some(Checkpoint::default()))
        ]
    );
    // Merge 1 and 2 into 4: 4 waits for both.
    lineage[1].end_offset = Some(5);
    lineage[2].end_offset = Some(0);
    lineage.push(lin(4, &[1, 2], None));
    h.generation = a.generation;
    h.commits = vec![];
    let a = g.heartbeat(&lineage, &h);
    // 2 was empty when sealed: finished without a checkpoint.
    assert_eq!(a.shards.iter().map(|s| s.0).collect::<Vec<_>>(), vec![1, 3]);
    h.generation = a.generation;
    h.commits = vec![commit(1, 5, 2)];
    let a = g.heartbeat(&lineage, &h);
    assert_eq!(a.shards.iter().map(|s| s.0).collect::<Vec<_>>(), vec![3, 4]);
    // Checkpoints of finished shards stay (they prove the lineage is read).
    assert_eq!(g.checkpoints[&0].offset, 10);
    assert_eq!(g.readable(&lineage), vec![3, 4]);
}
