//! The client history of a run, Jepsen-style: every operation's invocation and completion.
//!
//! A completion is `ok` (it happened, with what a read returned), `fail` (it certainly did not
//! happen) or `info` (unknown: a timeout, a crash, an indeterminate answer). A process has at most
//! one operation open; after an `info` a client continues as a new process.
//!
//! [`History::write_jsonl`] writes it as JSON lines, one object per event in the order the events
//! happened, and [`History::read_jsonl`] reads that format back:
//!
//! ```json
//! {"index":0,"time_ms":1234.5,"process":3,"type":"invoke","f":"put","key":"user/k1","value":"v17"}
//! {"index":1,"time_ms":1236.0,"process":3,"type":"ok","f":"put","key":"user/k1","value":"v17"}
//! ```
//!
//! `value` is the written value for `put`, `null` for `delete`, `{"from": .., "to": ..}` for
//! `cas`, and for `get` `null` on invocation and the value read (or `null`) on completion.
//!
//! The history only records what clients saw; it never judges it (that is the linearizability
//! checker's job) and never reads a clock: every time in it is simulated time the caller passes.

use std::sync::Arc;

use serde_json::{json, Value as Json};

/// A Jepsen process: one client's sequence of operations, at most one open at a time.
pub type Process = u64;

/// What a client asked for. `key` is `partition/name`, shared by every operation on the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put {
        key: Arc<str>,
        value: String,
    },
    Get {
        key: Arc<str>,
    },
    Delete {
        key: Arc<str>,
    },
    /// Set `key` to `to` if it holds `from` (`None`: absent).
    Cas {
        key: Arc<str>,
        from: Option<String>,
        to: String,
    },
}

impl Op {
    pub fn key(&self) -> &str {
        match self {
            Op::Put { key, .. } | Op::Get { key } | Op::Delete { key } | Op::Cas { key, .. } => key,
        }
    }

    /// The Jepsen function name: `put`, `get`, `delete` or `cas`.
    pub fn f(&self) -> &'static str {
        match self {
            Op::Put { .. } => "put",
            Op::Get { .. } => "get",
            Op::Delete { .. } => "delete",
            Op::Cas { .. } => "cas",
        }
    }
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Completion {
    /// It happened. `read` is what a `get` returned (`None`: the key was absent); `None` for writes.
    Ok { read: Option<String> },
    /// It certainly did not happen.
    Fail,
    /// Unknown whether it happened.
    Info,
}

impl Completion {
    fn kind(&self) -> &'static str {
        match self {
            Completion::Ok { .. } => "ok",
            Completion::Fail => "fail",
            Completion::Info => "info",
        }
    }
}

/// An operation's index in [`History::operations`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(pub usize);

/// One operation, from invocation to completion.
#[derive(Clone, Debug, PartialEq)]
pub struct Operation {
    pub process: Process,
    pub op: Op,
    pub invoke_us: u64,
    /// `None` while open.
    pub complete_us: Option<u64>,
    pub completion: Option<Completion>,
}

/// How many operations ended which way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HistoryCounts {
    pub invoked: usize,
    pub ok: usize,
    pub fail: usize,
    pub info: usize,
}

/// An entry of [`History::events`]: an operation was invoked, or completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EventKind {
    Invoke,
    Complete,
}

/// A run's client history.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    ops: Vec<Operation>,
    /// Invocations and completions in the order they were recorded (time order).
    events: Vec<(EventKind, OpId)>,
}

/// A history file that cannot be read, with the line (1-based) and why.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("line {line}: {message}")]
    Malformed { line: usize, message: String },
    #[error("reading the history: {0}")]
    Io(#[from] std::io::Error),
}

impl History {
    pub fn new() -> History {
        History::default()
    }

    /// An empty history with room for `ops` operations (and their invocations and completions),
    /// so that a run's history is not copied over and over as it grows.
    pub fn with_capacity(ops: usize) -> History {
        History {
            ops: Vec::with_capacity(ops),
            events: Vec::with_capacity(2 * ops),
        }
    }

    /// Records that `process` invoked `op` at `time_us`.
    pub fn invoke(&mut self, time_us: u64, process: Process, op: Op) -> OpId {
        debug_assert!(
            !self
                .ops
                .iter()
                .rev()
                .take(64)
                .any(|o| o.process == process && o.completion.is_none()),
            "process {process} invokes while an operation is open"
        );
        let id = OpId(self.ops.len());
        self.ops.push(Operation {
            process,
            op,
            invoke_us: time_us,
            complete_us: None,
            completion: None,
        });
        self.events.push((EventKind::Invoke, id));
        id
    }

    /// Records how operation `id` ended. A second completion of the same operation is ignored.
    pub fn complete(&mut self, time_us: u64, id: OpId, completion: Completion) {
        let Some(o) = self.ops.get_mut(id.0) else {
            return;
        };
        if o.completion.is_some() {
            return;
        }
        o.complete_us = Some(time_us);
        o.completion = Some(completion);
        self.events.push((EventKind::Complete, id));
    }

    /// Completes every open operation as `info` at `time_us` (the end of a run).
    pub fn close_open_ops(&mut self, time_us: u64) {
        for i in 0..self.ops.len() {
            if self.ops[i].completion.is_none() {
                self.complete(time_us, OpId(i), Completion::Info);
            }
        }
    }

    pub fn operations(&self) -> &[Operation] {
        &self.ops
    }

    /// Invocations and completions in the order they were recorded: time order, as a rule (the
    /// linearizability check takes its event order from here rather than sorting the times).
    pub(crate) fn events(&self) -> &[(EventKind, OpId)] {
        &self.events
    }

    pub fn counts(&self) -> HistoryCounts {
        let mut c = HistoryCounts {
            invoked: self.ops.len(),
            ..HistoryCounts::default()
        };
        for o in &self.ops {
            match o.completion {
                Some(Completion::Ok { .. }) => c.ok += 1,
                Some(Completion::Fail) => c.fail += 1,
                Some(Completion::Info) | None => c.info += 1,
            }
        }
        c
    }

    /// Writes the history as JSON lines, one per invocation and completion, in time order.
    pub fn write_jsonl(&self, w: &mut impl std::io::Write) -> std::io::Result<()> {
        for (index, (kind, id)) in self.events.iter().enumerate() {
            let o = &self.ops[id.0];
            let (kind_text, time_us, value) = match kind {
                EventKind::Invoke => ("invoke", o.invoke_us, invoke_value(&o.op)),
                EventKind::Complete => {
                    let c = o.completion.as_ref().unwrap_or(&Completion::Info);
                    let value = match (&o.op, c) {
                        (Op::Get { .. }, Completion::Ok { read }) => json!(read),
                        (Op::Get { .. }, _) => Json::Null,
                        (op, _) => invoke_value(op),
                    };
                    (c.kind(), o.complete_us.unwrap_or(o.invoke_us), value)
                }
            };
            let line = Line {
                index,
                time_ms: time_us as f64 / 1000.0,
                process: o.process,
                kind: kind_text,
                f: o.op.f(),
                key: o.op.key(),
                value,
            };
            serde_json::to_writer(&mut *w, &line)?;
            w.write_all(b"\n")?;
        }
        Ok(())
    }

    /// Reads a history written by [`History::write_jsonl`] (or any tool writing that format).
    pub fn read_jsonl(r: impl std::io::BufRead) -> Result<History, HistoryError> {
        let mut h = History::new();
        let mut open: std::collections::BTreeMap<Process, OpId> = Default::default();
        for (i, line) in r.lines().enumerate() {
            let line_no = i + 1;
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let v: Json = serde_json::from_str(&line)
                .map_err(|e| malformed(line_no, format!("not JSON: {e}")))?;
            Record::parse(&v, line_no)?.apply(&mut h, &mut open)?;
        }
        Ok(h)
    }
}

/// A `Malformed` error at line `line`.
fn malformed(line: usize, message: String) -> HistoryError {
    HistoryError::Malformed { line, message }
}

/// One line read back: an invocation or a completion, its fields checked for type.
struct Record<'v> {
    line: usize,
    time_us: u64,
    process: Process,
    kind: &'v str,
    f: &'v str,
    key: Arc<str>,
    value: &'v Json,
}

impl<'v> Record<'v> {
    /// The fields of `v`, the object on line `line`, in the documented order.
    fn parse(v: &'v Json, line: usize) -> Result<Record<'v>, HistoryError> {
        let bad = |message: String| malformed(line, message);
        let get = |k: &str| v.get(k).ok_or_else(|| bad(format!("missing `{k}`")));
        let time_ms = get("time_ms")?
            .as_f64()
            .ok_or_else(|| bad("`time_ms` is not a number".into()))?;
        let process = get("process")?
            .as_u64()
            .ok_or_else(|| bad("`process` is not a non-negative integer".into()))?;
        let kind = get("type")?
            .as_str()
            .ok_or_else(|| bad("`type` is not a string".into()))?;
        let f = get("f")?
            .as_str()
            .ok_or_else(|| bad("`f` is not a string".into()))?;
        let key = get("key")?
            .as_str()
            .ok_or_else(|| bad("`key` is not a string".into()))?;
        Ok(Record {
            line,
            time_us: (time_ms * 1000.0).round() as u64,
            process,
            kind,
            f,
            key: Arc::from(key),
            value: get("value")?,
        })
    }

    fn bad(&self, message: String) -> HistoryError {
        malformed(self.line, message)
    }

    /// `v` as an optional string (`null` is none), or an error naming it `what`.
    fn string(&self, v: &Json, what: &str) -> Result<Option<String>, HistoryError> {
        match v {
            Json::Null => Ok(None),
            Json::String(s) => Ok(Some(s.clone())),
            other => Err(self.bad(format!("{what} must be a string or null, not {other}"))),
        }
    }

    /// Adds the record to `h`: an invocation opens an operation of its process, a completion
    /// closes the one open.
    fn apply(
        self,
        h: &mut History,
        open: &mut std::collections::BTreeMap<Process, OpId>,
    ) -> Result<(), HistoryError> {
        let process = self.process;
        match self.kind {
            "invoke" => {
                if open.contains_key(&process) {
                    return Err(self.bad(format!(
                        "process {process} invokes while its previous operation is open"
                    )));
                }
                let time_us = self.time_us;
                let id = h.invoke(time_us, process, self.op()?);
                open.insert(process, id);
            }
            "ok" | "fail" | "info" => {
                let id = open.remove(&process).ok_or_else(|| {
                    self.bad(format!(
                        "process {process} completes an operation it never invoked"
                    ))
                })?;
                h.complete(self.time_us, id, self.completion()?);
            }
            other => return Err(self.bad(format!("unknown type {other:?}"))),
        }
        Ok(())
    }

    /// The operation an invocation asks for.
    fn op(&self) -> Result<Op, HistoryError> {
        let (key, value) = (self.key.clone(), self.value);
        Ok(match self.f {
            "put" => Op::Put {
                key,
                value: self
                    .string(value, "a put's value")?
                    .ok_or_else(|| self.bad("a put needs a value".into()))?,
            },
            "get" => Op::Get { key },
            "delete" => Op::Delete { key },
            "cas" => {
                let from =
                    self.string(value.get("from").unwrap_or(&Json::Null), "a cas's `from`")?;
                let to = self
                    .string(value.get("to").unwrap_or(&Json::Null), "a cas's `to`")?
                    .ok_or_else(|| self.bad("a cas needs `to`".into()))?;
                Op::Cas { key, from, to }
            }
            other => return Err(self.bad(format!("unknown f {other:?}"))),
        })
    }

    /// How a completion ended (`ok`, `fail` or `info`), with what an `ok` get read.
    fn completion(&self) -> Result<Completion, HistoryError> {
        Ok(match self.kind {
            "ok" => Completion::Ok {
                read: if self.f == "get" {
                    self.string(self.value, "a get's value")?
                } else {
                    None
                },
            },
            "fail" => Completion::Fail,
            _ => Completion::Info,
        })
    }
}

/// One line of the file, fields in the documented order.
#[derive(serde::Serialize)]
struct Line<'a> {
    index: usize,
    time_ms: f64,
    process: Process,
    #[serde(rename = "type")]
    kind: &'static str,
    f: &'static str,
    key: &'a str,
    value: Json,
}

fn invoke_value(op: &Op) -> Json {
    match op {
        Op::Put { value, .. } => json!(value),
        Op::Get { .. } | Op::Delete { .. } => Json::Null,
        Op::Cas { from, to, .. } => json!({ "from": from, "to": to }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> History {
        let mut h = History::new();
        let a = h.invoke(
            1_000,
            0,
            Op::Put {
                key: "user/k1".into(),
                value: "v1".into(),
            },
        );
        let b = h.invoke(
            1_500,
            1,
            Op::Get {
                key: "user/k1".into(),
            },
        );
        h.complete(2_000, a, Completion::Ok { read: None });
        h.complete(
            2_500,
            b,
            Completion::Ok {
                read: Some("v1".into()),
            },
        );
        let c = h.invoke(
            3_000,
            0,
            Op::Cas {
                key: "user/k1".into(),
                from: Some("v1".into()),
                to: "v2".into(),
            },
        );
        let d = h.invoke(
            3_100,
            1,
            Op::Delete {
                key: "user/k2".into(),
            },
        );
        h.complete(4_000, c, Completion::Info);
        h.complete(4_100, d, Completion::Fail);
        let _open = h.invoke(
            5_000,
            2,
            Op::Get {
                key: "user/k1".into(),
            },
        );
        h.close_open_ops(6_000);
        h
    }

    #[test]
    fn the_documented_format() {
        let mut out = Vec::new();
        sample().write_jsonl(&mut out).expect("write");
        let text = String::from_utf8(out).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 10);
        assert_eq!(
            lines[0],
            r#"{"index":0,"time_ms":1.0,"process":0,"type":"invoke","f":"put","key":"user/k1","value":"v1"}"#
        );
        assert_eq!(
            lines[3],
            r#"{"index":3,"time_ms":2.5,"process":1,"type":"ok","f":"get","key":"user/k1","value":"v1"}"#
        );
        assert!(
            lines[4].contains(r#""value":{"from":"v1","to":"v2"}"#),
            "{}",
            lines[4]
        );
        assert!(lines[9].contains(r#""type":"info""#));
    }

    #[test]
    fn counts_and_round_trip() {
        let h = sample();
        assert_eq!(
            h.counts(),
            HistoryCounts {
                invoked: 5,
                ok: 2,
                fail: 1,
                info: 2
            }
        );
        let mut out = Vec::new();
        h.write_jsonl(&mut out).expect("write");
        let back = History::read_jsonl(&out[..]).expect("read");
        assert_eq!(back, h);
    }

    #[test]
    fn malformed_lines_are_named() {
        let e = History::read_jsonl(&b"{\"index\":0}\n"[..]).expect_err("refused");
        assert!(e.to_string().starts_with("line 1:"), "{e}");
        let two_open = concat!(
            r#"{"index":0,"time_ms":1,"process":0,"type":"invoke","f":"get","key":"user/a","value":null}"#,
            "\n",
            r#"{"index":1,"time_ms":2,"process":0,"type":"invoke","f":"get","key":"user/a","value":null}"#,
            "\n"
        );
        let e = History::read_jsonl(two_open.as_bytes()).expect_err("refused");
        assert!(e.to_string().contains("line 2"), "{e}");
    }

    proptest! {
        #[test]
        fn any_history_round_trips(ops in prop::collection::vec((0u64..4, 0u8..4, 0u8..3, 0u8..4), 0..60)) {
            let mut h = History::new();
            let mut open: Vec<Option<OpId>> = vec![None; 4];
            let mut t = 0;
            for (p, f, outcome, v) in ops {
                t += 7;
                let key: Arc<str> = format!("user/k{v}").into();
                if let Some(id) = open[p as usize].take() {
                    let c = match outcome {
                        0 => Completion::Ok { read: (v % 2 == 0).then(|| format!("v{v}")) },
                        1 => Completion::Fail,
                        _ => Completion::Info,
                    };
                    let c = match (&h.operations()[id.0].op, c) {
                        (Op::Get { .. }, c) => c,
                        (_, Completion::Ok { .. }) => Completion::Ok { read: None },
                        (_, c) => c,
                    };
                    h.complete(t, id, c);
                } else {
                    let op = match f {
                        0 => Op::Put { key, value: format!("v{v}") },
                        1 => Op::Get { key },
                        2 => Op::Delete { key },
                        _ => Op::Cas { key, from: (v % 2 == 1).then(|| "x".to_string()), to: format!("v{v}") },
                    };
                    open[p as usize] = Some(h.invoke(t, p, op));
                }
            }
            let mut out = Vec::new();
            h.write_jsonl(&mut out).expect("write");
            let back = History::read_jsonl(&out[..]).expect("read");
            prop_assert_eq!(back, h);
        }
    }
}
