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
//! It runs at the end of every simulated run, so its search loop allocates nothing per step.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use crate::history::{Completion, EventKind, History, Op, OpId};

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

/// One event of the search list: the invocation or the return of operation `op`.
#[derive(Clone, Copy)]
struct Event {
    op: usize,
    is_call: bool,
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

/// The end of the list in `EventList::next`.
const END: usize = usize::MAX;

/// The search list: the events in order as a doubly linked list (node 0 is the head sentinel),
/// from which the search lifts an operation's call and return while it is linearized.
struct EventList {
    events: Vec<Event>,
    /// Op -> the node of its return.
    return_node: Vec<usize>,
    next: Vec<usize>,
    prev: Vec<usize>,
}

impl EventList {
    /// The list of the sorted packed events `timed` of `n_ops` operations.
    fn new(timed: &[u128], n_ops: usize) -> EventList {
        let n = timed.len();
        let mut events = Vec::with_capacity(n + 1);
        events.push(Event {
            op: usize::MAX,
            is_call: false,
        });
        let mut return_node = vec![0usize; n_ops];
        for (i, &packed) in timed.iter().enumerate() {
            let is_return = (packed >> 63) & 1 == 1;
            let op = (packed as u64 & OP_MASK) as usize;
            events.push(Event {
                op,
                is_call: !is_return,
            });
            if is_return {
                return_node[op] = i + 1;
            }
        }
        let mut next: Vec<usize> = (1..=n + 1).collect(); // n+1 = end
        let prev: Vec<usize> = (0..=n).map(|i| i.saturating_sub(1)).collect();
        next[n] = END;
        EventList {
            events,
            return_node,
            next,
            prev,
        }
    }

    /// Takes `node` out of the list (it keeps its links, for `unlift`).
    #[inline(always)]
    fn lift(&mut self, node: usize) {
        let (p, nx) = (self.prev[node], self.next[node]);
        self.next[p] = nx;
        if nx != END {
            self.prev[nx] = p;
        }
    }

    /// Puts `node`, the last one lifted that is still out, back where it was.
    #[inline(always)]
    fn unlift(&mut self, node: usize) {
        let (p, nx) = (self.prev[node], self.next[node]);
        self.next[p] = node;
        if nx != END {
            self.prev[nx] = node;
        }
    }
}

/// How a key's search ended.
enum SearchEnd {
    /// Every required operation was linearized.
    Linearizable,
    /// More states than the budget.
    OverBudget,
    /// No order places every required operation; `best_missing` is the operation whose return
    /// stopped the deepest attempt.
    Stuck { best_missing: Option<usize> },
}

/// The Wing–Gong search over `list` with Lowe's cache of abandoned configurations; returns how
/// it ended and how many states it explored.
fn search(
    ops: &[KeyOp],
    mut list: EventList,
    required_total: usize,
    budget: u64,
) -> (SearchEnd, u64) {
    // The set of linearized operations, as a 128-bit Zobrist hash (xor of one random key per
    // operation): O(1) to update, and a collision between two of the at most `budget` sets is
    // astronomically unlikely (~budget² / 2^129).
    let zobrist: Vec<u128> = (0..ops.len() as u64).map(zobrist_key).collect();
    let mut linearized: u128 = 0;
    // The configurations (linearized set, state) explored and abandoned: a backtrack leaves
    // the one it undoes here. The configurations on the current path need no entry: each holds
    // a subset of the linearized set, so a step (which adds an operation) never reaches one of
    // them. A search that never backtracks (the usual case) hashes nothing.
    let mut dead: HashSet<(u128, State), BuildKeyHasher> = HashSet::default();
    // (call node, state before); as deep as the operations, in a search that never backtracks.
    let mut stack: Vec<(usize, State)> = Vec::with_capacity(ops.len());
    let (mut state, mut required_done, mut explored): (State, usize, u64) = (0, 0, 0);
    let (mut best_done, mut best_missing) = (0usize, None);
    let mut entry = list.next[0];
    while entry != END {
        let ev = list.events[entry];
        if !ev.is_call {
            // A return: its operation must already be linearized. Backtrack.
            if required_done >= best_done {
                best_done = required_done;
                best_missing = Some(ev.op);
            }
            let Some((call, before)) = stack.pop() else {
                break;
            };
            dead.insert((linearized, state));
            let op = list.events[call].op;
            required_done -= usize::from(ops[op].required);
            state = before;
            linearized ^= zobrist[op];
            list.unlift(list.return_node[op]);
            list.unlift(call);
            entry = list.next[call];
            continue;
        }
        let op = &ops[ev.op];
        let Some(new_state) = op.model.step(state) else {
            entry = list.next[entry];
            continue;
        };
        linearized ^= zobrist[ev.op];
        if !dead.is_empty() && dead.contains(&(linearized, new_state)) {
            linearized ^= zobrist[ev.op];
            entry = list.next[entry];
            continue;
        }
        explored += 1;
        if explored > budget {
            return (SearchEnd::OverBudget, explored);
        }
        stack.push((entry, state));
        state = new_state;
        required_done += usize::from(op.required);
        if op.required && required_done == required_total {
            return (SearchEnd::Linearizable, explored);
        }
        // Remove the call and its return from the list.
        list.lift(entry);
        list.lift(list.return_node[ev.op]);
        entry = list.next[0];
    }
    (SearchEnd::Stuck { best_missing }, explored)
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

/// A fixed pseudo-random 128-bit key for operation `i` (SplitMix64, twice).
fn zobrist_key(i: u64) -> u128 {
    let mix = |mut z: u64| {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    (u128::from(mix(2 * i)) << 64) | u128::from(mix(2 * i + 1))
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
mod tests {
    use super::*;
    use crate::history::Process;
    use proptest::prelude::*;

    fn put(k: &str, v: &str) -> Op {
        Op::Put {
            key: format!("user/{k}").into(),
            value: v.into(),
        }
    }
    fn get(k: &str) -> Op {
        Op::Get {
            key: format!("user/{k}").into(),
        }
    }
    fn ok() -> Completion {
        Completion::Ok { read: None }
    }
    fn read(v: Option<&str>) -> Completion {
        Completion::Ok {
            read: v.map(String::from),
        }
    }

    /// (process, op, invoke ms, complete ms, completion)
    fn history(ops: Vec<(Process, Op, u64, u64, Completion)>) -> History {
        let mut events: Vec<(u64, bool, usize)> = Vec::new();
        for (i, o) in ops.iter().enumerate() {
            events.push((o.2 * 1000, true, i));
            events.push((o.3 * 1000, false, i));
        }
        events.sort_by_key(|&(t, call, i)| (t, !call, i));
        let mut h = History::new();
        let mut ids = vec![None; ops.len()];
        for (t, call, i) in events {
            if call {
                ids[i] = Some(h.invoke(t, ops[i].0, ops[i].1.clone()));
            } else if let Some(id) = ids[i] {
                h.complete(t, id, ops[i].4.clone());
            }
        }
        h
    }

    fn verdict(h: &History) -> Verdict {
        check(h, 1_000_000).0
    }

    #[test]
    fn sequential_puts_and_reads() {
        let h = history(vec![
            (0, put("a", "1"), 0, 1, ok()),
            (0, get("a"), 2, 3, read(Some("1"))),
            (
                0,
                Op::Delete {
                    key: "user/a".into(),
                },
                4,
                5,
                ok(),
            ),
            (0, get("a"), 6, 7, read(None)),
        ]);
        assert_eq!(verdict(&h), Verdict::Linearizable);
    }

    #[test]
    fn a_stale_read_is_caught() {
        let h = history(vec![
            (0, put("a", "1"), 0, 1, ok()),
            (0, put("a", "2"), 2, 3, ok()),
            (1, get("a"), 4, 5, read(Some("1"))),
        ]);
        match verdict(&h) {
            Verdict::NotLinearizable(v) => {
                assert_eq!(v.key, "user/a");
                assert!(
                    v.explanation.contains("read Some(\"1\")"),
                    "{}",
                    v.explanation
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn concurrent_operations_may_go_either_way() {
        let h = history(vec![
            (0, put("a", "1"), 0, 10, ok()),
            (1, get("a"), 1, 9, read(None)),
            (2, get("a"), 2, 8, read(Some("1"))),
        ]);
        assert_eq!(verdict(&h), Verdict::Linearizable);
    }

    #[test]
    fn an_unknown_write_may_or_may_not_have_happened() {
        let seen = history(vec![
            (0, put("a", "1"), 0, 1, Completion::Info),
            (1, get("a"), 5, 6, read(Some("1"))),
        ]);
        assert_eq!(verdict(&seen), Verdict::Linearizable);
        let unseen = history(vec![
            (0, put("a", "1"), 0, 1, Completion::Info),
            (1, get("a"), 5, 6, read(None)),
        ]);
        assert_eq!(verdict(&unseen), Verdict::Linearizable);
        // But it cannot take effect before it was invoked.
        let early = history(vec![
            (1, get("a"), 0, 1, read(Some("1"))),
            (0, put("a", "1"), 5, 6, Completion::Info),
        ]);
        assert!(matches!(verdict(&early), Verdict::NotLinearizable(_)));
    }

    #[test]
    fn a_failed_write_never_happened() {
        let h = history(vec![
            (0, put("a", "1"), 0, 1, Completion::Fail),
            (1, get("a"), 5, 6, read(Some("1"))),
        ]);
        assert!(matches!(verdict(&h), Verdict::NotLinearizable(_)));
    }

    #[test]
    fn a_read_of_a_value_nobody_wrote_is_caught() {
        let h = history(vec![(1, get("a"), 0, 1, read(Some("ghost")))]);
        assert!(matches!(verdict(&h), Verdict::NotLinearizable(_)));
    }

    #[test]
    fn compare_and_set_chains() {
        let cas = |from: Option<&str>, to: &str| Op::Cas {
            key: "user/a".into(),
            from: from.map(String::from),
            to: to.into(),
        };
        let good = history(vec![
            (0, cas(None, "1"), 0, 1, ok()),
            (0, cas(Some("1"), "2"), 2, 3, ok()),
            (1, get("a"), 4, 5, read(Some("2"))),
        ]);
        assert_eq!(verdict(&good), Verdict::Linearizable);
        let bad = history(vec![
            (0, put("a", "1"), 0, 1, ok()),
            (0, cas(Some("9"), "2"), 2, 3, ok()),
        ]);
        assert!(matches!(verdict(&bad), Verdict::NotLinearizable(_)));
    }

    #[test]
    fn keys_are_independent() {
        let h = history(vec![
            (0, put("a", "1"), 0, 1, ok()),
            (1, put("b", "2"), 0, 1, ok()),
            (0, get("a"), 2, 3, read(Some("1"))),
            (1, get("b"), 2, 3, read(Some("2"))),
        ]);
        let (v, stats) = check(&h, 1000);
        assert_eq!(v, Verdict::Linearizable);
        assert_eq!((stats.keys, stats.ops), (2, 4));
    }

    #[test]
    fn an_exhausted_budget_is_inconclusive() {
        let h = history(vec![
            (0, put("a", "1"), 0, 10, ok()),
            (1, put("a", "2"), 0, 10, ok()),
            (2, put("a", "3"), 0, 10, ok()),
            (3, get("a"), 11, 12, read(Some("3"))),
        ]);
        assert!(matches!(check(&h, 2).0, Verdict::Inconclusive { .. }));
    }

    /// A correct atomic register driven by `procs` concurrent processes: each operation takes
    /// effect at a random instant inside its interval; some complete unknown.
    fn register_history(seed: &[(u8, u8, u8, bool)], procs: u64) -> History {
        let mut value: Option<String> = None;
        let mut h = History::new();
        let mut open: Vec<Option<(OpId, Op, u64, bool)>> = vec![None; procs as usize];
        let mut t = 0u64;
        let mut n = 0;
        for &(p, kind, delay, unknown) in seed {
            t += 1 + u64::from(delay % 3);
            let p = (u64::from(p) % procs) as usize;
            match open[p].take() {
                None => {
                    n += 1;
                    let op = match kind % 3 {
                        0 => put("k", &format!("v{n}")),
                        1 => get("k"),
                        _ => Op::Cas {
                            key: "user/k".into(),
                            from: value.clone(),
                            to: format!("v{n}"),
                        },
                    };
                    let id = h.invoke(t, p as u64, op.clone());
                    open[p] = Some((id, op, t, unknown));
                }
                Some((id, op, _, unknown)) => {
                    // The effect happens now, then the completion.
                    let completion = match &op {
                        Op::Put { value: v, .. } => {
                            value = Some(v.clone());
                            ok()
                        }
                        Op::Get { .. } => read(value.as_deref()),
                        Op::Cas { from, to, .. } => {
                            if *from == value {
                                value = Some(to.clone());
                                ok()
                            } else {
                                Completion::Fail
                            }
                        }
                        Op::Delete { .. } => {
                            value = None;
                            ok()
                        }
                    };
                    let completion = if unknown {
                        Completion::Info
                    } else {
                        completion
                    };
                    h.complete(t, id, completion);
                }
            }
        }
        h
    }

    #[test]
    fn a_long_history_checks_quickly() {
        // 2,000 operations, 4 processes, about 10% unknown: printed, never asserted on time.
        let mut seed = Vec::new();
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for _ in 0..4_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            seed.push((
                (x & 0xff) as u8,
                (x >> 8) as u8,
                (x >> 16) as u8,
                (x >> 24) % 10 == 0,
            ));
        }
        let h = register_history(&seed, 4);
        let started = std::time::Instant::now();
        let (v, stats) = check(&h, 10_000_000);
        eprintln!(
            "checked {} ops in {:?}, {} states",
            stats.ops,
            started.elapsed(),
            stats.states_explored
        );
        assert_eq!(v, Verdict::Linearizable);
    }

    proptest! {
        #[test]
        fn correct_registers_are_linearizable(
            seed in prop::collection::vec((any::<u8>(), any::<u8>(), any::<u8>(), prop::bool::weighted(0.1)), 0..200),
            procs in 1u64..5,
        ) {
            let h = register_history(&seed, procs);
            prop_assert_eq!(check(&h, 1_000_000).0, Verdict::Linearizable);
        }

        #[test]
        fn a_read_of_a_value_never_written_is_caught(
            seed in prop::collection::vec((any::<u8>(), any::<u8>(), any::<u8>(), Just(false)), 10..200),
        ) {
            let mut h = register_history(&seed, 3);
            let victim = h.operations().iter().position(|o| {
                matches!((&o.op, &o.completion), (Op::Get { .. }, Some(Completion::Ok { .. })))
            });
            if let Some(i) = victim {
                let t = h.operations()[i].complete_us.unwrap_or(0) + 1;
                let p = 99;
                let id = h.invoke(t, p, get("k"));
                h.complete(t + 1, id, read(Some("never-written")));
                prop_assert!(matches!(check(&h, 1_000_000).0, Verdict::NotLinearizable(_)));
            }
        }
    }
}
