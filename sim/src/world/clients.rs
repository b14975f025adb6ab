//! The clients: closed-loop processes issuing one operation at a time to the node each believes
//! leads (following leader hints), with think time for the scenario's rate, and the bookkeeping
//! of every request in flight (its history record, its timeout).
//!
//! [`Clients`] owns the clients, the requests in flight and the client random stream. Every
//! request is recorded in the history (invoke, then ok / fail / info) here and nowhere else;
//! an acknowledged write is handed to the checkers from here. Nothing here steps a node: a
//! request goes out as an `Arrive` event and comes back as an answer.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use keel_core::{
    ClientError, ClientOp, ClientRequest, ClientResponse, Key, LogIndex, RequestId, Write,
};

use super::acked::AckedWrites;
use super::config::us;
use super::events::Ev;
use super::World;
use crate::history::{Completion, Op, OpId};
use crate::linearizability::BuildKeyHasher;
use crate::rng::Stream;
use crate::scenario::Scenario;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Owner {
    /// Client `.0`, on its key `.1` (`user/k{.1}`).
    Client(usize, usize),
    /// An overload burst, on key `.0` (`user/ov{.0}`).
    Overload(usize),
}

pub(super) struct Pending {
    pub(super) owner: Owner,
    /// Its history record (which, with the owner's key, gives the write to check if it is
    /// acknowledged: see [`AckedWrites`]).
    pub(super) op: OpId,
    /// When it was issued (us).
    pub(super) issued: u64,
    /// A read: the highest index committed anywhere when it was issued (see
    /// [`crate::checkers::FRESH_READS`]).
    pub(super) read_floor: Option<LogIndex>,
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

/// How a request was answered, as the client side sees it.
#[derive(Debug)]
pub(super) enum Answer {
    Reply(keel_core::ClientResult),
    Refused,
    TimedOut,
}

/// What a client does after an answer, besides recording it.
#[derive(Default)]
struct FollowUp {
    /// Wait at least this long before the next operation (the node said it is overloaded).
    retry_after: Option<u64>,
    /// Send the next operation elsewhere: to this node, or (`Some(None)`) to a random one.
    new_target: Option<Option<usize>>,
    /// The outcome is unknown: the client continues as a new process.
    new_process: bool,
}

pub(super) struct Clients {
    list: Vec<Client>,
    /// The next process number (a client whose outcome is unknown continues as a new one).
    pub(super) next_process: u64,
    next_request: u64,
    /// `user/k{k}` and its text, by `k` (see [`World::client_key`]).
    keys: Vec<Option<(Key, Arc<str>)>>,
    /// Where an acknowledged write is rebuilt for the checkers.
    acked: AckedWrites,
    /// Requests in flight. Looked up by id only, never iterated: a hash map.
    pub(super) pending: HashMap<RequestId, Pending, BuildKeyHasher>,
    /// (deadline, request) in deadline order; answered requests are skipped when they come up.
    deadlines: VecDeque<(u64, RequestId)>,
    timeouts_armed: bool,
    pub(super) rng: Stream,
}

impl Clients {
    pub(super) fn new(count: usize, rng: Stream) -> Clients {
        let list = (0..count)
            .map(|i| Client {
                process: i as u64,
                target: 0,
                in_flight: None,
                ops_issued: 0,
                last_invoke: 0,
                seen: Vec::new(),
            })
            .collect();
        Clients {
            list,
            next_process: count as u64,
            next_request: 1,
            keys: Vec::new(),
            acked: AckedWrites::default(),
            pending: HashMap::default(),
            deadlines: VecDeque::new(),
            timeouts_armed: false,
            rng,
        }
    }

    pub(super) fn new_request(&mut self) -> RequestId {
        let id = RequestId(self.next_request);
        self.next_request += 1;
        id
    }
}

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
pub(super) fn expected_ops(scenario: &Scenario) -> usize {
    /// At most this many are reserved (an overloaded run may issue far fewer than its rate).
    const MAX_RESERVED: f64 = 65_536.0;
    let c = &scenario.clients;
    if c.count == 0 || c.rate_per_sec.is_nan() || c.rate_per_sec <= 0.0 {
        return 0;
    }
    let ops = c.rate_per_sec * scenario.duration.as_secs_f64() * 1.05 + 64.0;
    ops.min(MAX_RESERVED) as usize
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
pub(super) fn cached_key(
    table: &mut Vec<Option<(Key, Arc<str>)>>,
    prefix: &str,
    k: usize,
) -> (Key, Arc<str>) {
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
pub(super) fn get_op(key: Key, key_text: Arc<str>) -> (ClientOp, Op) {
    (ClientOp::Get { key }, Op::Get { key: key_text })
}

/// A put of `value`: the request and its history record.
pub(super) fn put_op(key: Key, key_text: Arc<str>, value: String) -> (ClientOp, Op) {
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

impl World<'_> {
    /// Every client starts at a random moment of the first 20 ms, aimed at a random node.
    pub(super) fn start_clients(&mut self) {
        for c in 0..self.clients.list.len() {
            let at = self.clients.rng.between(0, 20_000);
            self.clients.list[c].target = self.clients.rng.below(self.nodes.len());
            self.schedule(at, Ev::ClientIssue { client: c });
        }
    }

    /// Client `c` issues its next operation (unless the run is over or one is in flight).
    pub(super) fn client_issue(&mut self, c: usize) {
        if self.now >= self.end || self.clients.list[c].in_flight.is_some() {
            return;
        }
        let keys = self.scenario.clients.keys.max(1);
        let k = self.clients.rng.below(keys);
        let (key, key_text) = self.client_key(k);
        let roll = self.clients.rng.below(100);
        let client = &mut self.clients.list[c];
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
        let id = self.clients.new_request();
        self.clients.list[c].in_flight = Some(id);
        self.invoke(id, Owner::Client(c, k), process, hop);
        self.send_request(target, id, op);
    }

    /// Records request `id`'s invocation in the history and keeps it pending.
    pub(super) fn invoke(&mut self, id: RequestId, owner: Owner, process: u64, hop: Op) {
        let read_floor = matches!(hop, Op::Get { .. }).then(|| self.checkers.committed_max());
        let op = self.history.invoke(self.now, process, hop);
        let issued = self.now;
        let pending = Pending {
            owner,
            op,
            issued,
            read_floor,
        };
        self.clients.pending.insert(id, pending);
    }

    pub(super) fn send_request(&mut self, target: usize, id: RequestId, op: ClientOp) {
        self.tr.hasher.u64(0xC1);
        self.tr.hasher.u64(id.0);
        self.tr.hasher.u64(target as u64);
        self.tr.hasher.client_op(&op);
        if self.tr.on() {
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
        self.clients.deadlines.push_back((timeout, id));
        self.arm_timeouts();
    }

    /// A request reaches node `node`: refused if the node is down or its backlog full. The
    /// request stays in the event's box until the node takes it.
    #[allow(clippy::boxed_local)]
    #[inline(always)]
    pub(super) fn arrive(
        &mut self,
        node: usize,
        req: Box<ClientRequest>,
        out: &mut Vec<keel_core::Output>,
    ) {
        if !self.nodes[node].up()
            || self.nodes[node].client_queue.len() >= self.cfg.client_queue_limit
        {
            let t = self.now + self.client_latency();
            self.schedule(t, Ev::Refused { id: req.id });
            return;
        }
        self.input_with(node, keel_core::Input::Client(*req), out);
    }

    /// Times out every request whose deadline passed.
    pub(super) fn client_timeouts(&mut self) {
        self.clients.timeouts_armed = false;
        while self
            .clients
            .deadlines
            .front()
            .is_some_and(|(d, _)| *d <= self.now)
        {
            if let Some((_, id)) = self.clients.deadlines.pop_front() {
                self.client_answer(id, Answer::TimedOut);
            }
        }
        self.arm_timeouts();
    }

    /// Schedules one event at the earliest deadline of a request still pending.
    fn arm_timeouts(&mut self) {
        // While an event is armed, answered requests at the front wait for it: it skips them
        // (they are no longer pending) and re-arms after, which clears them then.
        if self.clients.timeouts_armed {
            return;
        }
        while self.clients.deadlines.front().is_some_and(|(_, id)| {
            !self.clients.pending.contains_key(id)
                && !self.work.admin.contains_key(id)
                && !self.faults.members.requests.contains_key(id)
        }) {
            self.clients.deadlines.pop_front();
        }
        if let Some(&(at, _)) = self.clients.deadlines.front() {
            self.clients.timeouts_armed = true;
            self.schedule(at, Ev::ClientTimeouts);
        }
    }

    /// Client key `k` (`user/k{k}`) and its text, formatted once per run.
    fn client_key(&mut self, k: usize) -> (Key, Arc<str>) {
        cached_key(&mut self.clients.keys, "k", k)
    }

    /// Request `id` was answered (or refused, or timed out): record it and let its client go on.
    pub(super) fn client_answer(&mut self, id: RequestId, answer: Answer) {
        if let Some(spec) = self.work.admin.remove(&id) {
            return self.admin_answer(spec, answer);
        }
        if self.operator_answer(id, &answer) {
            return;
        }
        let Some(p) = self.clients.pending.remove(&id) else {
            return; // already answered or timed out
        };
        self.tr.hasher.u64(0xA5);
        self.tr.hasher.u64(id.0);
        if self.tr.on() {
            self.trace_json(serde_json::json!({
                "t_us": self.now, "kind": "answer", "id": id.0, "result": format!("{answer:?}"),
            }));
        }
        let mut follow = FollowUp::default();
        let completion = self.completion(&p, answer, &mut follow);
        match completion {
            Completion::Ok { .. } => self.window.ops.0 += 1,
            Completion::Fail => self.window.ops.1 += 1,
            Completion::Info => {
                self.window.ops.2 += 1;
                self.cover("client outcome unknown");
            }
        }
        let ok = matches!(completion, Completion::Ok { .. });
        self.history.complete(self.now, p.op, completion);
        if let Owner::Client(c, k) = p.owner {
            self.client_goes_on(c, k, ok.then_some(p.op), follow);
        }
    }

    /// The history outcome of pending request `p`'s `answer` (hashed, and checked if it
    /// acknowledges a write); what the client does next goes into `follow`.
    fn completion(&mut self, p: &Pending, answer: Answer, follow: &mut FollowUp) -> Completion {
        match answer {
            Answer::Reply(Ok(ClientResponse::Value { value, .. })) => {
                self.tr.hasher.byte(1);
                if let Owner::Client(..) = p.owner {
                    self.stats.read_latency_us.push(self.now - p.issued);
                }
                Completion::Ok { read: value }
            }
            // Only the operator reads workloads, and its answers never reach here.
            Answer::Reply(Ok(
                ClientResponse::Workloads { .. }
                | ClientResponse::Registry { .. }
                | ClientResponse::Members { .. },
            )) => {
                self.tr.hasher.byte(6);
                Completion::Ok { read: None }
            }
            Answer::Reply(Ok(ClientResponse::Written { revision })) => {
                self.tr.hasher.byte(2);
                self.tr.hasher.u64(revision.0);
                self.write_acknowledged(p, revision);
                if let Owner::Client(..) = p.owner {
                    self.stats.write_latency_us.push(self.now - p.issued);
                }
                Completion::Ok { read: None }
            }
            Answer::Reply(Err(e)) => {
                self.tr.hasher.byte(3);
                self.client_error(e, follow)
            }
            Answer::Refused => {
                self.tr.hasher.byte(4);
                follow.new_target = Some(None);
                Completion::Fail
            }
            Answer::TimedOut => {
                self.tr.hasher.byte(5);
                follow.new_process = true;
                follow.new_target = Some(None);
                Completion::Info
            }
        }
    }

    /// Hands the write pending request `p` made, acknowledged at `revision`, to the checkers.
    fn write_acknowledged(&mut self, p: &Pending, revision: LogIndex) {
        let key = match p.owner {
            Owner::Client(_, k) => self.clients.keys.get(k),
            Owner::Overload(k) => self.faults.burst.keys.get(k),
        }
        .and_then(|entry| entry.as_ref())
        .map(|(key, _)| key);
        let op = self.history.operations().get(p.op.0).map(|o| &o.op);
        if let Some(w) = key
            .zip(op)
            .and_then(|(key, op)| self.clients.acked.rebuild(key, op))
        {
            self.checkers.write_acknowledged(self.now, revision, w);
        }
    }

    /// The history outcome of an error answer; what the client does next goes into `follow`.
    fn client_error(&mut self, e: ClientError, follow: &mut FollowUp) -> Completion {
        match e {
            ClientError::NotLeader { leader_hint } => {
                follow.new_target = Some(leader_hint.map(|l| l.0 as usize - 1));
                Completion::Fail
            }
            ClientError::Overloaded { retry_after: r } => {
                self.stats.client_rejected += 1;
                follow.retry_after = Some(us(r));
                Completion::Fail
            }
            ClientError::NotCommitted => {
                self.cover("write answered not-committed");
                Completion::Fail
            }
            ClientError::CasMismatch { .. } | ClientError::Refused { .. } => Completion::Fail,
            ClientError::Indeterminate => {
                follow.new_process = true;
                Completion::Info
            }
        }
    }

    /// Client `c` had its operation on key `k` answered (`seen`: the operation, if it completed
    /// ok): it remembers what it saw, retargets, and schedules its next operation.
    fn client_goes_on(&mut self, c: usize, k: usize, seen: Option<OpId>, follow: FollowUp) {
        if let Some(op) = seen {
            // Remember what the client saw, for its next compare-and-set on that key.
            let seen = &mut self.clients.list[c].seen;
            if seen.len() <= k {
                seen.resize(k + 1, None);
            }
            seen[k] = Some(op);
        }
        let client = &mut self.clients.list[c];
        client.in_flight = None;
        if follow.new_process {
            client.process = self.clients.next_process;
            self.clients.next_process += 1;
        }
        match follow.new_target {
            Some(Some(t)) if t < self.nodes.len() => self.clients.list[c].target = t,
            Some(_) => {
                let n = self.nodes.len();
                let t = self.clients.rng.below(n);
                self.clients.list[c].target = t;
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
        let gap = self.clients.rng.between(0, (2.0 * mean) as u64);
        let paced = self.clients.list[c].last_invoke + gap;
        let at = paced.max(self.now + follow.retry_after.unwrap_or(0));
        self.schedule(at, Ev::ClientIssue { client: c });
    }
}

#[cfg(test)]
mod tests {
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
