//! The scenario model: the types a scenario file describes (the cluster, its network, its client
//! load, its workloads and what must hold at the end) as the simulator uses them. Faults have a
//! file of their own ([`super::fault`]). Plain data: nothing here parses, prints or runs.

use std::time::Duration;

use super::fault::Fault;

/// One simulated run's setup and what must hold at its end.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// Required; names the scenario in reports.
    pub name: String,
    /// One sentence on what the scenario shows. Default empty.
    pub description: String,
    /// Cluster size, 1..=9; the nodes are `n1`..`nN`.
    pub nodes: usize,
    /// How many nodes bootstrap the cluster, 1..=`nodes`: `n1`..`nM` are its first voters.
    /// The others are spare nodes: each starts with no configuration (an empty
    /// `keel_core::Config::members`) and a fresh incarnation, and waits to be added
    /// (`AddLearner`, `AddMember`). Default: every node.
    pub members: usize,
    /// Simulated time the run lasts.
    pub duration: Duration,
    /// Default [`NetworkSpec::default`].
    pub network: NetworkSpec,
    /// Default [`ClientSpec::default`].
    pub clients: ClientSpec,
    /// Default none; names are unique and non-empty.
    pub workloads: Vec<WorkloadSpec>,
    /// In non-decreasing `at` order, each before `duration`.
    pub faults: Vec<TimedFault>,
    /// Liveness and history expectations; the safety checkers always run.
    pub expect: Vec<Expectation>,
    /// Whether leaders answer reads from a lease (`keel_core::Config::lease_reads`) or by a
    /// heartbeat round per read (read-index). Default true, as in the node.
    pub lease_reads: bool,
}

/// The network between nodes.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkSpec {
    /// One-way latency range, drawn uniformly per message (so messages reorder). Default 1–5 ms.
    pub latency: (Duration, Duration),
    /// Probability that a message is lost. Default 0.
    pub drop_rate: f64,
    /// Probability that a message is delivered twice. Default 0.
    pub duplicate_rate: f64,
}

impl Default for NetworkSpec {
    fn default() -> Self {
        NetworkSpec {
            latency: (Duration::from_millis(1), Duration::from_millis(5)),
            drop_rate: 0.0,
            duplicate_rate: 0.0,
        }
    }
}

/// The client load: `count` closed-loop clients sharing `rate_per_sec` operations per second.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientSpec {
    /// Default 4.
    pub count: usize,
    /// Operations per second, all clients together. Default 100.
    pub rate_per_sec: f64,
    /// Distinct user keys the operations touch. Default 16.
    pub keys: usize,
    /// How long a client waits for an answer before recording the outcome as unknown. Default 1 s.
    pub timeout: Duration,
}

impl Default for ClientSpec {
    fn default() -> Self {
        ClientSpec {
            count: 4,
            rate_per_sec: 100.0,
            keys: 16,
            timeout: Duration::from_secs(1),
        }
    }
}

/// Desired workloads: `count` instances, named `name-1`..`name-N` (just `name` when 1).
#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadSpec {
    /// Required, unique, non-empty.
    pub name: String,
    /// Instances wanted, 1..=1000. Default 1.
    pub count: usize,
    /// Failed starts before an instance is marked failed for good. Default 3.
    pub max_attempts: u32,
    /// An instance must show progress this often or its node stops it as hung; `"0s"`: no
    /// watchdog. Default 1 s.
    pub watchdog: Option<Duration>,
    /// Retry backoff: (base, cap), full jitter. Default ("100ms", "2s").
    pub backoff: (Duration, Duration),
}

/// A fault injected at a point of simulated time.
#[derive(Clone, Debug, PartialEq)]
pub struct TimedFault {
    /// When it fires: before the scenario's end, not before the previous fault's `at`.
    pub at: Duration,
    pub fault: Fault,
}

/// Which node a fault hits, resolved when the fault fires.
#[derive(Clone, Debug, PartialEq)]
pub enum Selector {
    /// A node by name, `n1`..`nN`.
    Node(String),
    /// The current leader (the live leader with the highest term).
    Leader,
    /// A live follower, chosen by the seeded fault stream.
    Follower,
    /// The most recently crashed node that is still down.
    LastCrashed,
    /// Any live node.
    Random,
    /// The node whose disk was wiped most recently (`WipeDisk`).
    LastWiped,
}

/// What must hold at the end of a run (safety checkers run whether listed or not).
#[derive(Clone, Debug, PartialEq)]
pub enum Expectation {
    /// After each fault that removes the leader, a new one within this bound (above zero).
    NewLeaderWithin(Duration),
    /// Every workload hit by a fault runs again within this bound (above zero).
    WorkloadsRecoveredWithin(Duration),
    /// Every acknowledged write is in the final state.
    NoLostWrites,
    /// The client history is linearizable.
    Linearizable,
    /// Never two running copies of one workload instance.
    AtMostOneRunningCopy,
    /// No workload is moved off a node that was up, reachable and undisturbed.
    NoFalseReschedules,
    /// At most this many copies are re-placed off dead nodes in the whole run.
    MaxReplacements(u64),
    /// At most this many times a node becomes leader in the whole run (the first election
    /// counts). A leader heard by a majority must not be deposed: a node that rejoins after a
    /// partition, or a follower with a quick timer, stays quiet (pre-vote, leader stickiness).
    MaxLeaderChanges(u64),
    /// At least this many times a node becomes leader in the whole run (the first election
    /// counts): leadership moves when it is handed over.
    MinLeaderChanges(u64),
    /// The median time from a client issuing a write to its acknowledgement is within this
    /// bound (over every write a client had acknowledged). A write must not wait for a timer:
    /// the leader replicates new entries at once.
    MedianWriteLatencyWithin(Duration),
    /// The median time from a client issuing a read to its answer is within this bound (over
    /// every read answered with a value). Reads must be answered at all, and without waiting
    /// for a timer.
    MedianReadLatencyWithin(Duration),
    /// Every instance of the workload ends the run in this status (`running`, `failed-permanently`,
    /// `backing-off`, `pending`, `assigned`, `completed`, `stopped`).
    WorkloadEnds(String, String),
    /// Every leadership handover reaches its target within this bound (above zero): each
    /// handover a leader starts ends with its target elected, and each `TransferLeadershipTo`
    /// that names a node other than the leader ends with that node elected (so a scenario using
    /// it names nodes that are up). A request a leader must refuse (a handover to itself) must
    /// start nothing.
    TransfersReachTarget(Duration),
    /// Every membership change the scenario asks for (`AddLearner`, `AddMember`, `Promote`,
    /// `RemoveMember`, `ReplaceNode`) is committed within this bound (above zero) of the later
    /// of its request and the last fault of another kind before it settled: once the faults
    /// heal, a change completes. A change still open at the end fails unless it was asked for
    /// (or last disturbed) less than the bound before the end; one the operator had to give up
    /// (the leader's configuration makes it impossible) fails.
    MembershipSettledWithin(Duration),
}

/// The statuses `WorkloadEnds` accepts.
pub const WORKLOAD_STATUSES: [&str; 7] = [
    "pending",
    "assigned",
    "running",
    "backing-off",
    "failed-permanently",
    "completed",
    "stopped",
];

impl Scenario {
    /// The node names, `n1`..`nN`.
    pub fn node_names(&self) -> Vec<String> {
        (1..=self.nodes).map(|i| format!("n{i}")).collect()
    }
}
