//! `/v1/workloads`: submit (`POST`), list (`GET`), show one with its decisions
//! (`GET /v1/workloads/{name}`) and stop (`DELETE /v1/workloads/{name}`).
//!
//! Only translation: the registry lives in the core, reached through the event loop.

use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use keel_core::{ClientOp, ClientResponse, WorkloadOp, WorkloadSpec};

use super::error::{bad_request, not_found, ApiError};
use super::{call, parse_body, written, Api};
use crate::api::{SubmitRequest, WorkloadInfo, WorkloadList};

/// The core's workload spec for a submit request, or why it is not one.
fn spec(b: SubmitRequest) -> Result<WorkloadSpec, ApiError> {
    let mut spec = WorkloadSpec::new(b.name, b.command);
    spec.args = b.args;
    if let Some(r) = b.resources {
        spec.resources = r;
    }
    if let Some(m) = b.max_attempts {
        spec.max_attempts = m;
    }
    if let Some(ms) = b.backoff_base_ms {
        spec.backoff_base = Duration::from_millis(ms);
    }
    if let Some(ms) = b.backoff_cap_ms {
        spec.backoff_cap = Duration::from_millis(ms);
    }
    spec.watchdog = b.watchdog_ms.map(Duration::from_millis);
    match spec.problem() {
        Some(problem) => Err(bad_request(problem)),
        None => Ok(spec),
    }
}

/// `POST /v1/workloads`: create or update a workload and want it running.
pub(super) async fn submit(
    State(api): State<Api>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let spec = spec(parse_body(&body)?)?;
    let op = ClientOp::Workload(WorkloadOp::Submit(Box::new(spec)));
    Ok(written(call(&api, op).await))
}

/// `DELETE /v1/workloads/{name}`: want it stopped.
pub(super) async fn stop(State(api): State<Api>, UrlPath(name): UrlPath<String>) -> Response {
    let op = ClientOp::Workload(WorkloadOp::Stop { name });
    written(call(&api, op).await)
}

/// `GET /v1/workloads`.
pub(super) async fn list(State(api): State<Api>) -> Result<Response, ApiError> {
    match call(&api, ClientOp::Workload(WorkloadOp::List)).await? {
        ClientResponse::Workloads {
            workloads,
            revision,
        } => {
            let list = WorkloadList {
                revision: revision.0,
                workloads: workloads.iter().map(WorkloadInfo::of).collect(),
            };
            Ok((StatusCode::OK, Json(list)).into_response())
        }
        other => Ok(written(Ok(other))),
    }
}

/// `GET /v1/workloads/{name}`: the workload and its committed decisions.
pub(super) async fn get(
    State(api): State<Api>,
    UrlPath(name): UrlPath<String>,
) -> Result<Response, ApiError> {
    let op = ClientOp::Workload(WorkloadOp::Get { name });
    match call(&api, op).await? {
        ClientResponse::Workloads { workloads, .. } => match workloads.first() {
            Some(w) => Ok((StatusCode::OK, Json(WorkloadInfo::of(w))).into_response()),
            None => Err(not_found()),
        },
        other => Ok(written(Ok(other))),
    }
}
