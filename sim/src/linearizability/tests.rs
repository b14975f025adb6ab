//! The checker on hand-made histories, and on histories of a correct register (proptest).

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
            (x >> 24).is_multiple_of(10),
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
