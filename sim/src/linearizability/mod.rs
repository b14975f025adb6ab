//! Is a client history linearizable for a key-value store? A Wing–Gong search with Lowe's
//! memoisation (Wing & Gong 1993, "Testing and verifying concurrent objects"; Lowe 2017, "Testing
//! for linearizability"), as in Porcupine.
//!
//! Keys are independent registers, so the history is split by key and each key is checked on its
//! own (P-compositionality; keys in sorted order, so the verdict is deterministic). Per key the
//! model is `Option<value>`: `put` sets it, `delete` clears it, an `ok` `get` must read it, an `ok`
//! `cas` must find `from` and sets `to`. Operations that completed `fail` certainly had no effect
//! and are left out. Operations whose outcome is unknown (`info`, or never completed) may take
//! effect at any point after their invocation, or never: their return is at infinity and the
//! search succeeds once every `ok` operation is linearized. Unknown reads are left out.
//!
//! The search walks the events (invocations and returns) in time order; at an invocation it tries
//! to linearize that operation now, at a return it backtracks: the returning operation must have
//! taken effect before it returned. A cache of (set of linearized operations, model state) prunes
//! every configuration already explored. Invocations are ordered before returns at equal times, so
//! operations that touch in time count as concurrent (the permissive reading).
//!
//! The checker only reads the history: it never changes it, never reads a clock, and its verdict
//! and statistics depend on the history and the budget alone (no hash-table order reaches them).
//! It runs at the end of every simulated run, so its search loop allocates nothing on a step
//! forward (only the cache of abandoned configurations grows, on a backtrack).
//!
//! This module splits the history by key, prepares each key's operations and events, and words
//! the verdict; the search itself lives in `search`.

mod search;

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::history::{Completion, EventKind, History, Op, OpId};
use search::{search, EventList, SearchEnd};

/// The verdict on a history.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Linearizable,
    NotLinearizable(Violation),
    /// The search gave up after exploring its budget of states on one key.
    Inconclusive {
        reason: String,
    },
}

/// Where a history stops being linearizable.
#[derive(Clone, Debug, PartialEq)]
pub struct Violation {
    pub key: String,
    /// The operations of the key that no linearization could place, the first one first.
    pub ops: Vec<OpId>,
    pub explanation: String,
}

/// What the search did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckStats {
    pub keys: usize,
    pub ops: usize,
    pub states_explored: u64,
}

/// Value ids per key: 0 is "absent".
type State = u32;

#[derive(Clone, Copy, Debug)]
enum ModelOp {
    Put(State),
    Delete,
    Read(State),
    Cas(State, State),
}

impl ModelOp {
    fn step(self, s: State) -> Option<State> {
        match self {
            ModelOp::Put(v) => Some(v),
            ModelOp::Delete => Some(0),
            ModelOp::Read(v) => (s == v).then_some(s),
            ModelOp::Cas(from, to) => (s == from).then_some(to),
        }
    }
}

/// Checks `history`, exploring at most `budget_states` configurations per key.
pub fn check(history: &History, budget_states: u64) -> (Verdict, CheckStats) {
    let all = history.operations();
    // Grouped by key in hash tables (a run has a few keys and thousands of operations: no
    // string comparisons per operation), then taken in sorted key order. The operations on a
    // key share its text, so they are looked up by where that text is (no string hashed or
    // compared), and by the text itself only the first time a copy of it is seen.
    let mut by_key: Vec<KeyOps> = Vec::new();
    let mut by_text: HashMap<&str, usize, BuildKeyHasher> = HashMap::default();
    let mut by_place: HashMap<(usize, usize), usize, BuildKeyHasher> = HashMap::default();
    // Each operation's group in `by_key`.
    let mut group_of: Vec<usize> = Vec::with_capacity(all.len());
    for (i, o) in all.iter().enumerate() {
        let key = o.op.key();
        let place = (key.as_ptr() as usize, key.len());
        let group = match by_place.get(&place) {
            Some(&group) => group,
            None => {
                let group = *by_text.entry(key).or_insert_with(|| {
                    by_key.push(KeyOps {
                        key,
                        ids: Vec::new(),
                        completed: Vec::new(),
                    });
                    by_key.len() - 1
                });
                by_place.insert(place, group);
                group
            }
        };
        by_key[group].ids.push(OpId(i));
        group_of.push(group);
    }
    // Each key's completions in the order they were recorded: time order, as a rule, so that
    // its returns need (almost) no sorting.
    for &(kind, id) in history.events() {
        if kind == EventKind::Complete {
            if let Some(&group) = group_of.get(id.0) {
                by_key[group].completed.push(id);
            }
        }
    }
    by_key.sort_unstable_by(|a, b| a.key.cmp(b.key));
    let mut stats = CheckStats {
        keys: by_key.len(),
        ..CheckStats::default()
    };
    // Shared by the keys (an operation belongs to one key): see `check_key`.
    let mut search_index = vec![NOT_SEARCHED; all.len()];
    for key_ops in &by_key {
        let (verdict, explored, ops) =
            check_key(history, key_ops, &mut search_index, budget_states);
        stats.states_explored += explored;
        stats.ops += ops;
        if verdict != Verdict::Linearizable {
            return (verdict, stats);
        }
    }
    (Verdict::Linearizable, stats)
}

/// The operations on one key.
struct KeyOps<'h> {
    key: &'h str,
    /// In invocation order.
    ids: Vec<OpId>,
    /// The completed ones, in the order their completions were recorded.
    completed: Vec<OpId>,
}

/// Not among the operations a key's search places (see `check_key`).
const NOT_SEARCHED: usize = usize::MAX;

/// Sorts `v`, a list of distinct items that is sorted but for a few items a short way out of
/// place (events taken in the order a history recorded them: time order, but for ties), in time
/// proportional to its length plus the distance the items move. A list much further from sorted
/// goes to the general sort; either way the result is the one sorted order.
fn sort_nearly_sorted(v: &mut [u128]) {
    let mut moves_left = 8 * v.len() + 64;
    for i in 1..v.len() {
        let x = v[i];
        if v[i - 1] <= x {
            continue; // in place: the usual case
        }
        let mut j = i - 1;
        while j > 0 && v[j - 1] > x {
            j -= 1;
        }
        v[j..=i].rotate_right(1);
        match moves_left.checked_sub(i - j) {
            Some(left) => moves_left = left,
            None => {
                v.sort_unstable();
                return;
            }
        }
    }
}

/// The sorted lists `a` and `b` merged into one sorted list.
fn merge_sorted(a: &[u128], b: &[u128]) -> Vec<u128> {
    let mut merged = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while let (Some(&x), Some(&y)) = (a.get(i), b.get(j)) {
        if x <= y {
            merged.push(x);
            i += 1;
        } else {
            merged.push(y);
            j += 1;
        }
    }
    merged.extend_from_slice(&a[i..]);
    merged.extend_from_slice(&b[j..]);
    merged
}

/// The low 63 bits of a packed event: its operation.
const OP_MASK: u64 = (1 << 63) - 1;

/// An event of the search list as one integer, ordered as (time, call before return, op): the
/// time in the high 64 bits, then one bit (0 call, 1 return), then the operation's 63 bits.
fn timed_event(time: u64, is_return: bool, op: usize) -> u128 {
    (u128::from(time) << 64) | (u128::from(is_return) << 63) | u128::from(op as u64 & OP_MASK)
}

struct KeyOp {
    id: OpId,
    model: ModelOp,
    /// Must be linearized for success (completed ok).
    required: bool,
}

/// The id of value `v` (`None`, absent, is 0), numbering new values from 1 on.
fn intern<'h>(values: &mut HashMap<&'h str, State, BuildKeyHasher>, v: Option<&'h str>) -> State {
    match v {
        None => 0,
        Some(s) => {
            let next = values.len() as State + 1;
            *values.entry(s).or_insert(next)
        }
    }
}

/// The operations of one key worth searching, and the search's events (see [`timed_event`]).
struct SearchOps {
    ops: Vec<KeyOp>,
    /// The invocations, in op order.
    calls: Vec<u128>,
    /// Returns at infinity (unknown outcomes), in op order: after every timed return.
    unknown_returns: Vec<u128>,
}

/// Checks the operations on one key. `search_index[op]` is set to the index among the searched
/// operations for each operation searched here (and was `NOT_SEARCHED` for all of them).
fn check_key(
    history: &History,
    key_ops: &KeyOps,
    search_index: &mut [usize],
    budget: u64,
) -> (Verdict, u64, usize) {
    let KeyOps {
        key,
        ids,
        completed,
    } = key_ops;
    let SearchOps {
        ops,
        mut calls,
        unknown_returns,
    } = search_ops(history, ids, search_index);
    let n_ops = ops.len();
    let required_total = ops.iter().filter(|o| o.required).count();
    if required_total == 0 {
        return (Verdict::Linearizable, 0, n_ops);
    }
    let mut returns = timed_returns(history, &ops, completed, search_index, required_total);
    returns.extend_from_slice(&unknown_returns);
    // Calls before returns at equal times; then by op for determinism (the keys are distinct, so
    // there is one sorted order). The history recorded the calls in op order and both in time
    // order, so each list is sorted but for ties (a return recorded before a call at the same
    // instant, say): each is sorted on its own, cheaply, and the two merged.
    sort_nearly_sorted(&mut calls);
    sort_nearly_sorted(&mut returns);
    let timed = merge_sorted(&calls, &returns);
    let list = EventList::new(&timed, n_ops);
    let (end, explored) = search(&ops, list, required_total, budget);
    let verdict = match end {
        SearchEnd::Linearizable => Verdict::Linearizable,
        SearchEnd::OverBudget => Verdict::Inconclusive {
            reason: format!("key {key}: more than {budget} search states ({n_ops} operations)"),
        },
        SearchEnd::Stuck { best_missing } => {
            let culprit = best_missing.unwrap_or(0);
            let culprit_id = ops.get(culprit).map_or(OpId(0), |o| o.id);
            Verdict::NotLinearizable(Violation {
                key: key.to_string(),
                ops: vec![culprit_id],
                explanation: explain(history, key, culprit_id, ids),
            })
        }
    };
    (verdict, explored, n_ops)
}

/// The operations of a key (`ids`, in invocation order) that the search must place or may
/// place, with their model operations and invocations; marks each in `search_index`.
fn search_ops(history: &History, ids: &[OpId], search_index: &mut [usize]) -> SearchOps {
    let all = history.operations();
    // Values borrowed from the history: no copy of a value per operation. Each value text is
    // hashed once per operation naming it.
    let mut values: HashMap<&str, State, BuildKeyHasher> =
        HashMap::with_capacity_and_hasher(ids.len(), BuildKeyHasher);
    // First the values some completed operation observed: read by an ok get, or required by a
    // cas. An unknown write of a value nobody observed can be left out: if a linearization
    // applies it, no ok operation falls in the span where its value is current (that would be
    // an observation), so the same order without it is a linearization too.
    // `seen[i]`: the id of the value operation `ids[i]` observed (0 if none), kept for the
    // second pass so that no value is looked up twice.
    let seen: Vec<State> = ids
        .iter()
        .map(|id| {
            let o = &all[id.0];
            match (&o.op, &o.completion) {
                (Op::Get { .. }, Some(Completion::Ok { read: Some(v) }))
                | (Op::Cas { from: Some(v), .. }, _) => intern(&mut values, Some(v)),
                _ => 0,
            }
        })
        .collect();
    // The observed values are numbered 1..=observed.
    let observed = values.len() as State;
    let mut found = SearchOps {
        ops: Vec::with_capacity(ids.len()),
        // Each (time, 0 call / 1 return, op) packed into one integer in that order.
        calls: Vec::with_capacity(ids.len()),
        unknown_returns: Vec::new(),
    };
    for (&id, &seen) in ids.iter().zip(&seen) {
        let o = &all[id.0];
        let required = matches!(o.completion, Some(Completion::Ok { .. }));
        let model = match (&o.op, &o.completion) {
            (_, Some(Completion::Fail)) => continue,
            // `seen`: the value read (0 for none, absent).
            (Op::Get { .. }, Some(Completion::Ok { .. })) => ModelOp::Read(seen),
            (Op::Get { .. }, _) => continue,
            (Op::Put { value, .. }, _) => ModelOp::Put(intern(&mut values, Some(value))),
            (Op::Delete { .. }, _) => ModelOp::Delete,
            // `seen`: the value required (0 for none, absent).
            (Op::Cas { to, .. }, _) => ModelOp::Cas(seen, intern(&mut values, Some(to))),
        };
        let unobserved = match model {
            ModelOp::Put(v) | ModelOp::Cas(_, v) => v > observed,
            ModelOp::Read(_) | ModelOp::Delete => false,
        };
        if !required && unobserved {
            continue;
        }
        let k = found.ops.len();
        search_index[id.0] = k;
        found.calls.push(timed_event(o.invoke_us, false, k));
        if !required {
            found.unknown_returns.push(timed_event(u64::MAX, true, k));
        }
        found.ops.push(KeyOp {
            id,
            model,
            required,
        });
    }
    found
}

/// The returns of the required operations, in the order the history recorded them (`completed`),
/// with room for the unknown returns to follow.
fn timed_returns(
    history: &History,
    ops: &[KeyOp],
    completed: &[OpId],
    search_index: &[usize],
    required_total: usize,
) -> Vec<u128> {
    let all = history.operations();
    let unknown = ops.len() - required_total;
    let mut returns: Vec<u128> = Vec::with_capacity(required_total + unknown);
    for &id in completed {
        let k = search_index[id.0];
        if k != NOT_SEARCHED && ops[k].required {
            let complete_us = all[id.0].complete_us.unwrap_or(u64::MAX);
            returns.push(timed_event(complete_us, true, k));
        }
    }
    debug_assert_eq!(
        returns.len(),
        required_total,
        "every ok operation's completion is recorded"
    );
    returns
}

/// A fast, non-cryptographic hasher: the cache's keys are already uniformly random (Zobrist
/// hashes), and the value tables hash short strings the simulator wrote. Lookups only: no
/// iteration order of these tables reaches an output.
#[derive(Default, Clone, Copy)]
pub(crate) struct BuildKeyHasher;

#[derive(Default)]
pub(crate) struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for chunk in &mut words {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            // Zero-padded, as a whole word: no variable-length copy (a `memcpy` call).
            self.write_u64(crate::trace::tail_word(rest));
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x517C_C1B7_2722_0A95);
    }
    fn write_u128(&mut self, v: u128) {
        self.write_u64(v as u64);
        self.write_u64((v >> 64) as u64);
    }
    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
}

impl std::hash::BuildHasher for BuildKeyHasher {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(0)
    }
}

/// Describes the operation that could not be placed and the operations around it in time.
fn explain(history: &History, key: &str, culprit: OpId, ids: &[OpId]) -> String {
    let all = history.operations();
    let describe = |id: OpId| -> String {
        let o = &all[id.0];
        let what = match &o.op {
            Op::Put { value, .. } => format!("put {value:?}"),
            Op::Get { .. } => "get".to_string(),
            Op::Delete { .. } => "delete".to_string(),
            Op::Cas { from, to, .. } => format!("cas {from:?} -> {to:?}"),
        };
        let outcome = match &o.completion {
            Some(Completion::Ok { read }) if matches!(o.op, Op::Get { .. }) => {
                format!("ok, read {read:?}")
            }
            Some(Completion::Ok { .. }) => "ok".to_string(),
            Some(Completion::Fail) => "fail".to_string(),
            Some(Completion::Info) | None => "unknown".to_string(),
        };
        let end = o
            .complete_us
            .map_or("open".to_string(), |t| format!("{:.3}", t as f64 / 1e3));
        format!(
            "op {} process {} {what} [{:.3} ms .. {end} ms] {outcome}",
            id.0,
            o.process,
            o.invoke_us as f64 / 1e3
        )
    };
    let c = &all[culprit.0];
    let from = c.invoke_us.saturating_sub(50_000);
    let to = c.complete_us.unwrap_or(c.invoke_us).saturating_add(5_000);
    let mut text = format!(
        "on key {key}, no order of the operations explains {}; operations of the key nearby:",
        describe(culprit)
    );
    let mut shown = 0;
    for &id in ids {
        let o = &all[id.0];
        let ends = o.complete_us.unwrap_or(u64::MAX);
        if ends >= from && o.invoke_us <= to && shown < 12 {
            let _ = write!(text, "\n    {}", describe(id));
            shown += 1;
        }
    }
    text
}

#[cfg(test)]
mod tests;
