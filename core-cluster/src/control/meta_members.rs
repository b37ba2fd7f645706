//! Membership of the metadata group: every active node is a member (new
//! ones join as learners), draining voters are replaced by active members
//! (other zones first) so the voter count holds, and a drained node that
//! holds nothing is forgotten and removed from the group.
//!
//! [`plan`] decides from the catalog and the group's current voters and
//! members; [`Node::reconcile_meta_members`] performs the plan on the
//! metadata leader. One change of voters at a time: a plan that replaces
//! voters does nothing else, the next round continues.

use crate::catalog::{Catalog, MetaCommand};
use crate::error::{raft_err, ControlError};
use crate::node::Node;
use openraft::{BasicNode, ChangeMembers};
use std::collections::BTreeSet;

/// What the metadata leader should do to the metadata group, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetaMembersPlan {
    /// Active nodes that are not members yet: (id, peer address).
    pub add_learners: Vec<(u64, String)>,
    /// The voter set to move to (replacing draining voters), if it changes.
    pub replace_voters: Option<BTreeSet<u64>>,
    /// Drained nodes holding nothing: forget them in the catalog, then
    /// remove them from the group if `members` has them (`bool`).
    pub forget: Vec<(u64, bool)>,
    /// Forgotten nodes still in the group (a removal that did not finish).
    pub remove: Vec<u64>,
}

/// Plans the metadata group's membership. `voters` and `members` are the
/// group's current (uniform, not joint) configuration.
pub fn plan(cat: &Catalog, voters: &BTreeSet<u64>, members: &BTreeSet<u64>) -> MetaMembersPlan {
    let mut p = MetaMembersPlan {
        add_learners: cat
            .nodes
            .values()
            .filter(|n| !n.draining && !members.contains(&n.id))
            .map(|n| (n.id, n.peer_addr.clone()))
            .collect(),
        ..Default::default()
    };
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
    if want != *voters && !want.is_empty() {
        p.replace_voters = Some(want);
        return p;
    }
    p.forget = cat
        .nodes
        .values()
        .filter(|n| n.draining && cat.replica_count(n.id) == 0 && !voters.contains(&n.id))
        .map(|n| (n.id, members.contains(&n.id)))
        .collect();
    p.remove = members
        .iter()
        .filter(|id| cat.forgotten.contains(id) && !voters.contains(id))
        .copied()
        .collect();
    p
}

impl Node {
    /// Metadata leader: performs [`plan`] on the metadata group.
    pub(crate) async fn reconcile_meta_members(&self) -> Result<(), ControlError> {
        let membership = self
            .meta()
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
        let plan = self.meta().sm.read(|c| plan(c, &voters, &members));
        for (id, addr) in plan.add_learners {
            tracing::info!(node = id, "adding node to the metadata group as a learner");
            self.meta()
                .raft
                .add_learner(id, BasicNode::new(&addr), false)
                .await
                .map_err(raft_err(format!("adding node {id} to the metadata group")))?;
        }
        if let Some(want) = plan.replace_voters {
            tracing::info!(?voters, ?want, "replacing draining metadata voters");
            self.meta()
                .raft
                .change_membership(ChangeMembers::ReplaceAllVoters(want), true)
                .await
                .map_err(raft_err("changing the metadata voters".to_string()))?;
            return Ok(());
        }
        for (id, is_member) in plan.forget {
            // Forget first, then leave the group: when the drained node is
            // this leader, it can commit nothing once it has removed itself.
            tracing::info!(node = id, "node drained: removing it from the cluster");
            self.meta()
                .raft
                .client_write(MetaCommand::ForgetNode(id))
                .await
                .map_err(raft_err(format!("forgetting node {id}")))?;
            if is_member {
                self.remove_meta_member(id).await?;
            }
        }
        for id in plan.remove {
            self.remove_meta_member(id).await?;
        }
        Ok(())
    }

    async fn remove_meta_member(&self, id: u64) -> Result<(), ControlError> {
        self.meta()
            .raft
            .change_membership(ChangeMembers::RemoveNodes([id].into()), false)
            .await
            .map_err(raft_err(format!(
                "removing node {id} from the metadata group"
            )))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::NodeMeta;

    fn node(id: u64, zone: &str, draining: bool) -> NodeMeta {
        NodeMeta {
            id,
            zone: zone.into(),
            addr: format!("127.0.0.1:{}", 7500 + id),
            peer_addr: format!("127.0.0.1:{}", 7600 + id),
            draining,
        }
    }

    fn catalog(nodes: &[NodeMeta]) -> Catalog {
        let mut c = Catalog::default();
        for n in nodes {
            c.nodes.insert(n.id, n.clone());
        }
        c
    }

    fn set(ids: &[u64]) -> BTreeSet<u64> {
        ids.iter().copied().collect()
    }

    #[test]
    fn a_new_active_node_joins_as_a_learner_and_nothing_else_changes() {
        let c = catalog(&[
            node(1, "a", false),
            node(2, "b", false),
            node(4, "c", false),
        ]);
        let p = plan(&c, &set(&[1, 2]), &set(&[1, 2]));
        assert_eq!(p.add_learners, vec![(4, "127.0.0.1:7604".to_string())]);
        assert_eq!(p.replace_voters, None);
        assert!(p.forget.is_empty() && p.remove.is_empty());
    }

    #[test]
    fn a_draining_voter_is_replaced_by_a_member_of_another_zone_first() {
        // Voters 1 (a), 2 (b), 3 (c, draining); members 4 (a) and 5 (c).
        let c = catalog(&[
            node(1, "a", false),
            node(2, "b", false),
            node(3, "c", true),
            node(4, "a", false),
            node(5, "c", false),
        ]);
        let p = plan(&c, &set(&[1, 2, 3]), &set(&[1, 2, 3, 4, 5]));
        // 5 is in zone c, which no remaining voter covers; 4 is not chosen
        // although its id is lower.
        assert_eq!(p.replace_voters, Some(set(&[1, 2, 5])));
        assert!(p.forget.is_empty(), "one change at a time: {p:?}");
    }

    #[test]
    fn without_a_replacement_a_draining_voter_is_dropped_from_the_voters() {
        let c = catalog(&[node(1, "a", false), node(2, "b", true)]);
        let p = plan(&c, &set(&[1, 2]), &set(&[1, 2]));
        // No active member to take its place: the voter set shrinks rather
        // than keep a node that is leaving; it is forgotten in a later round.
        assert_eq!(p.replace_voters, Some(set(&[1])));
        assert!(p.forget.is_empty());
        let p = plan(&c, &set(&[1]), &set(&[1, 2]));
        assert_eq!(p.forget, vec![(2, true)]);
    }

    #[test]
    fn a_drained_node_holding_nothing_is_forgotten_then_removed() {
        let c = catalog(&[node(1, "a", false), node(2, "b", false), node(3, "c", true)]);
        let p = plan(&c, &set(&[1, 2]), &set(&[1, 2, 3]));
        assert_eq!(p.forget, vec![(3, true)]);
        // Already out of the group: forgotten only.
        let p = plan(&c, &set(&[1, 2]), &set(&[1, 2]));
        assert_eq!(p.forget, vec![(3, false)]);
    }

    #[test]
    fn a_forgotten_member_whose_removal_did_not_finish_is_removed() {
        let mut c = catalog(&[node(1, "a", false), node(2, "b", false)]);
        c.forgotten.insert(3);
        let p = plan(&c, &set(&[1, 2]), &set(&[1, 2, 3]));
        assert_eq!(p.remove, vec![3]);
        assert!(p.add_learners.is_empty() && p.forget.is_empty());
    }
}
