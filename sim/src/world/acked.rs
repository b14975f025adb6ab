//! The acknowledged-write check's scratch space: the write an acknowledged request made, rebuilt
//! in place from its history record. It holds no state between requests and never decides
//! anything: the clients hand the rebuilt write to the checkers.

use keel_core::{Key, Write};

use crate::history::Op;

/// One reusable write per kind, refilled in place (reusing its strings' buffers) with the write
/// an acknowledged request made, rebuilt from its history record: what the acknowledged-write
/// check compares with the committed entry, without a copy kept per request in flight.
pub(super) struct AckedWrites {
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
    pub(super) fn rebuild(&mut self, key: &Key, op: &Op) -> Option<&Write> {
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
