//! `keel member replace <id> [--with URL]`: the steps that bring a member back after its disk
//! died, worked out from the configuration and the members the leader heard as another
//! incarnation.
//!
//! Owns: choosing the steps (and refusing, with the way forward, when there is nothing to
//! replace). Never: carrying them out (see [`super::steps`]).

use anyhow::bail;
use keel_core::NodeId;
use keel_node::api::{AddMemberRequest, MembersInfo};

use super::remote::{Change, Cluster, NewNode};

/// The steps that replace `id`, with a line saying what they do. Without `with`: `id` came
/// back on an empty disk as a new incarnation (a stranger of the configuration), added back
/// under the same id and address, then promoted. With `with`: that node is added and promoted,
/// then `id` removed (or, if it is `id` itself, it replaces the old incarnation).
pub fn plan(
    cluster: &dyn Cluster,
    id: NodeId,
    with: Option<&NewNode>,
) -> anyhow::Result<(Vec<Change>, String)> {
    let m = cluster.members()?;
    match with {
        None => back_on_empty_disk(cluster, &m, id),
        Some(new) if new.id == id => Ok((
            vec![new.add(), Change::Promote(id)],
            format!(
                "{id} answers at {} as incarnation {}: adding it back as a learner (this removes \
                 the old incarnation's vote), then promoting it",
                new.url, new.incarnation
            ),
        )),
        Some(new) => by_another_node(&m, id, new),
    }
}

fn by_another_node(
    m: &MembersInfo,
    id: NodeId,
    new: &NewNode,
) -> anyhow::Result<(Vec<Change>, String)> {
    let named = |n: NodeId| m.members.iter().any(|x| x.id == n.to_string());
    if !named(id) && !named(new.id) {
        bail!(
            "{id} is not a member ({}); to add {} alone: keel member add {}",
            super::steps::describe(m),
            new.id,
            new.url
        );
    }
    Ok((
        vec![new.add(), Change::Promote(new.id), Change::Remove(id)],
        format!(
            "replacing {id} by {} (at {}): add it as a learner, promote it once caught up, then \
             remove {id}",
            new.id, new.url
        ),
    ))
}

/// The steps for a member that came back on an empty disk under its old id.
fn back_on_empty_disk(
    cluster: &dyn Cluster,
    m: &MembersInfo,
    id: NodeId,
) -> anyhow::Result<(Vec<Change>, String)> {
    let name = id.to_string();
    let Some(member) = m.members.iter().find(|x| x.id == name) else {
        bail!("{id} is not a member ({})", super::steps::describe(m));
    };
    if let Some(s) = m.strangers.iter().find(|s| s.id == name) {
        if member.address.is_empty() {
            bail!(
                "no peer address is known for {id}; name the node's HTTP address instead: \
                 keel member replace {id} --with http://HOST:PORT"
            );
        }
        let add = Change::Add(AddMemberRequest {
            id: name.clone(),
            incarnation: s.incarnation.clone(),
            address: member.address.clone(),
        });
        let what = format!(
            "{id} is back as incarnation {} (the configuration names {}): adding it back as a \
             learner (this removes the old incarnation's vote), then promoting it",
            s.incarnation, member.incarnation
        );
        return Ok((vec![add, Change::Promote(id)], what));
    }
    if !member.voter {
        let what = format!(
            "{id} is already back as a learner (incarnation {}): promoting it",
            member.incarnation
        );
        return Ok((vec![Change::Promote(id)], what));
    }
    bail!("{}", nothing_heard(cluster, id))
}

/// Why there is nothing to replace `id` with, and what to do.
fn nothing_heard(cluster: &dyn Cluster, id: NodeId) -> String {
    let asked = match cluster.here() {
        Ok(c) if c.leads() => format!("the leader, {}", c.node),
        Ok(c) => format!(
            "{}, which does not lead (the leader, {}, is the node sure to hear it: ask its HTTP \
             address with --addr)",
            c.node,
            c.leader.as_deref().unwrap_or("unknown right now")
        ),
        Err(_) => "the node asked".to_string(),
    };
    format!(
        "{id} is a voter of the incarnation the configuration names, and no other incarnation of \
         {id} has been heard by {asked}. If {id}'s disk was replaced, start it again with its old \
         command line (an empty data directory makes it a new incarnation) and run this again; \
         or name the node that takes its place: keel member replace {id} --with http://HOST:PORT"
    )
}
