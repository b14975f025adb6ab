//! `GET /v1/cluster` (the cluster as this node sees it) and `POST /v1/cluster/transfer-leader`
//! (hand leadership over).
//!
//! Only translation: the event loop answers both.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use keel_core::{ClientError, NodeId};
use tokio::sync::oneshot;

use super::error::{bad_node, client_error, shutting_down, ApiError};
use super::{parse_body, Api};
use crate::api::{ClusterInfo, TransferRequest, Transferring};
use crate::server::ApiRequest;

/// The cluster as this node sees it, from the event loop.
pub(super) async fn info(api: &Api) -> Result<ClusterInfo, ApiError> {
    let (tx, rx) = oneshot::channel();
    api.send(ApiRequest::Cluster { reply: tx })
        .await
        .map_err(|_| shutting_down())?;
    rx.await.map_err(|_| shutting_down())
}

/// `GET /v1/cluster`.
pub(super) async fn get(State(api): State<Api>) -> Result<Response, ApiError> {
    let info = info(&api).await?;
    Ok((StatusCode::OK, Json(info)).into_response())
}

/// `POST /v1/cluster/transfer-leader` (body optional: `{"to": "n2"}`): the leader hands
/// leadership over (202); any other node answers 503 with the leader as hint.
pub(super) async fn transfer_leader(
    State(api): State<Api>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let body: TransferRequest = if body.is_empty() {
        TransferRequest::default()
    } else {
        parse_body(&body)?
    };
    let to = match body.to {
        Some(t) => Some(
            t.parse::<NodeId>()
                .map_err(|_| bad_node(&t, "a member id like n2"))?,
        ),
        None => None,
    };
    let (tx, rx) = oneshot::channel();
    api.send(ApiRequest::Transfer { to, reply: tx })
        .await
        .map_err(|_| shutting_down())?;
    match rx.await.map_err(|_| shutting_down())? {
        Ok(()) => {
            let answer = Transferring { transferring: true };
            Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
        }
        Err(hint) => Err(client_error(ClientError::NotLeader { leader_hint: hint })),
    }
}
