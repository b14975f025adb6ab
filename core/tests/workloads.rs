//! Workload recovery rules, each asserted on a small in-memory cluster: placement spreads work,
//! a cut-off node stops its copies before the leader places them elsewhere (fencing by lease),
//! failures are retried with backoff until `max_attempts`, and a hung copy is stopped by its
//! node's watchdog.

mod common;

use std::time::Duration;

use common::Cluster;
use keel_core::*;

fn submit(c: &mut Cluster, leader: NodeId, spec: WorkloadSpec) {
    let id = c.request(
        leader,
        ClientOp::Workload(WorkloadOp::Submit(Box::new(spec))),
    );
    c.deliver_all();
    c.advance(Duration::from_millis(50));
    assert!(
        matches!(c.reply(id), Some(Ok(ClientResponse::Written { .. }))),
        "submit not acknowledged: {:?}",
        c.reply(id)
    );
}

fn status(c: &Cluster, at: u32, name: &str) -> Option<Status> {
    c.node(at)
        .state_machine()
        .registry
        .get(name)
        .map(|w| w.status.clone())
}

/// Starts of `name` as (node, epoch), in order.
fn starts(c: &Cluster, name: &str) -> Vec<(NodeId, LogIndex)> {
    c.actions
        .iter()
        .filter_map(|(n, a)| match a {
            WorkloadAction::Start { name: w, epoch, .. } if w == name => Some((*n, *epoch)),
            _ => None,
        })
        .collect()
}

#[test]
fn placement_spreads_workloads_over_the_nodes_with_most_free_capacity() {
    let mut c = Cluster::new(3);
    let leader = c.elect();
    c.advance(Duration::from_millis(300));
    for i in 1..=6 {
        submit(&mut c, leader, WorkloadSpec::new(format!("w{i}"), "true"));
    }
    c.advance(Duration::from_millis(300));
    let mut per_node = std::collections::BTreeMap::new();
    for i in 1..=6 {
        let s = status(&c, 1, &format!("w{i}"));
        let Some(Status::Running { node, .. }) = s else {
            panic!("w{i} is not running: {s:?}");
        };
        *per_node.entry(node).or_insert(0) += 1;
    }
    assert_eq!(
        per_node.values().copied().collect::<Vec<_>>(),
        vec![2, 2, 2]
    );
}

#[test]
fn a_cut_off_node_stops_its_copies_before_the_leader_places_them_elsewhere() {
    let mut c = Cluster::new(3);
    let leader = c.elect();
    c.advance(Duration::from_millis(300));
    for i in 1..=3 {
        submit(&mut c, leader, WorkloadSpec::new(format!("w{i}"), "true"));
    }
    c.advance(Duration::from_millis(300));
    let victim = NodeId(if leader == NodeId(3) { 2 } else { 3 });
    let (name, epoch) = c
        .node(leader.0)
        .state_machine()
        .registry
        .assigned_to(victim)
        .map(|(n, e)| (n.to_string(), e))
        .next()
        .expect("every node runs a workload");
    for other in [NodeId(1), NodeId(2), NodeId(3)] {
        if other != victim {
            c.cut.insert((victim, other));
            c.cut.insert((other, victim));
        }
    }
    let cut_at = c.now;
    let mut stopped_at = None;
    let mut restarted_at = None;
    for _ in 0..300 {
        c.advance(Duration::from_millis(10));
        let stopped = c.actions.iter().any(|(n, a)| {
            *n == victim && matches!(a, WorkloadAction::Stop { name: w, epoch: e, reason: StopReason::LeaseExpired } if *w == name && *e == epoch)
        });
        if stopped && stopped_at.is_none() {
            stopped_at = Some(c.now);
        }
        if restarted_at.is_none() && starts(&c, &name).iter().any(|(n, _)| *n != victim) {
            restarted_at = Some(c.now);
        }
    }
    let stopped_at = stopped_at.expect("the cut-off node never stopped its copy");
    let restarted_at = restarted_at.expect("the workload never ran elsewhere");
    assert!(
        stopped_at < restarted_at,
        "copy stopped at {stopped_at} but placed elsewhere at {restarted_at}"
    );
    let cfg = Config::new(NodeId(1), vec![NodeId(1)], 0);
    assert!(
        restarted_at.saturating_since(cut_at)
            <= cfg.coordination.dead_after + Duration::from_millis(500)
    );
    assert_eq!(
        c.node(leader.0).state_machine().registry.health(victim),
        Health::Dead
    );
}

#[test]
fn a_failing_workload_is_retried_then_failed_permanently() {
    let mut c = Cluster::new(3);
    let leader = c.elect();
    c.advance(Duration::from_millis(300));
    let mut spec = WorkloadSpec::new("job", "false");
    spec.max_attempts = 2;
    spec.backoff_base = Duration::from_millis(100);
    spec.backoff_cap = Duration::from_millis(200);
    submit(&mut c, leader, spec);
    c.advance(Duration::from_millis(300));
    for attempt in 1..=2 {
        let Some(Status::Running { node, epoch }) = status(&c, leader.0, "job") else {
            panic!("attempt {attempt}: not running");
        };
        let ev = WorkloadEvent {
            name: "job".into(),
            epoch,
            kind: WorkloadEventKind::Exited(ExitOutcome::Failed { code: 3 }),
        };
        c.step(node, Input::Workload(ev));
        c.deliver_all();
        c.advance(Duration::from_millis(600));
    }
    assert!(matches!(
        status(&c, leader.0, "job"),
        Some(Status::FailedPermanently { .. })
    ));
    assert_eq!(starts(&c, "job").len(), 2, "exactly max_attempts starts");
    let backoffs = c
        .events
        .iter()
        .filter(|(_, e)| {
            matches!(e, Event::Workload { decision: WorkloadDecision::BackoffChosen { delay, .. }, .. } if *delay <= Duration::from_millis(100))
        })
        .count();
    assert_eq!(backoffs, 1, "one backoff, within base * 2^0");
}

#[test]
fn a_copy_that_stops_making_progress_is_stopped_by_its_watchdog_and_restarted() {
    let mut c = Cluster::new(3);
    let leader = c.elect();
    c.advance(Duration::from_millis(300));
    let mut spec = WorkloadSpec::new("svc", "sleep");
    spec.watchdog = Some(Duration::from_millis(300));
    submit(&mut c, leader, spec);
    // Nobody reports progress: the watchdog fires, the leader retries it.
    c.advance(Duration::from_millis(1_000));
    assert!(c.actions.iter().any(|(_, a)| matches!(
        a,
        WorkloadAction::Stop {
            reason: StopReason::Hung,
            ..
        }
    )));
    assert!(
        starts(&c, "svc").len() >= 2,
        "the hung copy was not restarted"
    );
}

#[test]
fn no_new_work_lands_on_a_draining_node() {
    let mut c = Cluster::new(3);
    let leader = c.elect();
    c.advance(Duration::from_millis(300));
    let drained = NodeId(if leader == NodeId(2) { 3 } else { 2 });
    let op = |node, draining| ClientOp::Workload(WorkloadOp::Drain { node, draining });
    let id = c.request(leader, op(drained, true));
    c.deliver_all();
    c.advance(Duration::from_millis(50));
    assert!(matches!(
        c.reply(id),
        Some(Ok(ClientResponse::Written { .. }))
    ));
    let bad = c.request(leader, op(NodeId(9), true));
    assert!(matches!(
        c.reply(bad),
        Some(Err(ClientError::Refused { .. }))
    ));
    for i in 1..=6 {
        submit(&mut c, leader, WorkloadSpec::new(format!("w{i}"), "true"));
    }
    c.advance(Duration::from_millis(300));
    let registry = &c.node(leader.0).state_machine().registry;
    assert_eq!(registry.assigned_to(drained).count(), 0);
    assert_eq!(
        registry
            .workloads
            .values()
            .filter(|w| matches!(w.status, Status::Running { .. }))
            .count(),
        6
    );
}

/// Elects a leader in a cluster built with `tweak`, and lets it settle.
fn settled(n: u32, tweak: impl Fn(&mut Config)) -> (Cluster, NodeId) {
    let mut c = Cluster::with_config(n, tweak);
    let leader = c.elect();
    c.advance(Duration::from_millis(300));
    (c, leader)
}

/// Reports the running copy of `name` as failed, wherever it runs.
fn fail_copy(c: &mut Cluster, leader: NodeId, name: &str) -> NodeId {
    let Some(Status::Running { node, epoch }) = status(c, leader.0, name) else {
        panic!("{name} is not running: {:?}", status(c, leader.0, name));
    };
    let ev = WorkloadEvent {
        name: name.into(),
        epoch,
        kind: WorkloadEventKind::Exited(ExitOutcome::Failed { code: 1 }),
    };
    c.step(node, Input::Workload(ev));
    c.deliver_all();
    node
}

fn breaker_events(c: &Cluster, node: NodeId, state: BreakerState) -> usize {
    c.events
        .iter()
        .filter(
            |(_, e)| matches!(e, Event::Breaker { node: n, state: s } if *n == node && *s == state),
        )
        .count()
}

fn spec(name: &str, max_attempts: u32) -> WorkloadSpec {
    let mut s = WorkloadSpec::new(name, "true");
    s.max_attempts = max_attempts;
    s.backoff_base = Duration::from_millis(1);
    s.backoff_cap = Duration::from_millis(2);
    s
}

#[test]
fn a_node_that_keeps_failing_placements_gets_an_open_breaker_then_one_trial() {
    let (mut c, leader) = settled(3, |cfg| {
        cfg.coordination.breaker_threshold = 2;
        cfg.coordination.breaker_open_for = Duration::from_millis(500);
    });
    submit(&mut c, leader, spec("w", 10));
    c.advance(Duration::from_millis(200));
    // Ties go to the lowest id: n1 gets it, fails twice, and its breaker opens.
    let first = fail_copy(&mut c, leader, "w");
    assert_eq!(first, NodeId(1));
    c.advance(Duration::from_millis(200));
    assert_eq!(fail_copy(&mut c, leader, "w"), NodeId(1));
    c.advance(Duration::from_millis(200));
    assert_eq!(breaker_events(&c, NodeId(1), BreakerState::Open), 1);
    let Some(Status::Running { node, .. }) = status(&c, leader.0, "w") else {
        panic!("w is not running again");
    };
    assert_ne!(node, NodeId(1), "placed on a node whose breaker is open");
    // Once the open period is over, one trial placement may go there; success closes it.
    c.advance(Duration::from_millis(400));
    submit(&mut c, leader, spec("v", 10));
    c.advance(Duration::from_millis(200));
    assert_eq!(breaker_events(&c, NodeId(1), BreakerState::HalfOpen), 1);
    assert!(matches!(
        status(&c, leader.0, "v"),
        Some(Status::Running {
            node: NodeId(1),
            ..
        })
    ));
    assert_eq!(breaker_events(&c, NodeId(1), BreakerState::Closed), 1);
}

#[test]
fn workloads_beyond_the_cluster_capacity_wait_pending() {
    let (mut c, leader) = settled(3, |cfg| cfg.coordination.node_capacity = 1);
    for i in 1..=4 {
        submit(&mut c, leader, WorkloadSpec::new(format!("w{i}"), "true"));
    }
    c.advance(Duration::from_millis(300));
    let registry = &c.node(leader.0).state_machine().registry;
    let running = registry
        .workloads
        .values()
        .filter(|w| matches!(w.status, Status::Running { .. }))
        .count();
    let pending = registry
        .workloads
        .values()
        .filter(|w| w.status == Status::Pending)
        .count();
    assert_eq!((running, pending), (3, 1));
}

#[test]
fn a_crash_loop_hits_the_restart_intensity_limit_before_max_attempts() {
    let (mut c, leader) = settled(3, |cfg| {
        cfg.coordination.max_restarts_in_window = 2;
        cfg.coordination.restart_window = Duration::from_secs(10);
        cfg.coordination.breaker_threshold = 100;
    });
    submit(&mut c, leader, spec("loop", 10));
    c.advance(Duration::from_millis(200));
    for _ in 0..3 {
        fail_copy(&mut c, leader, "loop");
        c.advance(Duration::from_millis(200));
    }
    let s = status(&c, leader.0, "loop");
    assert!(
        matches!(&s, Some(Status::FailedPermanently { reason }) if reason.contains("crash loop")),
        "{s:?}"
    );
    assert_eq!(
        starts(&c, "loop").len(),
        3,
        "two restarts allowed, not a third"
    );
}

/// Advances in 10 ms steps until `count` events match `pred`; returns when, or panics.
fn time_of_nth(
    c: &mut Cluster,
    count: usize,
    limit: Duration,
    pred: impl Fn(&Event) -> bool,
) -> Instant {
    let end = c.now + limit;
    while c.now < end {
        if c.events.iter().filter(|(_, e)| pred(e)).count() >= count {
            return c.now;
        }
        c.advance(Duration::from_millis(10));
    }
    panic!("fewer than {count} matching events within {limit:?}");
}

fn cut_off(c: &mut Cluster, victim: NodeId) {
    for other in c.configs.keys().copied().collect::<Vec<_>>() {
        if other != victim {
            c.cut.insert((victim, other));
            c.cut.insert((other, victim));
        }
    }
}

fn orphaned(e: &Event) -> bool {
    matches!(
        e,
        Event::Workload {
            decision: WorkloadDecision::Orphaned { .. },
            ..
        }
    )
}

#[test]
fn re_placements_are_jittered_and_rate_limited() {
    let (mut c, leader) = settled(3, |cfg| {
        cfg.coordination.replace_rate_per_sec = 1;
        cfg.coordination.replace_jitter = Duration::from_millis(20);
    });
    for i in 1..=6 {
        submit(&mut c, leader, WorkloadSpec::new(format!("w{i}"), "true"));
    }
    c.advance(Duration::from_millis(300));
    let victim = NodeId(if leader == NodeId(3) { 2 } else { 3 });
    assert_eq!(
        c.node(leader.0)
            .state_machine()
            .registry
            .assigned_to(victim)
            .count(),
        2
    );
    cut_off(&mut c, victim);
    let first = time_of_nth(&mut c, 1, Duration::from_secs(3), orphaned);
    let second = time_of_nth(&mut c, 2, Duration::from_secs(3), orphaned);
    assert!(
        second.saturating_since(first) >= Duration::from_millis(900),
        "two re-placements {:?} apart at 1 per second",
        second.saturating_since(first)
    );
    for (_, e) in &c.events {
        if let Event::Workload {
            decision: WorkloadDecision::ReplacementScheduled { delay, .. },
            ..
        } = e
        {
            assert!(*delay <= Duration::from_millis(20), "jitter {delay:?}");
        }
    }
}

#[test]
fn when_too_many_nodes_vanish_at_once_re_placement_waits_for_the_hold() {
    let hold = Duration::from_secs(2);
    let (mut c, leader) = settled(5, |cfg| cfg.coordination.correlated_failure_hold = hold);
    for i in 1..=10 {
        submit(&mut c, leader, WorkloadSpec::new(format!("w{i}"), "true"));
    }
    c.advance(Duration::from_millis(300));
    let victims: Vec<NodeId> = (1..=5)
        .map(NodeId)
        .filter(|n| *n != leader)
        .take(2)
        .collect();
    for v in &victims {
        cut_off(&mut c, *v);
    }
    let frozen = time_of_nth(
        &mut c,
        1,
        Duration::from_secs(2),
        |e| matches!(e, Event::ReplacementFrozen { dead } if dead.len() == 2),
    );
    let first = time_of_nth(&mut c, 1, Duration::from_secs(5), orphaned);
    assert!(
        first.saturating_since(frozen) >= hold,
        "re-placed {:?} after the freeze, before the {hold:?} hold",
        first.saturating_since(frozen)
    );
    assert!(c
        .events
        .iter()
        .any(|(_, e)| *e == Event::ReplacementResumed));
}
