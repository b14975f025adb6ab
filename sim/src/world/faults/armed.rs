//! The armed family: faults that wait for a moment rather than a time. `CrashAfterVote` crashes
//! a node right after its next granted vote has left it (and restarts it a little later);
//! `IsolateLeaderOnAppend` and `IsolateLeaderOnCommit` cut the next leader to append (to commit)
//! off from every node right after that step, for a while. Each is disarmed if its moment does
//! not come within [`ARMED_FAULT_PATIENCE`].
//!
//! [`Armed`] owns what is armed. The host asks [`World::armed_moment`] after a step only while
//! something is armed (`Armed::any`), so armed faults cost a step nothing otherwise.
//! Nothing here strikes outside the moment a fault waits for, and nothing draws randomness.

use std::collections::VecDeque;
use std::time::Duration;

use keel_core::{Event, MessageBody, Node, Output, Persist};

use crate::scenario::{Fault, Selector, ARMED_FAULT_PATIENCE};
use crate::world::config::us;
use crate::world::events::Ev;
use crate::world::World;

pub(in crate::world) struct Armed {
    /// True while any fault is armed: the only cost armed faults add to a step otherwise.
    pub(in crate::world) any: bool,
    /// Per node: an armed `CrashAfterVote` (downtime, disarmed after).
    vote_crash: Vec<Option<(u64, u64)>>,
    /// Armed `IsolateLeaderOnAppend`s in firing order: (cut-off time, disarmed after).
    append_isolations: VecDeque<(u64, u64)>,
    /// Armed `IsolateLeaderOnCommit`s in firing order: (cut-off time, disarmed after).
    commit_isolations: VecDeque<(u64, u64)>,
    /// Per node: bumped at each timed isolation, so only the latest one's end heals it.
    isolation_token: Vec<u64>,
}

impl Armed {
    pub(super) fn new(n: usize) -> Armed {
        Armed {
            any: false,
            vote_crash: vec![None; n],
            append_isolations: VecDeque::new(),
            commit_isolations: VecDeque::new(),
            isolation_token: vec![0; n],
        }
    }
}

/// Which armed faults a step is the moment of: a granted vote (`CrashAfterVote`), a leader's
/// append (`IsolateLeaderOnAppend`), a leader's commit (`IsolateLeaderOnCommit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::world) struct Moment {
    voted: bool,
    appended: bool,
    committed: bool,
}

impl Moment {
    pub(in crate::world) const NONE: Moment = Moment {
        voted: false,
        appended: false,
        committed: false,
    };
}

/// What a leader was cut off right after.
#[derive(Clone, Copy, Debug)]
enum Cause {
    Append,
    Commit,
}

impl World<'_> {
    /// Fires a fault of this family.
    pub(super) fn fire_armed_family(&mut self, fault: &Fault) -> String {
        match fault {
            Fault::CrashAfterVote(sel, down) => self.fire_crash_after_vote(sel, *down),
            Fault::IsolateLeaderOnAppend(lasting) => self.fire_isolate_on_append(*lasting),
            Fault::IsolateLeaderOnCommit(lasting) => self.fire_isolate_on_commit(*lasting),
            other => super::misrouted(other),
        }
    }

    fn fire_crash_after_vote(&mut self, sel: &Selector, down: Duration) -> String {
        self.cover("fault CrashAfterVote");
        match self.select(sel) {
            Some(i) => {
                let until = self.now + us(ARMED_FAULT_PATIENCE);
                self.faults.armed.vote_crash[i] = Some((us(down), until));
                self.faults.armed.any = true;
                format!("{} (armed until its next vote)", self.name(i))
            }
            None => "nobody (no such node)".to_string(),
        }
    }

    fn fire_isolate_on_append(&mut self, lasting: Duration) -> String {
        self.cover("fault IsolateLeaderOnAppend");
        let until = self.now + us(ARMED_FAULT_PATIENCE);
        let armed = &mut self.faults.armed;
        armed.append_isolations.push_back((us(lasting), until));
        armed.any = true;
        "the next leader to append (armed)".to_string()
    }

    fn fire_isolate_on_commit(&mut self, lasting: Duration) -> String {
        self.cover("fault IsolateLeaderOnCommit");
        let until = self.now + us(ARMED_FAULT_PATIENCE);
        let armed = &mut self.faults.armed;
        armed.commit_isolations.push_back((us(lasting), until));
        armed.any = true;
        "the next leader to commit (armed)".to_string()
    }

    /// Whether node `i`'s step, with outputs `out`, is the moment of an armed fault.
    pub(in crate::world) fn armed_moment(&self, i: usize, out: &[Output]) -> Moment {
        let armed = &self.faults.armed;
        let voted = armed.vote_crash[i].is_some()
            && out.iter().any(|o| {
                matches!(o, Output::Send(m)
                    if matches!(m.body, MessageBody::RequestVoteResponse { granted: true }))
            });
        let leads = (!armed.append_isolations.is_empty() || !armed.commit_isolations.is_empty())
            && self.nodes[i].node.as_ref().is_some_and(Node::is_leader)
            && !self.net.isolated.contains(&i);
        let appended = leads
            && !armed.append_isolations.is_empty()
            && out
                .iter()
                .any(|o| matches!(o, Output::Persist(Persist::Entries(_))));
        let committed = leads
            && !armed.commit_isolations.is_empty()
            && out
                .iter()
                .any(|o| matches!(o, Output::Trace(Event::Committed { .. })));
        Moment {
            voted,
            appended,
            committed,
        }
    }

    /// Node `i` just took the step (ending at `t`) an armed fault waited for.
    pub(in crate::world) fn armed_faults_strike(&mut self, i: usize, t: u64, moment: Moment) {
        let now = self.now;
        if moment.voted {
            if let Some((down, until)) = self.faults.armed.vote_crash[i].take() {
                if now <= until {
                    // The vote leaves once every persist before it is durable: crash then.
                    let at = self.nodes[i].disk.released_at(t);
                    let incarnation = self.nodes[i].incarnation;
                    self.schedule(
                        at,
                        Ev::VoteCrash {
                            node: i,
                            incarnation,
                            down,
                        },
                    );
                }
            }
        }
        if moment.appended {
            while let Some((lasting, until)) = self.faults.armed.append_isolations.pop_front() {
                if now > until {
                    continue; // disarmed: its moment never came
                }
                self.cut_off_leader(i, lasting, Cause::Append);
                break;
            }
        }
        // A leader cut off for its append just now is not cut off again for its commit.
        if moment.committed && !self.net.isolated.contains(&i) {
            while let Some((lasting, until)) = self.faults.armed.commit_isolations.pop_front() {
                if now > until {
                    continue; // disarmed: its moment never came
                }
                self.cut_off_leader(i, lasting, Cause::Commit);
                break;
            }
        }
        let armed = &mut self.faults.armed;
        armed.any = armed.vote_crash.iter().any(Option::is_some)
            || !armed.append_isolations.is_empty()
            || !armed.commit_isolations.is_empty();
    }

    /// Cuts leader `i` off from every node for `lasting` us, right after the step that was the
    /// moment of an armed `IsolateLeaderOn*` fault.
    fn cut_off_leader(&mut self, i: usize, lasting: u64, cause: Cause) {
        let now = self.now;
        self.net.isolated.insert(i);
        self.net.recompute_links();
        self.faults.armed.isolation_token[i] += 1;
        let token = self.faults.armed.isolation_token[i];
        self.schedule(now + lasting, Ev::IsolationEnd { node: i, token });
        self.lead.last_fault_at = now;
        self.work.disturbed_at[i] = now;
        let id = self.members[i];
        let (what, tag) = match cause {
            Cause::Append => {
                self.cover("leader cut off right after an append");
                ("appending", 0x150A)
            }
            Cause::Commit => {
                self.cover("leader cut off right after a commit");
                ("committing", 0x150C)
            }
        };
        self.condensed(format!(
            "{id} (leader) is cut off right after {what}, for {} ms",
            lasting / 1_000
        ));
        self.tr.hasher.u64(tag);
        self.tr.hasher.u64(u64::from(id.0));
        if self.tr.on() {
            self.trace_json(serde_json::json!({
                "t_us": now, "kind": "isolate", "node": id.to_string(), "lasting_us": lasting,
                "after": what,
            }));
        }
        self.update_leadership();
    }

    /// An armed `CrashAfterVote` found its vote: the node crashes now, its answer gone out.
    pub(in crate::world) fn vote_crash_strikes(&mut self, i: usize, incarnation: u64, down: u64) {
        if !self.nodes[i].up() || self.nodes[i].incarnation != incarnation {
            return;
        }
        self.lead.last_fault_at = self.now;
        self.cover("crash right after a vote");
        let id = self.members[i];
        self.condensed(format!("{id} crashes right after granting a vote"));
        self.crash(i, None);
        let incarnation = self.nodes[i].incarnation;
        let at = self.now + down;
        self.schedule(
            at,
            Ev::ArmedRestart {
                node: i,
                incarnation,
            },
        );
    }

    /// The node a `CrashAfterVote` crashed comes back (unless something restarted it already).
    pub(in crate::world) fn armed_restart(&mut self, node: usize, incarnation: u64) {
        if !self.nodes[node].up() && self.nodes[node].incarnation == incarnation {
            self.lead.last_fault_at = self.now;
            self.restart(node);
            self.update_leadership();
        }
    }

    /// The cut-off of an `IsolateLeaderOn*` ends (unless a `Heal` or a later cut-off of the same
    /// node superseded it).
    pub(in crate::world) fn isolation_ends(&mut self, i: usize, token: u64) {
        if self.faults.armed.isolation_token[i] != token || !self.net.isolated.remove(&i) {
            return;
        }
        self.net.recompute_links();
        self.lead.last_fault_at = self.now;
        self.work.disturbed_at.fill(self.now);
        let id = self.members[i];
        self.condensed(format!("{id}'s links come back"));
        self.tr.hasher.u64(0x4EA1);
        self.tr.hasher.u64(u64::from(id.0));
        if self.tr.on() {
            self.trace_json(serde_json::json!({
                "t_us": self.now, "kind": "links-back", "node": id.to_string(),
            }));
        }
        self.update_leadership();
    }
}
