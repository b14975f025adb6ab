//! The swarm's membership window, drawn from a stream of its own ([`tag::SWARM_MEMBERS`]): one
//! seed in two gets one or two spare nodes and reshapes its cluster after the other windows.
//! A seed that draws none keeps the scenario of earlier versions, bit for bit.
//!
//! The window, from its start `t`:
//! - **grow**: each spare is added (`AddMember`, or `AddLearner` and a later `Promote`), a few
//!   hundred milliseconds apart, so the second change often waits for the first; half the
//!   time something disturbs the growth: the leader's link to the first spare is held back
//!   (its acknowledgements arrive late), a follower crashes and restarts, the first spare and
//!   one voter are cut off from the rest, or the leader is isolated for a while;
//! - **replace** (one seed in two): a voter's disk is wiped, and the operator replaces it a
//!   moment later;
//! - **shrink** (one seed in two): a member is removed, the leader or a named voter (the cluster
//!   has at least four voters by then, so three remain).
//!
//! Each step waits for the previous to have had time to settle, and at most one node (a
//! minority) is impaired at a time: everything generated is survivable. Partitions drawn
//! before the window over the bootstrap nodes take the spares into their largest group.
//! Nothing here runs anything: it only plans faults.

use super::{ms, selector, Plan};
use crate::rng::{tag, Stream};
use crate::scenario::{Fault, Selector};

/// How long any membership change a swarm seed asks for may take once the other faults are
/// over.
pub const MEMBERSHIP_BOUND: std::time::Duration = std::time::Duration::from_secs(5);

/// What the membership window added: the spare nodes' count and when the window ends.
pub(super) struct Reshaped {
    pub(super) spares: usize,
    pub(super) end: u64,
}

/// Draws the seed's membership window (if it has one), for a cluster bootstrapped with
/// `base` nodes, starting at `t` ms.
pub(super) fn membership_window(
    seed: u64,
    base: usize,
    t: u64,
    plan: &mut Plan,
) -> Option<Reshaped> {
    let mut r = Stream::new(seed, tag::SWARM_MEMBERS);
    if r.below(2) != 0 {
        return None;
    }
    let spares = 1 + r.below(2);
    let name = |i: usize| format!("n{}", i + 1);
    let spare_names: Vec<String> = (base..base + spares).map(name).collect();
    let mut x = t;
    for s in &spare_names {
        let node = Selector::Node(s.clone());
        if r.below(2) == 0 {
            plan.at(x, Fault::AddMember(node));
        } else {
            plan.at(x, Fault::AddLearner(node.clone()));
            plan.at(x + r.between(300, 1_500), Fault::Promote(node));
        }
        x += r.between(0, 400);
    }
    disturb_growth(&mut r, base, &spare_names[0], t, plan);
    let mut end = t + r.between(2_500, 3_500);
    if r.below(2) == 0 {
        let victim = Selector::Node(name(r.below(base)));
        plan.at(end, Fault::WipeDisk(victim.clone()));
        plan.at(end + r.between(50, 1_000), Fault::ReplaceNode(victim));
        end += r.between(2_500, 3_500);
    }
    if r.below(2) == 0 {
        let who = match r.below(2) {
            0 => Selector::Leader,
            _ => Selector::Node(name(r.below(base))),
        };
        plan.at(end, Fault::RemoveMember(who));
        end += r.between(1_000, 2_000);
    }
    Some(Reshaped {
        spares,
        end: end + 1_000,
    })
}

/// Half the time, one disturbance while the cluster grows (starting within 800 ms of `t`).
fn disturb_growth(r: &mut Stream, base: usize, spare: &str, t: u64, plan: &mut Plan) {
    let at = t + r.between(0, 800);
    let lasting = r.between(300, 1_500);
    match r.below(8) {
        0 => plan.at(
            at,
            Fault::Delay {
                from: Selector::Leader,
                to: Selector::Node(spare.to_string()),
                extra: ms([20, 50, 100][r.below(3)]),
                lasting: ms(lasting),
            },
        ),
        1 => {
            plan.at(at, Fault::Crash(selector(r)));
            plan.at(at + lasting, Fault::Restart(Selector::LastCrashed));
        }
        2 => {
            let voter = format!("n{}", 1 + r.below(base));
            let rest: Vec<String> = (1..=base)
                .map(|i| format!("n{i}"))
                .filter(|n| *n != voter)
                .collect();
            plan.at(
                at,
                Fault::Partition(vec![vec![spare.to_string(), voter], rest]),
            );
            plan.at(at + lasting, Fault::Heal);
        }
        3 => {
            plan.at(at, Fault::Isolate(Selector::Leader));
            plan.at(at + lasting, Fault::Heal);
        }
        _ => {}
    }
}

/// The spares `base + 1 ..= base + spares` join the largest group of every partition that
/// leaves them out (partitions drawn over the bootstrap nodes only).
pub(super) fn place_spares(faults: &mut [crate::scenario::TimedFault], base: usize, spares: usize) {
    for f in faults {
        let Fault::Partition(groups) = &mut f.fault else {
            continue;
        };
        for i in base + 1..=base + spares {
            let spare = format!("n{i}");
            if groups.iter().any(|g| g.contains(&spare)) {
                continue;
            }
            if let Some(largest) = groups.iter_mut().max_by_key(|g| g.len()) {
                largest.push(spare);
            }
        }
    }
}
