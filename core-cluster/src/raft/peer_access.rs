//! Who may use the peer port: core nodes that are members of the cluster,
//! known by the node id their peer certificate names (SAN URI
//! `strata:node/ID`, `strata_runtime::identity::node_id_of`).
//!
//! The TLS layer has already checked that the caller's certificate chains to
//! the cluster CA. Here, per request (membership changes while a connection
//! is open), the caller's node id must be a member: a node of the metadata
//! catalog (`AddNode` registers a node before it joins, so a node being
//! added is one) or one of the configured `peers` (the initial cluster,
//! which votes before the catalog names anybody). Everything the port
//! serves is refused otherwise: Raft votes, appends and snapshots, MetaWrite
//! and Elect alike.
//!
//! Two exceptions, both decided by [`PeerAccess::for_node`] /
//! [`PeerAccess::check`]:
//! - **Legacy shared certificate.** When this node's own peer certificate
//!   names no node id (one certificate for every node, as before peer
//!   identities), callers cannot be told apart: any certificate of the
//!   cluster CA is served, and the daemon warns at start.
//! - **A joining node** (not among `peers`) whose own catalog does not name
//!   it yet has not received the catalog: it cannot know the members, so it
//!   serves any node certificate until the catalog reaches it. It holds no
//!   data before then.

use crate::raft::types::NodeId;
use std::collections::BTreeSet;

/// Why the peer port refused a caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerRefusal {
    #[error("the peer certificate names no node id (SAN URI strata:node/<ID>): only core nodes, each with a peer certificate naming its id, may use the peer port")]
    NoNodeId,
    #[error("node {0} is not a member of this cluster (neither in the metadata catalog nor in `peers`): its peer requests are refused")]
    NotMember(NodeId),
}

/// Why a node cannot serve its peer port with its peer certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerIdentityError {
    #[error("the peer certificate names node {named}, but this is node {node_id}: give each node the peer certificate issued for its id (peer_cert/peer_key)")]
    WrongNode { named: NodeId, node_id: NodeId },
}

/// Whether a caller of node id `node_id` may use the peer port, given the
/// catalog's nodes `members` and the configured `peers` ids `seeds`.
pub fn peer_allowed(
    node_id: Option<NodeId>,
    members: &BTreeSet<NodeId>,
    seeds: &[NodeId],
) -> Result<(), PeerRefusal> {
    let id = node_id.ok_or(PeerRefusal::NoNodeId)?;
    if members.contains(&id) || seeds.contains(&id) {
        Ok(())
    } else {
        Err(PeerRefusal::NotMember(id))
    }
}

/// The peer port's access policy of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerAccess {
    /// Any certificate of the cluster CA: this node's peer certificate
    /// names no node id (a legacy certificate shared by every node).
    AnyClusterCertificate,
    /// Node identities enforced: callers must name a member.
    Members {
        /// This node's id.
        me: NodeId,
        /// Ids of the configured `peers`.
        seeds: Vec<NodeId>,
    },
}

impl PeerAccess {
    /// The policy of node `node_id` whose peer certificate names
    /// `cert_node_id`; a certificate of another node is an error.
    pub fn for_node(
        node_id: NodeId,
        cert_node_id: Option<NodeId>,
        seeds: Vec<NodeId>,
    ) -> Result<Self, PeerIdentityError> {
        match cert_node_id {
            None => Ok(Self::AnyClusterCertificate),
            Some(named) if named != node_id => Err(PeerIdentityError::WrongNode { named, node_id }),
            Some(_) => Ok(Self::Members { me: node_id, seeds }),
        }
    }

    /// Whether node identities are enforced.
    pub fn enforced(&self) -> bool {
        matches!(self, Self::Members { .. })
    }

    /// Whether a caller of node id `caller` may send a request now, with the
    /// catalog naming `members`.
    pub fn check(
        &self,
        caller: Option<NodeId>,
        members: &BTreeSet<NodeId>,
    ) -> Result<(), PeerRefusal> {
        match self {
            Self::AnyClusterCertificate => Ok(()),
            Self::Members { me, seeds } => {
                let catalog_pending = !members.contains(me) && !seeds.contains(me);
                if catalog_pending {
                    caller.map(|_| ()).ok_or(PeerRefusal::NoNodeId)
                } else {
                    peer_allowed(caller, members, seeds)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    #[test]
    fn members_and_seeds_are_allowed_and_nobody_else() {
        let members = set(&[1, 2, 3, 4]);
        let seeds = [1, 2, 3];
        for id in [1, 2, 3, 4] {
            assert_eq!(peer_allowed(Some(id), &members, &seeds), Ok(()), "{id}");
        }
        assert_eq!(
            peer_allowed(Some(5), &members, &seeds),
            Err(PeerRefusal::NotMember(5))
        );
        assert_eq!(
            peer_allowed(None, &members, &seeds),
            Err(PeerRefusal::NoNodeId)
        );
        // Before the catalog names anybody, the initial cluster votes.
        assert_eq!(peer_allowed(Some(2), &set(&[]), &seeds), Ok(()));
        assert_eq!(
            peer_allowed(Some(4), &set(&[]), &seeds),
            Err(PeerRefusal::NotMember(4))
        );
        // A node added later (in the catalog only) is a member.
        assert_eq!(peer_allowed(Some(7), &set(&[7]), &[]), Ok(()));
    }

    #[test]
    fn refusals_say_what_is_wrong() {
        let e = PeerRefusal::NotMember(9).to_string();
        assert!(e.contains("node 9") && e.contains("not a member"), "{e}");
        assert!(PeerRefusal::NoNodeId.to_string().contains("strata:node/"));
    }

    #[test]
    fn the_policy_follows_this_nodes_certificate() {
        assert_eq!(
            PeerAccess::for_node(1, None, vec![1, 2, 3]),
            Ok(PeerAccess::AnyClusterCertificate)
        );
        let enforced = PeerAccess::for_node(1, Some(1), vec![1, 2, 3]).unwrap();
        assert!(enforced.enforced());
        assert_eq!(
            PeerAccess::for_node(1, Some(2), vec![1, 2, 3]),
            Err(PeerIdentityError::WrongNode {
                named: 2,
                node_id: 1
            })
        );
        // The legacy policy serves anyone the TLS layer let in.
        let legacy = PeerAccess::AnyClusterCertificate;
        assert_eq!(legacy.check(None, &set(&[])), Ok(()));
        assert_eq!(legacy.check(Some(9), &set(&[1])), Ok(()));
    }

    #[test]
    fn enforced_access_is_decided_on_the_current_catalog() {
        let access = PeerAccess::for_node(1, Some(1), vec![1, 2, 3]).unwrap();
        let mut members = set(&[1, 2, 3]);
        assert_eq!(
            access.check(Some(4), &members),
            Err(PeerRefusal::NotMember(4))
        );
        members.insert(4); // AddNode 4
        assert_eq!(access.check(Some(4), &members), Ok(()));
        members.remove(&4); // ForgetNode 4
        assert_eq!(
            access.check(Some(4), &members),
            Err(PeerRefusal::NotMember(4))
        );
        assert_eq!(access.check(None, &members), Err(PeerRefusal::NoNodeId));
    }

    #[test]
    fn a_joining_node_serves_node_certificates_until_its_catalog_names_it() {
        // Node 5 joins a cluster whose initial members were 1, 2, 3; the
        // current leader may be node 4, added later.
        let access = PeerAccess::for_node(5, Some(5), vec![1, 2, 3]).unwrap();
        assert_eq!(access.check(Some(4), &set(&[])), Ok(()));
        assert_eq!(access.check(None, &set(&[])), Err(PeerRefusal::NoNodeId));
        // Once the catalog reached it (naming it), strict again.
        let members = set(&[2, 3, 4, 5]);
        assert_eq!(access.check(Some(4), &members), Ok(()));
        assert_eq!(
            access.check(Some(6), &members),
            Err(PeerRefusal::NotMember(6))
        );
        // An initial member never relaxes, even with an empty catalog.
        let seed = PeerAccess::for_node(1, Some(1), vec![1, 2, 3]).unwrap();
        assert_eq!(
            seed.check(Some(4), &set(&[])),
            Err(PeerRefusal::NotMember(4))
        );
    }
}
