//! A tiny in-memory cluster for the core's tests: routes messages by hand, executes `Persist`
//! into a `DurableState` per node, collects replies and trace events. No randomness beyond the
//! nodes' own seeded streams.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use keel_core::*;

pub fn ids(n: u32) -> Vec<NodeId> {
    (1..=n).map(NodeId).collect()
}

pub fn config(id: u32, n: u32) -> Config {
    Config::new(NodeId(id), ids(n), 1000 + u64::from(id))
}

/// Decides which messages are lost on delivery.
pub type Loss = Box<dyn FnMut(&Message) -> bool>;

pub struct Cluster {
    pub now: Instant,
    pub nodes: BTreeMap<NodeId, Node>,
    pub durable: BTreeMap<NodeId, DurableState>,
    pub configs: BTreeMap<NodeId, Config>,
    /// Messages sent and not yet delivered, in send order.
    pub inflight: VecDeque<Message>,
    /// Links that drop messages: (from, to).
    pub cut: BTreeSet<(NodeId, NodeId)>,
    pub replies: Vec<(NodeId, ClientReply)>,
    pub events: Vec<(NodeId, Event)>,
    /// Workload actions, per node, in order.
    pub actions: Vec<(NodeId, WorkloadAction)>,
    /// Outputs of the last step, per node, for order assertions.
    pub last_outputs: Vec<Output>,
    /// Messages for which this answers true are lost on delivery.
    pub lose: Option<Loss>,
    next_request: u64,
}

impl Cluster {
    pub fn new(n: u32) -> Cluster {
        Cluster::with_config(n, |_| {})
    }

    pub fn with_config(n: u32, tweak: impl Fn(&mut Config)) -> Cluster {
        let mut c = Cluster {
            now: Instant::ZERO,
            nodes: BTreeMap::new(),
            durable: BTreeMap::new(),
            configs: BTreeMap::new(),
            inflight: VecDeque::new(),
            cut: BTreeSet::new(),
            replies: Vec::new(),
            events: Vec::new(),
            actions: Vec::new(),
            last_outputs: Vec::new(),
            lose: None,
            next_request: 1,
        };
        for i in 1..=n {
            let mut cfg = config(i, n);
            tweak(&mut cfg);
            let node =
                Node::new(cfg.clone(), DurableState::default(), c.now).expect("valid config");
            c.configs.insert(NodeId(i), cfg);
            c.durable.insert(NodeId(i), DurableState::default());
            c.nodes.insert(NodeId(i), node);
        }
        c
    }

    pub fn node(&self, id: u32) -> &Node {
        &self.nodes[&NodeId(id)]
    }

    /// Delivers one input to a node and executes its outputs.
    pub fn step(&mut self, id: NodeId, input: Input) {
        let Some(node) = self.nodes.get_mut(&id) else {
            return;
        };
        let mut out = Vec::new();
        node.step(self.now, input, &mut out);
        for o in &out {
            match o {
                Output::Persist(p) => self.durable.entry(id).or_default().apply(p),
                Output::Send(m) => self.inflight.push_back(m.clone()),
                Output::Reply(r) => self.replies.push((id, r.clone())),
                Output::Trace(e) => self.events.push((id, e.clone())),
                Output::Workload(a) => self.actions.push((id, a.clone())),
            }
        }
        self.last_outputs = out;
    }

    /// Delivers every message in flight (and those they cause) until none is left.
    pub fn deliver_all(&mut self) {
        let mut budget = 100_000;
        while let Some(m) = self.inflight.pop_front() {
            budget -= 1;
            assert!(budget > 0, "messages never quiesce");
            if self.cut.contains(&(m.from, m.to)) || !self.nodes.contains_key(&m.to) {
                continue;
            }
            if self.lose.as_mut().is_some_and(|lose| lose(&m)) {
                continue;
            }
            self.step(m.to, Input::Message(m));
        }
    }

    /// Delivers only the messages in flight now; what they cause stays in flight.
    pub fn deliver_current(&mut self) {
        let batch: Vec<Message> = self.inflight.drain(..).collect();
        for m in batch {
            if self.cut.contains(&(m.from, m.to)) || !self.nodes.contains_key(&m.to) {
                continue;
            }
            self.step(m.to, Input::Message(m));
        }
    }

    /// Drops every message in flight.
    pub fn drop_inflight(&mut self) {
        self.inflight.clear();
    }

    /// Advances time to `t`, delivering ticks to every node whose deadline passed (in id order),
    /// delivering messages after each round of ticks.
    pub fn advance_to(&mut self, t: Instant) {
        loop {
            let due = self
                .nodes
                .iter()
                .map(|(id, n)| (n.next_deadline(), *id))
                .filter(|(d, _)| *d <= t)
                .min();
            let Some((deadline, id)) = due else { break };
            self.now = self.now.max(deadline);
            self.step(id, Input::Tick);
            self.deliver_all();
        }
        self.now = t;
    }

    pub fn advance(&mut self, d: Duration) {
        let t = self.now + d;
        self.advance_to(t);
    }

    /// Runs until some node is leader; panics after 10 simulated seconds.
    pub fn elect(&mut self) -> NodeId {
        for _ in 0..1000 {
            if let Some(l) = self.leader() {
                return l;
            }
            self.advance(Duration::from_millis(10));
        }
        panic!("no leader elected");
    }

    pub fn leader(&self) -> Option<NodeId> {
        let mut leaders: Vec<_> = self.nodes.values().filter(|n| n.is_leader()).collect();
        leaders.sort_by_key(|n| std::cmp::Reverse(n.term()));
        leaders.first().map(|n| n.id())
    }

    /// Makes node `id` leader: times it out first while the others are quiet.
    pub fn elect_node(&mut self, id: u32) -> NodeId {
        let target = NodeId(id);
        let deadline = self.nodes[&target].election_deadline();
        self.now = self.now.max(deadline);
        self.step(target, Input::Tick);
        self.deliver_all();
        assert!(
            self.nodes[&target].is_leader(),
            "{target} did not win: {:?}",
            self.nodes[&target].role()
        );
        target
    }

    pub fn request(&mut self, at: NodeId, op: ClientOp) -> RequestId {
        let id = RequestId(self.next_request);
        self.next_request += 1;
        self.step(at, Input::Client(ClientRequest { id, op }));
        id
    }

    pub fn put(&mut self, at: NodeId, key: &str, value: &str) -> RequestId {
        self.request(
            at,
            ClientOp::Write(Write::Put {
                key: Key::user(key),
                value: value.into(),
            }),
        )
    }

    pub fn get(&mut self, at: NodeId, key: &str) -> RequestId {
        self.request(
            at,
            ClientOp::Get {
                key: Key::user(key),
            },
        )
    }

    pub fn reply(&self, id: RequestId) -> Option<&ClientResult> {
        self.replies
            .iter()
            .find(|(_, r)| r.id == id)
            .map(|(_, r)| &r.result)
    }

    pub fn crash(&mut self, id: NodeId) {
        self.nodes.remove(&id);
        self.inflight.retain(|m| m.to != id);
    }

    pub fn restart(&mut self, id: NodeId) {
        let cfg = self.configs[&id].clone();
        let durable = self.durable[&id].clone();
        let node = Node::new(cfg, durable, self.now).expect("valid config");
        self.nodes.insert(id, node);
    }

    /// Starts node `id` outside the configuration: an empty disk, incarnation `incarnation`,
    /// no bootstrap members (it waits to be added). Replaces a node of that id if there is one
    /// (a node that lost its disk coming back).
    pub fn start_spare(&mut self, id: u32, incarnation: u64) -> NodeId {
        let id = NodeId(id);
        let mut cfg = Config::new(id, Vec::new(), 5000 + u64::from(id.0) + incarnation);
        cfg.incarnation = Incarnation(incarnation);
        let node = Node::new(cfg.clone(), DurableState::default(), self.now).expect("valid");
        self.inflight.retain(|m| m.to != id);
        self.configs.insert(id, cfg);
        self.durable.insert(id, DurableState::default());
        self.nodes.insert(id, node);
        id
    }

    /// Asks node `at` for a membership change.
    pub fn change(&mut self, at: NodeId, change: MemberChange) -> RequestId {
        self.request(at, ClientOp::Members(MemberOp::Change(change)))
    }

    pub fn isolate(&mut self, id: NodeId) {
        for other in self.configs.keys().copied().collect::<Vec<_>>() {
            if other != id {
                self.cut.insert((id, other));
                self.cut.insert((other, id));
            }
        }
    }

    pub fn heal(&mut self) {
        self.cut.clear();
    }

    pub fn events_of(&self, id: NodeId) -> Vec<&Event> {
        self.events
            .iter()
            .filter(|(n, _)| *n == id)
            .map(|(_, e)| e)
            .collect()
    }
}
