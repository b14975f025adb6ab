//! The replicated key-value state: partitions, keys, values, and the deterministic apply function.
//!
//! Owns: what a committed write does to the state. Never: I/O, clocks, or anything that could make
//! two replicas applying the same entries end up different.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::types::LogIndex;

/// The fixed partitions of the replicated state. `User` holds whatever clients store.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Partition {
    Workers,
    Tasks,
    TaskHistory,
    SystemHealth,
    Configuration,
    User,
}

impl Partition {
    pub const ALL: [Partition; 6] = [
        Partition::Workers,
        Partition::Tasks,
        Partition::TaskHistory,
        Partition::SystemHealth,
        Partition::Configuration,
        Partition::User,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Partition::Workers => "workers",
            Partition::Tasks => "tasks",
            Partition::TaskHistory => "task_history",
            Partition::SystemHealth => "system_health",
            Partition::Configuration => "configuration",
            Partition::User => "user",
        }
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a string names no partition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown partition {0:?}: expected one of workers, tasks, task_history, system_health, configuration, user")]
pub struct ParsePartitionError(pub String);

impl FromStr for Partition {
    type Err = ParsePartitionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Partition::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| ParsePartitionError(s.to_string()))
    }
}

/// A key: a partition and a name inside it. Written `partition/name`. Ordered by partition, then
/// name (bytewise), as a derived order would be.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct Key {
    pub partition: Partition,
    pub name: String,
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.partition
            .cmp(&other.partition)
            .then_with(|| cmp_name(self.name.as_bytes(), other.name.as_bytes()))
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// `a.cmp(b)` (lexicographic bytes, then length), without a `memcmp` call for the short names
/// keys usually have: the state machine compares keys on every write it applies.
fn cmp_name(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    if a.len() > 16 || b.len() > 16 {
        return a.cmp(b);
    }
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return x.cmp(y);
        }
    }
    a.len().cmp(&b.len())
}

impl Key {
    pub fn new(partition: Partition, name: impl Into<String>) -> Key {
        Key {
            partition,
            name: name.into(),
        }
    }
    pub fn user(name: impl Into<String>) -> Key {
        Key::new(Partition::User, name)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.partition, self.name)
    }
}

/// A stored value. The production node stores canonical JSON text; the core only compares values.
pub type Value = String;

/// One write of a batch.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum BatchOp {
    Put { key: Key, value: Value },
    Delete { key: Key },
}

/// A state-changing operation. It goes through the log and is applied on every replica.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum Write {
    Put {
        key: Key,
        value: Value,
    },
    Delete {
        key: Key,
    },
    /// Set `key` to `to` only if its current value is `from` (`None`: the key is absent).
    Cas {
        key: Key,
        from: Option<Value>,
        to: Value,
    },
    /// All of these or none (they cannot fail, so: all of them, in order, at one revision).
    Batch {
        ops: Vec<BatchOp>,
    },
}

/// What applying a write did.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum WriteOutcome {
    /// The write took effect at this revision (the log index of its entry).
    Applied { revision: LogIndex },
    /// A compare-and-set found another value and changed nothing.
    CasMismatch { current: Option<Value> },
    /// The command was refused by the state and changed nothing.
    Refused { reason: String },
}

/// A value with the revision of the write that set it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Versioned {
    pub value: Value,
    pub mod_revision: LogIndex,
}

/// The key-value state every replica builds by applying committed writes in log order.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct KvState {
    entries: BTreeMap<Key, Versioned>,
}

impl KvState {
    pub fn get(&self, key: &Key) -> Option<&Versioned> {
        self.entries.get(key)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every key and value, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&Key, &Versioned)> {
        self.entries.iter()
    }

    /// Applies `write`, committed at `index`. Deterministic: same state + same write = same result.
    pub fn apply(&mut self, index: LogIndex, write: &Write) -> WriteOutcome {
        match write {
            Write::Put { key, value } => self.put(key, value, index),
            Write::Delete { key } => {
                self.entries.remove(key);
            }
            // One search of the map, not a look-up and then a put's own.
            Write::Cas { key, from, to } => match (self.entries.get_mut(key), from) {
                (Some(v), Some(from)) if v.value == *from => {
                    v.value.clone_from(to);
                    v.mod_revision = index;
                }
                (None, None) => self.insert(key, to, index),
                (current, _) => {
                    return WriteOutcome::CasMismatch {
                        current: current.map(|v| v.value.clone()),
                    };
                }
            },
            Write::Batch { ops } => {
                for op in ops {
                    match op {
                        BatchOp::Put { key, value } => self.put(key, value, index),
                        BatchOp::Delete { key } => {
                            self.entries.remove(key);
                        }
                    }
                }
            }
        }
        WriteOutcome::Applied { revision: index }
    }

    fn put(&mut self, key: &Key, value: &Value, index: LogIndex) {
        // An existing key keeps its entry (and the value's buffer): no key clone per write.
        match self.entries.get_mut(key) {
            Some(v) => {
                v.value.clone_from(value);
                v.mod_revision = index;
            }
            None => self.insert(key, value, index),
        }
    }

    /// Adds `key`, known to be absent.
    fn insert(&mut self, key: &Key, value: &Value, index: LogIndex) {
        self.entries.insert(
            key.clone(),
            Versioned {
                value: value.clone(),
                mod_revision: index,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_order_as_partition_then_name_bytes() {
        let names = [
            "",
            "a",
            "ab",
            "b",
            "k1",
            "k10",
            "k2",
            "a-very-long-key-name-1",
            "a-very-long-key-name-2",
            "zz",
        ];
        for p in [Partition::Tasks, Partition::User] {
            for q in [Partition::Tasks, Partition::User] {
                for x in names {
                    for y in names {
                        let (a, b) = (Key::new(p, x), Key::new(q, y));
                        assert_eq!(
                            a.cmp(&b),
                            (p, x.as_bytes()).cmp(&(q, y.as_bytes())),
                            "{a} vs {b}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn partitions_parse_and_print() {
        for p in Partition::ALL {
            assert_eq!(p.as_str().parse::<Partition>(), Ok(p));
        }
        assert!("nope".parse::<Partition>().is_err());
        assert_eq!(Key::user("k1").to_string(), "user/k1");
    }

    #[test]
    fn cas_compares_against_current_value_or_absence() {
        let mut s = KvState::default();
        let k = Key::user("a");
        let cas = |from: Option<&str>, to: &str| Write::Cas {
            key: k.clone(),
            from: from.map(String::from),
            to: to.to_string(),
        };
        assert_eq!(
            s.apply(LogIndex(1), &cas(None, "x")),
            WriteOutcome::Applied {
                revision: LogIndex(1)
            }
        );
        assert_eq!(
            s.apply(LogIndex(2), &cas(None, "y")),
            WriteOutcome::CasMismatch {
                current: Some("x".into())
            }
        );
        assert_eq!(
            s.apply(LogIndex(3), &cas(Some("x"), "y")),
            WriteOutcome::Applied {
                revision: LogIndex(3)
            }
        );
        assert_eq!(s.get(&k).map(|v| v.value.as_str()), Some("y"));
        assert_eq!(s.get(&k).map(|v| v.mod_revision), Some(LogIndex(3)));
        assert_eq!(
            s.apply(LogIndex(4), &cas(Some("x"), "z")),
            WriteOutcome::CasMismatch {
                current: Some("y".into())
            }
        );
        s.apply(LogIndex(5), &Write::Delete { key: k.clone() });
        assert_eq!(
            s.apply(LogIndex(6), &cas(Some("y"), "z")),
            WriteOutcome::CasMismatch { current: None }
        );
        assert!(s.get(&k).is_none());
    }

    #[test]
    fn batch_applies_every_op_at_one_revision() {
        let mut s = KvState::default();
        s.apply(
            LogIndex(1),
            &Write::Put {
                key: Key::user("gone"),
                value: "1".into(),
            },
        );
        let batch = Write::Batch {
            ops: vec![
                BatchOp::Put {
                    key: Key::user("a"),
                    value: "1".into(),
                },
                BatchOp::Put {
                    key: Key::new(Partition::Tasks, "t"),
                    value: "2".into(),
                },
                BatchOp::Delete {
                    key: Key::user("gone"),
                },
            ],
        };
        assert_eq!(
            s.apply(LogIndex(2), &batch),
            WriteOutcome::Applied {
                revision: LogIndex(2)
            }
        );
        assert_eq!(s.len(), 2);
        assert!(s.get(&Key::user("gone")).is_none());
        assert_eq!(
            s.get(&Key::new(Partition::Tasks, "t"))
                .map(|v| v.mod_revision),
            Some(LogIndex(2))
        );
    }
}
