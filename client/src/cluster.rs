//! Talking to a core cluster through a list of seed nodes: discovering shard
//! leaders from stream descriptions, following NOT_LEADER hints, and trying
//! other replicas when a node does not answer. Retrying a forward elsewhere is
//! safe: the core drops records it already has (exactly once).
//!
//! Reads may go to a replica in the caller's zone (`with_zone`): every replica
//! serves committed records only.

use crate::api::{self, StreamInfo};
use crate::transport::{Client, ClientError};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use strata_schema::fb::ErrorCode;

/// How long a routed call keeps trying other nodes before giving up.
const ROUTE_DEADLINE: Duration = Duration::from_secs(15);
/// Per-attempt timeout of a routed call: a dead leader must not stall failover.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
/// A hedged call ([`Cluster::to_leader_hedged`]) that has not answered
/// after this long asks the shard's other replicas too (and again every
/// period): one of them may have become the leader of a dead one.
const HEDGE_AFTER: Duration = Duration::from_millis(150);
/// After the first, the hedge asks again this often: a new leader is
/// found within this much of its election (failover measured 612-617 ms
/// with a 150 ms period, the probes landing on the round after the
/// election; docs/benchmarks.md, Failover).
const HEDGE_EVERY: Duration = Duration::from_millis(50);
/// How long a node that did not answer is passed over within one routed call.
const UNANSWERED_HOLD: Duration = Duration::from_secs(2);

pub struct Cluster {
    seeds: Vec<SocketAddr>,
    tls: quinn::ClientConfig,
    zone: Option<String>,
    clients: Mutex<HashMap<SocketAddr, Arc<Client>>>,
    streams: Mutex<HashMap<String, StreamInfo>>,
    leaders: Mutex<HashMap<(String, u32), SocketAddr>>,
}

/// Whether an error means "try another node".
fn reroutable(e: &ClientError) -> bool {
    match e {
        ClientError::Connect { .. }
        | ClientError::Connection { .. }
        | ClientError::Timeout { .. } => true,
        ClientError::Remote(r) => matches!(r.code, ErrorCode::NotLeader | ErrorCode::Unavailable),
        _ => false,
    }
}

impl Cluster {
    /// A cluster client trusting the CA in `ca`, presenting the dev admin
    /// identity when `admin.pem` lies beside the CA (a `strata dev` data
    /// directory) and no certificate otherwise: see [`Self::with_identity`].
    pub fn new(seeds: Vec<SocketAddr>, ca: &Path) -> Result<Self, ClientError> {
        Self::with_identity(
            seeds,
            ca,
            strata_runtime::identity::Identity::admin_beside(ca).as_ref(),
        )
    }

    /// A cluster client presenting `identity` (mutual TLS) to every node.
    pub fn with_identity(
        seeds: Vec<SocketAddr>,
        ca: &Path,
        identity: Option<&strata_runtime::identity::Identity>,
    ) -> Result<Self, ClientError> {
        if seeds.is_empty() {
            return Err(ClientError::Tls("no core address given".into()));
        }
        // Fails early on a bad CA or identity file.
        let tls = crate::tls::client_config(ca, identity)
            .map_err(|e| ClientError::Tls(format!("{e:#}")))?;
        Ok(Self {
            seeds,
            tls,
            zone: None,
            clients: Mutex::new(HashMap::new()),
            streams: Mutex::new(HashMap::new()),
            leaders: Mutex::new(HashMap::new()),
        })
    }

    /// Prefer replicas in `zone` for reads.
    pub fn with_zone(mut self, zone: Option<String>) -> Self {
        self.zone = zone;
        self
    }

    pub fn client(&self, addr: SocketAddr) -> Result<Arc<Client>, ClientError> {
        let mut m = self.clients.lock().expect("clients lock");
        if let Some(c) = m.get(&addr) {
            return Ok(c.clone());
        }
        let mut c = Client::with_config(addr, self.tls.clone())?;
        c.set_timeout(ATTEMPT_TIMEOUT);
        let c = Arc::new(c);
        m.insert(addr, c.clone());
        Ok(c)
    }

    /// Calls `f` on the seeds in turn until one answers; follows NOT_LEADER hints.
    pub async fn any<T, F, Fut>(&self, f: F) -> Result<T, ClientError>
    where
        F: Fn(Arc<Client>) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        self.route(self.seeds.clone(), f, false).await
    }

    /// One call of `f` on `addr`. With `others` (a hedged call), once
    /// `addr` has not answered for [`HEDGE_AFTER`], `others` are asked too,
    /// again every [`HEDGE_EVERY`] until `addr` answers: the first of them that accepts
    /// answers the call, and one that names a leader other than `addr`
    /// ends it with that NOT_LEADER (the caller follows the hint). So a
    /// killed leader costs about one election, not a whole attempt timeout.
    async fn attempt<T, F, Fut>(
        &self,
        addr: SocketAddr,
        f: &F,
        others: &[SocketAddr],
    ) -> Result<T, ClientError>
    where
        F: Fn(Arc<Client>) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let main = f(self.client(addr)?);
        if others.is_empty() {
            return main.await;
        }
        let probe = async {
            let mut pause = HEDGE_AFTER;
            loop {
                tokio::time::sleep(pause).await;
                pause = HEDGE_EVERY;
                for &other in others {
                    let Ok(c) = self.client(other) else { continue };
                    match tokio::time::timeout(HEDGE_AFTER, f(c)).await {
                        Ok(Ok(v)) => return Ok(v),
                        Ok(Err(ClientError::Remote(r)))
                            if r.code == ErrorCode::NotLeader
                                && r.leader_hint
                                    .as_deref()
                                    .and_then(|h| h.parse::<SocketAddr>().ok())
                                    .is_some_and(|h| h != addr) =>
                        {
                            return Err(ClientError::Remote(r));
                        }
                        _ => {}
                    }
                }
            }
        };
        tokio::select! {
            r = main => r,
            r = probe => r,
        }
    }

    async fn route<T, F, Fut>(
        &self,
        mut candidates: Vec<SocketAddr>,
        f: F,
        hedge: bool,
    ) -> Result<T, ClientError>
    where
        F: Fn(Arc<Client>) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let deadline = Instant::now() + ROUTE_DEADLINE;
        // Nodes that did not answer are skipped for a while (as long as any
        // other candidate remains): a dead leader costs one attempt timeout,
        // not one per pass or per stale NOT_LEADER hint; a node that was only
        // slow (busy electing) is tried again after the hold.
        let mut unanswered: Vec<SocketAddr> = Vec::new();
        let mut failed_at: HashMap<SocketAddr, Instant> = HashMap::new();
        loop {
            if candidates.is_empty() {
                candidates = self.seeds.clone();
            }
            failed_at.retain(|_, t| t.elapsed() < UNANSWERED_HOLD);
            unanswered.retain(|a| failed_at.contains_key(a));
            let mut pass: Vec<SocketAddr> = candidates
                .iter()
                .copied()
                .filter(|c| !unanswered.contains(c))
                .collect();
            if pass.is_empty() {
                unanswered.clear();
                pass = candidates.clone();
            }
            let mut hinted = None;
            for addr in pass {
                let others: Vec<SocketAddr> = if hedge {
                    candidates.iter().copied().filter(|c| *c != addr).collect()
                } else {
                    Vec::new()
                };
                let e = match self.attempt(addr, &f, &others).await {
                    Ok(v) => return Ok(v),
                    Err(e) if reroutable(&e) && Instant::now() < deadline => e,
                    Err(e) => return Err(e),
                };
                tracing::debug!(%addr, error = %e, "routing: trying another node");
                if matches!(
                    e,
                    ClientError::Connect { .. }
                        | ClientError::Connection { .. }
                        | ClientError::Timeout { .. }
                ) {
                    unanswered.push(addr);
                    failed_at.insert(addr, Instant::now());
                }
                if let ClientError::Remote(r) = &e {
                    let hint = r
                        .leader_hint
                        .as_deref()
                        .and_then(|h| h.parse::<SocketAddr>().ok());
                    if let Some(h) = hint.filter(|h| *h != addr && !unanswered.contains(h)) {
                        hinted = Some(h);
                        break;
                    }
                }
            }
            match hinted {
                Some(h) => {
                    candidates.retain(|c| *c != h);
                    candidates.insert(0, h);
                }
                // Every candidate failed: an election takes a few hundred ms.
                None => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Describes a stream (from any node) and caches the answer.
    ///
    /// A node whose metadata replica is behind (a stream created a moment
    /// ago) says UNKNOWN_STREAM; every other node is asked before that
    /// answer is believed.
    pub async fn describe(&self, stream: &str) -> Result<StreamInfo, ClientError> {
        let mut result = self
            .any(|c| async move { api::describe_stream(&c, stream).await })
            .await;
        if matches!(&result, Err(e) if e.code() == Some(ErrorCode::UnknownStream)) {
            for addr in self.seeds.clone() {
                if let Ok(info) = api::describe_stream(&*self.client(addr)?, stream).await {
                    result = Ok(info);
                    break;
                }
            }
        }
        let info = result?;
        self.streams
            .lock()
            .expect("streams lock")
            .insert(stream.to_string(), info.clone());
        Ok(info)
    }

    fn cached(&self, stream: &str) -> Option<StreamInfo> {
        self.streams
            .lock()
            .expect("streams lock")
            .get(stream)
            .cloned()
    }

    /// Replica addresses of a shard: known leader first, then the rest.
    fn replicas(&self, stream: &str, shard: u32, prefer_zone: bool) -> Vec<SocketAddr> {
        let mut out: Vec<SocketAddr> = Vec::new();
        let info = self.cached(stream);
        if prefer_zone {
            if let (Some(zone), Some(info)) = (&self.zone, &info) {
                if let Some(sh) = info.shards.iter().find(|s| s.id == shard) {
                    for r in &sh.replicas {
                        if let Some(n) = info.nodes.iter().find(|n| n.id == *r && &n.zone == zone) {
                            out.extend(n.addr.parse::<SocketAddr>().ok());
                        }
                    }
                }
            }
        }
        if let Some(l) = self
            .leaders
            .lock()
            .expect("leaders lock")
            .get(&(stream.to_string(), shard))
        {
            out.push(*l);
        }
        if let Some(info) = &info {
            if let Some(sh) = info.shards.iter().find(|s| s.id == shard) {
                let leader = info
                    .addr_of(sh.leader_node)
                    .and_then(|a| a.parse::<SocketAddr>().ok());
                out.extend(leader);
                out.extend(
                    sh.replicas
                        .iter()
                        .filter_map(|r| info.addr_of(*r))
                        .filter_map(|a| a.parse::<SocketAddr>().ok()),
                );
            }
        }
        let mut seen = Vec::new();
        out.retain(|a| {
            let new = !seen.contains(a);
            seen.push(*a);
            new
        });
        out
    }

    /// Replica addresses of a shard (see [`Self::replicas`]), describing the
    /// stream first if it is not cached.
    async fn candidates(
        &self,
        stream: &str,
        shard: u32,
        prefer_zone: bool,
    ) -> Result<Vec<SocketAddr>, ClientError> {
        if self.cached(stream).is_none() {
            self.describe(stream).await?;
        }
        Ok(self.replicas(stream, shard, prefer_zone))
    }

    /// Calls `f` on the leader of a shard (for writes).
    pub async fn to_leader<T, F, Fut>(
        &self,
        stream: &str,
        shard: u32,
        f: F,
    ) -> Result<T, ClientError>
    where
        F: Fn(Arc<Client>) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        self.leader_call(stream, shard, f, false).await
    }

    /// [`Self::to_leader`] for a call that is safe to run on two replicas
    /// at once (a forward is: the shard drops what it has by producer id
    /// and position, and a follower refuses it): when the leader does not
    /// answer it is hedged to the other replicas (see `attempt`).
    pub async fn to_leader_hedged<T, F, Fut>(
        &self,
        stream: &str,
        shard: u32,
        f: F,
    ) -> Result<T, ClientError>
    where
        F: Fn(Arc<Client>) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        self.leader_call(stream, shard, f, true).await
    }

    async fn leader_call<T, F, Fut>(
        &self,
        stream: &str,
        shard: u32,
        f: F,
        hedge: bool,
    ) -> Result<T, ClientError>
    where
        F: Fn(Arc<Client>) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let candidates = self.candidates(stream, shard, false).await?;
        let key = (stream.to_string(), shard);
        let result = self
            .route(
                candidates,
                |c| {
                    let addr = c.addr();
                    let fut = f(c);
                    let leaders = &self.leaders;
                    let key = key.clone();
                    async move {
                        let r = fut.await;
                        if r.is_ok() {
                            leaders.lock().expect("leaders lock").insert(key, addr);
                        }
                        r
                    }
                },
                hedge,
            )
            .await;
        if let Err(e) = &result {
            if matches!(
                e.code(),
                Some(ErrorCode::UnknownShard | ErrorCode::UnknownStream)
            ) {
                self.streams.lock().expect("streams lock").remove(stream);
            }
        }
        result
    }

    /// Calls `f` on a replica for reads: one in this client's zone if any,
    /// else the leader, else any replica.
    pub async fn to_reader<T, F, Fut>(
        &self,
        stream: &str,
        shard: u32,
        f: F,
    ) -> Result<T, ClientError>
    where
        F: Fn(Arc<Client>) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let candidates = self.candidates(stream, shard, true).await?;
        self.route(candidates, f, false).await
    }

    pub async fn close(&self) {
        let clients: Vec<_> = self
            .clients
            .lock()
            .expect("clients lock")
            .values()
            .cloned()
            .collect();
        for c in clients {
            c.close().await;
        }
    }
}

/// Why a list of addresses did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrListError {
    #[error("{0:?} is not an ip:port address: {1}")]
    Bad(String, std::net::AddrParseError),
    #[error("no address given")]
    Empty,
}

/// Parses a comma-separated list of addresses (`--core a,b,c`).
pub fn parse_addrs(s: &str) -> Result<Vec<SocketAddr>, AddrListError> {
    let v = s
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| p.parse().map_err(|e| AddrListError::Bad(p.to_string(), e)))
        .collect::<Result<Vec<_>, _>>()?;
    if v.is_empty() {
        return Err(AddrListError::Empty);
    }
    Ok(v)
}
