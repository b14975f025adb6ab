//! The discrete-event engine: N core nodes, a network, storage with fsync latency, a CPU per
//! node, clients, and the fault injector, driven by one event queue keyed by (time, sequence).
//!
//! Virtual time jumps from event to event, so idle gaps cost nothing. Everything random comes from
//! per-component streams of one master seed ([`crate::rng`]). This file owns the [`World`] (one
//! run: its parts and its clock), the event loop and the dispatch of each event to the part that
//! handles it; it must never grow the parts' logic. The parts, one file each:
//!
//! - [`host`]: a simulated machine per node: one input at a time at a CPU cost per step and per
//!   output, bounded peer and client queues (peers first), its timer, crash and restart.
//! - [`disk`]: fsyncs with drawn latency and group commit; every `Send` or `Reply` after a
//!   `Persist` leaves only when it is durable (persist before send); a crash keeps exactly the
//!   syncs that completed before it.
//! - [`network`]: latency from the scenario's range (so messages reorder), drops, duplicates,
//!   cut and delayed links.
//! - [`clients`]: closed-loop clients following leader hints, the history they record, and the
//!   acknowledged writes they hand to the checkers ([`acked`]).
//! - [`faults`]: the fault injector, one file per fault family.
//! - [`workload_driver`]: the simulated workload processes and the operator.
//! - [`node_events`], [`stats`], [`tracer`]: what the run records (events, figures, hash, trace).
//! - [`holders`]: who holds a committed entry, for the checker that needs every node's log.
//! - [`config`], [`events`], [`queue`], [`guard`]: the model parameters, the event type, the
//!   event queue, the progress guards.

mod acked;
mod clients;
mod config;
mod disk;
mod events;
mod faults;
mod guard;
mod holders;
mod host;
mod network;
mod node_events;
mod queue;
mod stats;
mod tracer;
mod workload_driver;

use keel_core::{ClientReply, Node, NodeId, Output};

pub use config::SimConfig;

use crate::checkers::SafetyCheckers;
use crate::history::History;
use crate::report::RunStats;
use crate::rng::{tag, Stream};
use crate::scenario::Scenario;
use clients::{expected_ops, Answer, Clients};
use config::{us, Micros};
use events::Ev;
use faults::FaultState;
use guard::ProgressGuard;
use host::SimNode;
use network::Network;
use stats::{Leadership, Window};
use tracer::Tracer;
use workload_driver::WorkState;

/// One simulation run. Build it with [`World::new`], run it with [`World::run`].
pub(crate) struct World<'a> {
    scenario: &'a Scenario,
    seed: u64,
    cfg: SimConfig,
    us: Micros,
    now: u64,
    end: u64,
    queue: queue::EventQueue<Ev>,
    nodes: Vec<SimNode>,
    members: Vec<NodeId>,
    net: Network,
    clients: Clients,
    faults: FaultState,
    work: WorkState,
    pub(crate) history: History,
    pub(crate) checkers: SafetyCheckers,
    /// Set when a run must stop at once (a node broke the timer contract).
    halted: bool,
    tr: Tracer<'a>,
    /// The spare output buffer (see [`World::input`]).
    out: Vec<Output>,
    pub(crate) stats: RunStats,
    lead: Leadership,
    window: Window,
}

impl<'a> World<'a> {
    pub(crate) fn new(
        scenario: &'a Scenario,
        seed: u64,
        cfg: SimConfig,
        trace: Option<&'a mut dyn std::io::Write>,
    ) -> World<'a> {
        let n = scenario.nodes;
        let members: Vec<NodeId> = (1..=n as u32).map(NodeId).collect();
        let nodes = members
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let disk_life = u64::from(i >= scenario.members);
                let storage = Stream::new(seed, tag::NODE_STORAGE + i as u64);
                SimNode::new(*id, disk_life, storage)
            })
            .collect();
        World {
            scenario,
            seed,
            us: Micros::new(&cfg, scenario),
            cfg,
            now: 0,
            end: us(scenario.duration),
            queue: queue::EventQueue::new(),
            nodes,
            checkers: SafetyCheckers::with_bootstrap(&members, &members[..scenario.members]),
            halted: false,
            members,
            net: Network::new(n, Stream::new(seed, tag::NETWORK)),
            clients: Clients::new(scenario.clients.count, Stream::new(seed, tag::CLIENTS)),
            faults: FaultState::new(
                n,
                Stream::new(seed, tag::FAULTS),
                Stream::new(seed, tag::OVERLOAD),
            ),
            work: WorkState::new(scenario),
            history: History::with_capacity(expected_ops(scenario)),
            tr: Tracer::new(trace),
            out: Vec::new(),
            stats: RunStats::default(),
            lead: Leadership::default(),
            window: Window::default(),
        }
    }

    fn schedule(&mut self, time: u64, ev: Ev) {
        self.queue.push(time, ev);
    }

    /// Runs to the scenario's end. Returns the trace hash.
    pub(crate) fn run(&mut self) -> Result<u64, std::io::Error> {
        for i in 0..self.nodes.len() {
            self.start_node(i);
        }
        self.start_clients();
        for (index, f) in self.scenario.faults.iter().enumerate() {
            let at = us(f.at);
            self.schedule(at, Ev::Fault { index });
        }
        self.start_workloads();
        let end = self.end;
        self.schedule(end, Ev::End);
        let mut guard = ProgressGuard::default();
        // The steps' output buffer, handed down to every step the loop takes (see `host`).
        let mut out = std::mem::take(&mut self.out);
        while let Some(ev) = self.queue.pop() {
            let time = self.queue.time();
            self.now = time;
            self.stats.events += 1;
            if self.halted {
                break;
            }
            if let Some(why) = guard.observe(time) {
                self.checkers.no_progress(self.now, why);
                break;
            }
            self.roll_window();
            if matches!(ev, Ev::End) {
                break;
            }
            self.handle(ev, &mut out);
        }
        self.out = out;
        self.finish();
        self.tr.finish()
    }

    /// Hands one event to the part that handles it; `out` is the buffer for the outputs of the
    /// steps it takes.
    #[inline(always)]
    fn handle(&mut self, ev: Ev, out: &mut Vec<Output>) {
        match ev {
            Ev::Tick { node, gen } => self.tick(node, gen, out),
            Ev::Deliver {
                msg,
                from_incarnation,
                released_at,
            } => self.deliver(msg, from_incarnation, released_at, out),
            Ev::Arrive { node, req } => self.arrive(node, req, out),
            Ev::Answer {
                from,
                from_incarnation,
                released_at,
                reply,
            } => {
                if self.lost_in_crash(from, from_incarnation, released_at) {
                    return;
                }
                let ClientReply { id, result } = *reply;
                self.client_answer(id, Answer::Reply(result));
            }
            Ev::Refused { id } => self.client_answer(id, Answer::Refused),
            Ev::ClientTimeouts => self.client_timeouts(),
            Ev::ClientIssue { client } => self.client_issue(client),
            Ev::Resume { node, incarnation } => self.resume(node, incarnation, out),
            Ev::Fault { index } => self.fault(index),
            Ev::PendingCrash { node, incarnation } => self.pending_crash(node, incarnation),
            Ev::HangEnd { node } => self.hang_ends(node, out),
            Ev::SlowEnd { node, token } => self.slow_ends(node, token),
            Ev::OverloadArrival { burst } => self.overload_arrival(burst),
            Ev::WorkloadProgress { token } => self.workload_progress(token),
            Ev::LeaseExpiry { node } => self.lease_expiry(node),
            Ev::AdminSubmit { spec } => self.admin_submit(spec),
            Ev::VoteCrash {
                node,
                incarnation,
                down,
            } => self.vote_crash_strikes(node, incarnation, down),
            Ev::ArmedRestart { node, incarnation } => self.armed_restart(node, incarnation),
            Ev::IsolationEnd { node, token } => self.isolation_ends(node, token),
            Ev::DelayEnd { from, to, token } => self.delay_ends(from, to, token),
            Ev::MemberRetry { task } => self.operator_step(task),
            Ev::End => {}
        }
    }

    /// The end of the run: open operations and outages are closed, the final checks run, and
    /// the end is hashed.
    fn finish(&mut self) {
        let end = self.now;
        self.close_outage();
        self.history.close_open_ops(end);
        self.work.procs.finish(&mut self.stats.workloads);
        self.record_final_registry();
        self.record_membership();
        let live: Vec<&Node> = self.nodes.iter().filter_map(|n| n.node.as_ref()).collect();
        self.checkers.at_end(end, &live);
        const RAN: [&str; 4] = [
            "checker OneVoterAtATime ran",
            "checker OnlyVotersVote ran",
            "checker ElectedByVoters ran",
            "checker CommittedOnVoterMajority ran",
        ];
        for (what, n) in RAN.into_iter().zip(self.checkers.membership_checks()) {
            if n > 0 {
                *self.stats.coverage.entry(what).or_insert(0) += n;
            }
        }
        self.stats.sim_time_us = end;
        self.stats.final_commit_index = self.window.max_commit;
        self.tr.hasher.u64(0xE7D);
        self.tr.hasher.u64(end);
    }
}
