//! `keel status`, `keel health`, `keel check`, `keel recovery` and `keel transfer-leader`: the
//! cluster as one node sees it, printed as tables (or the answers as JSON).
//!
//! Read-only except `transfer-leader`; it never retries a refused request.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::bail;
use keel_core::NodeId;
use keel_node::api::{ClusterInfo, HealthSummary, RecoveryReport, TransferRequest};
use keel_node::client::request;

use super::{finish, parse, TIMEOUT};

/// `keel status`: leader, term, commit index and members as `addr` sees them.
pub fn status(addr: SocketAddr, json: bool) -> anyhow::Result<()> {
    let a = request(addr, "GET", "/v1/cluster", None, TIMEOUT)?;
    if json || a.status != 200 {
        return finish(a);
    }
    let c: ClusterInfo = parse(&a)?;
    let mut t = comfy_table::Table::new();
    t.set_header(["asked", "leader", "term", "commit index", "members"]);
    t.add_row([
        c.node,
        c.leader.unwrap_or_else(|| "none".to_string()),
        c.term.to_string(),
        c.commit_index.to_string(),
        c.members.join(", "),
    ]);
    println!("{t}");
    Ok(())
}

/// `keel health` (`GET`) and `keel check` (`POST`): the summary as two tables.
pub fn health(addr: SocketAddr, method: &str, json: bool) -> anyhow::Result<()> {
    let path = if method == "POST" {
        "/health/check"
    } else {
        "/health/summary"
    };
    let a = request(addr, method, path, None, TIMEOUT)?;
    if json || a.status != 200 {
        return finish(a);
    }
    let h: HealthSummary = parse(&a)?;
    let mut t = comfy_table::Table::new();
    t.set_header([
        "nodes",
        "online",
        "degraded",
        "offline",
        "workloads desired",
        "running",
        "failed",
    ]);
    t.add_row([
        h.total_nodes,
        h.online_nodes,
        h.degraded_nodes,
        h.offline_nodes,
        h.desired_workloads,
        h.running_workloads,
        h.failed_workloads,
    ]);
    println!("{t}");
    let yes = |b: bool| if b { "yes" } else { "" }.to_string();
    let mut d = comfy_table::Table::new();
    d.set_header(["node", "status", "leader", "draining", "workloads"]);
    for n in h.node_details {
        d.add_row([
            n.node_key,
            n.status,
            yes(n.leader),
            yes(n.draining),
            n.workloads.to_string(),
        ]);
    }
    println!("{d}");
    for n in &h.needs_replacement {
        println!("{} NEEDS REPLACEMENT: {}", n.node, n.reason);
        println!("  fix: {}", n.fix);
    }
    Ok(())
}

/// `keel recovery`: failed, pending and backing-off workloads.
pub fn recovery(addr: SocketAddr, json: bool) -> anyhow::Result<()> {
    let a = request(addr, "GET", "/recovery/metrics", None, TIMEOUT)?;
    if json || a.status != 200 {
        return finish(a);
    }
    let r: RecoveryReport = parse(&a)?;
    let list = |names: &[String]| -> String {
        if names.is_empty() {
            "-".to_string()
        } else {
            names.join(", ")
        }
    };
    let mut t = comfy_table::Table::new();
    t.set_header([
        "desired",
        "failed permanently",
        "pending",
        "backing off",
        "attempts",
    ]);
    t.add_row([
        r.desired_state_count.to_string(),
        list(&r.failed_workloads),
        list(&r.pending_workloads),
        list(&r.backing_off_workloads),
        r.attempts_total.to_string(),
    ]);
    println!("{t}");
    Ok(())
}

/// `keel transfer-leader`: asks `addr` to hand leadership over, then polls until another node
/// leads.
pub fn transfer_leader(addr: SocketAddr, to: Option<NodeId>) -> anyhow::Result<()> {
    let body = TransferRequest {
        to: to.map(|t| t.to_string()),
    };
    let body = to.map(|_| serde_json::to_string(&body)).transpose()?;
    let a = request(
        addr,
        "POST",
        "/v1/cluster/transfer-leader",
        body.as_deref(),
        TIMEOUT,
    )?;
    if a.status != 202 {
        return finish(a);
    }
    let before = request(addr, "GET", "/v1/cluster", None, TIMEOUT)?;
    let old = before
        .parse::<ClusterInfo>()
        .map_or_else(|_| "?".to_string(), |c| c.node);
    let give_up = Instant::now() + Duration::from_secs(5);
    while Instant::now() < give_up {
        let c = request(addr, "GET", "/v1/cluster", None, TIMEOUT)?;
        if let Ok(c) = c.parse::<ClusterInfo>() {
            if let Some(l) = c.leader.filter(|l| *l != old) {
                println!("leadership moved from {old} to {l} (term {})", c.term);
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("{old} started handing leadership over, but no other leader was seen within 5 s")
}
