//! Tests of the Raft network over real QUIC with mutual TLS on 127.0.0.1:
//! a three-node group that replicates and fails over, and the peer
//! endpoint's refusal of clients without a cluster certificate.

use super::*;
use crate::log::segment::SegmentLogOptions;
use crate::log::store::LogStore;
use crate::peer::{serve_peers, GroupRegistry, STATUS_BAD_REQUEST};
use crate::raft::shard::ShardState;
use crate::raft::sm::GroupSm;
use crate::raft::types::{AppendCmd, Command, CommandResponse, Raft, Vote};
use bytes::Bytes;
use openraft::{ServerState, SnapshotMeta};
use std::collections::BTreeMap;
use strata_client::tls::{peer_client_config, peer_server_config, DevPki, PEER_ALPN};
use strata_schema::frame;
use tokio::sync::watch;

const GROUP: &str = "s/0";
const DEADLINE: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Registry(Mutex<HashMap<String, Raft>>);

impl GroupRegistry for Registry {
    fn raft(&self, group: &str) -> Option<Raft> {
        self.0.lock().unwrap().get(group).cloned()
    }
}

/// One node's peer endpoint, its server loop and its connection pool.
struct Peer {
    addr: SocketAddr,
    pool: Arc<PeerPool>,
    registry: Arc<Registry>,
    shutdown: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
}

fn start_peer(pki: &DevPki) -> Peer {
    let cfg = peer_server_config(&pki.cert, &pki.key, &pki.ca).unwrap();
    let endpoint = quinn::Endpoint::server(cfg, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = endpoint.local_addr().unwrap();
    let client_cfg = peer_client_config(&pki.cert, &pki.key, &pki.ca).unwrap();
    let pool = PeerPool::new(endpoint.clone(), client_cfg);
    let registry = Arc::new(Registry::default());
    let (shutdown, rx) = watch::channel(false);
    let server = tokio::spawn(serve_peers(endpoint, registry.clone(), rx));
    Peer {
        addr,
        pool,
        registry,
        shutdown,
        server,
    }
}

impl Peer {
    async fn stop(self) {
        self.shutdown.send(true).unwrap();
        tokio::time::timeout(DEADLINE, self.server)
            .await
            .expect("peer server stops")
            .unwrap();
    }
}

/// A member of the test group: a node with one shard group.
struct Member {
    id: NodeId,
    peer: Peer,
    raft: Raft,
    sm: GroupSm<ShardState>,
    _dir: tempfile::TempDir,
}

fn raft_config() -> Arc<openraft::Config> {
    let c = openraft::Config {
        cluster_name: "network-test".into(),
        heartbeat_interval: 100,
        election_timeout_min: 300,
        election_timeout_max: 600,
        ..Default::default()
    };
    Arc::new(c.validate().unwrap())
}

async fn start_member(id: NodeId, pki: &DevPki) -> Member {
    let peer = start_peer(pki);
    let dir = tempfile::tempdir().unwrap();
    let log = LogStore::open(dir.path(), SegmentLogOptions::default()).unwrap();
    let sm = GroupSm::<ShardState>::default();
    let network = QuicNetwork::new(GROUP, peer.pool.clone());
    let raft = Raft::new(id, raft_config(), network, log, sm.clone())
        .await
        .unwrap();
    peer.registry
        .0
        .lock()
        .unwrap()
        .insert(GROUP.into(), raft.clone());
    Member {
        id,
        peer,
        raft,
        sm,
        _dir: dir,
    }
}

impl Member {
    /// Stops the group and the node's peer endpoint, as a crashed node.
    async fn kill(self) {
        self.raft.shutdown().await.unwrap();
        self.peer.stop().await;
    }

    /// Waits until the state machine holds `want` records.
    async fn wait_records(&self, want: u64) {
        let mut applied = self.sm.subscribe();
        tokio::time::timeout(DEADLINE, async {
            while self.sm.read(|s| s.next_offset) < want {
                applied.changed().await.unwrap();
            }
        })
        .await
        .unwrap_or_else(|_| panic!("node {} did not apply {want} records", self.id));
        assert_eq!(self.sm.read(|s| s.next_offset), want, "node {}", self.id);
    }
}

fn append(seq: u64) -> Command {
    Command::Append(AppendCmd {
        producer_id: 1,
        first_seq: seq,
        seq_deltas: None,
        max_timestamp_ms: 0,
        records: 1,
        batch: Bytes::from(format!("record {seq}")),
    })
}

/// The leader all of `members` agree on, waiting for one that is not `not`.
async fn leader_of<'a>(members: &'a [&'a Member], not: Option<NodeId>) -> &'a Member {
    let first = members[0];
    let m = first
        .raft
        .wait(Some(DEADLINE))
        .metrics(
            |m| m.current_leader.is_some_and(|l| Some(l) != not),
            "a new leader",
        )
        .await
        .expect("a leader is elected");
    let id = m.current_leader.unwrap();
    let leader = members
        .iter()
        .find(|x| x.id == id)
        .expect("the leader is a live member");
    leader
        .raft
        .wait(Some(DEADLINE))
        .state(ServerState::Leader, "leader state")
        .await
        .unwrap();
    leader
}

/// Writes record `seq` through the leader, retrying (the shard drops
/// duplicates) until it commits.
async fn write(members: &[&Member], seq: u64) {
    let give_up = tokio::time::Instant::now() + DEADLINE;
    loop {
        let leader = leader_of(members, None).await;
        let mut metrics = leader.raft.metrics();
        match leader.raft.client_write(append(seq)).await {
            Ok(resp) => {
                assert!(
                    matches!(resp.data, CommandResponse::Appended { .. }),
                    "{:?}",
                    resp.data
                );
                return;
            }
            Err(e) => {
                assert!(tokio::time::Instant::now() < give_up, "write {seq}: {e}");
                // Wait for the leadership to change, not a fixed time.
                let _ = tokio::time::timeout(Duration::from_secs(1), metrics.changed()).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_and_fail_over() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let (pki, _) = DevPki::ensure(&tmp.path().join("tls")).unwrap();
    let mut members = Vec::new();
    for id in 1..=3 {
        members.push(start_member(id, &pki).await);
    }
    let voters: BTreeMap<NodeId, BasicNode> = members
        .iter()
        .map(|m| (m.id, BasicNode::new(m.peer.addr.to_string())))
        .collect();
    members[0].raft.initialize(voters).await.unwrap();

    let all: Vec<&Member> = members.iter().collect();
    for seq in 0..20 {
        write(&all, seq).await;
    }
    for m in &members {
        m.wait_records(20).await;
    }
    eprintln!(
        "elected and replicated 20 writes in {:?}",
        started.elapsed()
    );

    let old = leader_of(&all, None).await.id;
    // The newest term any node has seen when the leader dies: a leader
    // elected after the kill holds a vote of a later term.
    let term_at_kill = members
        .iter()
        .map(|m| m.raft.metrics().borrow().current_term)
        .max()
        .unwrap();
    let victim = members.iter().position(|m| m.id == old).unwrap();
    let victim = members.remove(victim);
    let killed = Instant::now();
    victim.kill().await;
    eprintln!("leader stopped in {:?}", killed.elapsed());

    let survivors: Vec<&Member> = members.iter().collect();
    let leader = leader_of(&survivors, Some(old)).await;
    let new = leader.id;
    eprintln!("node {new} elected after {:?}", killed.elapsed());
    let vote = leader.raft.metrics().borrow().vote;
    assert!(
        vote.leader_id.term > term_at_kill,
        "node {new} leads with vote {vote}, not of a term after {term_at_kill} (the term of the kill)"
    );
    assert_eq!(
        (vote.leader_id.voted_for(), vote.is_committed()),
        (Some(new), true),
        "the new leader's vote {vote} is its own, granted by a quorum"
    );
    write(&survivors, 20).await;
    eprintln!(
        "leader {old} killed; node {new} leads and committed a write after {:?}",
        killed.elapsed()
    );
    for m in &members {
        m.wait_records(21).await;
    }
    let teardown = Instant::now();
    for m in members {
        m.kill().await;
    }
    eprintln!("teardown in {:?}", teardown.elapsed());
}

/// A pool on a fresh client endpoint with `cfg`.
fn client_pool(cfg: quinn::ClientConfig) -> Arc<PeerPool> {
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    PeerPool::new(endpoint, cfg)
}

async fn vote_via(
    pool: &Arc<PeerPool>,
    group: &str,
    addr: SocketAddr,
) -> Result<VoteResponse<NodeId>, RpcErr> {
    let mut client = QuicNetwork::new(group, pool.clone())
        .new_client(1, &BasicNode::new(addr.to_string()))
        .await;
    let req = VoteRequest {
        vote: Vote::new(1, 9),
        last_log_id: None,
    };
    client
        .vote(req, RPCOption::new(Duration::from_secs(5)))
        .await
}

fn no_client_cert(ca: &std::path::Path) -> quinn::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for c in strata_client::tls::load_certs(ca).unwrap() {
        roots.add(c).unwrap();
    }
    let mut tls = rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![PEER_ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    quinn::ClientConfig::new(Arc::new(crypto))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_endpoint_refuses_clients_without_a_cluster_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let (pki, _) = DevPki::ensure(&tmp.path().join("tls")).unwrap();
    let (other, _) = DevPki::ensure(&tmp.path().join("other")).unwrap();
    let member = start_member(1, &pki).await;
    let addr = member.peer.addr;

    // Control: a cluster certificate gets answers, also for bad requests.
    let good = client_pool(peer_client_config(&pki.cert, &pki.key, &pki.ca).unwrap());
    let resp = vote_via(&good, GROUP, addr)
        .await
        .expect("vote with a cluster certificate");
    assert!(resp.vote_granted);
    let snap = InstallSnapshotRequest::<TypeConfig> {
        vote: Vote::new(0, 1),
        meta: SnapshotMeta::default(),
        offset: 0,
        data: vec![1, 2, 3],
        done: false,
    };
    let resp = QuicNetwork::new(GROUP, good.clone())
        .new_client(1, &BasicNode::new(addr.to_string()))
        .await
        .install_snapshot(snap, RPCOption::new(Duration::from_secs(5)))
        .await
        .expect("snapshot RPC with a stale vote is answered");
    assert_eq!(
        resp.vote,
        Vote::new(1, 9),
        "the follower answers with its vote"
    );
    let unknown = vote_via(&good, "nope/0", addr).await;
    assert!(
        matches!(unknown, Err(RPCError::Unreachable(_))),
        "{unknown:?}"
    );
    for garbage in [&[9u8, 0, 0][..], &[1, 3, 0, b's', b'/', b'0', 7]] {
        let mut req = frame::header(garbage.len()).to_vec();
        req.extend_from_slice(garbage);
        let reply = good.call(addr, &req, DEADLINE).await.unwrap();
        assert_eq!(reply[0], STATUS_BAD_REQUEST, "{garbage:?}");
    }
    let oversized = frame::header(FRAME_BYTES_MAX + 1);
    let reply = good.call(addr, &oversized, DEADLINE).await.unwrap();
    assert_eq!(reply[0], STATUS_BAD_REQUEST);

    // No client certificate, and a certificate of another CA: refused.
    let none = client_pool(no_client_cert(&pki.ca));
    let res = vote_via(&none, GROUP, addr).await;
    assert!(matches!(res, Err(RPCError::Unreachable(_))), "{res:?}");
    let foreign = client_pool(peer_client_config(&other.cert, &other.key, &pki.ca).unwrap());
    let res = vote_via(&foreign, GROUP, addr).await;
    assert!(matches!(res, Err(RPCError::Unreachable(_))), "{res:?}");

    // And a client does not talk to a server of another CA.
    let stranger = start_peer(&other);
    let res = vote_via(&good, GROUP, stranger.addr).await;
    assert!(matches!(res, Err(RPCError::Unreachable(_))), "{res:?}");

    // The refused clients changed nothing: the vote is still the control's.
    let vote = member.raft.metrics().borrow().vote;
    assert_eq!(vote, Vote::new(1, 9));
    stranger.stop().await;
    member.kill().await;
}
