//! Tests of the Raft network over real QUIC with mutual TLS on 127.0.0.1:
//! a three-node group that replicates, loses its leader to a crash, fails
//! over and takes the crashed node back, and the peer endpoint's refusal of
//! clients without a cluster certificate, and of cluster certificates that
//! name no member (`network_identity_tests.rs`).
//!
//! Each node runs on its own Tokio runtime over its own simulated disk
//! (`SimFs`), so a crash is a crash: the runtime is shut down, which drops
//! every task of the node where it stands (Raft core, replication, storage
//! callbacks, the QUIC endpoint: nothing is shut down gracefully, no peer
//! is told), then the disk loses power and keeps only what was fsynced.

use super::*;
use crate::log::segment::SegmentLogOptions;
use crate::raft::command::{AppendCmd, ShardCommand, ShardResponse};
use crate::raft::log_store::LogStore;
use crate::raft::peer::{serve_peers, GroupRegistry, PeerAccess, STATUS_BAD_REQUEST};
use crate::raft::shard::ShardState;
use crate::raft::sm::GroupSm;
use crate::raft::types::{Entry, ShardRaft, ShardTypes, Vote};
use bytes::Bytes;
use openraft::storage::RaftLogStorage;
use openraft::{ServerState, SnapshotMeta};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use strata_client::tls::{peer_client_config, peer_server_config, DevPki, PEER_ALPN};
use strata_runtime::identity::Identity;
use strata_schema::frame;
use strata_segment_log::sim::SimFs;
use tokio::sync::watch;

const GROUP: &str = "s/0";
const DEADLINE: Duration = Duration::from_secs(10);
/// A restarted node catches up once its peers' connections to the crashed
/// one are gone (QUIC idle timeout, 5 s) and they reconnect.
const CATCH_UP_DEADLINE: Duration = Duration::from_secs(30);
/// Where a node keeps the group on its disk.
const GROUP_DIR: &str = "/data/groups/s-0";

/// The initial members of the test group: the `peers` of every node.
const SEEDS: [NodeId; 3] = [1, 2, 3];

/// The shard groups open on a test node (it has no metadata group) and the
/// node ids its catalog would name.
#[derive(Default)]
struct Registry(Mutex<HashMap<String, ShardRaft>>, Mutex<BTreeSet<NodeId>>);

impl GroupRegistry for Registry {
    fn meta_raft(&self) -> Option<crate::raft::types::MetaRaft> {
        None
    }

    fn shard_raft(&self, group: &str) -> Option<ShardRaft> {
        self.0.lock().unwrap().get(group).cloned()
    }

    fn members(&self) -> BTreeSet<NodeId> {
        self.1.lock().unwrap().clone()
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

/// Node `id`'s peer endpoint on `bind` with its own peer certificate, node
/// identities enforced (initial members [`SEEDS`]), its tasks on the
/// current runtime.
fn start_peer(pki: &DevPki, id: NodeId, bind: SocketAddr) -> Peer {
    let me = pki.peer(id).unwrap();
    let access = PeerAccess::for_node(id, Some(id), SEEDS.to_vec()).unwrap();
    start_peer_as(pki, &me, access, bind)
}

/// A peer endpoint presenting `me`, serving callers as `access` says.
fn start_peer_as(pki: &DevPki, me: &Identity, access: PeerAccess, bind: SocketAddr) -> Peer {
    let cfg = peer_server_config(&me.cert, &me.key, &pki.ca).unwrap();
    let endpoint = quinn::Endpoint::server(cfg, bind)
        .unwrap_or_else(|e| panic!("peer endpoint on {bind}: {e}"));
    let addr = endpoint.local_addr().unwrap();
    let client_cfg = peer_client_config(&me.cert, &me.key, &pki.ca).unwrap();
    let pool = PeerPool::new(endpoint.clone(), client_cfg);
    let registry = Arc::new(Registry::default());
    let (shutdown, rx) = watch::channel(false);
    let server = tokio::spawn(serve_peers(endpoint, registry.clone(), access, rx));
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

/// A member of the test group: a node with one shard group, on its own
/// runtime and disk.
struct Member {
    id: NodeId,
    runtime: tokio::runtime::Runtime,
    disk: SimFs,
    peer: Peer,
    raft: ShardRaft,
    sm: GroupSm<ShardState>,
    log: LogStore<ShardTypes>,
}

/// What is left of a crashed member: its identity, address and disk.
struct Crashed {
    id: NodeId,
    addr: SocketAddr,
    disk: SimFs,
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

/// Starts node `id` on `disk` (empty, or what a crash left), its peer
/// endpoint on `bind`.
async fn start_member(id: NodeId, pki: &DevPki, bind: SocketAddr, disk: SimFs) -> Member {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(format!("node-{id}"))
        .enable_all()
        .build()
        .unwrap();
    let peer = {
        let _in_node = runtime.enter();
        start_peer(pki, id, bind)
    };
    let dir = Path::new(GROUP_DIR);
    let log =
        LogStore::<ShardTypes>::open_in(disk.shared(), dir, SegmentLogOptions::default()).unwrap();
    let sm = GroupSm::<ShardState>::open_in(disk.shared(), dir).unwrap();
    let network = QuicNetwork::new(GROUP, peer.pool.clone());
    // Raft::new spawns the group's tasks on the runtime it runs on.
    let raft = runtime
        .spawn(ShardRaft::new(
            id,
            raft_config(),
            network,
            log.clone(),
            sm.clone(),
        ))
        .await
        .unwrap()
        .unwrap();
    peer.registry
        .0
        .lock()
        .unwrap()
        .insert(GROUP.into(), raft.clone());
    Member {
        id,
        runtime,
        disk,
        peer,
        raft,
        sm,
        log,
    }
}

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

impl Member {
    /// Stops the group and the node's peer endpoint gracefully.
    async fn stop(self) {
        self.raft.shutdown().await.unwrap();
        self.peer.stop().await;
        shut_down(self.runtime).await;
    }

    /// Crashes the node (module documentation): its runtime stops first, so
    /// no task of it runs again, not even to close a connection; then its
    /// disk loses power.
    async fn crash(self) -> Crashed {
        let Member {
            id,
            runtime,
            disk,
            peer,
            ..
        } = self;
        let addr = peer.addr;
        shut_down(runtime).await;
        disk.crash();
        Crashed { id, addr, disk }
    }

    /// Every entry of the node's log.
    fn entries(&self) -> Vec<Entry<ShardTypes>> {
        self.log.read_entries(0, u64::MAX, usize::MAX).unwrap()
    }

    /// Waits until the state machine holds `want` records.
    async fn wait_records(&self, want: u64) {
        self.wait_records_within(want, DEADLINE).await;
    }

    async fn wait_records_within(&self, want: u64, deadline: Duration) {
        let mut applied = self.sm.subscribe();
        tokio::time::timeout(deadline, async {
            while self.sm.read(|s| s.next_offset) < want {
                applied.changed().await.unwrap();
            }
        })
        .await
        .unwrap_or_else(|_| panic!("node {} did not apply {want} records", self.id));
        assert_eq!(self.sm.read(|s| s.next_offset), want, "node {}", self.id);
    }
}

/// Drops every task of a node's runtime. Blocking tasks (storage I/O) may
/// finish what they are doing, as a disk write in flight may; they are waited
/// for, so none touches the disk after its crash.
async fn shut_down(runtime: tokio::runtime::Runtime) {
    tokio::task::spawn_blocking(move || runtime.shutdown_timeout(DEADLINE))
        .await
        .unwrap();
}

fn append(seq: u64) -> ShardCommand {
    ShardCommand::Append(AppendCmd {
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
                    matches!(resp.data, ShardResponse::Appended { .. }),
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
        members.push(start_member(id, &pki, any_port(), SimFs::new()).await);
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
    let vote_at_crash = victim.raft.metrics().borrow().vote;
    let killed = Instant::now();
    let crashed = victim.crash().await;
    eprintln!("leader crashed in {:?}", killed.elapsed());

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
    let group_log = leader.entries();

    // What the crashed leader's disk kept: the vote it led with, and a
    // prefix of the group's log (all of it was committed; what was not
    // fsynced is gone, nothing is garbage).
    let kept = LogStore::<ShardTypes>::open_in(
        crashed.disk.shared(),
        Path::new(GROUP_DIR),
        SegmentLogOptions::default(),
    )
    .unwrap();
    let vote = kept.clone().read_vote().await.unwrap();
    assert_eq!(
        vote.map(|v| v.leader_id),
        Some(vote_at_crash.leader_id),
        "the vote node {old} led with (term {term_at_kill}) survives its crash"
    );
    let kept_log = kept.read_entries(0, u64::MAX, usize::MAX).unwrap();
    assert!(
        group_log.starts_with(&kept_log),
        "node {old}'s log after the crash ({} entries) is not a prefix of the group's ({})",
        kept_log.len(),
        group_log.len()
    );
    drop(kept);

    // It comes back on its address and catches up: the same log as the
    // leader's, every record applied once.
    let restarted = start_member(crashed.id, &pki, crashed.addr, crashed.disk).await;
    restarted.wait_records_within(21, CATCH_UP_DEADLINE).await;
    // The group may have moved on meanwhile (a new term's blank entry, if
    // the restarted node's election timeout ran out before the leader's
    // first append reached it): the logs agree wherever both have entries.
    let log = restarted.entries();
    let common = log.len().min(group_log.len());
    assert_eq!(
        log[..common],
        group_log[..common],
        "node {old}'s log after it caught up ({} entries; the group had {})",
        log.len(),
        group_log.len()
    );
    eprintln!(
        "node {old} restarted from {} entries and caught up after {:?}",
        kept_log.len(),
        killed.elapsed()
    );
    members.push(restarted);

    let teardown = Instant::now();
    for m in members {
        m.stop().await;
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
    let mut client = RaftNetworkFactory::<ShardTypes>::new_client(
        &mut QuicNetwork::new(group, pool.clone()),
        1,
        &BasicNode::new(addr.to_string()),
    )
    .await;
    let req = VoteRequest {
        vote: Vote::new(1, 9),
        last_log_id: None,
    };
    RaftNetwork::<ShardTypes>::vote(&mut client, req, RPCOption::new(Duration::from_secs(5))).await
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
    let member = start_member(1, &pki, any_port(), SimFs::new()).await;
    let addr = member.peer.addr;

    // Control: a member's certificate gets answers, also for bad requests.
    let two = pki.peer(2).unwrap();
    let good = client_pool(peer_client_config(&two.cert, &two.key, &pki.ca).unwrap());
    let resp = vote_via(&good, GROUP, addr)
        .await
        .expect("vote with a cluster certificate");
    assert!(resp.vote_granted);
    let snap = InstallSnapshotRequest::<ShardTypes> {
        vote: Vote::new(0, 1),
        meta: SnapshotMeta::default(),
        offset: 0,
        data: vec![1, 2, 3],
        done: false,
    };
    let resp = RaftNetworkFactory::<ShardTypes>::new_client(
        &mut QuicNetwork::new(GROUP, good.clone()),
        1,
        &BasicNode::new(addr.to_string()),
    )
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
    for garbage in [&[99u8, 0, 0][..], &[1, 3, 0, b's', b'/', b'0', 7]] {
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
    let stranger_id = other.peer(2).unwrap();
    let foreign =
        client_pool(peer_client_config(&stranger_id.cert, &stranger_id.key, &pki.ca).unwrap());
    let res = vote_via(&foreign, GROUP, addr).await;
    assert!(matches!(res, Err(RPCError::Unreachable(_))), "{res:?}");

    // And a client does not talk to a server of another CA.
    let stranger = start_peer(&other, 1, any_port());
    let res = vote_via(&good, GROUP, stranger.addr).await;
    assert!(matches!(res, Err(RPCError::Unreachable(_))), "{res:?}");

    // The refused clients changed nothing: the vote is still the control's.
    let vote = member.raft.metrics().borrow().vote;
    assert_eq!(vote, Vote::new(1, 9));
    stranger.stop().await;
    member.stop().await;
}

/// Heartbeats of many groups to one peer travel in a few batches, each
/// request answered as if sent alone; a vote joins a forming batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_requests_to_one_peer_travel_in_batches() {
    use crate::raft::peer::{decode_reply, encode_request, PeerReply, PeerRequest};
    let tmp = tempfile::tempdir().unwrap();
    let (pki, _) = DevPki::ensure(&tmp.path().join("tls")).unwrap();
    let member = start_member(1, &pki, any_port(), SimFs::new()).await;
    let addr = member.peer.addr;
    let two = pki.peer(2).unwrap();
    let pool = client_pool(peer_client_config(&two.cert, &two.key, &pki.ca).unwrap());
    const GROUPS: usize = 40;
    let mut calls = Vec::new();
    for i in 0..GROUPS {
        let frame = encode_request(&format!("s/{i}"), &PeerRequest::<ShardTypes>::Ping).unwrap();
        let pool = pool.clone();
        calls.push(tokio::spawn(async move {
            pool.call_coalesced(addr, frame, DEADLINE, true).await
        }));
    }
    let vote = vote_via(&pool, GROUP, addr);
    let unknown = vote_via(&pool, "nope/0", addr);
    let (vote, unknown) = tokio::join!(vote, unknown);
    assert!(vote.expect("the vote is answered").vote_granted);
    assert!(
        matches!(unknown, Err(RPCError::Unreachable(_))),
        "{unknown:?}"
    );
    for call in calls {
        let body = call.await.unwrap().expect("each ping is answered");
        let reply = decode_reply::<Result<(), String>>(&body).unwrap();
        assert!(matches!(reply, PeerReply::Ok(Ok(()))), "{reply:?}");
    }
    let batches = pool.batches_sent();
    assert!(
        (1..GROUPS as u64).contains(&batches),
        "{GROUPS} heartbeats went in {batches} batches"
    );
    member.stop().await;
}

#[path = "network_identity_tests.rs"]
mod identity;

#[test]
fn a_bad_request_to_a_whole_batch_means_the_peer_takes_none() {
    assert!(refuses_batches(b"\x02unknown peer RPC kind 8"));
    assert!(refuses_batches(b"\x02group id is not UTF-8"));
    assert!(!refuses_batches(b"\x03not a member"));
    assert!(!refuses_batches(b""));
}
