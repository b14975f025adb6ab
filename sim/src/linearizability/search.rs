//! The search for one key: the Wing–Gong walk over the list of calls and returns, with Lowe's
//! cache of abandoned configurations.
//!
//! It owns the event list and the search state; it never looks at the history (its operations
//! come prepared by the parent module) and allocates nothing once the search loop runs, apart
//! from the cache of abandoned configurations a backtrack fills.

use std::collections::HashSet;

use super::{BuildKeyHasher, KeyOp, State, OP_MASK};

/// One event of the search list: the invocation or the return of operation `op`.
#[derive(Clone, Copy)]
struct Event {
    op: usize,
    is_call: bool,
}

/// The end of the list in `EventList::next`.
const END: usize = usize::MAX;

/// The search list: the events in order as a doubly linked list (node 0 is the head sentinel),
/// from which the search lifts an operation's call and return while it is linearized.
pub(super) struct EventList {
    events: Vec<Event>,
    /// Op -> the node of its return.
    return_node: Vec<usize>,
    next: Vec<usize>,
    prev: Vec<usize>,
}

impl EventList {
    /// The list of the sorted packed events `timed` of `n_ops` operations.
    pub(super) fn new(timed: &[u128], n_ops: usize) -> EventList {
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
pub(super) enum SearchEnd {
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
pub(super) fn search(
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
