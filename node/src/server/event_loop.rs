//! The node's event loop: the one task that owns the core's [`Runtime`].
//!
//! Each turn [`EventLoop::run`] waits for the next input, in priority order
//! (`select! { biased; .. }`): shutdown, workload events, peer messages (every one already
//! waiting, as one batch), API requests (likewise), the core's timer. It steps the core with the
//! whole batch, makes the step's persists durable ([`EventLoop::sync`]: only the leader's
//! AppendEntries may leave earlier), and only then releases the step's effects: sends to the
//! per-peer queues, replies to the requests waiting on them, events to the log and metrics,
//! actions to the workload supervisor.
//!
//! This module never opens files, sockets or listeners (the assembly in [`super`] does) and
//! never lets an effect out before [`Gated::wait`] returned it.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::time::Duration;

use keel_core::{ClientRequest, ClientResult, Input, Message, NodeId, RequestId, WorkloadEvent};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Sleep;

use super::handle::ApiRequest;
use super::peers::AddressBook;
use super::{AbortOnDrop, ServerError};
use crate::api::{ClusterInfo, MemberInfo, StrangerInfo};
use crate::config::ShutdownConfig;
use crate::metrics::Metrics;
use crate::runtime::{Effects, Gated, Runtime, RuntimeError};
use crate::supervisor::Supervisor;
use crate::transport::Outbound;
use crate::watchdog::Pulse;

/// Most inputs of one kind taken into one step.
const MAX_BATCH: usize = 256;

/// Where the loop's inputs come from.
pub(crate) struct Sources<S> {
    /// Resolves when the node is to stop.
    pub shutdown: S,
    pub workload_events: mpsc::UnboundedReceiver<WorkloadEvent>,
    pub inbound: mpsc::Receiver<Message>,
    /// Peers' advertised addresses, from their handshakes.
    pub learned: mpsc::UnboundedReceiver<(NodeId, std::net::SocketAddr)>,
    pub api: mpsc::Receiver<ApiRequest>,
}

/// What one wait for input came to.
// Lives for one turn of the loop only; boxing the step would allocate at every step.
#[allow(clippy::large_enum_variant)]
enum Turn {
    /// The core was stepped; its effects wait for the sync.
    Step(Result<Gated, RuntimeError>),
    /// Nothing to step this turn.
    Idle,
    /// The node leaves.
    Stop,
}

/// The core, its storage, and everything its effects go to.
pub(crate) struct EventLoop {
    pub id: NodeId,
    /// Where every member's peer port is.
    pub book: AddressBook,
    /// This node started on an empty data directory as a new incarnation of a member the
    /// cluster already has: it needs replacing until the configuration names it.
    pub new_incarnation: bool,
    /// The zero of the core's clock.
    pub clock: tokio::time::Instant,
    pub rt: Runtime,
    pub supervisor: Supervisor,
    pub outbound: Outbound,
    /// The HTTP server's task; dropped (stopped) when shutdown begins.
    pub http: Option<AbortOnDrop>,
    pub pulse: Option<Pulse>,
    pub shutdown: ShutdownConfig,
    pub metrics: Metrics,
    /// Client requests waiting for their answer.
    pub waiting: BTreeMap<RequestId, oneshot::Sender<ClientResult>>,
    /// Arrival times of writes, for the commit latency histogram.
    pub arrived: BTreeMap<RequestId, tokio::time::Instant>,
    pub next_id: u64,
    /// Set once shutdown began while leading: leave when leadership moved, or at this instant.
    pub leaving: Option<tokio::time::Instant>,
    /// When this node, leading, may next record a member's missing address (see
    /// [`EventLoop::address_fill`]).
    pub fill_after: tokio::time::Instant,
}

/// How often a leader tries to record a member's missing address.
const FILL_INTERVAL: Duration = Duration::from_secs(1);

impl EventLoop {
    /// Runs until shutdown (after a leader's hand-over) or a storage failure; then stops the
    /// HTTP server and the workloads.
    pub async fn run<S: std::future::Future<Output = ()>>(
        mut self,
        sources: Sources<S>,
    ) -> Result<(), ServerError> {
        let Sources {
            shutdown,
            mut workload_events,
            mut inbound,
            mut learned,
            mut api,
        } = sources;
        tokio::pin!(shutdown);
        // The core's timer: one `Sleep`, moved only when the core's deadline moves. A new
        // `Sleep` per turn costs a timer-wheel insertion each time, and one inserted after the
        // runtime polled its driver with no timer pending (the loop let the peer writers run
        // with the previous `Sleep` already dropped) makes tokio wake its own driver: a syscall
        // per write.
        let timer = tokio::time::sleep_until(self.clock);
        tokio::pin!(timer);
        let result = loop {
            self.beat();
            if self.done_leaving() {
                break Ok(());
            }
            self.arm(timer.as_mut());
            if let Some(fill) = self.address_fill() {
                let step = self.rt.step_gated(self.now(), [fill]);
                match self.sync(step).await {
                    Ok(effects) => self.release(effects),
                    Err(e) => break Err(e),
                }
                continue;
            }
            let gated = tokio::select! {
                biased;
                () = &mut shutdown, if self.leaving.is_none() => self.begin_shutdown(),
                Some(ev) = workload_events.recv() => self.workload_events(ev, &mut workload_events),
                Some(m) = inbound.recv() => self.messages(m, &mut inbound),
                Some(req) = api.recv() => self.requests(req, &mut api),
                Some((id, addr)) = learned.recv() => self.learn(id, addr),
                () = &mut timer => Turn::Step(self.rt.step_gated(self.now(), [Input::Tick])),
                () = leave_deadline(self.leaving) => Turn::Idle,
            };
            let gated = match gated {
                Turn::Step(g) => g,
                Turn::Idle => continue,
                Turn::Stop => break Ok(()),
            };
            match self.sync(gated).await {
                Ok(effects) => self.release(effects),
                Err(e) => break Err(e),
            }
        };
        self.http = None;
        self.supervisor.stop_all();
        result
    }

    /// The core's clock: microseconds since the loop's zero.
    fn now(&self) -> keel_core::Instant {
        keel_core::Instant(self.clock.elapsed().as_micros() as u64)
    }

    /// Tells the watchdog the loop is alive.
    fn beat(&self) {
        if let Some(p) = &self.pulse {
            p.beat();
        }
    }

    /// Whether a leaving leader may go: leadership moved, or the hand-over's time is up.
    fn done_leaving(&self) -> bool {
        self.leaving
            .is_some_and(|at| !self.rt.node().is_leader() || tokio::time::Instant::now() >= at)
    }

    /// Moves the timer to the core's deadline, if that moved.
    fn arm(&self, timer: Pin<&mut Sleep>) {
        let deadline = self.rt.next_deadline().0;
        let wake = self.clock + Duration::from_micros(deadline.min(u64::MAX / 4));
        if timer.deadline() != wake {
            timer.reset(wake);
        }
    }

    /// Shutdown: stop taking API requests; a leader hands leadership over before it leaves.
    fn begin_shutdown(&mut self) -> Turn {
        tracing::info!(node = %self.id, "shutting down");
        self.http = None;
        if !self.rt.node().is_leader() {
            return Turn::Stop;
        }
        tracing::info!(node = %self.id, "handing leadership over before leaving");
        self.leaving = Some(tokio::time::Instant::now() + self.shutdown.transfer_wait);
        let transfer = Input::TransferLeadership { to: None };
        Turn::Step(self.rt.step_gated(self.now(), [transfer]))
    }

    /// What the workload copies did: every event already waiting, in one step.
    fn workload_events(
        &mut self,
        first: WorkloadEvent,
        rest: &mut mpsc::UnboundedReceiver<WorkloadEvent>,
    ) -> Turn {
        let mut batch = vec![Input::Workload(first)];
        while let Ok(ev) = rest.try_recv() {
            batch.push(Input::Workload(ev));
        }
        Turn::Step(self.rt.step_gated(self.now(), batch))
    }

    /// Peer messages: every one already waiting (up to [`MAX_BATCH`]), in one step.
    fn messages(&mut self, first: Message, rest: &mut mpsc::Receiver<Message>) -> Turn {
        let mut batch = vec![Input::Message(first)];
        while batch.len() < MAX_BATCH {
            match rest.try_recv() {
                Ok(m) => batch.push(Input::Message(m)),
                Err(_) => break,
            }
        }
        Turn::Step(self.rt.step_gated(self.now(), batch))
    }

    /// API requests: every one already waiting goes into one step (one fsync for all of them);
    /// those that need no step are answered at once.
    fn requests(&mut self, first: ApiRequest, rest: &mut mpsc::Receiver<ApiRequest>) -> Turn {
        let mut batch = Vec::new();
        let mut next = Some(first);
        while let Some(req) = next.take() {
            self.request(req, &mut batch);
            if batch.len() < MAX_BATCH {
                next = rest.try_recv().ok();
            }
        }
        if batch.is_empty() {
            return Turn::Idle;
        }
        Turn::Step(self.rt.step_gated(self.now(), batch))
    }

    /// One API request: a client operation or a hand-over joins `batch`; the rest is answered
    /// here.
    fn request(&mut self, req: ApiRequest, batch: &mut Vec<Input>) {
        match req {
            ApiRequest::Op { op, reply } => {
                let id = RequestId(self.next_id);
                self.next_id += 1;
                self.waiting.insert(id, reply);
                if op.proposes() {
                    self.arrived.insert(id, tokio::time::Instant::now());
                }
                batch.push(Input::Client(ClientRequest { id, op }));
            }
            ApiRequest::Cluster { reply } => {
                let _ = reply.send(self.cluster_info());
            }
            ApiRequest::Metrics { reply } => {
                let _ = reply.send(self.render_metrics());
            }
            ApiRequest::Transfer { to, reply } => {
                if self.rt.node().is_leader() {
                    let _ = reply.send(Ok(()));
                    batch.push(Input::TransferLeadership { to });
                } else {
                    let _ = reply.send(Err(self.rt.node().leader()));
                }
            }
        }
    }

    /// The cluster as this node sees it.
    fn cluster_info(&self) -> ClusterInfo {
        let n = self.rt.node();
        let membership = n.membership();
        let named = membership.knows(n.id(), n.incarnation());
        ClusterInfo {
            node: n.id().to_string(),
            leader: n.leader().map(|l| l.to_string()),
            term: n.term().0,
            commit_index: n.commit_index().0,
            members: membership
                .members()
                .iter()
                .map(|m| m.id.to_string())
                .collect(),
            incarnation: n.incarnation().to_string(),
            peer_address: self.book.listen.to_string(),
            voter: n.is_voter(),
            needs_replacement: n.needs_replacement() || (self.new_incarnation && !named),
            membership: self.member_infos(membership),
            strangers: n
                .strangers()
                .map(|(id, inc)| StrangerInfo {
                    id: id.to_string(),
                    incarnation: inc.to_string(),
                })
                .collect(),
        }
    }

    /// `membership`'s members, with their peer addresses as this node knows them.
    pub(crate) fn member_infos(&self, membership: &keel_core::Membership) -> Vec<MemberInfo> {
        membership
            .members()
            .iter()
            .map(|m| MemberInfo {
                id: m.id.to_string(),
                incarnation: m.incarnation.to_string(),
                voter: m.voter,
                address: self
                    .book
                    .address(m.id, membership)
                    .map_or_else(String::new, |a| a.to_string()),
            })
            .collect()
    }

    /// `/metrics`, with the gauges refreshed.
    fn render_metrics(&mut self) -> String {
        let n = self.rt.node();
        self.metrics.term = n.term().0;
        self.metrics.commit_index = n.commit_index().0;
        self.metrics.is_leader = n.is_leader();
        self.metrics.workloads_running = self.supervisor.running();
        self.metrics.dropped_messages = self.outbound.dropped();
        self.metrics.render(&self.id.to_string())
    }

    /// Group commit: nothing of the step leaves before its fsync is done. A leader's
    /// AppendEntries go first (see [`Gated::take_early`]): the loop yields once so that the
    /// peer writers put them on the wire, and the followers write while this node writes and
    /// syncs. The write and the fsync run right here: the loop has nothing to do before they
    /// return, and a hand-over to a blocking thread and back costs two thread wake-ups per
    /// write (on a loaded machine, more than the fsync itself). Messages and requests arriving
    /// meanwhile wait in their sockets and channels.
    async fn sync(&mut self, gated: Result<Gated, RuntimeError>) -> Result<Effects, ServerError> {
        let mut g = gated?;
        let early = g.take_early();
        if !early.is_empty() {
            for m in early {
                self.outbound.send(m);
            }
            let_other_tasks_run().await;
        }
        Ok(g.wait()?)
    }

    /// A step's effects, now that its persists are durable: sends, replies, events, workload
    /// actions, in that order.
    fn release(&mut self, effects: Effects) {
        let changed = effects
            .events
            .iter()
            .any(|e| matches!(e, keel_core::Event::MembershipChanged { .. }));
        if changed {
            self.follow_membership();
        }
        for m in effects.sends {
            self.outbound.send(m);
        }
        for r in effects.replies {
            self.answer(r);
        }
        for e in effects.events {
            self.record(&e);
        }
        let t = self.now();
        for a in effects.workload {
            self.supervisor.apply(t, a);
        }
        self.metrics.observe(self.rt.node());
    }

    /// As leader, records in the configuration the address of a member it holds none for (the
    /// members a cluster was bootstrapped with are known only from each node's `--peers`), one
    /// at a time and at most once per [`FILL_INTERVAL`], so that a node that joins later finds
    /// every member's address in the configuration it receives.
    fn address_fill(&mut self) -> Option<Input> {
        let now = tokio::time::Instant::now();
        let n = self.rt.node();
        if now < self.fill_after || !n.is_leader() || n.membership_index() > n.commit_index() {
            return None;
        }
        let membership = n.membership();
        let (id, address) = membership
            .members()
            .iter()
            .filter(|m| m.address.is_empty())
            .find_map(|m| Some((m.id, self.book.address(m.id, membership)?)))?;
        self.fill_after = now + FILL_INTERVAL;
        let change = keel_core::MemberChange::SetAddress {
            id,
            address: address.to_string(),
        };
        let request = RequestId(self.next_id);
        self.next_id += 1;
        tracing::debug!(member = %id, %address, "recording a member's address in the configuration");
        Some(Input::Client(ClientRequest {
            id: request,
            op: keel_core::ClientOp::Members(keel_core::MemberOp::Change(change)),
        }))
    }

    /// A peer's handshake advertised where it listens: noted if this node had no address for
    /// it (a leader this node on an empty disk does not know yet, a member added while this
    /// node was away), and connected to if it is one of this node's peers.
    fn learn(&mut self, id: NodeId, addr: std::net::SocketAddr) -> Turn {
        if self.book.learn(id, addr) {
            self.follow_membership();
        }
        Turn::Idle
    }

    /// Connects to the members the configuration added and lets go of those it removed.
    fn follow_membership(&mut self) {
        let changes = self
            .book
            .changes(&self.outbound.peers(), self.rt.node().membership());
        for (id, addr) in changes.connect {
            self.outbound.connect(id, addr);
        }
        for id in changes.drop {
            self.outbound.disconnect(id);
        }
    }

    /// Hands a reply to the request waiting for it (and times an acknowledged write).
    fn answer(&mut self, r: keel_core::ClientReply) {
        if let Some(at) = self.arrived.remove(&r.id) {
            if r.result.is_ok() {
                self.metrics.commit_latency.observe(at.elapsed());
            }
        }
        if let Some(w) = self.waiting.remove(&r.id) {
            let _ = w.send(r.result);
        }
    }

    /// Counts a core event and logs it.
    fn record(&mut self, e: &keel_core::Event) {
        self.metrics.event(e);
        if matches!(e, keel_core::Event::Committed { .. }) {
            // One per commit: too many for the default log.
            tracing::debug!(node = %self.id, event = ?e, "core");
        } else {
            tracing::info!(node = %self.id, event = ?e, "core");
        }
    }
}

/// Resolves at a leaving leader's last instant; never, if it is not leaving.
async fn leave_deadline(leaving: Option<tokio::time::Instant>) {
    match leaving {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Lets every task already woken run before this one goes on: this task wakes itself and
/// returns `Pending` once, which puts it behind them in the run queue. (Tokio's `yield_now`
/// instead defers the wake-up until the runtime has polled its I/O driver: a syscall.)
fn let_other_tasks_run() -> impl std::future::Future<Output = ()> {
    let mut yielded = false;
    std::future::poll_fn(move |cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
}
