//! `/v1/kv/...`: reading and writing keys (`GET`/`PUT`/`DELETE /v1/kv/{partition}/{key}`),
//! compare-and-set (`POST /v1/kv/cas`) and all-or-nothing batches (`POST /v1/kv/batch`).
//!
//! Values are JSON: stored as their JSON text, answered as JSON again. These handlers only
//! translate; the event loop and the core decide.

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use keel_core::{BatchOp, ClientOp, ClientResponse, Write};
use serde_json::{json, Value as JsonValue};

use super::error::{error, not_found, unexpected, ApiError};
use super::{call, key, parse_body, written, Api};
use crate::api::{BatchItem, BatchRequest, CasDone, CasRequest, KvValue};

/// `GET /v1/kv/{partition}/{key}`: a linearizable read.
pub(super) async fn get(
    State(api): State<Api>,
    UrlPath((partition, name)): UrlPath<(String, String)>,
) -> Response {
    let key = match key(&partition, name) {
        Ok(k) => k,
        Err(r) => return r.into_response(),
    };
    match call(&api, ClientOp::Get { key }).await {
        Ok(ClientResponse::Value {
            value: Some(v),
            revision,
        }) => {
            let value = serde_json::from_str::<JsonValue>(&v).unwrap_or(JsonValue::String(v));
            let found = KvValue {
                revision: revision.0,
                value,
            };
            (StatusCode::OK, Json(found)).into_response()
        }
        Ok(_) => not_found().into_response(),
        Err(r) => r.into_response(),
    }
}

/// `PUT /v1/kv/{partition}/{key}` with a JSON value as the body.
pub(super) async fn put(
    State(api): State<Api>,
    UrlPath((partition, name)): UrlPath<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let key = match key(&partition, name) {
        Ok(k) => k,
        Err(r) => return r.into_response(),
    };
    let value: JsonValue = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                json!({"error": "bad_json", "detail": e.to_string()}),
            )
            .into_response()
        }
    };
    let write = Write::Put {
        key,
        value: value.to_string(),
    };
    written(call(&api, ClientOp::Write(write)).await)
}

/// `DELETE /v1/kv/{partition}/{key}`.
pub(super) async fn delete(
    State(api): State<Api>,
    UrlPath((partition, name)): UrlPath<(String, String)>,
) -> Response {
    let key = match key(&partition, name) {
        Ok(k) => k,
        Err(r) => return r.into_response(),
    };
    written(call(&api, ClientOp::Write(Write::Delete { key })).await)
}

/// `POST /v1/kv/cas`: writes `to` if the key holds `from` now (409 with the current value if
/// not).
pub(super) async fn cas(
    State(api): State<Api>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let b: CasRequest = parse_body(&body)?;
    let key = key(&b.partition, b.key)?;
    let from = (!b.from.is_null()).then(|| b.from.to_string());
    let write = Write::Cas {
        key,
        from,
        to: b.to.to_string(),
    };
    match call(&api, ClientOp::Write(write)).await? {
        ClientResponse::Written { revision } => {
            let done = CasDone {
                ok: true,
                revision: revision.0,
            };
            Ok((StatusCode::OK, Json(done)).into_response())
        }
        other => Err(unexpected(&other)),
    }
}

/// `POST /v1/kv/batch`: puts and deletes applied together, or none of them.
pub(super) async fn batch(
    State(api): State<Api>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let b: BatchRequest = parse_body(&body)?;
    let mut ops = Vec::with_capacity(b.ops.len());
    for item in b.ops {
        ops.push(match item {
            BatchItem::Put {
                partition,
                key: k,
                value,
            } => BatchOp::Put {
                key: key(&partition, k)?,
                value: value.to_string(),
            },
            BatchItem::Delete { partition, key: k } => BatchOp::Delete {
                key: key(&partition, k)?,
            },
        });
    }
    Ok(written(
        call(&api, ClientOp::Write(Write::Batch { ops })).await,
    ))
}
