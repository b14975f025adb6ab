//! What a run leaves behind as it goes: the trace hash, fed with every step's input and outputs
//! and every fault's mark, and the optional JSON-lines trace.
//!
//! [`Tracer`] owns the hasher, the trace writer and the first write error. Writing a trace never
//! changes the run: nothing here draws randomness or schedules anything, and the hash is fed the
//! same with or without a writer.

use std::io::Write;

use super::World;
use crate::trace::TraceHasher;

pub(super) struct Tracer<'a> {
    pub(super) hasher: TraceHasher,
    writer: Option<&'a mut dyn Write>,
    error: Option<std::io::Error>,
}

impl<'a> Tracer<'a> {
    pub(super) fn new(writer: Option<&'a mut dyn Write>) -> Tracer<'a> {
        Tracer {
            hasher: TraceHasher::default(),
            writer,
            error: None,
        }
    }

    /// True when a JSON trace is written (build the line only then).
    #[inline]
    pub(super) fn on(&self) -> bool {
        self.writer.is_some()
    }

    /// Writes one JSON line, unless an earlier write failed.
    pub(super) fn json(&mut self, value: serde_json::Value) {
        if let Some(w) = self.writer.as_mut() {
            if self.error.is_none() {
                let line = value.to_string();
                if let Err(e) = writeln!(w, "{line}") {
                    self.error = Some(e);
                }
            }
        }
    }

    /// The run's outcome: the trace hash, or the first write error.
    pub(super) fn finish(&mut self) -> Result<u64, std::io::Error> {
        match self.error.take() {
            Some(e) => Err(e),
            None => Ok(self.hasher.finish()),
        }
    }
}

impl World<'_> {
    pub(super) fn trace_json(&mut self, value: serde_json::Value) {
        self.tr.json(value);
    }
}
