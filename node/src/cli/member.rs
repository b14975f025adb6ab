//! `keel member list|add|promote|remove|replace`: the cluster's membership through any node.
//!
//! Owns: the commands and their flags, the `list` table, and which steps each command takes
//! (carried out by [`steps`], over [`remote`]). Never: a change the operator did not ask for,
//! and no cluster state of its own: every decision is made on a fresh read of the
//! configuration.

mod remote;
mod replace;
mod steps;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Subcommand};
use keel_core::NodeId;
use keel_node::api::MembersInfo;
use keel_node::client::request;

use self::remote::{Change, NewNode, Remote};
use self::steps::{run_plan, Wait};
use super::{finish, parse, TIMEOUT};

/// `keel member ...`.
#[derive(Args)]
pub struct MemberArgs {
    /// Any node's HTTP address.
    #[arg(long, global = true, default_value = "127.0.0.1:8001")]
    pub addr: SocketAddr,
    /// The longest a command waits in all (for a learner to catch up, a change in progress, a
    /// new leader), e.g. `90s`, `5m`.
    #[arg(long, global = true, default_value = "60s", value_parser = keel_core::duration::parse)]
    pub timeout: Duration,
    #[command(subcommand)]
    pub command: MemberCommand,
}

#[derive(Subcommand)]
pub enum MemberCommand {
    /// The configuration at the leader: every member, its role and address, and the members
    /// that need replacing.
    List {
        /// Print the raw JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Add a running node (give its HTTP address) as a learner and, unless --learner, promote
    /// it to voter once it has caught up.
    Add {
        /// The new node's HTTP address, e.g. http://127.0.0.1:8004.
        node: String,
        /// Leave it a learner (it receives the log but does not vote).
        #[arg(long)]
        learner: bool,
    },
    /// Make a learner a voter, waiting until it has caught up.
    Promote { id: NodeId },
    /// Remove a member (voter or learner).
    Remove { id: NodeId },
    /// Bring a member back to full strength after its disk died: by its new incarnation
    /// (restarted with its old command line on an empty disk), or by another node (--with).
    Replace {
        id: NodeId,
        /// The HTTP address of the node that takes its place.
        #[arg(long, value_name = "URL")]
        with: Option<String>,
    },
}

/// Runs one `keel member` command.
pub fn run(args: MemberArgs) -> anyhow::Result<()> {
    let cluster = Remote { addr: args.addr };
    let wait = Wait::new(args.timeout);
    let out = &mut std::io::stdout();
    let resume = |what: String| format!("keel member {what} --addr {}", args.addr);
    match args.command {
        MemberCommand::List { json } => list(args.addr, json),
        MemberCommand::Add { node, learner } => {
            let new = NewNode::read(&node)?;
            let mut plan = vec![new.add()];
            if !learner {
                plan.push(Change::Promote(new.id));
            }
            let flag = if learner { " --learner" } else { "" };
            let resume = resume(format!("add {node}{flag}"));
            run_plan(&cluster, &plan, &wait, &resume, out)
        }
        MemberCommand::Promote { id } => {
            let resume = resume(format!("promote {id}"));
            run_plan(&cluster, &[Change::Promote(id)], &wait, &resume, out)
        }
        MemberCommand::Remove { id } => {
            let resume = resume(format!("remove {id}"));
            run_plan(&cluster, &[Change::Remove(id)], &wait, &resume, out)
        }
        MemberCommand::Replace { id, with } => {
            let new = with.as_deref().map(NewNode::read).transpose()?;
            let (plan, what) = replace::plan(&cluster, id, new.as_ref())?;
            println!("{what}");
            let with = with.map_or_else(String::new, |w| format!(" --with {w}"));
            let resume = resume(format!("replace {id}{with}"));
            run_plan(&cluster, &plan, &wait, &resume, out)?;
            println!("{id} replaced");
            Ok(())
        }
    }
}

/// `keel member list`: the configuration as a table, then what needs replacing.
fn list(addr: SocketAddr, json: bool) -> anyhow::Result<()> {
    let a = request(addr, "GET", "/v1/members", None, TIMEOUT)?;
    if json || a.status != 200 {
        return finish(a);
    }
    let m: MembersInfo = parse(&a)?;
    print!("{}", table(&m));
    Ok(())
}

/// The text `keel member list` prints.
fn table(m: &MembersInfo) -> String {
    let state = if m.committed {
        "committed"
    } else {
        "NOT committed yet: a membership change is in progress"
    };
    let which = if m.index == 0 {
        "the bootstrap configuration".to_string()
    } else {
        format!("the configuration of log index {}", m.index)
    };
    let mut text = format!("{which} ({state}), read at revision {}\n", m.revision);
    let mut t = comfy_table::Table::new();
    t.set_header(["id", "incarnation", "role", "address", "note"]);
    for x in &m.members {
        let note = m
            .strangers
            .iter()
            .find(|s| s.id == x.id)
            .map_or_else(String::new, |s| {
                format!("needs replacement (heard as incarnation {})", s.incarnation)
            });
        let role = if x.voter { "voter" } else { "learner" };
        let address = if x.address.is_empty() {
            "-"
        } else {
            &x.address
        };
        t.add_row([&x.id, &x.incarnation, role, address, &note]);
    }
    text.push_str(&format!("{t}\n"));
    for s in &m.strangers {
        text.push_str(&format!(
            "{} lost its data directory (heard as incarnation {}): keel member replace {}\n",
            s.id, s.incarnation, s.id
        ));
    }
    text
}
