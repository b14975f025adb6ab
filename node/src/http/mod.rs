//! The HTTP API: the routes, and what every handler shares (turning a request into a core
//! operation for the event loop, and its answer into a response).
//!
//! Handlers live by resource: [`kv`], [`cluster`] (and leadership transfer), [`members`]
//! (membership changes), [`workloads`], [`nodes`] (drain), [`health`], [`recovery`],
//! [`metrics`]. A handler only translates: it
//! parses the request, sends one request to the event loop through the in-process API and shapes
//! its answer. It never touches the core, the log or the network itself.

mod cluster;
mod error;
mod health;
mod kv;
mod members;
mod metrics;
mod nodes;
mod recovery;
mod workloads;

use std::net::SocketAddr;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use keel_core::{ClientOp, ClientResponse, ClientResult, Key, Partition};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use self::error::{client_error, error, shutting_down, unexpected, ApiError};
use crate::api::Written;
use crate::net::{HttpListener, Net};
use crate::server::{ApiRequest, ServerError};

/// What every handler holds: the way to the event loop.
type Api = mpsc::Sender<ApiRequest>;

/// The HTTP API's listener on `addr`.
#[cfg(not(madsim))]
pub(crate) async fn bind<N: Net>(addr: SocketAddr) -> Result<Option<N::Listener>, ServerError> {
    match N::bind(addr).await {
        Ok(l) => Ok(Some(l)),
        Err(source) => Err(ServerError::Bind { addr, source }),
    }
}

/// Under madsim there is no HTTP API (see [`crate::server::run_with_api`]): requests come
/// through [`crate::server::ApiHandle`]s only.
#[cfg(madsim)]
pub(crate) async fn bind<N: Net>(_addr: SocketAddr) -> Result<Option<N::Listener>, ServerError> {
    Ok(None)
}

/// Serves the API on `listener` until the task is aborted.
pub(crate) async fn serve<N: Net>(listener: N::Listener, api: Api) {
    if let Err(e) = axum::serve(HttpListener::<N>(listener), routes(api)).await {
        tracing::error!(error = %e, "the HTTP server stopped");
    }
}

/// Every route of the API.
fn routes(api: Api) -> Router {
    Router::new()
        .route(
            "/v1/kv/{partition}/{key}",
            get(kv::get).put(kv::put).delete(kv::delete),
        )
        .route("/v1/kv/cas", post(kv::cas))
        .route("/v1/kv/batch", post(kv::batch))
        .route("/v1/cluster", get(cluster::get))
        .route(
            "/v1/workloads",
            get(workloads::list).post(workloads::submit),
        )
        .route(
            "/v1/workloads/{name}",
            get(workloads::get).delete(workloads::stop),
        )
        .route(
            "/v1/nodes/{node}/drain",
            post(nodes::drain).delete(nodes::undrain),
        )
        .route("/health/summary", get(health::summary))
        .route("/health/check", post(health::summary))
        .route("/recovery/metrics", get(recovery::report))
        .route("/metrics", get(metrics::prometheus))
        .route(
            "/v1/cluster/transfer-leader",
            post(cluster::transfer_leader),
        )
        .route("/v1/members", get(members::list).post(members::add))
        .route("/v1/members/{id}/promote", post(members::promote))
        .route("/v1/members/{id}", delete(members::remove))
        .with_state(api)
}

/// The key `name` in `partition`, or a 400 listing the partitions.
fn key(partition: &str, name: String) -> Result<Key, ApiError> {
    partition
        .parse::<Partition>()
        .map(|p| Key::new(p, name))
        .map_err(|_| {
            error(
                StatusCode::BAD_REQUEST,
                json!({"error": "bad_partition", "partition": partition,
                       "expected": ["workers", "tasks", "task_history", "system_health", "configuration", "user"]}),
            )
        })
}

/// Carries out `op` through the event loop; the core's refusal becomes an error answer.
async fn call(api: &Api, op: ClientOp) -> Result<ClientResponse, ApiError> {
    call_raw(api, op).await?.map_err(client_error)
}

/// Carries out `op` through the event loop and hands back the core's answer as it is, for a
/// route that answers some refusals its own way; `Err` only if the node is stopping.
async fn call_raw(api: &Api, op: ClientOp) -> Result<ClientResult, ApiError> {
    let (tx, rx) = oneshot::channel();
    if api.send(ApiRequest::Op { op, reply: tx }).await.is_err() {
        return Err(shutting_down());
    }
    rx.await.map_err(|_| shutting_down())
}

/// The answer to a write: its revision.
fn written(r: Result<ClientResponse, ApiError>) -> Response {
    match r {
        Ok(ClientResponse::Written { revision }) => (
            StatusCode::OK,
            Json(Written {
                revision: revision.0,
            }),
        )
            .into_response(),
        Ok(other) => unexpected(&other).into_response(),
        Err(r) => r.into_response(),
    }
}

/// A JSON request body, or a 400 naming what is wrong with it.
fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| error::bad_request(e.to_string()))
}
