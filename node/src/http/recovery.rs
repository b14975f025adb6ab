//! `GET /recovery/metrics`: which workloads failed for good, which wait for placement or a
//! retry, and the failure detector's verdict per node.
//!
//! Only translation; the report itself is built in [`crate::health`].

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::ApiError;
use super::{health, Api};

/// `GET /recovery/metrics`.
pub(super) async fn report(State(api): State<Api>) -> Result<Response, ApiError> {
    let (reg, revision, info) = health::registry(&api).await?;
    let report = crate::health::recovery(&reg, revision, &info);
    Ok((StatusCode::OK, Json(report)).into_response())
}
