//! The node host: one simulated machine per node, with its CPU, its input queues, its timer, its
//! disk ([`super::disk`]) and its life (crash, restart).
//!
//! A node handles one input at a time; a step costs [`super::SimConfig::step_cost`] plus
//! [`super::SimConfig::output_cost`] per output. Inputs that arrive while it is busy or hung wait:
//! peer messages and ticks in one FIFO, client requests in another served only when the first is
//! empty, each bounded. A step's outputs are executed in order at its end: persists go to the
//! disk, messages and replies to the network, core events to the statistics, workload actions to
//! the workload driver.
//!
//! This file owns [`SimNode`] and the step itself. It never decides when a fault strikes (the
//! fault families do) and never draws from any random stream but the disk's.

use std::collections::VecDeque;

use keel_core::{ClientReply, ClientResponse, Input, Message, MessageBody, Node, NodeId, Output};

use super::config::scaled;
use super::disk::Disk;
use super::events::Ev;
use super::faults::Moment;
use super::World;
use crate::checkers::SafetyCheckers;
use crate::rng::Stream;

pub(super) struct SimNode {
    pub(super) id: NodeId,
    pub(super) node: Option<Node>,
    pub(super) disk: Disk,
    /// Bumped at every crash; stale events of an earlier life are ignored.
    pub(super) incarnation: u64,
    /// The life of its disk, which is the node's core incarnation (`keel_core::Incarnation`):
    /// 0 (the original) for a node the cluster was bootstrapped with, 1 for a spare node, and
    /// one more at every `WipeDisk`.
    pub(super) disk_life: u64,
    /// The disk its previous incarnation lost at its last `WipeDisk`: (that incarnation, what
    /// was durable on it then), for the checker of what committed entries a majority holds.
    pub(super) lost_disk: Option<(u64, keel_core::DurableState)>,
    /// `crash_times[i]`: when incarnation `i` ended.
    pub(super) crash_times: Vec<u64>,
    pub(super) busy_until: u64,
    pub(super) hung_until: u64,
    /// Ticks and peer messages waiting for the node, taken before any client request.
    pub(super) queue: VecDeque<Input>,
    pub(super) client_queue: VecDeque<Input>,
    resume_scheduled: bool,
    tick_gen: u64,
    tick_at: u64,
    pub(super) slow_factor: f64,
    pub(super) slow_token: u64,
    /// A pending mid-step crash: strike after this many outputs of the next step.
    pub(super) crash_in_next_step: Option<u32>,
}

impl SimNode {
    pub(super) fn new(id: NodeId, disk_life: u64, storage_rng: Stream) -> SimNode {
        SimNode {
            id,
            node: None,
            disk: Disk::new(storage_rng),
            incarnation: 0,
            disk_life,
            lost_disk: None,
            crash_times: Vec::new(),
            busy_until: 0,
            hung_until: 0,
            queue: VecDeque::new(),
            client_queue: VecDeque::new(),
            resume_scheduled: false,
            tick_gen: 0,
            tick_at: u64::MAX,
            slow_factor: 1.0,
            slow_token: 0,
            crash_in_next_step: None,
        }
    }

    pub(super) fn up(&self) -> bool {
        self.node.is_some()
    }

    /// Where a pending mid-step crash cuts the step whose outputs are `out`: in the first step
    /// that persists something, after that persist and a random number of the outputs behind it
    /// (the persist was issued but not synced, so it is lost, and so is everything queued behind
    /// it). `None`: no crash in this step.
    #[inline(always)]
    fn take_cut(&mut self, out: &[Output]) -> Option<usize> {
        let k = self.crash_in_next_step?;
        let p = out.iter().position(|o| matches!(o, Output::Persist(_)))?;
        self.crash_in_next_step = None;
        Some(p + 1 + (k as usize) % (out.len() - p))
    }
}

/// The fresh-reads check of a leader's step (see [`crate::checkers::FRESH_READS`]): every read it
/// answers, directly or through the follower that forwarded it, must be at least as fresh as
/// what was committed when the read was issued.
#[inline(always)]
fn check_read_answers(
    checkers: &mut SafetyCheckers,
    floor_of: impl Fn(&keel_core::RequestId) -> Option<keel_core::LogIndex>,
    now: u64,
    node: &Node,
    out: &[Output],
) {
    for o in out {
        let id = match o {
            Output::Reply(ClientReply {
                id,
                result: Ok(ClientResponse::Value { .. }),
            }) => id,
            Output::Send(Message {
                body: MessageBody::ForwardReply { id, result },
                ..
            }) if matches!(**result, Ok(ClientResponse::Value { .. })) => id,
            _ => continue,
        };
        if let Some(floor) = floor_of(id) {
            checkers.read_answered(now, node, floor);
        }
    }
}

impl World<'_> {
    pub(super) fn start_node(&mut self, i: usize) {
        let cfg = self.node_config(i);
        let durable = self.nodes[i].disk.durable.clone();
        match Node::new(cfg, durable, keel_core::Instant(self.now)) {
            #[allow(unused_mut)]
            Ok(mut node) => {
                #[cfg(feature = "planted-bugs")]
                node.plant_bug(self.cfg.planted_bug);
                self.nodes[i].node = Some(node)
            }
            Err(e) => {
                // The simulator builds every config itself: this is a bug in the simulator.
                self.stats
                    .engine_errors
                    .push(format!("node {} refused its config: {e}", i + 1));
                return;
            }
        }
        let n = &mut self.nodes[i];
        n.busy_until = self.now;
        n.disk.start(self.now);
        n.tick_at = u64::MAX;
        self.arm_timer(i);
    }

    /// A node's timer went off: a step if something is due (the event may be stale).
    #[inline(always)]
    pub(super) fn tick(&mut self, node: usize, gen: u64, out: &mut Vec<Output>) {
        let n = &mut self.nodes[node];
        if gen != n.tick_gen || !n.up() {
            return;
        }
        n.tick_at = u64::MAX;
        let due = n.node.as_ref().map_or(u64::MAX, |x| x.next_deadline().0);
        if due > self.now {
            self.arm_timer(node);
            return;
        }
        self.input_with(node, Input::Tick, out);
    }

    /// Makes sure a Tick is scheduled no later than the node's next deadline.
    pub(super) fn arm_timer(&mut self, i: usize) {
        let Some(node) = self.nodes[i].node.as_ref() else {
            return;
        };
        let due = node.next_deadline().0.max(self.now);
        if due >= keel_core::Instant::NEVER.0 || due >= self.nodes[i].tick_at {
            return;
        }
        let n = &mut self.nodes[i];
        n.tick_gen += 1;
        n.tick_at = due;
        let gen = n.tick_gen;
        self.schedule(due, Ev::Tick { node: i, gen });
    }

    /// [`Self::input_with`] with the engine's spare output buffer, for the rare inputs that do
    /// not come straight from the event loop (faults, workload events).
    pub(super) fn input(&mut self, i: usize, input: Input) {
        let mut out = std::mem::take(&mut self.out);
        self.input_with(i, input, &mut out);
        self.out = out;
    }

    /// Hands `input` to node `i` now, or queues it while the node is busy or hung.
    #[inline(always)]
    pub(super) fn input_with(&mut self, i: usize, input: Input, out: &mut Vec<Output>) {
        let n = &mut self.nodes[i];
        if n.node.is_none() {
            return;
        }
        let ready = n.queue.is_empty()
            && n.client_queue.is_empty()
            && self.now >= n.busy_until
            && self.now >= n.hung_until;
        if ready {
            self.step(i, input, out);
            return;
        }
        if let Input::Client(_) = input {
            // `Arrive` refused requests past the limit already.
            n.client_queue.push_back(input);
        } else if n.queue.len() >= self.cfg.peer_queue_limit {
            self.stats.messages_dropped += 1;
            return;
        } else {
            n.queue.push_back(input);
        }
        self.schedule_resume(i);
    }

    fn schedule_resume(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        if n.resume_scheduled || (n.queue.is_empty() && n.client_queue.is_empty()) {
            return;
        }
        n.resume_scheduled = true;
        let at = n.busy_until.max(n.hung_until).max(self.now);
        let incarnation = n.incarnation;
        self.schedule(
            at,
            Ev::Resume {
                node: i,
                incarnation,
            },
        );
    }

    /// A busy node is free again (the event may be of an earlier life).
    #[inline(always)]
    pub(super) fn resume(&mut self, node: usize, incarnation: u64, out: &mut Vec<Output>) {
        if self.nodes[node].incarnation != incarnation {
            return;
        }
        self.nodes[node].resume_scheduled = false;
        self.drain(node, out);
    }

    /// Works through the node's queue for as long as it is free at `now`.
    pub(super) fn drain(&mut self, i: usize, out: &mut Vec<Output>) {
        loop {
            let n = &mut self.nodes[i];
            if n.node.is_none() || self.now < n.busy_until || self.now < n.hung_until {
                break;
            }
            let Some(input) = n.queue.pop_front().or_else(|| n.client_queue.pop_front()) else {
                break;
            };
            self.step(i, input, out);
        }
        self.schedule_resume(i);
    }

    /// One step of node `i`: the input goes in, the outputs are executed in order. `out` is the
    /// output buffer, passed down from the event loop rather than taken from and put back into
    /// `self` at every step (no step runs inside another).
    fn step(&mut self, i: usize, input: Input, out: &mut Vec<Output>) {
        let now = self.now;
        let n = &mut self.nodes[i];
        n.disk.complete_until(now);
        let Some(node) = n.node.as_mut() else {
            return;
        };
        out.clear();
        // The time and the node in one word: times stay below 2^48 us (nine years), node ids
        // below 2^16.
        self.tr.hasher.u64(now ^ u64::from(n.id.0) << 48);
        self.tr.hasher.input(&input);
        let tick = matches!(input, Input::Tick);
        // A follower passing a leader's answer on to its client answers nothing itself.
        let passes_on = matches!(
            &input,
            Input::Message(Message {
                body: MessageBody::ForwardReply { .. },
                ..
            })
        );
        node.step(keel_core::Instant(now), input, out);
        self.stats.steps += 1;
        self.checkers.after_step(now, node, out);
        if node.is_leader() && !passes_on {
            let pending = &self.clients.pending;
            let floor_of = |id: &keel_core::RequestId| pending.get(id).and_then(|p| p.read_floor);
            check_read_answers(&mut self.checkers, floor_of, now, node, out);
        }
        // The timer contract: a Tick handles everything due, so the next deadline lies ahead.
        // A node that asks to be woken again at once would spin for ever.
        if tick && node.next_deadline().0 <= now {
            let why = format!(
                "{} handled a tick at {now} us and asked to be woken at {} us: it would spin",
                n.id,
                node.next_deadline().0
            );
            self.checkers.no_progress(now, why);
            self.halted = true;
        }
        let cut = n.take_cut(out);
        let cost = self.us.step_cost + self.us.output_cost * out.len() as u64;
        let t = now + scaled(cost, n.slow_factor);
        n.busy_until = t;
        let moment = if self.faults.armed.any && cut.is_none() {
            self.armed_moment(i, out)
        } else {
            Moment::NONE
        };
        if let Some(k) = cut {
            // Outputs from the cut on are lost with the crash: never executed, never hashed.
            out.truncate(k);
        }
        let role_changed = self.execute(i, t, out);
        if let Some(committed) = self.checkers.take_commit_to_check() {
            self.check_commit_holders(i, committed);
        }
        self.after_step(i, t, cut, moment, role_changed);
    }

    /// Executes the outputs of node `i`'s step ending at `t`, in order; true if one may change
    /// who leads.
    #[inline(always)]
    fn execute(&mut self, i: usize, t: u64, out: &mut Vec<Output>) -> bool {
        let mut role_changed = false;
        // Taken from the end of the reversed buffer: a step has one or two outputs as a rule,
        // and popping needs no iterator to drop afterwards.
        out.reverse();
        while let Some(o) = out.pop() {
            self.tr.hasher.output(&o);
            match o {
                Output::Persist(p) => {
                    let slow = self.nodes[i].slow_factor;
                    self.nodes[i]
                        .disk
                        .persist(t, p, self.us.fsync_latency, slow);
                    self.stats.persists += 1;
                }
                Output::Send(m) => self.send(i, t, m),
                Output::Reply(r) => self.reply(i, t, r),
                Output::Trace(e) => role_changed |= self.node_event(i, &e),
                Output::Workload(a) => self.workload_action(i, t, a),
            }
        }
        role_changed
    }

    /// What follows a step of node `i` ending at `t`: armed faults whose moment it was, the
    /// mid-step crash that cut it, or the next timer.
    #[inline(always)]
    fn after_step(
        &mut self,
        i: usize,
        t: u64,
        cut: Option<usize>,
        moment: Moment,
        role_changed: bool,
    ) {
        if moment != Moment::NONE {
            self.armed_faults_strike(i, t, moment);
        }
        if let Some(k) = cut {
            // The crash strikes at the cut: what was released by then left, the rest is lost.
            self.crash_at(i, t, Some(k));
        } else {
            self.arm_timer(i);
        }
        if role_changed || cut.is_some() {
            self.update_leadership();
        }
    }

    /// Node `i` dies now: volatile state and every unfinished fsync are lost.
    pub(super) fn crash(&mut self, i: usize, cut: Option<usize>) {
        self.crash_at(i, self.now, cut);
    }

    /// Node `i` dies at `now` (the end of a cut step, or the current time).
    pub(super) fn crash_at(&mut self, i: usize, now: u64, cut: Option<usize>) {
        let n = &mut self.nodes[i];
        if n.node.is_none() {
            return;
        }
        let lost = n.disk.crash(now);
        n.node = None;
        n.queue.clear();
        n.client_queue.clear();
        n.crash_times.push(now);
        self.work.disturbed_at[i] = now;
        self.work.procs.lease_until[i] = 0;
        let killed = self.work.procs.remove_where(now, |c| c.node == i);
        if killed > 0 {
            let id = self.members[i];
            let text = format!("{id} crashes: its {killed} copies die with it");
            self.stats.workloads.health_log.push((now, id, text));
        }
        let n = &mut self.nodes[i];
        n.incarnation += 1;
        n.crash_in_next_step = None;
        n.resume_scheduled = false;
        n.hung_until = 0;
        n.tick_at = u64::MAX;
        self.record_crash(i, now, cut, lost);
        self.update_leadership();
    }

    /// The statistics, coverage, condensed line, hash and trace of node `i`'s crash at `now`.
    fn record_crash(&mut self, i: usize, now: u64, cut: Option<usize>, lost: u64) {
        let id = self.nodes[i].id;
        self.stats.unsynced_writes_lost += lost;
        self.cover(if cut.is_some() {
            "crash in the middle of a step"
        } else {
            "crash between steps"
        });
        if lost > 0 {
            self.cover("un-synced write lost in a crash");
        }
        self.faults.crashed_stack.retain(|&c| c != i);
        self.faults.crashed_stack.push(i);
        let at = match cut {
            Some(k) => format!(" after output {k} of a step"),
            None => String::new(),
        };
        let lost_text = if lost > 0 {
            format!(", {lost} un-synced writes lost")
        } else {
            String::new()
        };
        self.condensed(format!("{id} crashes{at}{lost_text}"));
        self.tr.hasher.u64(0xC4A5);
        self.tr.hasher.u64(u64::from(id.0));
        self.tr.hasher.u64(lost);
        if self.tr.on() {
            self.trace_json(serde_json::json!({
                "t_us": now, "kind": "crash", "node": id.to_string(),
                "cut_after_output": cut, "unsynced_writes_lost": lost,
            }));
        }
    }

    /// Node `i` loses its disk: it crashes (if up), its durable state is emptied, and it starts
    /// again at once as a new incarnation with no bootstrap members (see `node_config`).
    pub(super) fn wipe_disk(&mut self, i: usize) {
        self.crash(i, None);
        let n = &mut self.nodes[i];
        n.lost_disk = Some((n.disk_life, std::mem::take(&mut n.disk.durable)));
        n.disk.wipe();
        n.disk_life += 1;
        let life = n.disk_life;
        self.faults.last_wiped = Some(i);
        let id = self.members[i];
        self.cover("disk wiped");
        self.condensed(format!(
            "{id} loses its disk (incarnation {life} from now on)"
        ));
        self.tr.hasher.u64(0xD15C);
        self.tr.hasher.u64(u64::from(id.0));
        if self.tr.on() {
            self.trace_json(serde_json::json!({
                "t_us": self.now, "kind": "wipe", "node": id.to_string(), "incarnation": life,
            }));
        }
        self.restart(i);
    }

    /// Node `i`, down, starts again from its durable state.
    pub(super) fn restart(&mut self, i: usize) {
        if self.nodes[i].up() {
            return;
        }
        self.faults.crashed_stack.retain(|&c| c != i);
        self.checkers.node_restarted(self.members[i]);
        self.work.disturbed_at[i] = self.now;
        self.start_node(i);
        let id = self.members[i];
        self.condensed(format!("{id} restarts from durable state"));
        self.tr.hasher.u64(0x5E57);
        self.tr.hasher.u64(u64::from(id.0));
        if self.tr.on() {
            self.trace_json(serde_json::json!({
                "t_us": self.now, "kind": "restart", "node": id.to_string(),
            }));
        }
    }
}
