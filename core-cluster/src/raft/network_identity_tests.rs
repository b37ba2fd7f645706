//! Peer identities over real QUIC on 127.0.0.1: a certificate of the cluster
//! CA is not enough to use the peer port. A node certificate that names a
//! node which is not a member, or a certificate that names no node, gets
//! every request refused (vote, append, snapshot, MetaWrite, Elect), and the
//! node's Raft state does not move; a member's certificate is served.
//! Membership is looked at per request, on the same connection.

use super::*;
use crate::catalog::MetaCommand;
use crate::raft::peer::{encode_request, PeerRequest, META_GROUP, STATUS_FORBIDDEN};
use crate::raft::types::MetaTypes;
use openraft::raft::AppendEntriesRequest;

/// One request of every kind the peer port serves, as whole frames.
fn every_request() -> Vec<(&'static str, Vec<u8>)> {
    let vote = VoteRequest {
        vote: Vote::new(7, 7),
        last_log_id: None,
    };
    let append = AppendEntriesRequest::<ShardTypes> {
        vote: Vote::new_committed(7, 7),
        prev_log_id: None,
        leader_commit: None,
        entries: Vec::new(),
    };
    let snapshot = InstallSnapshotRequest::<ShardTypes> {
        vote: Vote::new_committed(7, 7),
        meta: SnapshotMeta::default(),
        offset: 0,
        data: vec![1, 2, 3],
        done: false,
    };
    let shard = |r: PeerRequest<ShardTypes>| encode_request(GROUP, &r).unwrap();
    vec![
        ("vote", shard(PeerRequest::Vote(vote))),
        ("append", shard(PeerRequest::Append(append))),
        ("snapshot", shard(PeerRequest::Snapshot(snapshot))),
        ("elect", shard(PeerRequest::Elect)),
        (
            "meta write",
            encode_request(
                META_GROUP,
                &PeerRequest::<MetaTypes>::MetaWrite(MetaCommand::DrainNode(1)),
            )
            .unwrap(),
        ),
    ]
}

/// The reply status and message of each request of [`every_request`].
async fn statuses(pool: &Arc<PeerPool>, addr: SocketAddr) -> Vec<(&'static str, u8, String)> {
    let mut out = Vec::new();
    for (what, req) in every_request() {
        let reply = pool.call(addr, &req, DEADLINE).await.unwrap();
        let text = String::from_utf8_lossy(&reply[1..]).into_owned();
        out.push((what, reply[0], text));
    }
    out
}

fn pool_of(pki: &DevPki, id: &Identity) -> Arc<PeerPool> {
    client_pool(peer_client_config(&id.cert, &id.key, &pki.ca).unwrap())
}

fn assert_all_refused(got: &[(&str, u8, String)], because: &str) {
    assert_eq!(got.len(), 5);
    for (what, status, text) in got {
        assert_eq!(*status, STATUS_FORBIDDEN, "{what}: {text}");
        assert!(text.contains(because), "{what}: {text:?} lacks {because:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_certificates_naming_a_member_may_vote_append_or_write_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let (pki, _) = DevPki::ensure(&tmp.path().join("tls")).unwrap();
    let member = start_member(1, &pki, any_port(), SimFs::new()).await;
    let addr = member.peer.addr;
    let vote_before = member.raft.metrics().borrow().vote;

    // Node 7's certificate is signed by the cluster CA, but node 7 is not
    // a member: every kind of request is refused, naming the reason.
    let seven = pool_of(&pki, &pki.peer(7).unwrap());
    assert_all_refused(&statuses(&seven, addr).await, "node 7 is not a member");
    // Through the Raft network and the control calls, too.
    let res = vote_via(&seven, GROUP, addr).await;
    assert!(
        matches!(&res, Err(RPCError::Unreachable(u)) if u.to_string().contains("refused this node")),
        "{res:?}"
    );
    let res = seven
        .meta_write(addr, MetaCommand::DrainNode(1), DEADLINE)
        .await;
    assert!(
        matches!(&res, Err(PeerCallError::Refused(m)) if m.contains("not a member")),
        "{res:?}"
    );
    let res = seven.elect(addr, GROUP, DEADLINE).await;
    assert!(
        matches!(&res, Err(PeerCallError::Refused(m)) if m.contains("not a member")),
        "{res:?}"
    );

    // Certificates of the cluster CA that name no node: a client identity
    // and the legacy node certificate shared by every node.
    for id in [
        &pki.admin,
        &Identity {
            cert: pki.cert.clone(),
            key: pki.key.clone(),
        },
    ] {
        let pool = pool_of(&pki, id);
        assert_all_refused(&statuses(&pool, addr).await, "names no node id");
    }

    // The refused requests moved nothing: no vote was granted.
    assert_eq!(member.raft.metrics().borrow().vote, vote_before);

    // A member (an initial one, from `peers`) is served: Raft answers
    // (MetaWrite: no metadata group on this test node, which is no refusal).
    let two = pool_of(&pki, &pki.peer(2).unwrap());
    let resp = vote_via(&two, GROUP, addr).await.expect("a member votes");
    assert!(resp.vote_granted);
    assert_ne!(member.raft.metrics().borrow().vote, vote_before);
    for (what, status, text) in statuses(&two, addr).await {
        assert_ne!(status, STATUS_FORBIDDEN, "{what}: {text}");
    }

    // Node 7 is added to the catalog: served on the same connection, at
    // once; removed from it: refused again.
    member.peer.registry.1.lock().unwrap().insert(7);
    for (what, status, text) in statuses(&seven, addr).await {
        assert_ne!(status, STATUS_FORBIDDEN, "{what}: {text}");
    }
    member.peer.registry.1.lock().unwrap().remove(&7);
    assert_all_refused(&statuses(&seven, addr).await, "node 7 is not a member");
    member.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_a_shared_legacy_certificate_serves_any_cluster_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let (pki, _) = DevPki::ensure(&tmp.path().join("tls")).unwrap();
    let shared = Identity {
        cert: pki.cert.clone(),
        key: pki.key.clone(),
    };
    let named = strata_runtime::tls::node_id_of_file(&shared.cert).unwrap();
    let access = PeerAccess::for_node(1, named, SEEDS.to_vec()).unwrap();
    assert!(!access.enforced());
    let peer = start_peer_as(&pki, &shared, access, any_port());
    for id in [&shared, &pki.peer(7).unwrap()] {
        let pool = pool_of(&pki, id);
        for (what, status, text) in statuses(&pool, peer.addr).await {
            assert_ne!(status, STATUS_FORBIDDEN, "{what}: {text}");
        }
    }
    peer.stop().await;
}
