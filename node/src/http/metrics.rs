//! `GET /metrics`: the node's metrics in the Prometheus text format, as the event loop renders
//! them ([`crate::metrics`]). Only transport here.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio::sync::oneshot;

use super::error::shutting_down;
use super::Api;
use crate::server::ApiRequest;

/// `GET /metrics`.
pub(super) async fn prometheus(State(api): State<Api>) -> Response {
    let (tx, rx) = oneshot::channel();
    let text = match api.send(ApiRequest::Metrics { reply: tx }).await {
        Ok(()) => rx.await.ok(),
        Err(_) => None,
    };
    match text {
        Some(t) => (
            StatusCode::OK,
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            t,
        )
            .into_response(),
        None => shutting_down().into_response(),
    }
}
