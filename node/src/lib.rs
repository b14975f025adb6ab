//! keel-node: the production driver of keel-core (tokio TCP transport, durable log, HTTP API,
//! CLI, workload processes). Not built yet: see issue "Production node"; today the crate only
//! provides the `keel` binary's argument surface and refuses to pretend it can run a node.
