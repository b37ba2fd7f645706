use super::*;

const IDLE: Option<Duration> = Some(Duration::from_secs(2));

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
    assert_eq!(check(&mut q, &v, t0, IDLE), Step::Nothing);
    assert_eq!(
        check(&mut q, &v, t0 + Duration::from_millis(1999), IDLE),
        Step::Nothing
    );
    let want = QuiesceRequest {
        leader: 1,
        term: 4,
        last_log_index: 10,
        committed_index: 10,
    };
    assert_eq!(
        check(&mut q, &v, t0 + Duration::from_secs(2), IDLE),
        Step::Quiesce(want)
    );
    // Quiescing is off.
    let mut q = Quiet::default();
    check(&mut q, &v, t0, None);
    assert_eq!(
        check(&mut q, &v, t0 + Duration::from_secs(60), None),
        Step::Nothing
    );
}

#[test]
fn a_growing_log_lagging_follower_or_a_move_keeps_the_leader_awake() {
    let t0 = Instant::now();
    let later = t0 + Duration::from_secs(3);
    // The log grew a second ago: idle time restarts.
    let mut q = Quiet::default();
    check(&mut q, &leader_view(), t0, IDLE);
    let grown = GroupView {
        last_log_index: Some(11),
        applied_index: Some(11),
        matched: [(2, Some(11)), (3, Some(11))].into(),
        ..leader_view()
    };
    assert_eq!(check(&mut q, &grown, later, IDLE), Step::Nothing);
    assert!(matches!(
        check(&mut q, &grown, later + Duration::from_secs(2), IDLE),
        Step::Quiesce(_)
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
        check(&mut q, &v, t0, IDLE);
        assert_eq!(check(&mut q, &v, later, IDLE), Step::Nothing, "{v:?}");
    }
}

#[test]
fn a_quiesced_leader_wakes_when_its_log_grows_and_a_follower_never_by_itself() {
    let t0 = Instant::now();
    let mut q = Quiet {
        quiesced: true,
        at_index: Some(10),
        seen: None,
    };
    assert_eq!(check(&mut q, &leader_view(), t0, IDLE), Step::Nothing);
    let grown = GroupView {
        last_log_index: Some(11),
        ..leader_view()
    };
    assert_eq!(check(&mut q, &grown, t0, IDLE), Step::Wake);
    let mut q = Quiet {
        quiesced: true,
        at_index: Some(10),
        seen: None,
    };
    let f = GroupView {
        last_log_index: Some(12),
        ..follower_view(2)
    };
    assert_eq!(check(&mut q, &f, t0, IDLE), Step::Nothing);
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
    check(&mut q, &v, t0, IDLE);
    let at = t0 + Duration::from_secs(2);
    assert!(matches!(check(&mut q, &v, at, IDLE), Step::Quiesce(_)));
    q.postpone(at);
    assert_eq!(
        check(&mut q, &v, at + Duration::from_secs(1), IDLE),
        Step::Nothing
    );
    assert!(matches!(
        check(&mut q, &v, at + Duration::from_secs(2), IDLE),
        Step::Quiesce(_)
    ));
}
