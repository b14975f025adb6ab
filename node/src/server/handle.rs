//! The node's API inside its own process: the requests the HTTP handlers (and tests, and madsim
//! runs, which have no HTTP) hand to the event loop, and the channel that carries them.
//!
//! Owns only the request shapes and the channel. It never touches the core: the event loop
//! answers every request, in [`super::event_loop`].

use keel_core::{ClientOp, ClientResult, NodeId};
use tokio::sync::{mpsc, oneshot};

use crate::api::ClusterInfo;

/// The node's API in the same process: the operations the HTTP API carries, without HTTP (tests,
/// and under madsim, where the HTTP server does not run). Clones share the node; every call
/// answers `None` once the node has stopped.
#[derive(Clone, Debug)]
pub struct ApiHandle(mpsc::Sender<ApiRequest>);

/// The node's end of an [`ApiHandle`], for [`super::run_with_api`].
#[derive(Debug)]
pub struct ApiInbox {
    pub(crate) tx: mpsc::Sender<ApiRequest>,
    pub(crate) rx: mpsc::Receiver<ApiRequest>,
}

/// A new in-process API: the handle for callers, the inbox for [`super::run_with_api`].
pub fn api_channel() -> (ApiHandle, ApiInbox) {
    let (tx, rx) = mpsc::channel::<ApiRequest>(1024);
    (ApiHandle(tx.clone()), ApiInbox { tx, rx })
}

impl ApiHandle {
    /// Carries out `op` as a client request to this node (forwarded or redirected as over
    /// HTTP); `None` if the node stopped before it answered.
    pub async fn op(&self, op: ClientOp) -> Option<ClientResult> {
        let (reply, rx) = oneshot::channel();
        self.0.send(ApiRequest::Op { op, reply }).await.ok()?;
        rx.await.ok()
    }

    /// The cluster as this node sees it (`GET /v1/cluster`).
    pub async fn cluster(&self) -> Option<ClusterInfo> {
        let (reply, rx) = oneshot::channel();
        self.0.send(ApiRequest::Cluster { reply }).await.ok()?;
        rx.await.ok()
    }

    /// This node's metrics in Prometheus text format (`GET /metrics`).
    pub async fn metrics(&self) -> Option<String> {
        let (reply, rx) = oneshot::channel();
        self.0.send(ApiRequest::Metrics { reply }).await.ok()?;
        rx.await.ok()
    }
}

/// One request to the event loop, with where its answer goes.
#[derive(Debug)]
pub(crate) enum ApiRequest {
    Op {
        op: ClientOp,
        reply: oneshot::Sender<ClientResult>,
    },
    Cluster {
        reply: oneshot::Sender<ClusterInfo>,
    },
    Metrics {
        reply: oneshot::Sender<String>,
    },
    /// Hand leadership over; answered with the leader (hint) if this node does not lead.
    Transfer {
        to: Option<NodeId>,
        reply: oneshot::Sender<Result<(), Option<NodeId>>>,
    },
}
