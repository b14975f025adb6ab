//! The HTTP API's error answers: a status code and a JSON body naming what went wrong, and the
//! mapping from the core's client errors to them.
//!
//! The bodies are part of the documented API; their keys and values must not change. This module
//! never talks to the event loop.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use keel_core::ClientError;
use serde_json::{json, Value as JsonValue};

use crate::api::CasMismatch;

/// An error answer: a status and a JSON body.
pub(crate) struct ApiError(pub(crate) StatusCode, pub(crate) JsonValue);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

/// An error answer with this status and body.
pub(crate) fn error(status: StatusCode, body: JsonValue) -> ApiError {
    ApiError(status, body)
}

/// 503: the node is stopping and no longer takes requests.
pub(crate) fn shutting_down() -> ApiError {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        json!({"error": "shutting_down"}),
    )
}

/// 500: the core answered something this route does not expect.
pub(crate) fn unexpected(other: &keel_core::ClientResponse) -> ApiError {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        json!({"error": "unexpected_answer", "detail": format!("{other:?}")}),
    )
}

/// 400: a body that is not what the route takes.
pub(crate) fn bad_request(detail: impl Into<String>) -> ApiError {
    error(
        StatusCode::BAD_REQUEST,
        json!({"error": "bad_request", "detail": detail.into()}),
    )
}

/// 404.
pub(crate) fn not_found() -> ApiError {
    error(StatusCode::NOT_FOUND, json!({"error": "not_found"}))
}

/// 400: `node` is not a node id; `expected` says what one looks like.
pub(crate) fn bad_node(node: &str, expected: &str) -> ApiError {
    error(
        StatusCode::BAD_REQUEST,
        json!({"error": "bad_node", "node": node, "expected": expected}),
    )
}

/// 400: `value` is not a valid `field`; `expected` says what one looks like. The body is
/// `{"error": "bad_<field>", "<field>": value, "expected": ...}`, shaped like [`bad_node`]'s.
pub(crate) fn bad_value(field: &str, value: &str, expected: &str) -> ApiError {
    let mut body = serde_json::Map::new();
    body.insert("error".into(), json!(format!("bad_{field}")));
    body.insert(field.into(), json!(value));
    body.insert("expected".into(), json!(expected));
    error(StatusCode::BAD_REQUEST, JsonValue::Object(body))
}

/// 409: the request is well formed but the cluster's rules forbid it now; `reason` says why.
pub(crate) fn conflict(reason: String) -> ApiError {
    error(
        StatusCode::CONFLICT,
        json!({"error": "refused", "reason": reason}),
    )
}

/// The answer to a request the core refused.
pub(crate) fn client_error(e: ClientError) -> ApiError {
    match e {
        ClientError::Overloaded { retry_after } => error(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "overloaded", "retry_after_ms": retry_after.as_millis() as u64}),
        ),
        ClientError::NotLeader { leader_hint } => error(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "no_leader", "leader_hint": leader_hint.map(|l| l.to_string())}),
        ),
        ClientError::CasMismatch { current } => {
            let found = CasMismatch {
                current: current.and_then(|c| serde_json::from_str::<JsonValue>(&c).ok()),
                ok: false,
            };
            error(StatusCode::CONFLICT, json!(found))
        }
        ClientError::NotCommitted => error(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "not_committed"}),
        ),
        ClientError::Indeterminate => error(
            StatusCode::GATEWAY_TIMEOUT,
            json!({"error": "outcome_unknown"}),
        ),
        ClientError::Refused { reason } => error(
            StatusCode::BAD_REQUEST,
            json!({"error": "refused", "reason": reason}),
        ),
    }
}
