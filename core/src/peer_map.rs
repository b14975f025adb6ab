//! [`PeerMap`]: a map keyed by node id for the handful of members of a cluster, stored as a
//! vector sorted by id. Iteration is in id order (as a `BTreeMap`'s would be); lookups scan a few
//! entries, which beats a tree at these sizes and allocates nothing after construction.
//!
//! Owns: that container. Never: anything about what it stores.

use crate::types::NodeId;

#[derive(Clone, Debug, Default)]
pub(crate) struct PeerMap<V> {
    entries: Vec<(NodeId, V)>,
}

impl<V> PeerMap<V> {
    pub(crate) fn get(&self, id: &NodeId) -> Option<&V> {
        self.entries.iter().find(|(k, _)| k == id).map(|(_, v)| v)
    }

    pub(crate) fn get_mut(&mut self, id: &NodeId) -> Option<&mut V> {
        self.entries
            .iter_mut()
            .find(|(k, _)| k == id)
            .map(|(_, v)| v)
    }

    /// Inserts or replaces the value of `id`, keeping the ids in order.
    pub(crate) fn insert(&mut self, id: NodeId, value: V) {
        match self.entries.binary_search_by(|(k, _)| k.cmp(&id)) {
            Ok(i) => self.entries[i].1 = value,
            Err(i) => self.entries.insert(i, (id, value)),
        }
    }

    /// Keeps only the entries whose id passes `keep`.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&NodeId) -> bool) {
        self.entries.retain(|(k, _)| keep(k));
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn contains_key(&self, id: &NodeId) -> bool {
        self.entries.iter().any(|(k, _)| k == id)
    }

    /// Entries in id order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&NodeId, &V)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// Values in id order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().map(|(_, v)| v)
    }

    /// Values in id order.
    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.entries.iter_mut().map(|(_, v)| v)
    }
}

impl<V> FromIterator<(NodeId, V)> for PeerMap<V> {
    fn from_iter<I: IntoIterator<Item = (NodeId, V)>>(iter: I) -> Self {
        let mut m = PeerMap {
            entries: Vec::new(),
        };
        for (k, v) in iter {
            m.insert(k, v);
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_id_order_and_replaces() {
        let m: PeerMap<u32> = [(NodeId(3), 30), (NodeId(1), 10), (NodeId(2), 20)]
            .into_iter()
            .collect();
        assert_eq!(m.values().copied().collect::<Vec<_>>(), vec![10, 20, 30]);
        let mut m = m;
        m.insert(NodeId(2), 21);
        assert_eq!(m.get(&NodeId(2)), Some(&21));
        assert_eq!(m.get(&NodeId(4)), None);
        assert!(m.contains_key(&NodeId(3)) && !m.contains_key(&NodeId(4)));
        assert_eq!(
            m.iter().map(|(k, _)| k.0).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        if let Some(v) = m.get_mut(&NodeId(1)) {
            *v = 11;
        }
        for v in m.values_mut() {
            *v += 1;
        }
        assert_eq!(m.values().copied().collect::<Vec<_>>(), vec![12, 22, 31]);
    }
}
