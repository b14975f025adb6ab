//! keel-node: the production driver of keel-core: the event loop ([`server`]) owning a core
//! [`runtime`] over durable [`storage`] (checksummed log, snapshots, group commit, torn-tail
//! recovery, fsync off the async threads), the framed, versioned [`codec`] and TCP [`transport`]
//! between nodes over the [`net`] seam (real sockets, or a simulated network in tests), the HTTP API and `/metrics` ([`metrics`]), workload processes under a lease
//! enforcing [`shim`] ([`supervisor`]), the apoptosis [`watchdog`], `--config` files
//! ([`config`]), and the CLI's HTTP [`client`].

pub mod client;
pub mod codec;
pub mod config;
pub mod metrics;
pub mod net;
pub mod runtime;
pub mod server;
pub mod shim;
pub mod storage;
pub mod supervisor;
pub mod transport;
pub mod watchdog;
