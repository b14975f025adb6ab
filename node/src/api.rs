//! The HTTP API's request and answer bodies, as types: the server writes them, the `keel` CLI,
//! xtask and the tests read them, so nobody looks fields up by string.
//!
//! These shapes are the documented wire format. Field names, field order and the `null`s they
//! carry must not change: an answer serializes byte for byte as the API always answered.
//! Answers list their fields in alphabetical order (the order the API's JSON objects have always
//! had); request bodies keep their historical order, which a refusal of an unknown field names.
//! This module holds data only: no I/O, no conversion from core types beyond plain
//! constructors.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value as JsonValue;

/// The cluster as one node sees it (`GET /v1/cluster`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterInfo {
    /// The node that answered.
    pub node: String,
    pub leader: Option<String>,
    pub term: u64,
    pub commit_index: u64,
    pub members: Vec<String>,
    /// This node's incarnation (16 hex digits): `0000000000000000` for a member the cluster was
    /// bootstrapped with, a fresh one for a node that joined later or lost its data directory.
    pub incarnation: String,
    /// Where peers reach this node (its `--listen`).
    pub peer_address: String,
    /// This node votes in the configuration it holds.
    pub voter: bool,
    /// The configuration names this node's id as another incarnation, or not at all: it never
    /// votes, and must be added back (`keel member replace`).
    pub needs_replacement: bool,
    /// The configuration this node holds (the last it appended; not a linearizable read, see
    /// `GET /v1/members`), with every member's peer address as this node knows it.
    pub membership: Vec<MemberInfo>,
    /// Members this node heard from as another incarnation than the configuration names.
    pub strangers: Vec<StrangerInfo>,
}

/// One member of a configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    pub id: String,
    /// 16 hex digits.
    pub incarnation: String,
    /// A voter; false for a learner.
    pub voter: bool,
    /// Its peer address (empty if unknown to the node that answered).
    pub address: String,
}

/// A member heard from as another incarnation than the configuration names (a node that lost its
/// data directory and came back): it needs `keel member replace`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StrangerInfo {
    pub id: String,
    /// The incarnation it was heard as (16 hex digits).
    pub incarnation: String,
}

/// `GET /v1/members`: the configuration in force at the leader (a linearizable read).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembersInfo {
    /// The log index the read reflects.
    pub revision: u64,
    /// The index of the entry holding this configuration.
    pub index: u64,
    /// False while the change that made it is not committed yet.
    pub committed: bool,
    pub members: Vec<MemberInfo>,
    /// Members the answering node heard from as another incarnation (needing replacement).
    pub strangers: Vec<StrangerInfo>,
}

/// `POST /v1/members` body: add a node as a learner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddMemberRequest {
    pub id: String,
    /// The node's incarnation, as its `GET /v1/cluster` reports it (16 hex digits).
    pub incarnation: String,
    /// Its peer address (its `--listen`).
    pub address: String,
}

impl ClusterInfo {
    /// Whether the node that answered says it leads.
    pub fn leads(&self) -> bool {
        self.leader.as_deref() == Some(self.node.as_str())
    }
}

/// `GET /v1/kv/{partition}/{key}`: the value (JSON as written) and the revision it was read at.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KvValue {
    pub revision: u64,
    pub value: JsonValue,
}

/// A write's acknowledgement (`PUT`/`DELETE /v1/kv/..`, `/v1/kv/batch`, workload and drain
/// requests): the revision it committed at.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Written {
    pub revision: u64,
}

/// `POST /v1/kv/cas` body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CasRequest {
    pub partition: String,
    pub key: String,
    /// The value expected now; `null` means the key must be absent.
    pub from: JsonValue,
    pub to: JsonValue,
}

/// `POST /v1/kv/cas` success (200).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CasDone {
    pub ok: bool,
    pub revision: u64,
}

/// `POST /v1/kv/cas` refusal (409): the value found instead (`null`: absent).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CasMismatch {
    pub current: Option<JsonValue>,
    pub ok: bool,
}

/// One operation of `POST /v1/kv/batch`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub enum BatchItem {
    Put {
        partition: String,
        key: String,
        value: JsonValue,
    },
    Delete {
        partition: String,
        key: String,
    },
}

/// `POST /v1/kv/batch` body: applied all together or not at all.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    pub ops: Vec<BatchItem>,
}

/// `POST /v1/workloads` body; durations in milliseconds, unset settings at their defaults.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    pub name: String,
    pub command: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff_base_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff_cap_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watchdog_ms: Option<u64>,
}

/// One committed decision about a workload, for `explain`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecisionInfo {
    /// The log index that decided it.
    pub index: u64,
    pub what: String,
}

/// A workload as the API shows it (`GET /v1/workloads/{name}`, and each of a list).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkloadInfo {
    pub args: Vec<String>,
    pub attempts: u32,
    pub command: String,
    pub desired: keel_core::Desired,
    pub epoch: u64,
    pub explain: Vec<DecisionInfo>,
    pub max_attempts: u32,
    pub name: String,
    /// The node it is placed on, if any.
    pub node: Option<String>,
    pub resources: u32,
    /// A short status word: `pending`, `running`, `failed-permanently`, ...
    pub status: String,
}

impl WorkloadInfo {
    /// The API's view of a registry entry.
    pub fn of(w: &keel_core::Workload) -> WorkloadInfo {
        WorkloadInfo {
            args: w.spec.args.clone(),
            attempts: w.attempts,
            command: w.spec.command.clone(),
            desired: w.desired,
            epoch: w.epoch.0,
            explain: w
                .history
                .iter()
                .map(|d| DecisionInfo {
                    index: d.index.0,
                    what: d.what.clone(),
                })
                .collect(),
            max_attempts: w.spec.max_attempts,
            name: w.spec.name.clone(),
            node: w.status.node().map(|n| n.to_string()),
            resources: w.spec.resources,
            status: w.status.name().to_string(),
        }
    }
}

/// `GET /v1/workloads`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkloadList {
    pub revision: u64,
    pub workloads: Vec<WorkloadInfo>,
}

/// One member in `GET /health/summary`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeHealth {
    pub draining: bool,
    pub leader: bool,
    pub node_key: String,
    /// `online`, `degraded` or `offline`.
    pub status: String,
    /// The log index at which the verdict last changed.
    pub status_since_index: u64,
    /// Workload copies assigned to it.
    pub workloads: usize,
}

/// `GET /health/summary` and `POST /health/check`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HealthSummary {
    pub degraded_nodes: usize,
    pub desired_workloads: usize,
    pub failed_workloads: usize,
    pub leader: Option<String>,
    pub node_details: Vec<NodeHealth>,
    pub offline_nodes: usize,
    pub online_nodes: usize,
    pub revision: u64,
    pub running_workloads: usize,
    pub total_nodes: usize,
    /// Members that lost their data directory and must be added back, each with the command
    /// that does it. Left out of the answer when there are none, so a healthy cluster answers
    /// exactly as before this field existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs_replacement: Vec<NeedsReplacement>,
}

/// A member that needs `keel member replace` (in `GET /health/summary`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeedsReplacement {
    pub node: String,
    /// The incarnation it answers as now (16 hex digits), which the configuration does not name.
    pub incarnation: String,
    /// Why it needs replacing, in words.
    pub reason: String,
    /// The command that fixes it.
    pub fix: String,
}

/// A node's verdict in `GET /recovery/metrics`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HealthCheck {
    pub status: String,
    pub status_since_index: u64,
}

/// `GET /recovery/metrics`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecoveryReport {
    pub attempts_total: u64,
    pub backing_off_workloads: Vec<String>,
    pub desired_state_count: usize,
    pub failed_workloads: Vec<String>,
    /// Per member, by node id.
    pub health_checks: BTreeMap<String, HealthCheck>,
    pub pending_workloads: Vec<String>,
    pub revision: u64,
}

/// `POST /v1/cluster/transfer-leader` body (optional): the member to hand over to.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// `POST /v1/cluster/transfer-leader` success (202).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transferring {
    pub transferring: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The answers keep the byte layout the API always had (keys in alphabetical order, `null`
    /// for absent options).
    #[test]
    fn answers_serialize_as_the_documented_json() {
        let info = ClusterInfo {
            node: "n1".into(),
            leader: None,
            term: 3,
            commit_index: 9,
            members: vec!["n1".into(), "n2".into()],
            incarnation: "0000000000000000".into(),
            peer_address: "127.0.0.1:7001".into(),
            voter: true,
            needs_replacement: false,
            membership: vec![MemberInfo {
                id: "n2".into(),
                incarnation: "0000000000000000".into(),
                voter: false,
                address: "127.0.0.1:7002".into(),
            }],
            strangers: vec![],
        };
        assert_eq!(
            serde_json::to_string(&info).expect("json"),
            concat!(
                r#"{"node":"n1","leader":null,"term":3,"commit_index":9,"members":["n1","n2"],"#,
                r#""incarnation":"0000000000000000","peer_address":"127.0.0.1:7001","voter":true,"#,
                r#""needs_replacement":false,"membership":[{"id":"n2","#,
                r#""incarnation":"0000000000000000","voter":false,"address":"127.0.0.1:7002"}],"#,
                r#""strangers":[]}"#
            )
        );
        let check = HealthCheck {
            status: "online".into(),
            status_since_index: 4,
        };
        let report = RecoveryReport {
            attempts_total: 2,
            backing_off_workloads: vec![],
            desired_state_count: 1,
            failed_workloads: vec!["web".into()],
            health_checks: BTreeMap::from([("n1".to_string(), check)]),
            pending_workloads: vec![],
            revision: 7,
        };
        assert_eq!(
            serde_json::to_string(&report).expect("json"),
            serde_json::to_string(&serde_json::json!({
                "failed_workloads": ["web"],
                "pending_workloads": [],
                "backing_off_workloads": [],
                "desired_state_count": 1,
                "attempts_total": 2,
                "health_checks": {"n1": {"status": "online", "status_since_index": 4}},
                "revision": 7,
            }))
            .expect("json")
        );
    }
}
