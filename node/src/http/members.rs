//! `/v1/members`: the cluster's configuration (`GET`, a linearizable read at the leader) and its
//! single-server changes: add a learner (`POST /v1/members`), promote one
//! (`POST /v1/members/{id}/promote`), remove a member (`DELETE /v1/members/{id}`).
//!
//! Owns: checking the request (node id, incarnation, peer address) and shaping the answer; a
//! change the leader's rules forbid now is a 409 with the core's reason. It never decides
//! whether a change is allowed (the core does) and never retries one.

use std::net::SocketAddr;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use keel_core::{
    ClientError, ClientOp, ClientResponse, Incarnation, Member, MemberChange, MemberOp, NodeId,
};

use super::error::{bad_node, bad_value, client_error, conflict, unexpected, ApiError};
use super::{call, call_raw, cluster, parse_body, written, Api};
use crate::api::{AddMemberRequest, ClusterInfo, MemberInfo, MembersInfo, StrangerInfo};

/// What a node id looks like, for a 400.
const NODE_ID: &str = "a node id like n4";

/// `GET /v1/members`: the leader's configuration, each member's address filled in from what
/// this node knows when the configuration holds none (the members a cluster was bootstrapped
/// with), and the members this node heard as another incarnation.
pub(super) async fn list(State(api): State<Api>) -> Result<Response, ApiError> {
    let answer = call(&api, ClientOp::Members(MemberOp::List)).await?;
    let ClientResponse::Members {
        membership,
        index,
        committed,
        revision,
        strangers,
    } = answer
    else {
        return Err(unexpected(&answer));
    };
    let here = cluster::info(&api).await?;
    let members = membership
        .members()
        .iter()
        .map(|m| member_info(m, &here))
        .collect();
    // The leader's strangers, and any this node heard that the leader has not.
    let mut heard: Vec<StrangerInfo> = strangers
        .iter()
        .map(|(id, inc)| StrangerInfo {
            id: id.to_string(),
            incarnation: inc.to_string(),
        })
        .collect();
    for s in here.strangers {
        if !heard.contains(&s) {
            heard.push(s);
        }
    }
    let info = MembersInfo {
        revision: revision.0,
        index: index.0,
        committed,
        members,
        strangers: heard,
    };
    Ok((StatusCode::OK, Json(info)).into_response())
}

/// `m` as the API shows it; its address from `here`'s view when the configuration has none.
fn member_info(m: &Member, here: &ClusterInfo) -> MemberInfo {
    let id = m.id.to_string();
    let address = if m.address.is_empty() {
        here.membership
            .iter()
            .find(|k| k.id == id)
            .map_or_else(String::new, |k| k.address.clone())
    } else {
        m.address.clone()
    };
    MemberInfo {
        id,
        incarnation: m.incarnation.to_string(),
        voter: m.voter,
        address,
    }
}

/// `POST /v1/members` with an [`AddMemberRequest`]: add the node as a learner (a member of
/// that id but another incarnation is replaced by it, in the same step).
pub(super) async fn add(
    State(api): State<Api>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let change = add_learner(parse_body(&body)?)?;
    Ok(change_membership(&api, change).await)
}

/// `POST /v1/members/{id}/promote`: make the learner a voter (once it is caught up).
pub(super) async fn promote(
    State(api): State<Api>,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiError> {
    let id = node_id(&id)?;
    Ok(change_membership(&api, MemberChange::Promote { id }).await)
}

/// `DELETE /v1/members/{id}`: remove a voter or learner.
pub(super) async fn remove(
    State(api): State<Api>,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiError> {
    let id = node_id(&id)?;
    Ok(change_membership(&api, MemberChange::Remove { id }).await)
}

/// Proposes `change`: `200 {"revision": N}` once committed, 409 with the reason if refused, and
/// otherwise answered as every write is (no leader, overloaded, outcome unknown).
async fn change_membership(api: &Api, change: MemberChange) -> Response {
    let op = ClientOp::Members(MemberOp::Change(change));
    match call_raw(api, op).await {
        Ok(Err(ClientError::Refused { reason })) => conflict(reason).into_response(),
        Ok(result) => written(result.map_err(client_error)),
        Err(stopping) => stopping.into_response(),
    }
}

/// The change an [`AddMemberRequest`] asks for, or a 400 naming the field that is wrong.
fn add_learner(req: AddMemberRequest) -> Result<MemberChange, ApiError> {
    let id = node_id(&req.id)?;
    let incarnation = parse_incarnation(&req.incarnation).ok_or_else(|| {
        bad_value(
            "incarnation",
            &req.incarnation,
            "16 hex digits, as the node's GET /v1/cluster reports it",
        )
    })?;
    if req.address.parse::<SocketAddr>().is_err() {
        return Err(bad_value(
            "address",
            &req.address,
            "the node's peer address (its --listen), ip:port like 127.0.0.1:7004",
        ));
    }
    Ok(MemberChange::AddLearner {
        id,
        incarnation,
        address: req.address,
    })
}

fn node_id(s: &str) -> Result<NodeId, ApiError> {
    s.parse().map_err(|_| bad_node(s, NODE_ID))
}

/// An incarnation in the form it is displayed in: exactly 16 hex digits.
fn parse_incarnation(s: &str) -> Option<Incarnation> {
    if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(s, 16).ok().map(Incarnation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_incarnation_reads_back_from_its_display() {
        for n in [0, 1, 0xdead_beef, u64::MAX] {
            let inc = Incarnation(n);
            assert_eq!(parse_incarnation(&inc.to_string()), Some(inc));
        }
        for bad in [
            "",
            "12",
            "000000000000000g",
            "+000000000000001",
            "00000000000000001",
        ] {
            assert_eq!(parse_incarnation(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn an_add_request_is_checked_field_by_field() {
        let req = |id: &str, inc: &str, address: &str| AddMemberRequest {
            id: id.into(),
            incarnation: inc.into(),
            address: address.into(),
        };
        let ok = add_learner(req("n4", "00000000000000ab", "127.0.0.1:7004"));
        assert!(matches!(
            ok,
            Ok(MemberChange::AddLearner { id: NodeId(4), incarnation: Incarnation(0xab), ref address })
                if address == "127.0.0.1:7004"
        ));
        for (bad, field) in [
            (req("4", "00000000000000ab", "127.0.0.1:7004"), "bad_node"),
            (req("n4", "ab", "127.0.0.1:7004"), "bad_incarnation"),
            (req("n4", "00000000000000ab", "host"), "bad_address"),
        ] {
            let Err(ApiError(status, body)) = add_learner(bad) else {
                panic!("accepted a bad request");
            };
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert_eq!(body["error"], field);
        }
    }

    #[test]
    fn a_bootstrap_member_gets_the_address_this_node_knows() {
        let here = ClusterInfo {
            node: "n1".into(),
            leader: None,
            term: 1,
            commit_index: 1,
            members: vec!["n1".into(), "n2".into()],
            incarnation: "0000000000000000".into(),
            peer_address: "127.0.0.1:7001".into(),
            voter: true,
            needs_replacement: false,
            membership: vec![MemberInfo {
                id: "n2".into(),
                incarnation: "0000000000000000".into(),
                voter: true,
                address: "127.0.0.1:7002".into(),
            }],
            strangers: vec![],
        };
        let member = |id, address: &str| Member {
            id: NodeId(id),
            incarnation: Incarnation::ORIGINAL,
            voter: true,
            address: address.into(),
        };
        assert_eq!(member_info(&member(2, ""), &here).address, "127.0.0.1:7002");
        assert_eq!(
            member_info(&member(2, "10.0.0.2:7002"), &here).address,
            "10.0.0.2:7002"
        );
        assert_eq!(member_info(&member(3, ""), &here).address, "");
    }
}
