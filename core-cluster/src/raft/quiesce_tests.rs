use super::*;

const IDLE: Option<Duration> = Some(Duration::from_secs(2));

/// No node down.
fn up() -> BTreeSet<NodeId> {
    BTreeSet::new()
}

fn asked_all(req: QuiesceRequest) -> Step {
    Step::Quiesce {
        req,
        asked: [2, 3].into(),
        absent: BTreeSet::new(),
    }
}

/// Node 1 leads a group on 1, 2, 3 with the log at 10, all caught up.
fn leader_view() -> GroupView {
    GroupView {
        me: 1,
        leader: Some(1),
        term: 4,
        last_log_index: Some(10),
        applied_index: Some(10),
        followers: [2, 3].into(),
        changing: false,
        matched: [(2, Some(10)), (3, Some(10))].into(),
    }
}

fn follower_view(me: NodeId) -> GroupView {
    GroupView {
        me,
        followers: [1, 2, 3].into_iter().filter(|n| *n != me).collect(),
        matched: BTreeMap::new(),
        ..leader_view()
    }
}

#[test]
fn an_idle_caught_up_leader_quiesces_after_the_idle_time() {
    let t0 = Instant::now();
    let mut q = Quiet::default();
    let v = leader_view();
    assert_eq!(check(&mut q, &v, t0, IDLE, &up()), Step::Nothing);
    assert_eq!(
        check(&mut q, &v, t0 + Duration::from_millis(1999), IDLE, &up()),
        Step::Nothing
    );
    let want = QuiesceRequest {
        leader: 1,
        term: 4,
        last_log_index: 10,
        committed_index: 10,
    };
    assert_eq!(
        check(&mut q, &v, t0 + Duration::from_secs(2), IDLE, &up()),
        asked_all(want)
    );
    // Quiescing is off.
    let mut q = Quiet::default();
    check(&mut q, &v, t0, None, &up());
    assert_eq!(
        check(&mut q, &v, t0 + Duration::from_secs(60), None, &up()),
        Step::Nothing
    );
}

#[test]
fn a_growing_log_lagging_follower_or_a_move_keeps_the_leader_awake() {
    let t0 = Instant::now();
    let later = t0 + Duration::from_secs(3);
    // The log grew a second ago: idle time restarts.
    let mut q = Quiet::default();
    check(&mut q, &leader_view(), t0, IDLE, &up());
    let grown = GroupView {
        last_log_index: Some(11),
        applied_index: Some(11),
        matched: [(2, Some(11)), (3, Some(11))].into(),
        ..leader_view()
    };
    assert_eq!(check(&mut q, &grown, later, IDLE, &up()), Step::Nothing);
    assert!(matches!(
        check(&mut q, &grown, later + Duration::from_secs(2), IDLE, &up()),
        Step::Quiesce { .. }
    ));
    for v in [
        GroupView {
            matched: [(2, Some(10)), (3, Some(9))].into(),
            ..leader_view()
        },
        GroupView {
            matched: [(2, Some(10))].into(),
            ..leader_view()
        },
        GroupView {
            applied_index: Some(9),
            ..leader_view()
        },
        GroupView {
            changing: true,
            ..leader_view()
        },
        follower_view(2),
        GroupView {
            leader: None,
            ..leader_view()
        },
    ] {
        let mut q = Quiet::default();
        check(&mut q, &v, t0, IDLE, &up());
        assert_eq!(
            check(&mut q, &v, later, IDLE, &up()),
            Step::Nothing,
            "{v:?}"
        );
    }
}

#[test]
fn a_quiesced_leader_wakes_when_its_log_grows_and_a_follower_never_by_itself() {
    let t0 = Instant::now();
    let mut q = Quiet {
        quiesced: true,
        at_index: Some(10),
        ..Quiet::default()
    };
    assert_eq!(
        check(&mut q, &leader_view(), t0, IDLE, &up()),
        Step::Nothing
    );
    let grown = GroupView {
        last_log_index: Some(11),
        ..leader_view()
    };
    assert_eq!(check(&mut q, &grown, t0, IDLE, &up()), Step::Wake);
    let mut q = Quiet {
        quiesced: true,
        at_index: Some(10),
        ..Quiet::default()
    };
    let f = GroupView {
        last_log_index: Some(12),
        ..follower_view(2)
    };
    assert_eq!(check(&mut q, &f, t0, IDLE, &up()), Step::Nothing);
}

#[test]
fn a_follower_agrees_only_in_step_with_the_leader() {
    let req = QuiesceRequest {
        leader: 1,
        term: 4,
        last_log_index: 10,
        committed_index: 10,
    };
    assert!(follower_agrees(&follower_view(2), &req));
    // Another leader, another term, a longer or shorter log, not applied,
    // or the request sent to the leader itself.
    for (v, r) in [
        (follower_view(2), QuiesceRequest { leader: 3, ..req }),
        (follower_view(2), QuiesceRequest { term: 5, ..req }),
        (
            GroupView {
                last_log_index: Some(11),
                ..follower_view(2)
            },
            req,
        ),
        (
            GroupView {
                last_log_index: Some(9),
                ..follower_view(2)
            },
            req,
        ),
        (
            GroupView {
                applied_index: Some(9),
                ..follower_view(2)
            },
            req,
        ),
        (leader_view(), req),
    ] {
        assert!(!follower_agrees(&v, &r), "{v:?} {r:?}");
    }
}

#[test]
fn the_first_live_follower_takes_over_from_a_down_leader() {
    let down: BTreeSet<NodeId> = [1].into();
    assert!(takes_over(&follower_view(2), &down));
    assert!(!takes_over(&follower_view(3), &down));
    // 2 is down too: 3 takes over.
    assert!(takes_over(&follower_view(3), &[1, 2].into()));
    // The leader is up, or this node leads, or there is no leader known.
    assert!(!takes_over(&follower_view(2), &[3].into()));
    assert!(!takes_over(&leader_view(), &down));
    let none = GroupView {
        leader: None,
        ..follower_view(2)
    };
    assert!(!takes_over(&none, &down));
}

#[test]
fn a_node_is_down_after_unanswered_pings() {
    let t0 = Instant::now();
    let mut l = Liveness::new(t0);
    assert!(l.down([2, 3], t0 + Duration::from_millis(100)).is_empty());
    l.answered(2, t0 + Duration::from_millis(500));
    assert_eq!(
        l.down([2, 3], t0 + DOWN_AFTER),
        [3].into(),
        "never answered"
    );
    assert!(l
        .down(
            [2],
            t0 + Duration::from_millis(500) + DOWN_AFTER - Duration::from_millis(1)
        )
        .is_empty());
    assert_eq!(
        l.down([2], t0 + Duration::from_millis(500) + DOWN_AFTER),
        [2].into()
    );
}

#[test]
fn a_failed_attempt_waits_a_whole_idle_time_again() {
    let t0 = Instant::now();
    let mut q = Quiet::default();
    let v = leader_view();
    check(&mut q, &v, t0, IDLE, &up());
    let at = t0 + Duration::from_secs(2);
    assert!(matches!(
        check(&mut q, &v, at, IDLE, &up()),
        Step::Quiesce { .. }
    ));
    q.postpone(at);
    assert_eq!(
        check(&mut q, &v, at + Duration::from_secs(1), IDLE, &up()),
        Step::Nothing
    );
    assert!(matches!(
        check(&mut q, &v, at + Duration::from_secs(2), IDLE, &up()),
        Step::Quiesce { .. }
    ));
}

#[test]
fn a_down_follower_does_not_keep_a_group_awake_and_its_return_wakes_it() {
    let t0 = Instant::now();
    let later = t0 + Duration::from_secs(3);
    let down: BTreeSet<NodeId> = [3].into();
    // Node 3 is down and behind: the leader quiesces with node 2 only.
    let v = GroupView {
        matched: [(2, Some(10)), (3, Some(4))].into(),
        ..leader_view()
    };
    let mut q = Quiet::default();
    check(&mut q, &v, t0, IDLE, &down);
    let Step::Quiesce { asked, absent, .. } = check(&mut q, &v, later, IDLE, &down) else {
        panic!("a down follower kept the group awake");
    };
    assert_eq!((asked, absent.clone()), ([2].into(), [3].into()));
    // While node 3 is up and behind, the group stays awake.
    let mut awake = Quiet::default();
    check(&mut awake, &v, t0, IDLE, &up());
    assert_eq!(check(&mut awake, &v, later, IDLE, &up()), Step::Nothing);
    // Quiesced without node 3: nothing while it is down, wake once it is back.
    let q = Quiet {
        quiesced: true,
        at_index: Some(10),
        absent,
        ..Quiet::default()
    };
    assert!(!wakes(&q, 1, Some(1), Some(10), &down));
    assert!(wakes(&q, 1, Some(1), Some(10), &up()));
}

#[test]
fn takeovers_start_with_awake_groups_and_are_paced() {
    let due = vec![(true, "q/0"), (false, "b/1"), (true, "a/0"), (false, "b/0")];
    assert_eq!(take_over_first(due.clone(), 3), vec!["b/0", "b/1", "a/0"]);
    assert_eq!(take_over_first(due, 10).len(), 4);
    assert!(take_over_first(Vec::<(bool, u32)>::new(), 5).is_empty());
}
