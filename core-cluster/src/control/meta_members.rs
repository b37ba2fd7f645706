//! Membership of the metadata group: every active node is a member, draining
//! voters are replaced, drained nodes are removed.

use crate::meta::MetaCommand;
use crate::node::Node;
use crate::raft::types::{Command, NodeId};
use anyhow::Result;
use openraft::error::RaftError;
use openraft::{BasicNode, ChangeMembers};
use std::collections::BTreeSet;

impl Node {
    /// Metadata leader: every active node is a member of the metadata group
    /// (new ones join as learners), draining voters are replaced by active
    /// members (other zones first) so the voter count holds, and a drained
    /// node that holds nothing is removed from the group and the catalog.
    pub(crate) async fn reconcile_meta_members(&self) -> Result<()> {
        let membership = self
            .meta
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .clone();
        if membership.get_joint_config().len() > 1 {
            return Ok(()); // a change is being committed
        }
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let members: BTreeSet<u64> = membership.nodes().map(|(id, _)| *id).collect();
        let cat = self.meta.sm.read(|c| c.clone());
        let raft_err = |what: String| move |e: RaftError<NodeId, _>| anyhow::anyhow!("{what}: {e}");
        for n in cat.nodes.values() {
            if !n.draining && !members.contains(&n.id) {
                tracing::info!(node = n.id, zone = %n.zone, "adding node to the metadata group as a learner");
                self.meta
                    .raft
                    .add_learner(n.id, BasicNode::new(&n.peer_addr), false)
                    .await
                    .map_err(raft_err(format!(
                        "adding node {} to the metadata group",
                        n.id
                    )))?;
            }
        }
        let draining = |id: &u64| cat.nodes.get(id).is_some_and(|n| n.draining);
        let mut want: BTreeSet<u64> = voters.iter().copied().filter(|v| !draining(v)).collect();
        while want.len() < voters.len() {
            let zones: Vec<&str> = want
                .iter()
                .filter_map(|v| cat.nodes.get(v).map(|n| n.zone.as_str()))
                .collect();
            let Some(c) = cat
                .nodes
                .values()
                .filter(|n| !n.draining && members.contains(&n.id) && !want.contains(&n.id))
                .min_by_key(|n| (zones.contains(&n.zone.as_str()), n.id))
            else {
                break;
            };
            want.insert(c.id);
        }
        if want != voters && !want.is_empty() {
            tracing::info!(?voters, ?want, "replacing draining metadata voters");
            self.meta
                .raft
                .change_membership(ChangeMembers::ReplaceAllVoters(want), true)
                .await
                .map_err(raft_err("changing the metadata voters".into()))?;
            return Ok(());
        }
        for n in cat.nodes.values() {
            if !n.draining || cat.replica_count(n.id) > 0 || voters.contains(&n.id) {
                continue;
            }
            // Forget first, then leave the group: when the drained node is
            // this leader, it can commit nothing once it has removed itself.
            tracing::info!(node = n.id, "node drained: removing it from the cluster");
            self.meta
                .raft
                .client_write(Command::Meta(MetaCommand::ForgetNode(n.id)))
                .await
                .map_err(raft_err(format!("forgetting node {}", n.id)))?;
            if members.contains(&n.id) {
                self.meta
                    .raft
                    .change_membership(ChangeMembers::RemoveNodes([n.id].into()), false)
                    .await
                    .map_err(raft_err(format!(
                        "removing node {} from the metadata group",
                        n.id
                    )))?;
            }
        }
        // A forgotten node whose removal from the group did not finish.
        for id in members.iter().filter(|id| cat.forgotten.contains(id)) {
            if voters.contains(id) {
                continue;
            }
            self.meta
                .raft
                .change_membership(ChangeMembers::RemoveNodes([*id].into()), false)
                .await
                .map_err(raft_err(format!(
                    "removing node {id} from the metadata group"
                )))?;
        }
        Ok(())
    }
}
