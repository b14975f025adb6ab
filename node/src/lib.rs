//! keel-node: the production driver of keel-core.
//!
//! - [`server`]: assembles a node and runs its event loop, the one task owning a core
//!   [`runtime`] over durable [`storage`] (checksummed log, snapshots, group commit, torn-tail
//!   recovery).
//! - [`http`] (private): the HTTP API's handlers by resource; [`api`]: its request and answer
//!   types, shared with the CLI and the tests; [`health`] and [`metrics`]: what the health
//!   routes and `/metrics` report.
//! - [`codec`] and [`transport`]: the framed, versioned messages between nodes, over the [`net`]
//!   seam (real sockets, or a simulated network in tests).
//! - [`supervisor`] and [`shim`]: workload processes under a lease; [`watchdog`]: apoptosis
//!   when the loop stalls; [`config`]: `--config` files; [`client`]: the CLI's HTTP client.
//!
//! The crate never runs the core's protocol itself: it only feeds the core inputs and carries
//! out its outputs, persisting before sending.

pub mod api;
pub mod bootstrap;
pub mod client;
pub mod codec;
pub mod config;
pub mod health;
mod http;
pub mod metrics;
pub mod net;
pub mod runtime;
pub mod server;
pub mod shim;
pub mod storage;
pub mod supervisor;
pub mod transport;
pub mod watchdog;
