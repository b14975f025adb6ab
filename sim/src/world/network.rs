//! The simulated network between nodes, and between nodes and clients: per-message latency from
//! the scenario's range (so messages reorder), random drops and duplicates, cut links
//! (partitions, isolations, one-way cuts) and delayed links.
//!
//! [`Network`] owns the links' state and the network's random stream; the `World` methods here
//! put messages and replies on the wire and take them off it. Nothing here steps a node or
//! decides which links a fault cuts: the fault families set the cuts and call
//! [`Network::recompute_links`].

use std::collections::BTreeSet;

use keel_core::{ClientReply, Input, Message, Output};

use super::config::scaled;
use super::events::Ev;
use super::World;
use crate::rng::Stream;

pub(super) struct Network {
    n: usize,
    /// `blocked[from * n + to]`: messages from `from` to `to` are lost.
    blocked: Vec<bool>,
    /// The partition in force: two nodes talk iff some group holds both.
    pub(super) groups: Option<Vec<Vec<usize>>>,
    pub(super) isolated: BTreeSet<usize>,
    pub(super) one_way: BTreeSet<(usize, usize)>,
    /// `link_delay[from * n + to]`: (extra latency, token) of a `Delay` in force on that link;
    /// extra 0 when none.
    pub(super) link_delay: Vec<(u64, u64)>,
    /// True while any link is delayed: the only cost delays add to a send otherwise.
    pub(super) delaying: bool,
    pub(super) rng: Stream,
}

impl Network {
    pub(super) fn new(n: usize, rng: Stream) -> Network {
        Network {
            n,
            blocked: vec![false; n * n],
            groups: None,
            isolated: BTreeSet::new(),
            one_way: BTreeSet::new(),
            link_delay: vec![(0, 0); n * n],
            delaying: false,
            rng,
        }
    }

    /// True if messages from `from` to `to` are lost.
    #[inline]
    pub(super) fn blocked(&self, from: usize, to: usize) -> bool {
        self.blocked[from * self.n + to]
    }

    /// True if any link out of `from` is cut.
    pub(super) fn any_cut_from(&self, from: usize) -> bool {
        (0..self.n).any(|to| self.blocked(from, to))
    }

    /// Sets every link's cut from the partition, isolations and one-way cuts in force.
    pub(super) fn recompute_links(&mut self) {
        let n = self.n;
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
}

impl World<'_> {
    /// A message arrives at its destination (unless its sender's crash or a cut link lost it).
    #[inline(always)]
    pub(super) fn deliver(
        &mut self,
        msg: Message,
        from_incarnation: u64,
        released_at: u64,
        out: &mut Vec<Output>,
    ) {
        let from = msg.from.0 as usize - 1;
        let to = msg.to.0 as usize - 1;
        if self.lost_in_crash(from, from_incarnation, released_at) {
            return;
        }
        if self.net.blocked(from, to) || !self.nodes[to].up() {
            self.stats.messages_dropped += 1;
            self.cover("message dropped");
            return;
        }
        self.stats.messages_delivered += 1;
        if self.tr.on() {
            self.trace_json(serde_json::json!({
                "t_us": self.now, "kind": "deliver", "from": msg.from.to_string(),
                "to": msg.to.to_string(), "term": msg.term.0, "msg": msg.body.kind(),
            }));
        }
        self.input_with(to, Input::Message(msg), out);
    }

    /// True if the sender crashed after producing this output but before it could leave.
    pub(super) fn lost_in_crash(&self, node: usize, incarnation: u64, released_at: u64) -> bool {
        self.nodes[node]
            .crash_times
            .get(incarnation as usize)
            .is_some_and(|&crashed| crashed < released_at)
    }

    /// One trip between a client and a node.
    pub(super) fn client_latency(&mut self) -> u64 {
        let (lo, hi) = self.us.latency;
        self.net.rng.between(lo, hi)
    }

    /// Node `i` sends `m` at the end of a step at `t`; it leaves once the node's earlier
    /// persists are durable.
    pub(super) fn send(&mut self, i: usize, t: u64, m: Message) {
        let released_at = self.nodes[i].disk.released_at(t);
        let from = i;
        let to = m.to.0 as usize - 1;
        self.stats.messages_sent += 1;
        if self.net.blocked(from, to) || self.net.rng.chance(self.scenario.network.drop_rate) {
            self.stats.messages_dropped += 1;
            self.cover("message dropped");
            return;
        }
        let copies = if self.net.rng.chance(self.scenario.network.duplicate_rate) {
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
        let held = if self.net.delaying {
            self.net.link_delay[from * self.nodes.len() + to].0
        } else {
            0
        };
        if held > 0 {
            self.cover("message held back on a delayed link");
        }
        if copies == 2 {
            let latency = self.net.rng.between(lo, hi);
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
        let latency = self.net.rng.between(lo, hi);
        let at = released_at + held + scaled(latency, slow);
        // Straight into the queue (inlined), for the message to be copied as little as can be.
        self.queue.push_with(at, || Ev::Deliver {
            msg: m,
            from_incarnation: incarnation,
            released_at,
        });
    }

    /// Node `i` answers a client at the end of a step at `t`.
    pub(super) fn reply(&mut self, i: usize, t: u64, r: ClientReply) {
        let released_at = self.nodes[i].disk.released_at(t);
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
}
