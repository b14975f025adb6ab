//! The node's address book: where each member's peer port is, from every source the node has.
//!
//! A member's address comes from, in order: the node's own `--peers` (and what it learned when
//! it joined), which the operator gave this node and which therefore win, then the
//! configuration (an added member carries the address it was added with). Members a cluster was bootstrapped with carry
//! no address in the configuration: every node that bootstrapped has them in `--peers`, and a
//! node that joined later learned them from the member it joined through.
//!
//! Owns: the address book and the difference between the members it connects to and the
//! configuration's (who to connect to anew, who to let go). Never: opening connections (the
//! transport does) or deciding membership (the core does).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use keel_core::{Membership, NodeId};

/// Every peer address this node knows.
#[derive(Clone, Debug)]
pub(crate) struct AddressBook {
    me: NodeId,
    /// This node's own peer address.
    pub listen: SocketAddr,
    /// `--peers`, and what the node learned when it joined.
    known: BTreeMap<NodeId, SocketAddr>,
}

/// What the transport must do to follow a new configuration.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct PeerChanges {
    /// Members to connect to (new, or at a new address).
    pub connect: Vec<(NodeId, SocketAddr)>,
    /// Peers no longer in the configuration.
    pub drop: Vec<NodeId>,
}

impl AddressBook {
    pub(crate) fn new(me: NodeId, listen: SocketAddr, known: BTreeMap<NodeId, SocketAddr>) -> Self {
        AddressBook { me, listen, known }
    }

    /// Notes `addr` as where `id` listens, unless an address for it is known already: true if
    /// it is new.
    pub(crate) fn learn(&mut self, id: NodeId, addr: SocketAddr) -> bool {
        if id == self.me || self.known.contains_key(&id) {
            return false;
        }
        self.known.insert(id, addr);
        true
    }

    /// The address of `id`, as far as this node knows. This node's own is its listen address,
    /// unless that is a wildcard (`0.0.0.0`), which tells others nothing.
    pub(crate) fn address(&self, id: NodeId, membership: &Membership) -> Option<SocketAddr> {
        if id == self.me {
            return (!self.listen.ip().is_unspecified()).then_some(self.listen);
        }
        let configured = || {
            membership
                .get(id)
                .and_then(|m| m.address.parse::<SocketAddr>().ok())
        };
        self.known.get(&id).copied().or_else(configured)
    }

    /// The peers to connect to under `membership`: every other member with a known address.
    /// While the configuration is empty (a node that has not received one yet) the peers
    /// it was given are kept, so it can answer whoever leads.
    pub(crate) fn peers(&self, membership: &Membership) -> BTreeMap<NodeId, SocketAddr> {
        if membership.members().is_empty() {
            return self.known.clone();
        }
        membership
            .members()
            .iter()
            .filter(|m| m.id != self.me)
            .filter_map(|m| self.address(m.id, membership).map(|a| (m.id, a)))
            .collect()
    }

    /// How to go from the peers `current` to those of `membership`.
    pub(crate) fn changes(
        &self,
        current: &BTreeMap<NodeId, SocketAddr>,
        membership: &Membership,
    ) -> PeerChanges {
        let wanted = self.peers(membership);
        PeerChanges {
            connect: wanted
                .iter()
                .filter(|(id, a)| current.get(id) != Some(a))
                .map(|(id, a)| (*id, *a))
                .collect(),
            drop: current
                .keys()
                .filter(|id| !wanted.contains_key(id))
                .copied()
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_core::{Incarnation, MemberChange};

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn follows_the_configuration_with_addresses_from_every_source() {
        let known = BTreeMap::from([(NodeId(2), addr(7002)), (NodeId(3), addr(7003))]);
        let book = AddressBook::new(NodeId(1), addr(7001), known.clone());
        let boot = Membership::bootstrap(&[NodeId(1), NodeId(2), NodeId(3)]);
        assert_eq!(book.peers(&boot), known);
        assert_eq!(book.changes(&known, &boot), PeerChanges::default());
        let grown = boot
            .apply(&MemberChange::AddLearner {
                id: NodeId(4),
                incarnation: Incarnation(9),
                address: "127.0.0.1:7004".into(),
            })
            .expect("add");
        let changes = book.changes(&known, &grown);
        assert_eq!(changes.connect, vec![(NodeId(4), addr(7004))]);
        assert!(changes.drop.is_empty());
        let shrunk = grown
            .apply(&MemberChange::Remove { id: NodeId(2) })
            .expect("remove");
        let now = book.peers(&grown);
        assert_eq!(book.changes(&now, &shrunk).drop, vec![NodeId(2)]);
        assert_eq!(book.address(NodeId(1), &shrunk), Some(addr(7001)));
        let wildcard = AddressBook::new(
            NodeId(1),
            "0.0.0.0:7001".parse().expect("addr"),
            known.clone(),
        );
        assert_eq!(wildcard.address(NodeId(1), &shrunk), None);
        // --peers wins over what the configuration says.
        let moved = grown
            .apply(&MemberChange::SetAddress {
                id: NodeId(2),
                address: "127.0.0.1:9999".into(),
            })
            .expect("set");
        assert_eq!(book.address(NodeId(2), &moved), Some(addr(7002)));
        assert_eq!(book.address(NodeId(4), &moved), Some(addr(7004)));
        // No configuration yet: keep the peers given, and those whose handshakes said where
        // they listen.
        assert_eq!(book.peers(&Membership::default()), known);
        let mut book = book;
        assert!(book.learn(NodeId(5), addr(7005)));
        assert!(
            !book.learn(NodeId(2), addr(9999)),
            "a known address is kept"
        );
        assert_eq!(
            book.peers(&Membership::default()).get(&NodeId(5)),
            Some(&addr(7005))
        );
    }
}
