//! keel-node: the production driver of keel-core (tokio TCP transport, durable log, HTTP API,
//! CLI, workload processes). Built so far: [`storage`], the durable log and snapshots with
//! checksums, group commit and torn-tail recovery, and [`codec`], the framed, versioned wire
//! format between nodes, and [`runtime`], a node executing its outputs against storage under the
//! persist-before-send contract with group commit. The TCP transport, the tokio event loop, the
//! HTTP API and the CLI are not built yet (issue "Production node"): the `keel` binary refuses to pretend it
//! can run a node.

pub mod client;
pub mod codec;
pub mod runtime;
pub mod server;
pub mod storage;
pub mod transport;
