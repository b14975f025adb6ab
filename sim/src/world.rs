//! The discrete-event engine: N core nodes, a network, storage with fsync latency, a CPU per
//! node, clients, and the fault injector, driven by one event queue keyed by (time, sequence).
//!
//! Virtual time jumps from event to event, so idle gaps cost nothing. Everything random comes from
//! per-component streams of one master seed ([`crate::rng`]). The model, and why:
//!
//! - **CPU.** A node handles one input at a time; a step costs [`SimConfig::step_cost`] plus
//!   [`SimConfig::output_cost`] per output. Inputs that arrive while it is busy wait: peer messages
//!   in one FIFO, client requests in another that is only served when the first is empty (as a
//!   node with separate peer and client listeners would), each bounded; past the bound messages
//!   are dropped and clients refused, as a full accept queue would.
//! - **Storage.** A `Persist` output starts an fsync that completes after a latency drawn from
//!   [`SimConfig::fsync_latency`]; syncs complete in order. Every `Send` or `Reply` after it leaves
//!   only when it completes (the driver contract: persist before send). A crash keeps exactly the
//!   syncs that completed before it and drops the rest, and every message or reply still held
//!   behind them.
//! - **Crash points.** A `Crash` fault either strikes between two steps or (with
//!   [`SimConfig::mid_step_crash_probability`]) during the node's next step that persists
//!   something, after that persist and a random number of the outputs behind it: the persist is
//!   lost, and every later output with it. Every cut point after a write is reachable.
//! - **Hang.** The node takes no input until the hang ends (its inputs queue up), then resumes with
//!   whatever it believed before.
//! - **Network.** Each message gets a latency from the scenario's range (so messages reorder), may
//!   be dropped or duplicated, and is dropped if the link is cut at send or at delivery time. A slow
//!   node multiplies its CPU, fsync and outgoing latency by its factor. A delayed link (fault
//!   `Delay`) adds a fixed latency to every message that leaves on it while the delay lasts.
//! - **Clients.** Each client is a closed loop issuing one operation at a time to the node it
//!   believes leads (following leader hints), with think time for the configured rate; clients are
//!   not partitioned from the nodes. Overload bursts are open-loop requests at a fixed rate. Every
//!   request is recorded in the history (invoke, then ok / fail / info).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use keel_core::{
    ClientError, ClientOp, ClientReply, ClientRequest, ClientResponse, Config, DurableState, Event,
    ExitOutcome, Input, Key, LogIndex, Message, MessageBody, Node, NodeId, Output, Persist,
    RequestId, WorkloadAction, WorkloadDecision, WorkloadEvent, WorkloadEventKind, WorkloadOp,
    WorkloadSpec, Write,
};

use crate::checkers::SafetyCheckers;

/// Events at one simulated instant past which a run is stopped as stuck (a working cluster
/// produces a few hundred at most).
const MAX_EVENTS_AT_ONE_INSTANT: u64 = 1_000_000;
/// Events per simulated second, averaged from the start, past which a run is stopped as
/// spinning (a loaded 5-node cluster produces about 3,000; the overload scenarios average
/// under 50,000).
const MAX_EVENTS_PER_SIM_SECOND: u64 = 500_000;

/// The progress guards (see [`crate::checkers::PROGRESS`]): simulated time must move, and at a
/// sane event rate. Fed every event's time; says why the run must stop, if it must.
#[derive(Default)]
struct ProgressGuard {
    now: u64,
    at_instant: u64,
    events: u64,
}

impl ProgressGuard {
    #[inline]
    fn observe(&mut self, time: u64) -> Option<String> {
        self.at_instant = if time == self.now {
            self.at_instant + 1
        } else {
            0
        };
        self.now = time;
        self.events += 1;
        if self.at_instant > MAX_EVENTS_AT_ONE_INSTANT {
            return Some(format!(
                "{} events at one instant: simulated time stopped",
                self.at_instant
            ));
        }
        // The budget is looked at every 4096 events: it only has to stop a spin eventually.
        if self.events & 0xfff == 0 {
            let budget = (time / 1_000_000 + 1) * MAX_EVENTS_PER_SIM_SECOND;
            if self.events > budget {
                return Some(format!(
                    "over {budget} events by this time: something spins"
                ));
            }
        }
        None
    }
}
use crate::history::{Completion, History, Op, OpId};
use crate::linearizability::BuildKeyHasher;
use crate::report::{Failover, RunStats};
use crate::rng::{self, tag, Stream};
use crate::scenario::{Fault, Scenario, Selector, ARMED_FAULT_PATIENCE};
use crate::trace::TraceHasher;
use crate::workloads::{self as wl, FinalWorkload, Processes};

/// The simulator's own model parameters (not part of a scenario). Defaults model a LAN cluster of
/// small servers with SSDs.
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    /// CPU time of one step, whatever the input. Default 20 µs.
    pub step_cost: Duration,
    /// Extra CPU time per output of a step. Default 5 µs.
    pub output_cost: Duration,
    /// Range of one fsync's latency. Default 100–500 µs.
    pub fsync_latency: (Duration, Duration),
    /// Most peer messages waiting for a busy or hung node; past it they are dropped. Default
    /// 20,000.
    pub peer_queue_limit: usize,
    /// Most client requests waiting for a busy or hung node (its accept backlog); past it new
    /// requests are refused. Peer messages are always taken first, so client load can delay
    /// but never starve replication. Default 1,024.
    pub client_queue_limit: usize,
    /// Probability that a `Crash` fault strikes in the middle of the node's next step rather than
    /// between two steps. Default 0.5.
    pub mid_step_crash_probability: f64,
    /// Run every node with this deliberate bug (feature `planted-bugs`). Default none.
    #[cfg(feature = "planted-bugs")]
    pub planted_bug: Option<keel_core::PlantedBug>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            step_cost: Duration::from_micros(20),
            output_cost: Duration::from_micros(5),
            fsync_latency: (Duration::from_micros(100), Duration::from_micros(500)),
            peer_queue_limit: 20_000,
            client_queue_limit: 1_024,
            mid_step_crash_probability: 0.5,
            #[cfg(feature = "planted-bugs")]
            planted_bug: None,
        }
    }
}

fn us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 4)
}

/// `x` scaled by a slow node's `factor`: `(x as f64 * factor) as u64`, skipping the float
/// round trip for the usual factor 1 (exact below 2^53, so the result is the same).
#[inline]
fn scaled(x: u64, factor: f64) -> u64 {
    if factor == 1.0 && x < (1 << 53) {
        x
    } else {
        scaled_slow(x, factor)
    }
}

/// The float path of [`scaled`], out of line: left inline, the compiler computes it on every
/// call (branch-free) even though a node is almost never slow.
#[cold]
#[inline(never)]
fn scaled_slow(x: u64, factor: f64) -> u64 {
    (x as f64 * factor) as u64
}

/// The durations the engine uses on every step, in microseconds (converted once per run).
struct Micros {
    step_cost: u64,
    output_cost: u64,
    fsync_latency: (u64, u64),
    latency: (u64, u64),
    client_timeout: u64,
}

/// What the event queue holds.
///
/// A whole word of tag (`repr(u64)`) rather than a tag tucked into the message's own: with it,
/// the payload starts word-aligned, and moving an event out of the queue copies it in aligned
/// chunks instead of chunks one byte off the stores that wrote it, which stalled store
/// forwarding at every event (eight bytes more per event; about 2% faster).
#[derive(Debug)]
#[repr(u64)]
enum Ev {
    /// A node's timer; stale unless it matches the node's current timer generation.
    Tick {
        node: usize,
        gen: u64,
    },
    /// A message arrives; dropped if its sender crashed before it was released.
    Deliver {
        msg: Message,
        from_incarnation: u64,
        released_at: u64,
    },
    /// A client request arrives at a node.
    /// Boxed, as is `Answer`'s reply: client operations are large and rare next to messages
    /// and ticks, and every event is as large as the largest.
    Arrive {
        node: usize,
        req: Box<ClientRequest>,
    },
    /// A node's reply arrives at the client side.
    Answer {
        from: usize,
        from_incarnation: u64,
        released_at: u64,
        reply: Box<ClientReply>,
    },
    /// A node refused a connection (it is down or its queue is full).
    Refused {
        id: RequestId,
    },
    /// Time out every request whose deadline passed; re-armed while requests are pending.
    ClientTimeouts,
    ClientIssue {
        client: usize,
    },
    /// A busy node is free again: take the next queued input.
    Resume {
        node: usize,
        incarnation: u64,
    },
    Fault {
        index: usize,
    },
    /// A mid-step crash that found no writing step in time strikes now.
    PendingCrash {
        node: usize,
        incarnation: u64,
    },
    HangEnd {
        node: usize,
    },
    SlowEnd {
        node: usize,
        token: u64,
    },
    OverloadArrival {
        burst: u64,
    },
    /// A workload copy shows progress (every `PROGRESS_US` while it runs and is not hung).
    WorkloadProgress {
        token: u64,
    },
    /// A node's supervisor checks its lease (scheduled at each new deadline).
    LeaseExpiry {
        node: usize,
    },
    /// The operator submits scenario workload `spec` (again, until it is accepted).
    AdminSubmit {
        spec: usize,
    },
    /// An armed `CrashAfterVote` strikes: the vote has left the node by now.
    VoteCrash {
        node: usize,
        incarnation: u64,
        down: u64,
    },
    /// The node a `CrashAfterVote` crashed comes back (unless something restarted it already).
    ArmedRestart {
        node: usize,
        incarnation: u64,
    },
    /// A leader cut off by `IsolateLeaderOnAppend` or `IsolateLeaderOnCommit` gets its links
    /// back.
    IsolationEnd {
        node: usize,
        token: u64,
    },
    /// A `Delay` of the link `from -> to` ends (unless a later delay of that link replaced it).
    DelayEnd {
        from: usize,
        to: usize,
        token: u64,
    },
    End,
}

struct SimNode {
    id: NodeId,
    node: Option<Node>,
    /// What survives a crash: every persist whose fsync completed.
    durable: DurableState,
    /// Persists whose fsync is under way: (completes at, what).
    syncing: VecDeque<(u64, Persist)>,
    /// When every persist issued so far is durable.
    sync_barrier: u64,
    /// When the running fsync completes.
    running_sync_end: u64,
    /// When the queued fsync (persists issued while one was running) completes.
    next_sync_end: Option<u64>,
    /// Bumped at every crash; stale events of an earlier life are ignored.
    incarnation: u64,
    /// `crash_times[i]`: when incarnation `i` ended.
    crash_times: Vec<u64>,
    busy_until: u64,
    hung_until: u64,
    /// Ticks and peer messages waiting for the node, taken before any client request.
    queue: VecDeque<Input>,
    client_queue: VecDeque<Input>,
    resume_scheduled: bool,
    tick_gen: u64,
    tick_at: u64,
    slow_factor: f64,
    slow_token: u64,
    /// A pending mid-step crash: strike after this many outputs of the next step.
    crash_in_next_step: Option<u32>,
    storage_rng: Stream,
}

impl SimNode {
    fn up(&self) -> bool {
        self.node.is_some()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owner {
    /// Client `.0`, on its key `.1` (`user/k{.1}`).
    Client(usize, usize),
    /// An overload burst, on key `.0` (`user/ov{.0}`).
    Overload(usize),
}

struct Pending {
    owner: Owner,
    /// Its history record (which, with the owner's key, gives the write to check if it is
    /// acknowledged: see [`AckedWrites`]).
    op: OpId,
    /// When it was issued (us).
    issued: u64,
    /// A read: the highest index committed anywhere when it was issued (see
    /// [`crate::checkers::FRESH_READS`]).
    read_floor: Option<LogIndex>,
}

struct Client {
    process: u64,
    target: usize,
    in_flight: Option<RequestId>,
    ops_issued: u64,
    last_invoke: u64,
    /// Per key, the last operation that showed this client the key's value (a read that returned
    /// it, or a write of it), for compare-and-set: see [`observed`].
    /// Indexed by key, grown as keys are used.
    seen: Vec<Option<OpId>>,
}

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
    /// `blocked[from * n + to]`: messages from `from` to `to` are lost.
    blocked: Vec<bool>,
    groups: Option<Vec<Vec<usize>>>,
    isolated: BTreeSet<usize>,
    one_way: BTreeSet<(usize, usize)>,
    crashed_stack: Vec<usize>,
    net_rng: Stream,
    fault_rng: Stream,
    client_rng: Stream,
    overload_rng: Stream,
    clients: Vec<Client>,
    next_process: u64,
    next_request: u64,
    /// `user/k{k}` and its text, by `k` (see [`World::client_key`]).
    client_keys: Vec<Option<(Key, Arc<str>)>>,
    /// `user/ov{k}` and its text, by `k`: the overload bursts' keys, likewise.
    overload_keys: Vec<Option<(Key, Arc<str>)>>,
    /// Where an acknowledged write is rebuilt for the checkers.
    acked_writes: AckedWrites,
    /// Requests in flight. Looked up by id only, never iterated: a hash map.
    pending: HashMap<RequestId, Pending, BuildKeyHasher>,
    /// (deadline, request) in deadline order; answered requests are skipped when they come up.
    deadlines: VecDeque<(u64, RequestId)>,
    timeouts_armed: bool,
    overload: Option<(u64, u64, f64)>,
    overload_burst: u64,
    pub(crate) history: History,
    pub(crate) checkers: SafetyCheckers,
    /// Set when a run must stop at once (a node broke the timer contract).
    halted: bool,
    hasher: TraceHasher,
    out: Vec<Output>,
    pub(crate) stats: RunStats,
    healthy_leader: Option<(NodeId, u64)>,
    /// When the last fault fired (failovers are measured from it at the latest).
    last_fault_at: u64,
    outage_since: Option<u64>,
    trace: Option<&'a mut dyn std::io::Write>,
    trace_error: Option<std::io::Error>,
    /// Commits seen in the current condensed-trace window, and when it started.
    window_start: u64,
    window_commits: u64,
    window_ops: (usize, usize, usize),
    max_commit: u64,
    /// The scenario's workload instances, submitted by an operator at the start.
    specs: Vec<WorkloadSpec>,
    /// Operator submit requests in flight: request -> spec.
    admin: BTreeMap<RequestId, usize>,
    procs: Processes,
    /// Per node: the last time a fault touched it (crash, restart, hang, slow, cut links).
    disturbed_at: Vec<u64>,
    /// Per node: when the leader last declared it dead.
    dead_declared: BTreeMap<NodeId, u64>,
    /// Per node: an armed `CrashAfterVote` (downtime, disarmed after).
    vote_crash: Vec<Option<(u64, u64)>>,
    /// Armed `IsolateLeaderOnAppend`s in firing order: (cut-off time, disarmed after).
    append_isolations: VecDeque<(u64, u64)>,
    /// Armed `IsolateLeaderOnCommit`s in firing order: (cut-off time, disarmed after).
    commit_isolations: VecDeque<(u64, u64)>,
    /// `link_delay[from * n + to]`: (extra latency, token) of a `Delay` in force on that link;
    /// extra 0 when none.
    link_delay: Vec<(u64, u64)>,
    /// True while any link is delayed: the only cost delays add to a send otherwise.
    delaying: bool,
    /// True while any fault is armed: the only cost armed faults add to a step otherwise.
    armed: bool,
    /// Per node: bumped at each timed isolation, so only the latest one's end heals it.
    isolation_token: Vec<u64>,
    /// The latest election started: (term, node), to notice two candidates in one term.
    last_election: (u64, usize),
    /// Workloads re-placed after a node was declared dead, waiting to run: name -> declared at.
    awaiting_replacement: BTreeMap<String, u64>,
}

mod queue;
mod workload_driver;

const WINDOW_US: u64 = 5_000_000;
/// How often a healthy workload copy shows progress.
const PROGRESS_US: u64 = 100_000;
/// When the operator submits the scenario's workloads, and how long it waits before resubmitting
/// one that got no answer.
const ADMIN_START_US: u64 = 300_000;
const ADMIN_RETRY_US: u64 = 200_000;
/// How long a mid-step crash waits for a step that writes before striking between steps.
const MID_STEP_CRASH_PATIENCE_US: u64 = 50_000;
/// Keys an overload burst writes and reads (`user/ov0`..), apart from the clients' keys.
const OVERLOAD_KEYS: usize = 1024;

/// `format!("c{client}.{n}")`, the value a client writes, without the formatting machinery (one
/// per client operation).
fn client_value(client: usize, n: u64) -> String {
    /// Writes `x` in decimal ending just before `buf[end]`; returns where it starts.
    fn decimal_before(buf: &mut [u8], mut end: usize, mut x: u64) -> usize {
        loop {
            end -= 1;
            buf[end] = b'0' + (x % 10) as u8;
            x /= 10;
            if x == 0 {
                return end;
            }
        }
    }
    // Filled from the back: `c`, up to 20 digits, `.`, up to 20 digits.
    let mut buf = [0u8; 42];
    let mut start = decimal_before(&mut buf, 42, n);
    start -= 1;
    buf[start] = b'.';
    start = decimal_before(&mut buf, start, client as u64);
    start -= 1;
    buf[start] = b'c';
    // ASCII throughout, so never the empty fallback.
    String::from(std::str::from_utf8(&buf[start..]).unwrap_or_default())
}

/// About how many operations the clients will issue (their rate over the run), capped: room
/// reserved up front for the history.
fn expected_ops(scenario: &Scenario) -> usize {
    /// At most this many are reserved (an overloaded run may issue far fewer than its rate).
    const MAX_RESERVED: f64 = 65_536.0;
    let c = &scenario.clients;
    if c.count == 0 || c.rate_per_sec.is_nan() || c.rate_per_sec <= 0.0 {
        return 0;
    }
    let ops = c.rate_per_sec * scenario.duration.as_secs_f64() * 1.05 + 64.0;
    ops.min(MAX_RESERVED) as usize
}

fn fmt_time(t: u64) -> String {
    format!("{:>4}.{:03}s", t / 1_000_000, (t / 1_000) % 1_000)
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
            .map(|(i, id)| SimNode {
                id: *id,
                node: None,
                durable: DurableState::default(),
                syncing: VecDeque::new(),
                sync_barrier: 0,
                running_sync_end: 0,
                next_sync_end: None,
                incarnation: 0,
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
                storage_rng: Stream::new(seed, tag::NODE_STORAGE + i as u64),
            })
            .collect();
        let clients = (0..scenario.clients.count)
            .map(|i| Client {
                process: i as u64,
                target: 0,
                in_flight: None,
                ops_issued: 0,
                last_invoke: 0,
                seen: Vec::new(),
            })
            .collect();
        World {
            scenario,
            seed,
            us: Micros {
                step_cost: us(cfg.step_cost),
                output_cost: us(cfg.output_cost),
                fsync_latency: (us(cfg.fsync_latency.0), us(cfg.fsync_latency.1)),
                latency: (
                    us(scenario.network.latency.0),
                    us(scenario.network.latency.1),
                ),
                client_timeout: us(scenario.clients.timeout),
            },
            cfg,
            now: 0,
            end: us(scenario.duration),
            queue: queue::EventQueue::new(),
            nodes,
            checkers: SafetyCheckers::new(&members),
            halted: false,
            members,
            blocked: vec![false; n * n],
            groups: None,
            isolated: BTreeSet::new(),
            one_way: BTreeSet::new(),
            crashed_stack: Vec::new(),
            net_rng: Stream::new(seed, tag::NETWORK),
            fault_rng: Stream::new(seed, tag::FAULTS),
            client_rng: Stream::new(seed, tag::CLIENTS),
            overload_rng: Stream::new(seed, tag::OVERLOAD),
            next_process: scenario.clients.count as u64,
            clients,
            next_request: 1,
            client_keys: Vec::new(),
            overload_keys: Vec::new(),
            acked_writes: AckedWrites::default(),
            pending: HashMap::default(),
            deadlines: VecDeque::new(),
            timeouts_armed: false,
            overload: None,
            overload_burst: 0,
            history: History::with_capacity(expected_ops(scenario)),
            hasher: TraceHasher::default(),
            out: Vec::new(),
            stats: RunStats::default(),
            healthy_leader: None,
            last_fault_at: 0,
            outage_since: Some(0),
            trace,
            trace_error: None,
            window_start: 0,
            window_commits: 0,
            window_ops: (0, 0, 0),
            max_commit: 0,
            specs: wl::instances(scenario),
            admin: BTreeMap::new(),
            procs: Processes::new(n),
            disturbed_at: vec![0; n],
            dead_declared: BTreeMap::new(),
            awaiting_replacement: BTreeMap::new(),
            vote_crash: vec![None; n],
            append_isolations: VecDeque::new(),
            commit_isolations: VecDeque::new(),
            link_delay: vec![(0, 0); n * n],
            delaying: false,
            armed: false,
            isolation_token: vec![0; n],
            last_election: (0, 0),
        }
    }

    fn schedule(&mut self, time: u64, ev: Ev) {
        self.queue.push(time, ev);
    }

    fn trace_json(&mut self, value: serde_json::Value) {
        if let Some(w) = self.trace.as_mut() {
            if self.trace_error.is_none() {
                let line = value.to_string();
                if let Err(e) = writeln!(w, "{line}") {
                    self.trace_error = Some(e);
                }
            }
        }
    }

    fn cover(&mut self, what: &'static str) {
        *self.stats.coverage.entry(what).or_insert(0) += 1;
    }

    fn condensed(&mut self, line: String) {
        self.stats
            .condensed
            .push(format!("{} {line}", fmt_time(self.now)));
    }

    /// Runs to the scenario's end. Returns the trace hash.
    pub(crate) fn run(&mut self) -> Result<u64, std::io::Error> {
        for i in 0..self.nodes.len() {
            self.start_node(i);
        }
        for c in 0..self.clients.len() {
            let at = self.client_rng.between(0, 20_000);
            self.clients[c].target = self.client_rng.below(self.nodes.len());
            self.schedule(at, Ev::ClientIssue { client: c });
        }
        for (index, f) in self.scenario.faults.iter().enumerate() {
            let at = us(f.at);
            self.schedule(at, Ev::Fault { index });
        }
        self.stats.workloads.instances = self.specs.len();
        for spec in 0..self.specs.len() {
            self.schedule(ADMIN_START_US, Ev::AdminSubmit { spec });
        }
        let end = self.end;
        self.schedule(end, Ev::End);
        let mut guard = ProgressGuard::default();
        // The steps' output buffer, handed down to every step the loop takes (see `Self::step`).
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
        match self.trace_error.take() {
            Some(e) => Err(e),
            None => Ok(self.hasher.finish()),
        }
    }

    fn roll_window(&mut self) {
        while self.now >= self.window_start + WINDOW_US {
            let (ok, fail, info) = self.window_ops;
            let start = self.window_start;
            self.window_start += WINDOW_US;
            let line = format!(
                "{}-{} commits +{}, client ops ok {ok} / fail {fail} / info {info}",
                fmt_time(start).trim_start(),
                fmt_time(self.window_start).trim_start(),
                self.window_commits,
            );
            self.stats
                .condensed
                .push(format!("{} {line}", fmt_time(self.window_start)));
            self.window_commits = 0;
            self.window_ops = (0, 0, 0);
        }
    }

    /// Handles one event; `out` is the buffer for the outputs of the steps it takes.
    #[inline(always)]
    fn handle(&mut self, ev: Ev, out: &mut Vec<Output>) {
        match ev {
            Ev::Tick { node, gen } => {
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
            Ev::Deliver {
                msg,
                from_incarnation,
                released_at,
            } => {
                let from = msg.from.0 as usize - 1;
                let to = msg.to.0 as usize - 1;
                if self.lost_in_crash(from, from_incarnation, released_at) {
                    return;
                }
                if self.blocked[from * self.nodes.len() + to] || !self.nodes[to].up() {
                    self.stats.messages_dropped += 1;
                    self.cover("message dropped");
                    return;
                }
                self.stats.messages_delivered += 1;
                if self.trace.is_some() {
                    self.trace_json(serde_json::json!({
                        "t_us": self.now, "kind": "deliver", "from": msg.from.to_string(),
                        "to": msg.to.to_string(), "term": msg.term.0, "msg": msg.body.kind(),
                    }));
                }
                self.input_with(to, Input::Message(msg), out);
            }
            Ev::Arrive { node, req } => {
                if !self.nodes[node].up()
                    || self.nodes[node].client_queue.len() >= self.cfg.client_queue_limit
                {
                    let t = self.now + self.client_latency();
                    self.schedule(t, Ev::Refused { id: req.id });
                    return;
                }
                self.input_with(node, Input::Client(*req), out);
            }
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
            Ev::ClientTimeouts => {
                self.timeouts_armed = false;
                while self.deadlines.front().is_some_and(|(d, _)| *d <= self.now) {
                    if let Some((_, id)) = self.deadlines.pop_front() {
                        self.client_answer(id, Answer::TimedOut);
                    }
                }
                self.arm_timeouts();
            }
            Ev::ClientIssue { client } => self.client_issue(client),
            Ev::Resume { node, incarnation } => {
                if self.nodes[node].incarnation != incarnation {
                    return;
                }
                self.nodes[node].resume_scheduled = false;
                self.drain(node, out);
            }
            Ev::Fault { index } => self.fault(index),
            Ev::PendingCrash { node, incarnation } => {
                let n = &self.nodes[node];
                if n.incarnation == incarnation && n.crash_in_next_step.is_some() {
                    self.crash(node, None);
                }
            }
            Ev::HangEnd { node } => {
                self.condensed(format!("{} resumes after its hang", self.nodes[node].id));
                self.drain(node, out);
                self.arm_timer(node);
                self.update_leadership();
            }
            Ev::SlowEnd { node, token } => {
                if self.nodes[node].slow_token == token {
                    self.nodes[node].slow_factor = 1.0;
                }
            }
            Ev::OverloadArrival { burst } => self.overload_arrival(burst),
            Ev::WorkloadProgress { token } => self.workload_progress(token),
            Ev::LeaseExpiry { node } => self.lease_expiry(node),
            Ev::AdminSubmit { spec } => self.admin_submit(spec),
            Ev::VoteCrash {
                node,
                incarnation,
                down,
            } => self.vote_crash_strikes(node, incarnation, down),
            Ev::ArmedRestart { node, incarnation } => {
                if !self.nodes[node].up() && self.nodes[node].incarnation == incarnation {
                    self.last_fault_at = self.now;
                    self.restart(node);
                    self.update_leadership();
                }
            }
            Ev::IsolationEnd { node, token } => self.isolation_ends(node, token),
            Ev::DelayEnd { from, to, token } => self.delay_ends(from, to, token),
            Ev::End => {}
        }
    }

    /// True if the sender crashed after producing this output but before it could leave.
    fn lost_in_crash(&self, node: usize, incarnation: u64, released_at: u64) -> bool {
        self.nodes[node]
            .crash_times
            .get(incarnation as usize)
            .is_some_and(|&crashed| crashed < released_at)
    }

    fn client_latency(&mut self) -> u64 {
        let (lo, hi) = self.us.latency;
        self.net_rng.between(lo, hi)
    }

    // ---------------------------------------------------------------- nodes

    fn node_config(&self, i: usize) -> Config {
        let inc = self.nodes[i].incarnation;
        let seed = rng::derive(self.seed, tag::NODE_CORE + i as u64).wrapping_add(inc);
        let mut cfg = Config::new(self.members[i], self.members.clone(), seed);
        cfg.raft.lease_reads = self.scenario.lease_reads;
        cfg
    }

    fn start_node(&mut self, i: usize) {
        let cfg = self.node_config(i);
        let durable = self.nodes[i].durable.clone();
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
        n.sync_barrier = self.now;
        n.running_sync_end = self.now;
        n.next_sync_end = None;
        n.tick_at = u64::MAX;
        self.arm_timer(i);
    }

    /// Makes sure a Tick is scheduled no later than the node's next deadline.
    fn arm_timer(&mut self, i: usize) {
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
    fn input(&mut self, i: usize, input: Input) {
        let mut out = std::mem::take(&mut self.out);
        self.input_with(i, input, &mut out);
        self.out = out;
    }

    /// Hands `input` to node `i` now, or queues it while the node is busy or hung.
    #[inline(always)]
    fn input_with(&mut self, i: usize, input: Input, out: &mut Vec<Output>) {
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

    /// Works through the node's queue for as long as it is free at `now`.
    fn drain(&mut self, i: usize, out: &mut Vec<Output>) {
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
        // Fsyncs that completed by now become durable.
        let n = &mut self.nodes[i];
        while n.syncing.front().is_some_and(|(done, _)| *done <= now) {
            if let Some((_, p)) = n.syncing.pop_front() {
                n.durable.apply_owned(p);
            }
        }
        let Some(node) = n.node.as_mut() else {
            return;
        };
        out.clear();
        // The time and the node in one word: times stay below 2^48 us (nine years), node ids
        // below 2^16.
        self.hasher.u64(now ^ u64::from(n.id.0) << 48);
        self.hasher.input(&input);
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
            for o in out.iter() {
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
                if let Some(floor) = self.pending.get(id).and_then(|p| p.read_floor) {
                    self.checkers.read_answered(now, node, floor);
                }
            }
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

        // A pending mid-step crash strikes in the first step that persists something, after
        // that persist and a random number of the outputs behind it: the persist was issued
        // but not synced, so it is lost, and so is everything queued behind it.
        let cut = match n.crash_in_next_step {
            None => None,
            Some(k) => match out.iter().position(|o| matches!(o, Output::Persist(_))) {
                Some(p) => {
                    n.crash_in_next_step = None;
                    Some(p + 1 + (k as usize) % (out.len() - p))
                }
                None => None,
            },
        };
        let slow = n.slow_factor;
        let cost = self.us.step_cost + self.us.output_cost * out.len() as u64;
        let t = now + scaled(cost, slow);
        n.busy_until = t;
        let moment = if self.armed && cut.is_none() {
            self.armed_moment(i, out)
        } else {
            Moment::NONE
        };

        let mut role_changed = false;
        if let Some(k) = cut {
            // Outputs from the cut on are lost with the crash: never executed, never hashed.
            out.truncate(k);
        }
        // Executed in order, taken from the end of the reversed buffer: a step has one or two
        // outputs as a rule, and popping needs no iterator to drop afterwards.
        out.reverse();
        while let Some(o) = out.pop() {
            self.hasher.output(&o);
            match o {
                Output::Persist(p) => self.persist(i, t, p),
                Output::Send(m) => self.send(i, t, m),
                Output::Reply(r) => self.reply(i, t, r),
                Output::Trace(e) => role_changed |= self.node_event(i, &e),
                Output::Workload(a) => self.workload_action(i, t, a),
            }
        }
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

    /// Starts making `p` durable, with group commit: a persist issued while an fsync is running
    /// joins the next one, which starts when the running one completes and covers every persist
    /// that joined it.
    fn persist(&mut self, i: usize, t: u64, p: Persist) {
        let (lo, hi) = self.us.fsync_latency;
        let n = &mut self.nodes[i];
        if let Some(next) = n.next_sync_end {
            if n.sync_barrier <= t || n.running_sync_end <= t {
                // The queued batch has started by now: it is the running one.
                n.running_sync_end = next;
                n.next_sync_end = None;
            }
        }
        let done = if n.running_sync_end <= t {
            let latency = n.storage_rng.between(lo, hi);
            n.running_sync_end = t + scaled(latency, n.slow_factor);
            n.running_sync_end
        } else if let Some(next) = n.next_sync_end {
            next
        } else {
            let latency = n.storage_rng.between(lo, hi);
            let next = n.running_sync_end + scaled(latency, n.slow_factor);
            n.next_sync_end = Some(next);
            next
        };
        n.sync_barrier = n.sync_barrier.max(done);
        n.syncing.push_back((done, p));
        self.stats.persists += 1;
    }

    fn send(&mut self, i: usize, t: u64, m: Message) {
        let released_at = self.nodes[i].sync_barrier.max(t);
        let from = i;
        let to = m.to.0 as usize - 1;
        self.stats.messages_sent += 1;
        if self.blocked[from * self.nodes.len() + to]
            || self.net_rng.chance(self.scenario.network.drop_rate)
        {
            self.stats.messages_dropped += 1;
            self.cover("message dropped");
            return;
        }
        let copies = if self.net_rng.chance(self.scenario.network.duplicate_rate) {
            self.stats.messages_duplicated += 1;
            self.cover("message duplicated");
            2
        } else {
            1
        };
        let (lo, hi) = self.us.latency;
        let slow = self.nodes[i].slow_factor;
        let incarnation = self.nodes[i].incarnation;
        // A delayed link holds the message back by a fixed time once it has left the node (no
        // draw: the network stream is the same with or without delays).
        let held = if self.delaying {
            self.link_delay[from * self.nodes.len() + to].0
        } else {
            0
        };
        if held > 0 {
            self.cover("message held back on a delayed link");
        }
        if copies == 2 {
            let latency = self.net_rng.between(lo, hi);
            let at = released_at + held + scaled(latency, slow);
            self.schedule(
                at,
                Ev::Deliver {
                    msg: m.clone(),
                    from_incarnation: incarnation,
                    released_at,
                },
            );
        }
        let latency = self.net_rng.between(lo, hi);
        let at = released_at + held + scaled(latency, slow);
        // Straight into the queue (inlined), for the message to be copied as little as can be.
        self.queue.push_with(at, || Ev::Deliver {
            msg: m,
            from_incarnation: incarnation,
            released_at,
        });
    }

    fn reply(&mut self, i: usize, t: u64, r: ClientReply) {
        let released_at = self.nodes[i].sync_barrier.max(t);
        let at = released_at + self.client_latency();
        let from_incarnation = self.nodes[i].incarnation;
        self.schedule(
            at,
            Ev::Answer {
                from: i,
                from_incarnation,
                released_at,
                reply: Box::new(r),
            },
        );
    }

    /// Records a core event; true if it may change who leads.
    fn node_event(&mut self, i: usize, e: &Event) -> bool {
        let id = self.members[i];
        if self.trace.is_some() {
            let event = serde_json::to_value(e).unwrap_or(serde_json::Value::Null);
            self.trace_json(serde_json::json!({
                "t_us": self.now, "kind": "event", "node": id.to_string(), "event": event,
            }));
        }
        match e {
            Event::BecameLeader { term } => {
                self.stats.leader_changes += 1;
                self.stats.transfers.elected.push((self.now, id));
                self.condensed(format!("{id} leads term {}", term.0));
                true
            }
            Event::SteppedDown { term, reason } => {
                self.cover(match reason {
                    keel_core::StepDownReason::HigherTerm => "leader stepped down (higher term)",
                    keel_core::StepDownReason::LostQuorum => "leader stepped down (lost quorum)",
                });
                self.condensed(format!("{id} steps down in term {} ({reason:?})", term.0));
                true
            }
            Event::BecameFollower { .. } => true,
            Event::ElectionStarted { term } => {
                self.cover("election started");
                if self.last_election.0 == term.0 && self.last_election.1 != i {
                    self.cover("two candidates in one term");
                }
                self.last_election = (term.0, i);
                false
            }
            Event::PreVoteRejected { .. } => {
                self.cover("pre-vote rejected");
                false
            }
            Event::SnapshotSent { .. } => {
                self.cover("snapshot sent");
                false
            }
            Event::Committed { index } => {
                if index.0 > self.max_commit {
                    self.window_commits += index.0 - self.max_commit;
                    self.max_commit = index.0;
                }
                false
            }
            Event::SnapshotInstalled { last_index } => {
                self.stats.snapshots_installed += 1;
                self.cover("snapshot installed");
                self.condensed(format!("{id} installs a snapshot at {}", last_index.0));
                false
            }
            Event::SnapshotTaken { .. } => {
                self.stats.snapshots_taken += 1;
                false
            }
            Event::RequestShed { .. } => {
                self.stats.requests_shed += 1;
                self.cover("request shed");
                false
            }
            Event::LogTruncated { .. } => {
                self.stats.log_truncations += 1;
                self.cover("log suffix truncated");
                false
            }
            Event::PreVoteStarted { .. } => false,
            Event::NodeHealth {
                node,
                health,
                silent_for,
            } => {
                let text = format!(
                    "{id} (leader) marks {node} {health} after {} ms of silence",
                    silent_for.as_millis()
                );
                self.stats
                    .workloads
                    .health_log
                    .push((self.now, *node, text));
                match health {
                    keel_core::Health::Dead => {
                        self.dead_declared.insert(*node, self.now);
                        self.cover("node declared dead");
                    }
                    keel_core::Health::Suspect => self.cover("node suspected"),
                    keel_core::Health::Alive => {}
                }
                self.condensed(format!("{id} marks {node} {health}"));
                false
            }
            Event::Workload { name, decision } => {
                self.workload_decision(i, name, decision);
                false
            }
            Event::LeaseLost { stopped } => {
                self.stats.workloads.leases_lost += 1;
                self.cover("lease lost");
                if *stopped > 0 {
                    self.condensed(format!("{id} lost its lease, stops {stopped} copies"));
                }
                false
            }
            Event::Breaker { node, state } => {
                if *state == keel_core::BreakerState::Open {
                    self.stats.workloads.breakers_opened += 1;
                    self.cover("breaker opened");
                }
                self.condensed(format!("{id}: breaker of {node} {state:?}"));
                false
            }
            Event::ReplacementFrozen { dead } => {
                self.stats.workloads.freezes += 1;
                self.cover("re-placement frozen (correlated failure)");
                self.condensed(format!(
                    "{id} freezes re-placement: {} nodes died at once",
                    dead.len()
                ));
                false
            }
            Event::ReplacementResumed => {
                self.condensed(format!("{id} resumes re-placement"));
                false
            }
            Event::TransferStarted { term, to } => {
                self.cover("leadership transfer started");
                self.stats.transfers.started.push((self.now, id, *to));
                self.condensed(format!("{id} hands leadership of term {} to {to}", term.0));
                true
            }
            Event::TransferAborted { term, to } => {
                self.cover("leadership transfer aborted");
                self.condensed(format!(
                    "{id} gives up handing term {} to {to}; takes writes again",
                    term.0
                ));
                true
            }
            Event::Refused { refusal } => {
                self.condensed(format!("{id} refuses an unsafe change: {refusal:?}"));
                false
            }
        }
    }

    /// Node `i` dies now: volatile state and every unfinished fsync are lost.
    fn crash(&mut self, i: usize, cut: Option<usize>) {
        self.crash_at(i, self.now, cut);
    }

    /// Node `i` dies at `now` (the end of a cut step, or the current time).
    fn crash_at(&mut self, i: usize, now: u64, cut: Option<usize>) {
        let n = &mut self.nodes[i];
        if n.node.is_none() {
            return;
        }
        let mut lost = 0;
        while let Some((done, p)) = n.syncing.pop_front() {
            if done <= now {
                n.durable.apply_owned(p);
            } else {
                lost += 1;
            }
        }
        n.node = None;
        n.queue.clear();
        n.client_queue.clear();
        n.crash_times.push(now);
        self.disturbed_at[i] = now;
        self.procs.lease_until[i] = 0;
        let killed = self.procs.remove_where(now, |c| c.node == i);
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
        let id = n.id;
        self.stats.unsynced_writes_lost += lost;
        self.cover(if cut.is_some() {
            "crash in the middle of a step"
        } else {
            "crash between steps"
        });
        if lost > 0 {
            self.cover("un-synced write lost in a crash");
        }
        self.crashed_stack.retain(|&c| c != i);
        self.crashed_stack.push(i);
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
        self.hasher.u64(0xC4A5);
        self.hasher.u64(u64::from(id.0));
        self.hasher.u64(lost);
        if self.trace.is_some() {
            self.trace_json(serde_json::json!({
                "t_us": now, "kind": "crash", "node": id.to_string(),
                "cut_after_output": cut, "unsynced_writes_lost": lost,
            }));
        }
        self.update_leadership();
    }

    fn restart(&mut self, i: usize) {
        if self.nodes[i].up() {
            return;
        }
        self.crashed_stack.retain(|&c| c != i);
        self.checkers.node_restarted(self.members[i]);
        self.disturbed_at[i] = self.now;
        self.start_node(i);
        let id = self.members[i];
        self.condensed(format!("{id} restarts from durable state"));
        self.hasher.u64(0x5E57);
        self.hasher.u64(u64::from(id.0));
        if self.trace.is_some() {
            self.trace_json(serde_json::json!({
                "t_us": self.now, "kind": "restart", "node": id.to_string(),
            }));
        }
    }

    // ---------------------------------------------------------------- leadership

    /// A node leads usefully if it is up, not hung, believes it leads, and reaches a majority.
    fn compute_healthy_leader(&self) -> Option<(NodeId, u64)> {
        let n = self.nodes.len();
        let quorum = n / 2 + 1;
        let mut best: Option<(NodeId, u64)> = None;
        for (i, sn) in self.nodes.iter().enumerate() {
            let Some(node) = sn.node.as_ref() else {
                continue;
            };
            if !node.is_leader() || self.now < sn.hung_until {
                continue;
            }
            let reach = (0..n)
                .filter(|&j| {
                    j == i
                        || (self.nodes[j].up()
                            && self.now >= self.nodes[j].hung_until
                            && !self.blocked[i * n + j]
                            && !self.blocked[j * n + i])
                })
                .count();
            if reach >= quorum && best.is_none_or(|(_, t)| node.term().0 > t) {
                best = Some((sn.id, node.term().0));
            }
        }
        best
    }

    fn update_leadership(&mut self) {
        let now = self.compute_healthy_leader();
        match (self.outage_since, now) {
            (None, None) => self.outage_since = Some(self.now),
            (Some(start), Some(_)) => {
                if self.stats.first_leader_at.is_none() {
                    self.stats.first_leader_at = Some(self.now);
                } else {
                    // A fault during an outage restarts the clock: the cluster is judged on
                    // how fast it recovers from the last fault, not on faults it could not
                    // outrun (a leader crashed again before its successor was elected).
                    let start = start.max(self.last_fault_at.min(self.now));
                    self.stats.failovers.push(Failover {
                        start_us: start,
                        end_us: Some(self.now),
                    });
                }
                self.outage_since = None;
            }
            _ => {}
        }
        self.healthy_leader = now;
    }

    // ---------------------------------------------------------------- faults

    /// Nodes that are up and not already doomed by a pending mid-step crash (so two crash
    /// faults at one instant hit two nodes).
    fn live(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].up() && self.nodes[i].crash_in_next_step.is_none())
            .collect()
    }

    fn leader_index(&self) -> Option<usize> {
        let mut best: Option<(usize, u64)> = None;
        for (i, sn) in self.nodes.iter().enumerate() {
            if let Some(node) = sn.node.as_ref() {
                if node.is_leader() && best.is_none_or(|(_, t)| node.term().0 > t) {
                    best = Some((i, node.term().0));
                }
            }
        }
        best.map(|(i, _)| i)
    }

    fn select(&mut self, sel: &Selector) -> Option<usize> {
        match sel {
            Selector::Node(name) => self.members.iter().position(|m| m.to_string() == *name),
            Selector::Leader => self.leader_index(),
            Selector::Follower => {
                let leader = self.leader_index();
                // Prefer followers that are not already cut off, so two `Isolate(Follower)`
                // faults isolate two nodes.
                let mut pool: Vec<usize> = self
                    .live()
                    .into_iter()
                    .filter(|&i| Some(i) != leader && !self.isolated.contains(&i))
                    .collect();
                if pool.is_empty() {
                    pool = self
                        .live()
                        .into_iter()
                        .filter(|&i| Some(i) != leader)
                        .collect();
                }
                if pool.is_empty() {
                    return None;
                }
                Some(pool[self.fault_rng.below(pool.len())])
            }
            Selector::LastCrashed => self.crashed_stack.last().copied(),
            Selector::Random => {
                let pool = self.live();
                if pool.is_empty() {
                    return None;
                }
                Some(pool[self.fault_rng.below(pool.len())])
            }
        }
    }

    /// Resolves a restart's target. A crash still waiting for its mid-step moment strikes now:
    /// the restart ordered after it must find the node down.
    fn select_for_restart(&mut self, sel: &Selector) -> Option<usize> {
        for i in 0..self.nodes.len() {
            if self.nodes[i].up() && self.nodes[i].crash_in_next_step.is_some() {
                self.crash(i, None);
            }
        }
        self.select(sel)
    }

    fn fault(&mut self, index: usize) {
        let Some(tf) = self.scenario.faults.get(index) else {
            return;
        };
        let fault = tf.fault.clone();
        self.stats.faults_injected += 1;
        self.last_fault_at = self.now;
        self.cover(match &fault {
            Fault::Crash(_) => "fault Crash",
            Fault::Restart(_) => "fault Restart",
            Fault::Partition(_) => "fault Partition",
            Fault::Isolate(_) => "fault Isolate",
            Fault::OneWay(..) => "fault OneWay",
            Fault::Heal => "fault Heal",
            Fault::Hang(..) => "fault Hang",
            Fault::Slow(..) => "fault Slow",
            Fault::Overload { .. } => "fault Overload",
            Fault::CrashWorkload(_) => "fault CrashWorkload",
            Fault::HangWorkload(_) => "fault HangWorkload",
            Fault::TransferLeadership => "fault TransferLeadership",
            Fault::TransferLeadershipTo(_) => "fault TransferLeadershipTo",
            Fault::Delay { .. } => "fault Delay",
            Fault::CrashAfterVote(..) => "fault CrashAfterVote",
            Fault::IsolateLeaderOnAppend(_) => "fault IsolateLeaderOnAppend",
            Fault::IsolateLeaderOnCommit(_) => "fault IsolateLeaderOnCommit",
        });
        self.hasher.u64(0xFA17);
        self.hasher.u64(index as u64);
        let name = |w: &World<'_>, i: usize| w.members[i].to_string();
        // The fault's line goes before the lines of what it causes.
        let line_at = self.stats.condensed.len();
        let text = match &fault {
            Fault::Crash(sel) => match self.select(sel) {
                Some(i) if self.nodes[i].up() => {
                    if self.fault_rng.chance(self.cfg.mid_step_crash_probability) {
                        // Strike during the next step that persists, after a random number
                        // of its outputs.
                        let k = self.fault_rng.between(0, 63) as u32;
                        self.nodes[i].crash_in_next_step = Some(k);
                        // A node that writes nothing for a while crashes anyway.
                        let incarnation = self.nodes[i].incarnation;
                        let at = self.now + MID_STEP_CRASH_PATIENCE_US;
                        self.schedule(
                            at,
                            Ev::PendingCrash {
                                node: i,
                                incarnation,
                            },
                        );
                        format!("{} (during its next step that writes)", name(self, i))
                    } else {
                        self.crash(i, None);
                        name(self, i)
                    }
                }
                _ => "nobody (no such live node)".to_string(),
            },
            Fault::Restart(sel) => match self.select_for_restart(sel) {
                Some(i) if !self.nodes[i].up() => {
                    self.restart(i);
                    name(self, i)
                }
                _ => "nobody (no such crashed node)".to_string(),
            },
            Fault::Partition(groups) => {
                let groups: Vec<Vec<usize>> = groups
                    .iter()
                    .map(|g| {
                        g.iter()
                            .filter_map(|n| self.members.iter().position(|m| m.to_string() == *n))
                            .collect()
                    })
                    .collect();
                self.groups = Some(groups);
                self.recompute_links();
                "the network".to_string()
            }
            Fault::Isolate(sel) => match self.select(sel) {
                Some(i) => {
                    self.isolated.insert(i);
                    self.recompute_links();
                    name(self, i)
                }
                None => "nobody (no such node)".to_string(),
            },
            Fault::OneWay(a, b) => match (self.select(a), self.select(b)) {
                (Some(x), Some(y)) if x != y => {
                    self.one_way.insert((x, y));
                    self.recompute_links();
                    format!("{} -/-> {}", name(self, x), name(self, y))
                }
                _ => "nobody (no such pair of distinct nodes)".to_string(),
            },
            Fault::Heal => {
                self.groups = None;
                self.isolated.clear();
                self.one_way.clear();
                self.recompute_links();
                "every link".to_string()
            }
            Fault::Hang(sel, d) => match self.select(sel) {
                Some(i) if self.nodes[i].up() => {
                    let until = self.now + us(*d);
                    let n = &mut self.nodes[i];
                    n.hung_until = n.hung_until.max(until);
                    self.schedule(until, Ev::HangEnd { node: i });
                    name(self, i)
                }
                _ => "nobody (no such live node)".to_string(),
            },
            Fault::Slow(sel, factor, d) => match self.select(sel) {
                Some(i) => {
                    let n = &mut self.nodes[i];
                    n.slow_factor = *factor;
                    n.slow_token += 1;
                    let token = n.slow_token;
                    let until = self.now + us(*d);
                    self.schedule(until, Ev::SlowEnd { node: i, token });
                    name(self, i)
                }
                None => "nobody (no such node)".to_string(),
            },
            Fault::Overload {
                rate_per_sec,
                lasting,
            } => {
                self.overload_burst += 1;
                let interval = (1e6 / rate_per_sec.max(1e-3)).max(1.0);
                self.overload = Some((self.overload_burst, self.now + us(*lasting), interval));
                let burst = self.overload_burst;
                let now = self.now;
                self.schedule(now, Ev::OverloadArrival { burst });
                "the clients".to_string()
            }
            Fault::CrashWorkload(w) => self.crash_workload(w),
            Fault::HangWorkload(w) => self.hang_workload(w),
            Fault::TransferLeadership => match self.leader_index() {
                Some(i) if self.nodes[i].up() => {
                    self.input(i, Input::TransferLeadership { to: None });
                    name(self, i)
                }
                _ => "nobody (no leader)".to_string(),
            },
            Fault::TransferLeadershipTo(sel) => match self.leader_index() {
                Some(l) if self.nodes[l].up() => match self.select(sel) {
                    Some(t) => {
                        let (leader, target) = (self.members[l], self.members[t]);
                        self.stats
                            .transfers
                            .requested
                            .push((self.now, leader, target));
                        self.input(l, Input::TransferLeadership { to: Some(target) });
                        format!("{leader} asked to hand over to {target}")
                    }
                    None => "nobody (no such node)".to_string(),
                },
                _ => "nobody (no leader)".to_string(),
            },
            Fault::Delay {
                from,
                to,
                extra,
                lasting,
            } => match (self.select(from), self.select(to)) {
                (Some(x), Some(y)) if x != y => {
                    let n = self.nodes.len();
                    let token = self.link_delay[x * n + y].1 + 1;
                    self.link_delay[x * n + y] = (us(*extra).max(1), token);
                    self.delaying = true;
                    let until = self.now + us(*lasting);
                    self.schedule(
                        until,
                        Ev::DelayEnd {
                            from: x,
                            to: y,
                            token,
                        },
                    );
                    self.disturbed_at[x] = self.now;
                    self.disturbed_at[y] = self.now;
                    format!("{} ~~> {}", name(self, x), name(self, y))
                }
                _ => "nobody (no such pair of distinct nodes)".to_string(),
            },
            Fault::CrashAfterVote(sel, down) => match self.select(sel) {
                Some(i) => {
                    let until = self.now + us(ARMED_FAULT_PATIENCE);
                    self.vote_crash[i] = Some((us(*down), until));
                    self.armed = true;
                    format!("{} (armed until its next vote)", name(self, i))
                }
                None => "nobody (no such node)".to_string(),
            },
            Fault::IsolateLeaderOnAppend(lasting) => {
                let until = self.now + us(ARMED_FAULT_PATIENCE);
                self.append_isolations.push_back((us(*lasting), until));
                self.armed = true;
                "the next leader to append (armed)".to_string()
            }
            Fault::IsolateLeaderOnCommit(lasting) => {
                let until = self.now + us(ARMED_FAULT_PATIENCE);
                self.commit_isolations.push_back((us(*lasting), until));
                self.armed = true;
                "the next leader to commit (armed)".to_string()
            }
        };
        self.note_disturbance(&fault);
        let line = format!(
            "{} fault {} -> {text}",
            fmt_time(self.now),
            describe_fault(&fault)
        );
        self.stats.condensed.insert(line_at, line);
        if self.trace.is_some() {
            self.trace_json(serde_json::json!({
                "t_us": self.now, "kind": "fault", "fault": describe_fault(&fault), "target": text,
            }));
        }
        self.update_leadership();
    }

    /// Whether node `i`'s step, with outputs `out`, is the moment of an armed fault.
    fn armed_moment(&self, i: usize, out: &[Output]) -> Moment {
        let voted = self.vote_crash[i].is_some()
            && out.iter().any(|o| {
                matches!(o, Output::Send(m)
                    if matches!(m.body, MessageBody::RequestVoteResponse { granted: true }))
            });
        let leads = (!self.append_isolations.is_empty() || !self.commit_isolations.is_empty())
            && self.nodes[i].node.as_ref().is_some_and(Node::is_leader)
            && !self.isolated.contains(&i);
        let appended = leads
            && !self.append_isolations.is_empty()
            && out
                .iter()
                .any(|o| matches!(o, Output::Persist(Persist::Entries(_))));
        let committed = leads
            && !self.commit_isolations.is_empty()
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
    fn armed_faults_strike(&mut self, i: usize, t: u64, moment: Moment) {
        let Moment {
            voted,
            appended,
            committed,
        } = moment;
        let now = self.now;
        if voted {
            if let Some((down, until)) = self.vote_crash[i].take() {
                if now <= until {
                    // The vote leaves once every persist before it is durable: crash then.
                    let at = self.nodes[i].sync_barrier.max(t);
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
        if appended {
            while let Some((lasting, until)) = self.append_isolations.pop_front() {
                if now > until {
                    continue; // disarmed: its moment never came
                }
                self.cut_off_leader(i, lasting, Cause::Append);
                break;
            }
        }
        // A leader cut off for its append just now is not cut off again for its commit.
        if committed && !self.isolated.contains(&i) {
            while let Some((lasting, until)) = self.commit_isolations.pop_front() {
                if now > until {
                    continue; // disarmed: its moment never came
                }
                self.cut_off_leader(i, lasting, Cause::Commit);
                break;
            }
        }
        self.armed = self.vote_crash.iter().any(Option::is_some)
            || !self.append_isolations.is_empty()
            || !self.commit_isolations.is_empty();
    }

    /// Cuts leader `i` off from every node for `lasting` us, right after the step that was the
    /// moment of an armed `IsolateLeaderOn*` fault.
    fn cut_off_leader(&mut self, i: usize, lasting: u64, cause: Cause) {
        let now = self.now;
        self.isolated.insert(i);
        self.recompute_links();
        self.isolation_token[i] += 1;
        let token = self.isolation_token[i];
        self.schedule(now + lasting, Ev::IsolationEnd { node: i, token });
        self.last_fault_at = now;
        self.disturbed_at[i] = now;
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
        self.hasher.u64(tag);
        self.hasher.u64(u64::from(id.0));
        if self.trace.is_some() {
            self.trace_json(serde_json::json!({
                "t_us": now, "kind": "isolate", "node": id.to_string(), "lasting_us": lasting,
                "after": what,
            }));
        }
        self.update_leadership();
    }

    /// A `Delay` of the link `from -> to` ends: messages sent on it from now on are on time.
    fn delay_ends(&mut self, from: usize, to: usize, token: u64) {
        let n = self.nodes.len();
        let link = &mut self.link_delay[from * n + to];
        if link.1 != token || link.0 == 0 {
            return;
        }
        link.0 = 0;
        self.delaying = self.link_delay.iter().any(|(extra, _)| *extra > 0);
        self.last_fault_at = self.now;
        self.disturbed_at[from] = self.now;
        self.disturbed_at[to] = self.now;
        let (a, b) = (self.members[from], self.members[to]);
        self.condensed(format!("{a} ~~> {b} on time again"));
        self.hasher.u64(0xDE1A);
        self.hasher.u64(u64::from(a.0));
        self.hasher.u64(u64::from(b.0));
        if self.trace.is_some() {
            self.trace_json(serde_json::json!({
                "t_us": self.now, "kind": "delay-end", "from": a.to_string(), "to": b.to_string(),
            }));
        }
        self.update_leadership();
    }

    /// An armed `CrashAfterVote` found its vote: the node crashes now, its answer gone out.
    fn vote_crash_strikes(&mut self, i: usize, incarnation: u64, down: u64) {
        if !self.nodes[i].up() || self.nodes[i].incarnation != incarnation {
            return;
        }
        self.last_fault_at = self.now;
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

    /// The cut-off of an `IsolateLeaderOnAppend` ends (unless a `Heal` or a later cut-off of the
    /// same node superseded it).
    fn isolation_ends(&mut self, i: usize, token: u64) {
        if self.isolation_token[i] != token || !self.isolated.remove(&i) {
            return;
        }
        self.recompute_links();
        self.last_fault_at = self.now;
        self.disturbed_at.fill(self.now);
        let id = self.members[i];
        self.condensed(format!("{id}'s links come back"));
        self.hasher.u64(0x4EA1);
        self.hasher.u64(u64::from(id.0));
        if self.trace.is_some() {
            self.trace_json(serde_json::json!({
                "t_us": self.now, "kind": "links-back", "node": id.to_string(),
            }));
        }
        self.update_leadership();
    }

    fn recompute_links(&mut self) {
        let n = self.nodes.len();
        for from in 0..n {
            for to in 0..n {
                let cut = from != to
                    && (self.isolated.contains(&from)
                        || self.isolated.contains(&to)
                        || self.one_way.contains(&(from, to))
                        || self.groups.as_ref().is_some_and(|gs| {
                            !gs.iter().any(|g| g.contains(&from) && g.contains(&to))
                        }));
                self.blocked[from * n + to] = cut;
            }
        }
    }

    // ---------------------------------------------------------------- clients

    fn new_request(&mut self) -> RequestId {
        let id = RequestId(self.next_request);
        self.next_request += 1;
        id
    }

    fn client_issue(&mut self, c: usize) {
        if self.now >= self.end || self.clients[c].in_flight.is_some() {
            return;
        }
        let keys = self.scenario.clients.keys.max(1);
        let k = self.client_rng.below(keys);
        let (key, key_text) = self.client_key(k);
        let roll = self.client_rng.below(100);
        let client = &mut self.clients[c];
        client.ops_issued += 1;
        client.last_invoke = self.now;
        let (op, hop) = if roll < 45 {
            get_op(key, key_text)
        } else if roll < 80 {
            put_op(key, key_text, client_value(c, client.ops_issued))
        } else if roll < 95 {
            let value = client_value(c, client.ops_issued);
            let from = client
                .seen
                .get(k)
                .copied()
                .flatten()
                .and_then(|id| self.history.operations().get(id.0))
                .and_then(observed);
            (
                ClientOp::Write(Write::Cas {
                    key,
                    from: from.clone(),
                    to: value.clone(),
                }),
                Op::Cas {
                    key: key_text,
                    from,
                    to: value,
                },
            )
        } else {
            (
                ClientOp::Write(Write::Delete { key }),
                Op::Delete { key: key_text },
            )
        };
        let process = client.process;
        let target = client.target;
        let id = self.new_request();
        self.clients[c].in_flight = Some(id);
        let read_floor = matches!(hop, Op::Get { .. }).then(|| self.checkers.committed_max());
        let op_id = self.history.invoke(self.now, process, hop);
        self.pending.insert(
            id,
            Pending {
                owner: Owner::Client(c, k),
                op: op_id,
                issued: self.now,
                read_floor,
            },
        );
        self.send_request(target, id, op);
    }

    fn send_request(&mut self, target: usize, id: RequestId, op: ClientOp) {
        self.hasher.u64(0xC1);
        self.hasher.u64(id.0);
        self.hasher.u64(target as u64);
        self.hasher.client_op(&op);
        if self.trace.is_some() {
            self.trace_json(serde_json::json!({
                "t_us": self.now, "kind": "request", "id": id.0,
                "node": self.members[target].to_string(), "op": format!("{op:?}"),
            }));
        }
        let at = self.now + self.client_latency();
        self.schedule(
            at,
            Ev::Arrive {
                node: target,
                req: Box::new(ClientRequest { id, op }),
            },
        );
        let timeout = self.now + self.us.client_timeout;
        // Every request has the same timeout, so deadlines arrive in order: one queue, one event.
        self.deadlines.push_back((timeout, id));
        self.arm_timeouts();
    }

    /// Schedules one event at the earliest deadline of a request still pending.
    fn arm_timeouts(&mut self) {
        // While an event is armed, answered requests at the front wait for it: it skips them
        // (they are no longer pending) and re-arms after, which clears them then.
        if self.timeouts_armed {
            return;
        }
        while self
            .deadlines
            .front()
            .is_some_and(|(_, id)| !self.pending.contains_key(id) && !self.admin.contains_key(id))
        {
            self.deadlines.pop_front();
        }
        if let Some(&(at, _)) = self.deadlines.front() {
            self.timeouts_armed = true;
            self.schedule(at, Ev::ClientTimeouts);
        }
    }

    /// Client key `k` (`user/k{k}`) and its text, formatted once per run.
    fn client_key(&mut self, k: usize) -> (Key, Arc<str>) {
        cached_key(&mut self.client_keys, "k", k)
    }

    fn overload_arrival(&mut self, burst: u64) {
        let Some((current, until, interval)) = self.overload else {
            return;
        };
        if current != burst || self.now >= until || self.now >= self.end {
            return;
        }
        let target = self.overload_rng.below(self.nodes.len());
        // Spread over many keys, as a burst from many independent clients would be.
        let k = self.overload_rng.below(OVERLOAD_KEYS);
        let (key, key_text) = cached_key(&mut self.overload_keys, "ov", k);
        let id = self.new_request();
        let process = self.next_process;
        self.next_process += 1;
        let (op, hop) = if self.overload_rng.below(2) == 0 {
            get_op(key, key_text)
        } else {
            put_op(key, key_text, format!("o{}", id.0))
        };
        let read_floor = matches!(hop, Op::Get { .. }).then(|| self.checkers.committed_max());
        let op_id = self.history.invoke(self.now, process, hop);
        self.pending.insert(
            id,
            Pending {
                owner: Owner::Overload(k),
                op: op_id,
                issued: self.now,
                read_floor,
            },
        );
        self.send_request(target, id, op);
        // Exponential inter-arrival times: a Poisson stream at the burst's rate.
        let gap = (-(1.0 - self.overload_rng.unit()).ln() * interval).max(1.0) as u64;
        let next = self.now + gap;
        self.schedule(next, Ev::OverloadArrival { burst });
    }

    fn client_answer(&mut self, id: RequestId, answer: Answer) {
        if let Some(spec) = self.admin.remove(&id) {
            return self.admin_answer(spec, answer);
        }
        let Some(p) = self.pending.remove(&id) else {
            return; // already answered or timed out
        };
        self.hasher.u64(0xA5);
        self.hasher.u64(id.0);
        if self.trace.is_some() {
            self.trace_json(serde_json::json!({
                "t_us": self.now, "kind": "answer", "id": id.0, "result": format!("{answer:?}"),
            }));
        }
        let mut retry_after = None;
        let mut new_target = None;
        let mut new_process = false;
        let completion = match answer {
            Answer::Reply(Ok(ClientResponse::Value { value, .. })) => {
                self.hasher.byte(1);
                if let Owner::Client(..) = p.owner {
                    self.stats.read_latency_us.push(self.now - p.issued);
                }
                Completion::Ok { read: value }
            }
            // Only the operator reads workloads, and its answers never reach here.
            Answer::Reply(Ok(
                ClientResponse::Workloads { .. } | ClientResponse::Registry { .. },
            )) => {
                self.hasher.byte(6);
                Completion::Ok { read: None }
            }
            Answer::Reply(Ok(ClientResponse::Written { revision })) => {
                self.hasher.byte(2);
                self.hasher.u64(revision.0);
                let key = match p.owner {
                    Owner::Client(_, k) => self.client_keys.get(k),
                    Owner::Overload(k) => self.overload_keys.get(k),
                }
                .and_then(|entry| entry.as_ref())
                .map(|(key, _)| key);
                let op = self.history.operations().get(p.op.0).map(|o| &o.op);
                if let Some(w) = key
                    .zip(op)
                    .and_then(|(key, op)| self.acked_writes.rebuild(key, op))
                {
                    self.checkers.write_acknowledged(self.now, revision, w);
                }
                if let Owner::Client(..) = p.owner {
                    self.stats.write_latency_us.push(self.now - p.issued);
                }
                Completion::Ok { read: None }
            }
            Answer::Reply(Err(e)) => {
                self.hasher.byte(3);
                match e {
                    ClientError::NotLeader { leader_hint } => {
                        new_target = Some(leader_hint.map(|l| l.0 as usize - 1));
                        Completion::Fail
                    }
                    ClientError::Overloaded { retry_after: r } => {
                        self.stats.client_rejected += 1;
                        retry_after = Some(us(r));
                        Completion::Fail
                    }
                    ClientError::NotCommitted => {
                        self.cover("write answered not-committed");
                        Completion::Fail
                    }
                    ClientError::CasMismatch { .. } | ClientError::Refused { .. } => {
                        Completion::Fail
                    }
                    ClientError::Indeterminate => {
                        new_process = true;
                        Completion::Info
                    }
                }
            }
            Answer::Refused => {
                self.hasher.byte(4);
                new_target = Some(None);
                Completion::Fail
            }
            Answer::TimedOut => {
                self.hasher.byte(5);
                new_process = true;
                new_target = Some(None);
                Completion::Info
            }
        };
        match completion {
            Completion::Ok { .. } => self.window_ops.0 += 1,
            Completion::Fail => self.window_ops.1 += 1,
            Completion::Info => {
                self.window_ops.2 += 1;
                self.cover("client outcome unknown");
            }
        }
        let ok = matches!(completion, Completion::Ok { .. });
        self.history.complete(self.now, p.op, completion);
        let Owner::Client(c, k) = p.owner else {
            return;
        };
        if ok {
            // Remember what the client saw, for its next compare-and-set on that key.
            let seen = &mut self.clients[c].seen;
            if seen.len() <= k {
                seen.resize(k + 1, None);
            }
            seen[k] = Some(p.op);
        }
        let client = &mut self.clients[c];
        client.in_flight = None;
        if new_process {
            client.process = self.next_process;
            self.next_process += 1;
        }
        match new_target {
            Some(Some(t)) if t < self.nodes.len() => client.target = t,
            Some(_) => {
                let n = self.nodes.len();
                let t = self.client_rng.below(n);
                self.clients[c].target = t;
            }
            None => {}
        }
        // Think time for the configured rate: mean `count / rate` seconds between operations.
        let rate = self.scenario.clients.rate_per_sec;
        let mean = if rate > 0.0 {
            self.scenario.clients.count as f64 / rate * 1e6
        } else {
            return;
        };
        // Paced from the last invocation, so the rate holds while latency stays below the gap.
        let gap = self.client_rng.between(0, (2.0 * mean) as u64);
        let paced = self.clients[c].last_invoke + gap;
        let at = paced.max(self.now + retry_after.unwrap_or(0));
        self.schedule(at, Ev::ClientIssue { client: c });
    }

    // ---------------------------------------------------------------- end

    fn finish(&mut self) {
        let end = self.now;
        if let Some(start) = self.outage_since.take() {
            if self.stats.first_leader_at.is_some() {
                self.stats.failovers.push(Failover {
                    start_us: start.max(self.last_fault_at),
                    end_us: None,
                });
            }
        }
        self.history.close_open_ops(end);
        self.procs.finish(&mut self.stats.workloads);
        self.record_final_registry();
        let live: Vec<&Node> = self.nodes.iter().filter_map(|n| n.node.as_ref()).collect();
        self.checkers.at_end(end, &live);
        self.stats.sim_time_us = end;
        self.stats.final_commit_index = self.max_commit;
        self.hasher.u64(0xE7D);
        self.hasher.u64(end);
    }
}

#[cfg(test)]
mod tests {
    use super::{Ev, ProgressGuard, MAX_EVENTS_AT_ONE_INSTANT, MAX_EVENTS_PER_SIM_SECOND};
    use keel_core::{Input, Message};

    /// The simulator moves messages and events at every step: keep the rare, large payloads
    /// (client operations and replies) boxed so the common ones stay small.
    #[test]
    fn messages_and_events_stay_small() {
        let (m, e, i) = (
            std::mem::size_of::<Message>(),
            std::mem::size_of::<Ev>(),
            std::mem::size_of::<Input>(),
        );
        println!("size_of Message {m}, Ev {e}, Input {i}");
        assert!(m <= 80, "Message is {m} bytes");
        // A message, two words of the sender's life, and the eight-byte tag (see `Ev`).
        assert!(e <= 104, "Ev is {e} bytes");
    }

    #[test]
    fn the_progress_guard_stops_a_stopped_clock_and_a_spin_but_not_a_busy_run() {
        // A busy but sane run: 100,000 events per simulated second for 3 s.
        let mut g = ProgressGuard::default();
        for e in 0..300_000u64 {
            assert_eq!(g.observe(e * 10), None, "event {e}");
        }
        // Time stands still (late in a run, where the rate budget alone would allow millions).
        let mut g = ProgressGuard::default();
        let stuck = (0..=MAX_EVENTS_AT_ONE_INSTANT + 1).find_map(|_| g.observe(60_000_000));
        assert!(stuck.is_some_and(|w| w.contains("simulated time stopped")));
        // Time crawls: a new instant every event, a microsecond apart (1 M events per second).
        let mut g = ProgressGuard::default();
        let spin = (0..2 * MAX_EVENTS_PER_SIM_SECOND).find_map(|e| g.observe(e));
        assert!(spin.is_some_and(|w| w.contains("something spins")));
    }

    #[test]
    fn client_values_read_as_formatted() {
        for (c, n) in [
            (0, 0),
            (0, 1),
            (7, 10),
            (11, 12345),
            (123, u64::MAX),
            (usize::MAX, u64::MAX),
        ] {
            assert_eq!(super::client_value(c, n), format!("c{c}.{n}"));
        }
    }
}

/// Which armed faults a step is the moment of: a granted vote (`CrashAfterVote`), a leader's
/// append (`IsolateLeaderOnAppend`), a leader's commit (`IsolateLeaderOnCommit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Moment {
    voted: bool,
    appended: bool,
    committed: bool,
}

impl Moment {
    const NONE: Moment = Moment {
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

#[derive(Debug)]
enum Answer {
    Reply(keel_core::ClientResult),
    Refused,
    TimedOut,
}

/// The value a client learnt from completed operation `o`: what a read returned, what a write
/// wrote (`None`: absent). `None` too for an operation that did not complete `ok`.
fn observed(o: &crate::history::Operation) -> Option<String> {
    match &o.op {
        Op::Get { .. } => match &o.completion {
            Some(Completion::Ok { read }) => read.clone(),
            _ => None,
        },
        Op::Put { value, .. } => Some(value.clone()),
        Op::Cas { to, .. } => Some(to.clone()),
        Op::Delete { .. } => None,
    }
}

/// User key `{prefix}{k}` and its text, from `table` (formatted there the first time).
fn cached_key(table: &mut Vec<Option<(Key, Arc<str>)>>, prefix: &str, k: usize) -> (Key, Arc<str>) {
    if table.len() <= k {
        table.resize_with(k + 1, || None);
    }
    let (key, text) = table[k].get_or_insert_with(|| {
        let key = Key::user(format!("{prefix}{k}"));
        let text = Arc::from(key.to_string());
        (key, text)
    });
    (key.clone(), Arc::clone(text))
}

/// A read of `key`: the request and its history record.
fn get_op(key: Key, key_text: Arc<str>) -> (ClientOp, Op) {
    (ClientOp::Get { key }, Op::Get { key: key_text })
}

/// A put of `value`: the request and its history record.
fn put_op(key: Key, key_text: Arc<str>, value: String) -> (ClientOp, Op) {
    (
        ClientOp::Write(Write::Put {
            key,
            value: value.clone(),
        }),
        Op::Put {
            key: key_text,
            value,
        },
    )
}

/// One reusable write per kind, refilled in place (reusing its strings' buffers) with the write
/// an acknowledged request made, rebuilt from its history record: what the acknowledged-write
/// check compares with the committed entry, without a copy kept per request in flight.
struct AckedWrites {
    put: Write,
    delete: Write,
    cas: Write,
}

impl Default for AckedWrites {
    fn default() -> Self {
        AckedWrites {
            put: Write::Put {
                key: Key::user(String::new()),
                value: String::new(),
            },
            delete: Write::Delete {
                key: Key::user(String::new()),
            },
            cas: Write::Cas {
                key: Key::user(String::new()),
                from: None,
                to: String::new(),
            },
        }
    }
}

impl AckedWrites {
    /// The write `op` on `key` made (equal to the one sent); `None` for a read.
    fn rebuild(&mut self, key: &Key, op: &Op) -> Option<&Write> {
        fn set_key(to: &mut Key, from: &Key) {
            let Key { partition, name } = from;
            to.partition = *partition;
            to.name.clone_from(name);
        }
        match op {
            Op::Get { .. } => None,
            Op::Put { value, .. } => {
                if let Write::Put { key: k, value: v } = &mut self.put {
                    set_key(k, key);
                    v.clone_from(value);
                } else {
                    self.put = Write::Put {
                        key: key.clone(),
                        value: value.clone(),
                    };
                }
                Some(&self.put)
            }
            Op::Delete { .. } => {
                if let Write::Delete { key: k } = &mut self.delete {
                    set_key(k, key);
                } else {
                    self.delete = Write::Delete { key: key.clone() };
                }
                Some(&self.delete)
            }
            Op::Cas { from, to, .. } => {
                if let Write::Cas {
                    key: k,
                    from: f,
                    to: t,
                } = &mut self.cas
                {
                    set_key(k, key);
                    f.clone_from(from);
                    t.clone_from(to);
                } else {
                    self.cas = Write::Cas {
                        key: key.clone(),
                        from: from.clone(),
                        to: to.clone(),
                    };
                }
                Some(&self.cas)
            }
        }
    }
}

/// A short, stable description of a fault for traces: its scenario-file form.
pub(crate) fn describe_fault(f: &Fault) -> String {
    crate::scenario::fault_ron(f)
}
