//! Autopilot (`CoordinationConfig::dead_server_cleanup`, off by default): the leader removes a
//! voter its failure detector has found silent for `dead_server_cleanup_after`, one change at a
//! time, never below `min_voters` voters. A dead voter counts in every quorum; removing it lets
//! the cluster survive one more failure, as an operator's `keel member remove` would.
//!
//! Owns: choosing the member to remove. Never: a change Raft's rules forbid now (it proposes
//! through `Raft::propose_membership`, which refuses while another change is in progress).

use crate::io::Output;
use crate::raft::membership::MemberChange;
use crate::raft::Raft;
use crate::trace::Event;
use crate::types::Instant;

use super::super::Coordination;

impl Coordination {
    pub(super) fn clean_up_dead_voters(
        &mut self,
        now: Instant,
        raft: &mut Raft,
        out: &mut Vec<Output>,
    ) {
        if !self.cfg.dead_server_cleanup {
            return;
        }
        let Some(orch) = self.orch.as_ref() else {
            return;
        };
        let after = self.cfg.dead_server_cleanup_after;
        let membership = raft.membership();
        if membership.voter_count() <= self.cfg.min_voters {
            return;
        }
        let dead = membership.voters().filter(|v| *v != self.id).find_map(|v| {
            let silent = orch.heard.get(&v).map(|t| now.saturating_since(*t))?;
            (silent >= after).then_some((v, silent))
        });
        let Some((node, silent_for)) = dead else {
            return;
        };
        if raft
            .propose_membership(&MemberChange::Remove { id: node }, out)
            .is_ok()
        {
            self.trace(Event::DeadVoterRemoved { node, silent_for }, out);
            raft.replicate_appended(now, self, out);
        }
    }
}
