//! `POST`/`DELETE /v1/nodes/{node}/drain`: stop or allow new workload placements on a node.
//!
//! Only translation: the drain is a replicated registry command.

use axum::extract::{Path as UrlPath, State};
use axum::response::{IntoResponse, Response};
use keel_core::{ClientOp, NodeId, WorkloadOp};

use super::error::bad_node;
use super::{call, written, Api};

async fn set_draining(api: &Api, node: &str, draining: bool) -> Response {
    let Ok(node) = node.parse::<NodeId>() else {
        return bad_node(node, "a node id like n2").into_response();
    };
    let op = ClientOp::Workload(WorkloadOp::Drain { node, draining });
    written(call(api, op).await)
}

/// `POST /v1/nodes/{node}/drain`: no new placements on that node.
pub(super) async fn drain(State(api): State<Api>, UrlPath(node): UrlPath<String>) -> Response {
    set_draining(&api, &node, true).await
}

/// `DELETE /v1/nodes/{node}/drain`: placements allowed again.
pub(super) async fn undrain(State(api): State<Api>, UrlPath(node): UrlPath<String>) -> Response {
    set_draining(&api, &node, false).await
}
