//! Swarm testing: a random scenario per seed (Groce et al. 2012, "Swarm testing").
//!
//! Each seed draws a cluster size (3–5), a network quality, a client load and a fault phase made of
//! windows, each a fault and its undoing (a crash and its restart, an isolation and its heal, a
//! hang, a slow node, a one-way link, a minority or bridge partition, an overload burst, rolling
//! restarts of one node at a time, workload processes crashing or hanging), and a number of
//! workloads, drawn
//! from every fault kind. Windows never overlap, so at most one node (a minority) is impaired at a
//! time: everything generated is survivable.
//!
//! Three seeds in four then add one targeted window, drawn from a stream of its own, aimed at
//! the narrow moments classic consensus bugs need:
//! - **vote crashes**: the leader is armed to crash right after its next granted vote (and back
//!   2 ms later), then crashed and restarted quickly, several times: the restarted node votes in
//!   the election its crash caused, and a second candidate of that term may ask it again after
//!   its restart (a vote that did not survive the crash shows as two leaders in one term);
//! - **leader churn** (the Raft paper's figure 8): successive leaders are cut off right after
//!   they append, each for a while, so entries of different terms sit at the same index on
//!   different minorities, and an old leader returns to replicate its old-term entries; two nodes
//!   may be cut off at once for a few hundred milliseconds (the cluster stalls, then recovers);
//! - **snapshot catch-up**: a follower is down during an overload burst, long enough for the
//!   leader to compact its log past it, so it comes back to a snapshot install.
//!
//! Half the seeds then add one more window, from a stream of its own (so the seeds that draw none
//! keep their scenarios):
//! - **held-back links** (two seeds in six): messages on one to three links arrive 20 to 250 ms
//!   late for a while (`Delay`), and half the time the leader crashes and is back at once, so an
//!   election runs over them: vote requests reach voters late, after the term's leader may
//!   already have been heard; in a cluster of three, half of these are the vote race of
//!   `scenarios/late_vote_request.ron` instead (two to four rounds);
//! - **lagging figure 8** (one seed in six): under an overload burst the leader is cut off right
//!   after an append and appends alone until it steps down, hundreds of entries nobody else
//!   holds; the next leaders are cut off right after their first append until no majority is
//!   left; the first comes back, catches the others up from more than one AppendEntries batch
//!   behind, and is cut off the moment it commits (`IsolateLeaderOnCommit`): what it committed
//!   must survive the leaders that come back after it.
//!
//! A quiet phase follows in which the cluster must
//! settle: a leader must be back within the failover bound, every workload must run again within
//! its bound (never two copies at once), nothing acknowledged may be lost and the history must be
//! linearizable.
//!
//! One seed in two also hands leadership over (a graceful transfer) a few times at random moments
//! of the fault phase, from a stream of its own; one seed in four asks for a handover to a node
//! it names (a follower or any node, the leader itself included, which must refuse).
//!
//! One seed in two also starts with one or two spare nodes and reshapes its cluster after the
//! other windows (grow, replace a wiped voter, remove a member), from a stream of its own
//! (see [`members`]); the seeds that draw none keep their scenarios. Those seeds also expect
//! every membership change to be committed within [`MEMBERSHIP_BOUND`] of the last fault.
//!
//! Generation draws from its own stream of the seed, so a swarm seed is replayed by generating the
//! same scenario again (or from the RON file `cargo xtask soak --swarm --save-failing` writes).

mod members;

use std::time::Duration;

pub use members::MEMBERSHIP_BOUND;

use crate::rng::{tag, Stream};
use crate::scenario::{
    ClientSpec, Expectation, Fault, NetworkSpec, Scenario, Selector, TimedFault, WorkloadSpec,
    ARMED_FAULT_PATIENCE,
};

/// How long the cluster gets after the last fault window to settle.
pub const QUIET_PHASE: Duration = Duration::from_secs(5);
/// The failover bound every swarm scenario expects.
pub const FAILOVER_BOUND: Duration = Duration::from_secs(2);
/// How long any workload may be without a healthy copy (crash-looping ones aside: they end
/// failed permanently).
pub const WORKLOAD_RECOVERY_BOUND: Duration = Duration::from_secs(5);
/// The median latency of the reads and writes clients had answered in a generated scenario,
/// faults and all: far above what a healthy cluster takes (tens of milliseconds), far below a
/// cluster that answers no reads or no writes at all.
pub const SERVED_BOUND: Duration = Duration::from_millis(500);

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn selector(r: &mut Stream) -> Selector {
    match r.below(3) {
        0 => Selector::Leader,
        1 => Selector::Follower,
        _ => Selector::Random,
    }
}

/// The faults a generator plans, in the order it draws them.
#[derive(Default)]
struct Plan {
    faults: Vec<TimedFault>,
}

impl Plan {
    /// `fault` at `at` ms.
    fn at(&mut self, at: u64, fault: Fault) {
        self.faults.push(TimedFault { at: ms(at), fault });
    }
}

/// The scenario of swarm seed `seed`.
pub fn generate(seed: u64) -> Scenario {
    let mut r = Stream::new(seed, tag::SWARM);
    let nodes = 3 + r.below(3);
    let names: Vec<String> = (1..=nodes).map(|i| format!("n{i}")).collect();
    let latency_max = [3, 5, 10, 20][r.below(4)];
    let network = NetworkSpec {
        latency: (ms(1), ms(latency_max)),
        drop_rate: [0.0, 0.0, 0.01, 0.05][r.below(4)],
        duplicate_rate: [0.0, 0.0, 0.02][r.below(3)],
    };
    let clients = ClientSpec {
        count: 2 + r.below(7),
        rate_per_sec: [50.0, 100.0, 200.0, 400.0][r.below(4)],
        keys: [4, 16, 32][r.below(3)],
        timeout: ms(1_000),
    };
    let instances = [0, 3, 6, 12][r.below(4)];
    let workloads = if instances == 0 {
        Vec::new()
    } else {
        vec![WorkloadSpec {
            name: "w".to_string(),
            count: instances,
            max_attempts: 3,
            watchdog: Some(ms(1_000)),
            backoff: (ms(100), ms(1_000)),
        }]
    };
    let mut plan = Plan::default();
    let mut t = 1_000 + r.between(0, 1_000);
    let windows = 1 + r.below(6);
    for _ in 0..windows {
        t = fault_window(&mut r, &names, instances, t, &mut plan);
    }
    t = targeted_window(seed, &names, latency_max, t, &mut plan);
    t = extra_window(seed, &names, t, &mut plan);
    let reshaped = members::membership_window(seed, nodes, t, &mut plan);
    let mut expect = expectations();
    let mut spares = 0;
    if let Some(m) = &reshaped {
        (t, spares) = (m.end, m.spares);
        expect.push(Expectation::MembershipSettledWithin(MEMBERSHIP_BOUND));
    }
    handovers(seed, t, &mut plan);
    let mut faults = plan.faults;
    members::place_spares(&mut faults, nodes, spares);
    // A crash loop outlasts its window; the file format wants faults in time order.
    faults.sort_by_key(|f| f.at);
    Scenario {
        name: format!("swarm-{seed}"),
        description: format!("generated by keel_sim::swarm::generate({seed})"),
        nodes: nodes + spares,
        members: nodes,
        duration: ms(t) + QUIET_PHASE,
        network,
        clients,
        workloads,
        faults,
        expect,
        // A stream of its own, so that the rest of the scenario stays that of earlier versions.
        lease_reads: Stream::new(seed, tag::SWARM_READS).below(4) != 0,
    }
}

/// What every swarm scenario expects.
fn expectations() -> Vec<Expectation> {
    vec![
        Expectation::NewLeaderWithin(FAILOVER_BOUND),
        Expectation::WorkloadsRecoveredWithin(WORKLOAD_RECOVERY_BOUND),
        Expectation::AtMostOneRunningCopy,
        Expectation::NoLostWrites,
        Expectation::Linearizable,
        // Reads and writes are served at all (faults or not, most succeed quickly).
        Expectation::MedianReadLatencyWithin(SERVED_BOUND),
        Expectation::MedianWriteLatencyWithin(SERVED_BOUND),
    ]
}

/// One window of the fault phase, starting at `t` ms: a fault and its undoing. Returns when the
/// next window starts.
fn fault_window(
    r: &mut Stream,
    names: &[String],
    instances: usize,
    t: u64,
    plan: &mut Plan,
) -> u64 {
    let length = r.between(200, 3_000);
    let end = t + length;
    let kinds = if instances == 0 { 10 } else { 12 };
    match r.below(kinds) {
        10 => workload_crash_loop(r, instances, t, length, plan),
        11 => plan.at(t, Fault::HangWorkload("w".to_string())),
        0 => {
            plan.at(t, Fault::Crash(selector(r)));
            plan.at(end, Fault::Restart(Selector::LastCrashed));
        }
        1 => {
            plan.at(t, Fault::Isolate(selector(r)));
            plan.at(end, Fault::Heal);
        }
        2 => plan.at(t, Fault::Hang(selector(r), ms(length))),
        3 => {
            let factor = [2.0, 5.0, 10.0][r.below(3)];
            plan.at(t, Fault::Slow(selector(r), factor, ms(length)));
        }
        4 => {
            let from = selector(r);
            let to = selector(r);
            plan.at(t, Fault::OneWay(from, to));
            plan.at(end, Fault::Heal);
        }
        5 => {
            plan.at(t, Fault::Partition(minority(r, names)));
            plan.at(end, Fault::Heal);
        }
        6 => {
            plan.at(t, Fault::Partition(bridge(r, names)));
            plan.at(end, Fault::Heal);
        }
        7 => {
            let rate = [5_000.0, 20_000.0, 50_000.0][r.below(3)];
            let lasting = ms(length.min(1_500));
            plan.at(
                t,
                Fault::Overload {
                    rate_per_sec: rate,
                    lasting,
                },
            );
        }
        8 => rolling_restarts(r, t, end, plan),
        _ => {
            // A crash right after a restart: the restarted node's durable state is tested
            // twice in a row.
            let sel = selector(r);
            plan.at(t, Fault::Crash(sel.clone()));
            plan.at(t + length / 3, Fault::Restart(Selector::LastCrashed));
            plan.at(t + length / 2, Fault::Crash(Selector::Random));
            plan.at(end, Fault::Restart(Selector::LastCrashed));
        }
    }
    end + r.between(500, 2_000)
}

/// Workload processes crash one after another: retries with backoff; one instance is hit after
/// every restart until it is failed for good.
fn workload_crash_loop(r: &mut Stream, instances: usize, t: u64, length: u64, plan: &mut Plan) {
    let victim = format!("w-{}", 1 + r.below(instances));
    plan.at(t + length / 2, Fault::CrashWorkload("w".to_string()));
    for k in 0..4 {
        plan.at(t + k * 1_500, Fault::CrashWorkload(victim.clone()));
    }
}

/// A minority, chosen by position, cut off from the rest.
fn minority(r: &mut Stream, names: &[String]) -> Vec<Vec<String>> {
    let nodes = names.len();
    let minority = 1 + r.below((nodes - 1) / 2);
    let start = r.below(nodes);
    let cut: Vec<String> = (0..minority)
        .map(|k| names[(start + k) % nodes].clone())
        .collect();
    let rest: Vec<String> = names.iter().filter(|n| !cut.contains(n)).cloned().collect();
    vec![cut, rest]
}

/// A bridge: two nodes lose their link, everyone else still talks to both.
fn bridge(r: &mut Stream, names: &[String]) -> Vec<Vec<String>> {
    let nodes = names.len();
    let a = r.below(nodes);
    let b = (a + 1 + r.below(nodes - 1)) % nodes;
    let others: Vec<String> = names
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != a && *i != b)
        .map(|(_, n)| n.clone())
        .collect();
    let mut left = others.clone();
    left.push(names[a].clone());
    let mut right = others;
    right.push(names[b].clone());
    vec![left, right]
}

/// Rolling restarts: one node at a time goes down and comes back quickly, many times over, so
/// elections keep happening while voters restart.
fn rolling_restarts(r: &mut Stream, t: u64, end: u64, plan: &mut Plan) {
    let mut at_t = t;
    while at_t + 150 < end {
        let down = r.between(20, 120);
        plan.at(at_t, Fault::Crash(selector(r)));
        plan.at(at_t + down, Fault::Restart(Selector::LastCrashed));
        at_t += down + r.between(10, 150);
    }
}

/// One seed in two: graceful leadership handovers at random moments of the fault phase (before
/// `t` ms), in the middle of whatever else happens (they may be given up, or race an election).
fn handovers(seed: u64, t: u64, plan: &mut Plan) {
    let mut handovers = Stream::new(seed, tag::SWARM_TRANSFERS);
    if handovers.below(2) == 0 {
        for _ in 0..1 + handovers.below(3) {
            let when = handovers.between(0, t.max(1));
            plan.at(when, Fault::TransferLeadership);
        }
    }
}

/// Appends the seed's targeted window (if it has one) to the plan, starting at `t` ms; returns
/// when the window is over.
fn targeted_window(seed: u64, names: &[String], latency_max: u64, t: u64, plan: &mut Plan) -> u64 {
    let mut r = Stream::new(seed, tag::SWARM_TARGETED);
    match r.below(4) {
        0 => vote_crashes(&mut r, names, latency_max, t, plan),
        1 => figure_8(&mut r, names.len(), t, plan),
        2 => {
            // A follower misses a burst long enough to be caught up by a snapshot.
            let lasting = r.between(1_500, 2_500);
            let rate = [5_000.0, 10_000.0][r.below(2)];
            plan.at(t, Fault::Crash(Selector::Follower));
            let burst = Fault::Overload {
                rate_per_sec: rate,
                lasting: ms(lasting),
            };
            plan.at(t + 100, burst);
            let back = t + 100 + lasting + r.between(200, 800);
            plan.at(back, Fault::Restart(Selector::LastCrashed));
            back + 500
        }
        _ => t,
    }
}

/// Vote crashes: each round arms the leader, crashes it and restarts it before the followers
/// time out; the election that follows finds it back, and it crashes right after its vote, back
/// a moment later. Two times in three every node is slowed down so messages take up to about
/// 50 ms: candidates then often overlap, and the second one's request reaches the restarted
/// voter late. Returns when the window is over.
fn vote_crashes(
    r: &mut Stream,
    names: &[String],
    latency_max: u64,
    t: u64,
    plan: &mut Plan,
) -> u64 {
    let mut x = t;
    let mut rounds = Vec::new();
    for _ in 0..6 + r.below(5) {
        let down = r.between(20, 80);
        rounds.push((x, down, r.between(100, 1_000)));
        x += down + r.between(300, 600);
    }
    if r.below(3) != 0 {
        let factor = (50.0 / latency_max as f64).clamp(1.0_f64, 10.0);
        for name in names {
            plan.at(
                t,
                Fault::Slow(Selector::Node(name.clone()), factor, ms(x - t)),
            );
        }
    }
    for (x, down, vote_down_us) in rounds {
        let down_after_vote = Duration::from_micros(vote_down_us);
        plan.at(x, Fault::CrashAfterVote(Selector::Leader, down_after_vote));
        plan.at(x, Fault::Crash(Selector::Leader));
        plan.at(x + down, Fault::Restart(Selector::LastCrashed));
    }
    x + 1_000
}

/// Figure 8: the leader is cut off right after it appends (an entry of its term on it alone);
/// the next leaders too, until no majority is left (one more leader in a cluster of five), each
/// of them still away when the first comes back. The first then leads again, may replicate its
/// old-term entries, and is cut off right after its next append, until the others are back and
/// have elected one of them. Returns when the window is over.
fn figure_8(r: &mut Stream, nodes: usize, t: u64, plan: &mut Plan) -> u64 {
    let patience = ARMED_FAULT_PATIENCE.as_millis() as u64;
    let first = r.between(1_000, 1_600);
    plan.at(t, Fault::IsolateLeaderOnAppend(ms(first)));
    let mut longest = first;
    for k in 1..nodes.div_ceil(2) as u64 {
        let lasting = first + r.between(900, 1_500);
        longest = longest.max(lasting);
        plan.at(t + 20 * k, Fault::IsolateLeaderOnAppend(ms(lasting)));
    }
    // The last cut-off outlasts the others: they are back before the first leader is.
    let back = t + first - 50;
    let last = longest - first + r.between(600, 1_200);
    plan.at(back, Fault::IsolateLeaderOnAppend(ms(last)));
    back + patience + last + 500
}

/// Appends the seed's extra window (if it has one) to the plan, starting at `t` ms, and its
/// handovers to named nodes (at moments before `t`); returns when the window is over.
fn extra_window(seed: u64, names: &[String], t: u64, plan: &mut Plan) -> u64 {
    let mut r = Stream::new(seed, tag::SWARM_EXTRA);
    let end = match r.below(6) {
        0 if names.len() == 3 => vote_race(&mut r, names, t, plan),
        0 | 1 => held_back_links(&mut r, t, plan),
        2 => lagging_figure_8(&mut r, names.len(), t, plan),
        _ => t,
    };
    // One seed in four: handovers to a node named by a selector (the leader, when it is drawn,
    // must refuse to hand over to itself).
    if r.below(4) == 0 {
        for _ in 0..1 + r.below(3) {
            let when = r.between(0, t.max(1));
            plan.at(when, Fault::TransferLeadershipTo(selector(&mut r)));
        }
    }
    end
}

/// A vote race over held-back links (see `scenarios/late_vote_request.ron`), in a cluster of
/// three: a and b cannot reach each other and both reach v late, v lagging a; each round hands
/// leadership to a, crashes it and brings it back at once, so a and b stand in one term and v
/// hears b's request just after a's first AppendEntries. Returns when the window is over.
fn vote_race(r: &mut Stream, names: &[String], t: u64, plan: &mut Plan) -> u64 {
    let a = r.below(3);
    let b = (a + 1 + r.below(2)) % 3;
    let v = 3 - a - b;
    let (a, b, v) = (names[a].clone(), names[b].clone(), names[v].clone());
    let rounds = 2 + r.below(3) as u64;
    let lasting = ms(rounds * 1_500 + 500);
    for (from, extra) in [(&a, 50), (&b, 100)] {
        let delay = Fault::Delay {
            from: Selector::Node(from.clone()),
            to: Selector::Node(v.clone()),
            extra: ms(extra),
            lasting,
        };
        plan.at(t, delay);
    }
    for k in 0..rounds {
        let x = t + 500 + k * 1_500;
        plan.at(x, Fault::TransferLeadershipTo(Selector::Node(a.clone())));
        plan.at(x + 500, Fault::Crash(Selector::Node(a.clone())));
        let alone = vec![vec![a.clone()], vec![b.clone(), v.clone()]];
        plan.at(x + 500, Fault::Partition(alone));
        plan.at(x + 501, Fault::Restart(Selector::LastCrashed));
        let bridge = vec![vec![a.clone(), v.clone()], vec![b.clone(), v.clone()]];
        plan.at(x + 560, Fault::Partition(bridge));
        plan.at(x + 1_200, Fault::Heal);
    }
    t + rounds * 1_500 + 1_500
}

/// Held-back links: every message on them arrives late, none is lost; half the time the leader
/// crashes and is back at once, for an election over those links. Returns when the window is
/// over.
fn held_back_links(r: &mut Stream, t: u64, plan: &mut Plan) -> u64 {
    let lasting = r.between(500, 2_000);
    for _ in 0..1 + r.below(3) {
        let extra = [20, 50, 100, 250][r.below(4)];
        let from = selector(r);
        let to = selector(r);
        let delay = Fault::Delay {
            from,
            to,
            extra: ms(extra),
            lasting: ms(lasting),
        };
        plan.at(t, delay);
    }
    if r.below(2) == 0 {
        let crash = t + r.between(0, lasting / 2);
        plan.at(crash, Fault::Crash(Selector::Leader));
        let back = crash + r.between(1, 50);
        plan.at(back, Fault::Restart(Selector::LastCrashed));
    }
    t + lasting + 1_000
}

/// The lagging figure 8 (see `scenarios/figure_8_lagging.ron`): the first leader appends alone
/// under an overload burst; the next ones are cut off at their first append until no majority
/// is left; the first comes back, catches the others up from far behind and is cut off the
/// moment it commits, before they hear of it. Returns when the window is over.
fn lagging_figure_8(r: &mut Stream, nodes: usize, t: u64, plan: &mut Plan) -> u64 {
    let patience = ARMED_FAULT_PATIENCE.as_millis() as u64;
    let rate = [5_000.0, 10_000.0][r.below(2)];
    let burst = Fault::Overload {
        rate_per_sec: rate,
        lasting: ms(400),
    };
    plan.at(t, burst);
    let first = r.between(1_000, 1_400);
    plan.at(t + 100, Fault::IsolateLeaderOnAppend(ms(first)));
    let mut longest = first;
    for k in 1..nodes.div_ceil(2) as u64 {
        let lasting = first + r.between(1_000, 1_500);
        longest = longest.max(lasting);
        plan.at(t + 100 + 20 * k, Fault::IsolateLeaderOnAppend(ms(lasting)));
    }
    let cut = r.between(1_000, 2_000);
    plan.at(t + 200, Fault::IsolateLeaderOnCommit(ms(cut)));
    t + 200 + patience.max(longest + cut) + 500
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_reproducible_and_valid() {
        for seed in 0..200 {
            let s = generate(seed);
            assert_eq!(s, generate(seed));
            // What is generated must be a valid scenario file, too.
            let again = Scenario::parse(&s.to_ron(), "generated")
                .unwrap_or_else(|e| panic!("seed {seed}: {e}\n{}", s.to_ron()));
            assert_eq!(again, s);
            assert!((3..=5).contains(&s.members));
            assert!((s.members..=s.members + 2).contains(&s.nodes));
        }
        assert_ne!(generate(1), generate(2));
    }

    #[test]
    fn every_fault_kind_is_drawn() {
        let mut kinds = std::collections::BTreeSet::new();
        for seed in 0..300 {
            for f in generate(seed).faults {
                kinds.insert(
                    crate::scenario::fault_ron(&f.fault)
                        .split('(')
                        .next()
                        .unwrap_or("")
                        .to_string(),
                );
            }
        }
        // Crash, Restart, Isolate, Heal, Hang, Slow, OneWay, Partition, Overload, Delay, the two
        // workload faults, the three armed ones, TransferLeadership and TransferLeadershipTo,
        // and the six membership faults (WipeDisk among them).
        assert_eq!(kinds.len(), 23, "{kinds:?}");
    }
}
