//! What the event queue holds: one [`Ev`] per thing that happens at a point of simulated time
//! (a tick, a delivery, a client request, a fault, the end of a hang ...). Only the shape of the
//! events lives here; the parts of the engine that schedule and handle them live elsewhere.
//! This file must never grow logic: an event is data, small enough to move at every step.

use keel_core::{ClientReply, ClientRequest, Message, RequestId};

/// What the event queue holds.
///
/// A whole word of tag (`repr(u64)`) rather than a tag tucked into the message's own: with it,
/// the payload starts word-aligned, and moving an event out of the queue copies it in aligned
/// chunks instead of chunks one byte off the stores that wrote it, which stalled store
/// forwarding at every event (eight bytes more per event; about 2% faster).
#[derive(Debug)]
#[repr(u64)]
pub(super) enum Ev {
    /// A node's timer; stale unless it matches the node's current timer generation.
    Tick {
        node: usize,
        gen: u64,
    },
    /// A message arrives; dropped if its sender crashed before it was released.
    Deliver {
        msg: Message,
        from_incarnation: u64,
        released_at: u64,
    },
    /// A client request arrives at a node.
    /// Boxed, as is `Answer`'s reply: client operations are large and rare next to messages
    /// and ticks, and every event is as large as the largest.
    Arrive {
        node: usize,
        req: Box<ClientRequest>,
    },
    /// A node's reply arrives at the client side.
    Answer {
        from: usize,
        from_incarnation: u64,
        released_at: u64,
        reply: Box<ClientReply>,
    },
    /// A node refused a connection (it is down or its queue is full).
    Refused {
        id: RequestId,
    },
    /// Time out every request whose deadline passed; re-armed while requests are pending.
    ClientTimeouts,
    ClientIssue {
        client: usize,
    },
    /// A busy node is free again: take the next queued input.
    Resume {
        node: usize,
        incarnation: u64,
    },
    Fault {
        index: usize,
    },
    /// A mid-step crash that found no writing step in time strikes now.
    PendingCrash {
        node: usize,
        incarnation: u64,
    },
    HangEnd {
        node: usize,
    },
    SlowEnd {
        node: usize,
        token: u64,
    },
    OverloadArrival {
        burst: u64,
    },
    /// A workload copy shows progress (every `PROGRESS_US` while it runs and is not hung).
    WorkloadProgress {
        token: u64,
    },
    /// A node's supervisor checks its lease (scheduled at each new deadline).
    LeaseExpiry {
        node: usize,
    },
    /// The operator submits scenario workload `spec` (again, until it is accepted).
    AdminSubmit {
        spec: usize,
    },
    /// An armed `CrashAfterVote` strikes: the vote has left the node by now.
    VoteCrash {
        node: usize,
        incarnation: u64,
        down: u64,
    },
    /// The node a `CrashAfterVote` crashed comes back (unless something restarted it already).
    ArmedRestart {
        node: usize,
        incarnation: u64,
    },
    /// A leader cut off by `IsolateLeaderOnAppend` or `IsolateLeaderOnCommit` gets its links
    /// back.
    IsolationEnd {
        node: usize,
        token: u64,
    },
    /// A `Delay` of the link `from -> to` ends (unless a later delay of that link replaced it).
    DelayEnd {
        from: usize,
        to: usize,
        token: u64,
    },
    /// The operator asks again for membership task `task` (see `faults/operator.rs`).
    MemberRetry {
        task: usize,
    },
    End,
}

#[cfg(test)]
mod tests {
    use super::Ev;
    use keel_core::{Input, Message};

    /// The simulator moves messages and events at every step: keep the rare, large payloads
    /// (client operations and replies) boxed so the common ones stay small.
    #[test]
    fn messages_and_events_stay_small() {
        let (m, e, i) = (
            std::mem::size_of::<Message>(),
            std::mem::size_of::<Ev>(),
            std::mem::size_of::<Input>(),
        );
        println!("size_of Message {m}, Ev {e}, Input {i}");
        // Since membership, every message carries its sender's incarnation: one word more.
        assert!(m <= 88, "Message is {m} bytes");
        // A message, two words of the sender's life, and the eight-byte tag (see `Ev`).
        assert!(e <= 112, "Ev is {e} bytes");
    }
}
