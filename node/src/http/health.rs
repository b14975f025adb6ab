//! `GET /health/summary` and `POST /health/check`: node and workload health as the leader's
//! failure detector recorded it. The failure detector runs continuously, so a check is a fresh
//! linearizable read of its verdicts, answered like the summary.
//!
//! Only translation; the summary itself is built in [`crate::health`].

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use keel_core::{ClientOp, ClientResponse, Registry, WorkloadOp};
use serde_json::json;

use super::error::{error, unexpected, ApiError};
use super::{call, cluster, Api};
use crate::api::ClusterInfo;

/// The registry (a linearizable read), its revision, and the cluster as this node sees it.
pub(super) async fn registry(api: &Api) -> Result<(Registry, u64, ClusterInfo), ApiError> {
    let info = cluster::info(api).await?;
    let op = ClientOp::Workload(WorkloadOp::Registry);
    match call(api, op).await? {
        ClientResponse::Registry { registry, revision } => Ok((registry, revision.0, info)),
        other => Err(unexpected(&other)),
    }
}

/// `GET /health/summary` and `POST /health/check`: node counts by health, workload counts,
/// and per-node details.
pub(super) async fn summary(State(api): State<Api>) -> Result<Response, ApiError> {
    let (reg, revision, info) = registry(&api).await?;
    let summary = crate::health::summary(&reg, revision, &info).map_err(|m| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": "bad_member", "member": m}),
        )
    })?;
    Ok((StatusCode::OK, Json(summary)).into_response())
}
