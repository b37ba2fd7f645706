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

fn owned(g: &Group, m: &str) -> Vec<u32> {
    g.owners
        .iter()
        .filter(|(_, o)| *o == m)
        .map(|(s, _)| *s)
        .collect()
}

#[test]
fn members_share_shards_and_a_silent_member_loses_them() {
    let shards = [0, 1, 2, 3];
    let mut g = Group::default();
    let a = g.heartbeat(&shards, &hb("a", 0));
    assert_eq!(a.shards.len(), 4);
    assert_eq!(a.generation, 1);
    let b = g.heartbeat(&shards, &hb("b", 100));
    assert_eq!((b.generation, b.shards.len()), (2, 2));
    assert_eq!(owned(&g, "a").len(), 2);
    // Within the lease nothing changes.
    let a = g.heartbeat(&shards, &hb("a", 900));
    assert_eq!((a.generation, a.shards.len()), (2, 2));
    // b says nothing for longer than its session: a takes everything back.
    let a = g.heartbeat(&shards, &hb("a", 1_200));
    assert_eq!((a.generation, a.shards.len(), a.members), (3, 4, 1));
}

#[test]
fn only_the_owner_in_the_current_generation_moves_a_checkpoint() {
    let shards = [0, 1];
    let mut g = Group::default();
    g.heartbeat(&shards, &hb("a", 0));
    let b = g.heartbeat(&shards, &hb("b", 10));
    let b_shard = b.shards[0].0;
    let a_shard = 1 - b_shard;
    let cp = Checkpoint {
        offset: 42,
        timestamp_ms: 7,
    };
    // a commits with its old generation, and for a shard it lost: refused.
    let mut h = hb("a", 20);
    h.generation = 1;
    h.commits = vec![(a_shard, cp), (b_shard, cp)];
    assert_eq!(g.heartbeat(&shards, &h).refused_commits, 2);
    assert!(g.checkpoints.is_empty());
    h.generation = g.generation;
    let r = g.heartbeat(&shards, &h);
    assert_eq!(r.refused_commits, 1);
    assert_eq!(g.checkpoints.get(&a_shard), Some(&cp));
    assert_eq!(r.shards, vec![(a_shard, Some(cp))]);
    // Leaving hands the shard, with its checkpoint, to the other member.
    let mut l = hb("a", 30);
    l.leave = true;
    g.heartbeat(&shards, &l);
    let b = g.heartbeat(&shards, &hb("b", 40));
    assert!(b.shards.contains(&(a_shard, Some(cp))));
}

#[test]
fn names_are_checked() {
    assert!(validate_name("group", "billing-v2.eu:1").is_ok());
    assert!(validate_name("group", "").is_err());
    assert!(validate_name("member", "a b").unwrap_err().contains("' '"));
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
        let shards: Vec<u32> = (0..shard_count).collect();
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
            for o in g.owners.values() {
                prop_assert!(g.members.contains_key(o));
            }
            let loads: Vec<usize> = g.members.keys().map(|m| owned(&g, m).len()).collect();
            let (lo, hi) = (loads.iter().min().unwrap(), loads.iter().max().unwrap());
            prop_assert!(hi - lo <= 1, "loads {:?}", loads);
            if before.members.keys().eq(g.members.keys()) && !before.owners.is_empty() {
                prop_assert_eq!(&before.owners, &g.owners);
                prop_assert_eq!(before.generation, g.generation);
            }
        }
    }
}
