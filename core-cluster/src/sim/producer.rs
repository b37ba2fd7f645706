//! Producers modelled on the edge forwarder (`edge-agent/src/forward/`):
//! each has a producer id and a buffer of batches at increasing positions
//! (with gaps, as when a buffer's other records go to other shards). A
//! round sends the batches from the acknowledged position on, in requests
//! of one to three runs, one request after the other; it is acknowledged only
//! when every request was. Each request is routed as the SDK routes one
//! (`client/src/cluster.rs`): a hedged attempt of at most 1 s, following
//! `NOT_LEADER` hints, another node after a failure, until a deadline; a
//! failed round is retried whole after a backoff that doubles from 50 ms to
//! 1 s (`forward/plan.rs`). Requests and replies cross the simulated network
//! like Raft's messages. Now and then the edge agent restarts: the round in
//! flight is dropped and forwarding starts again from the acknowledged
//! position, grouped anew.
//!
//! A reader does what consumers do: reads a replica's shard now and then;
//! the oracle later checks every read against the final log.

use super::cluster::{append, batch_bytes, read, AppendError, Cluster, Rec, NODES};
use super::model::Fate;
use super::rng::Rng;
use crate::raft::command::AppendCmd;
use crate::raft::types::NodeId;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::{sleep, timeout, Instant};

const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
const HEDGE_AFTER: Duration = Duration::from_millis(150);
const ROUTE_DEADLINE: Duration = Duration::from_secs(5);
/// Chance per attempt (per mille) that the edge agent restarts: the round
/// is abandoned and forwarding starts again from the acknowledged position.
const EDGE_RESTART_PER_MILLE: u32 = 15;
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// What producers sent and were told, and what readers saw.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Every position each producer ever sent.
    pub sent: BTreeMap<u64, BTreeSet<u64>>,
    /// Positions acknowledged to each producer.
    pub acked: BTreeMap<u64, BTreeSet<u64>>,
    /// Reads: the replica and the records it returned.
    pub reads: Vec<(NodeId, Vec<Rec>)>,
    pub attempts: u64,
    pub failed_attempts: u64,
    pub failed_rounds: u64,
    pub edge_restarts: u64,
}

pub type SharedLedger = Arc<Mutex<Ledger>>;

/// One producer of a run.
pub struct Producer {
    pub producer_id: u64,
    /// Its endpoint on the simulated network.
    pub endpoint: NodeId,
    pub rng: Rng,
}

/// Why a request attempt failed.
#[derive(Debug)]
enum AttemptError {
    NotLeader(Option<NodeId>),
    Failed,
}

impl Producer {
    /// Produces until `chaos_end`, then forwards what is left; fails if
    /// something is still unacknowledged at `deadline`.
    pub async fn run(
        mut self,
        cluster: Arc<Cluster>,
        ledger: SharedLedger,
        chaos_end: Instant,
        deadline: Instant,
    ) -> Result<(), String> {
        let mut next_seq = 0u64;
        let mut pending: VecDeque<AppendCmd> = VecDeque::new();
        let mut hint: Option<NodeId> = None;
        let mut backoff = BACKOFF_MIN;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(format!(
                    "producer {}: {} batches still unacknowledged after healing",
                    self.producer_id,
                    pending.len()
                ));
            }
            if now < chaos_end {
                for _ in 0..self.rng.below(3) {
                    let cmd = self.batch(&mut next_seq);
                    let mut l = ledger.lock().expect("ledger lock");
                    let sent = l.sent.entry(self.producer_id).or_default();
                    sent.extend((0..cmd.records as usize).map(|i| cmd.seq(i)));
                    pending.push_back(cmd);
                }
            }
            if pending.is_empty() {
                if now >= chaos_end {
                    return Ok(());
                }
                sleep(Duration::from_millis(self.rng.range(20, 200))).await;
                continue;
            }
            let n = pending.len().min(4);
            let round: Vec<AppendCmd> = pending.iter().take(n).cloned().collect();
            if self.round(&cluster, &ledger, &round, &mut hint).await {
                {
                    let mut l = ledger.lock().expect("ledger lock");
                    let acked = l.acked.entry(self.producer_id).or_default();
                    for cmd in pending.drain(..n) {
                        acked.extend((0..cmd.records as usize).map(|i| cmd.seq(i)));
                    }
                }
                backoff = BACKOFF_MIN;
                sleep(Duration::from_millis(self.rng.range(0, 100))).await;
            } else {
                ledger.lock().expect("ledger lock").failed_rounds += 1;
                sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }

    /// A new batch at the next positions: 1 to 4 records, sometimes with
    /// gaps between their positions.
    fn batch(&mut self, next_seq: &mut u64) -> AppendCmd {
        let records = self.rng.range(1, 4) as u32;
        let first_seq = *next_seq;
        let seq_deltas = self.rng.chance(300).then(|| {
            let mut d = 0u32;
            (0..records)
                .map(|i| {
                    if i > 0 {
                        d += self.rng.range(1, 3) as u32;
                    }
                    d
                })
                .collect::<Vec<u32>>()
        });
        let span = seq_deltas
            .as_ref()
            .map_or(u64::from(records), |d| u64::from(d[d.len() - 1]) + 1);
        *next_seq += span + self.rng.range(0, 2);
        AppendCmd {
            producer_id: self.producer_id,
            first_seq,
            seq_deltas,
            max_timestamp_ms: first_seq as i64,
            records,
            batch: batch_bytes(self.producer_id, first_seq, records),
        }
    }

    /// One round: the batches in requests of one to three runs, in order.
    /// Sometimes a request's batches go as one run (as the edge re-encodes
    /// a mixed batch), so a retry may overlap what the shard holds by a
    /// prefix of a run: the shard skips that prefix.
    async fn round(
        &mut self,
        cluster: &Arc<Cluster>,
        ledger: &SharedLedger,
        round: &[AppendCmd],
        hint: &mut Option<NodeId>,
    ) -> bool {
        let mut rest = round;
        while !rest.is_empty() {
            let k = (self.rng.range(1, 3) as usize).min(rest.len());
            let (req, tail) = rest.split_at(k);
            let req = if k > 1 && self.rng.chance(400) {
                vec![merge_runs(req)]
            } else {
                req.to_vec()
            };
            if !self.routed(cluster, ledger, req, hint).await {
                return false;
            }
            rest = tail;
        }
        true
    }

    /// One request, routed until it is acknowledged or the deadline passes.
    async fn routed(
        &mut self,
        cluster: &Arc<Cluster>,
        ledger: &SharedLedger,
        req: Vec<AppendCmd>,
        hint: &mut Option<NodeId>,
    ) -> bool {
        let deadline = Instant::now() + ROUTE_DEADLINE;
        while Instant::now() < deadline {
            if self.rng.chance(EDGE_RESTART_PER_MILLE) {
                ledger.lock().expect("ledger lock").edge_restarts += 1;
                sleep(Duration::from_millis(self.rng.range(10, 1_000))).await;
                return false;
            }
            let target = hint.unwrap_or_else(|| *self.rng.pick(&NODES));
            let res = attempt(cluster, self.endpoint, target, req.clone()).await;
            {
                let mut l = ledger.lock().expect("ledger lock");
                l.attempts += 1;
                l.failed_attempts += u64::from(res.is_err());
            }
            match res {
                Ok(()) => {
                    *hint = Some(target);
                    return true;
                }
                Err(AttemptError::NotLeader(Some(leader))) if leader != target => {
                    *hint = Some(leader);
                }
                Err(_) => {
                    *hint = None;
                    sleep(Duration::from_millis(50)).await;
                }
            }
        }
        false
    }
}

/// The runs of one producer, in order, as one run.
fn merge_runs(runs: &[AppendCmd]) -> AppendCmd {
    let seqs: Vec<u64> = runs
        .iter()
        .flat_map(|r| (0..r.records as usize).map(|i| r.seq(i)))
        .collect();
    let (producer_id, first_seq) = (runs[0].producer_id, seqs[0]);
    let records = seqs.len() as u32;
    AppendCmd {
        producer_id,
        first_seq,
        seq_deltas: Some(
            seqs.iter()
                .map(|s| u32::try_from(s - first_seq).expect("a round spans few positions"))
                .collect(),
        ),
        max_timestamp_ms: runs.iter().map(|r| r.max_timestamp_ms).max().unwrap_or(0),
        records,
        batch: batch_bytes(producer_id, first_seq, records),
    }
}

/// One attempt of a request from `from` to node `to`, hedged as the SDK
/// hedges a forward (`Cluster::attempt`): once `to` has not answered for
/// [`HEDGE_AFTER`], the other nodes are asked in turn, each for at most
/// that long, until `to` answers; the first that accepts answers the
/// attempt, and one that names a leader other than `to` ends it with that
/// hint. So the same request may be in two nodes' hands at once.
async fn attempt(
    cluster: &Arc<Cluster>,
    from: NodeId,
    to: NodeId,
    req: Vec<AppendCmd>,
) -> Result<(), AttemptError> {
    let main = exchange(cluster, from, to, req.clone());
    let probe = async {
        loop {
            sleep(HEDGE_AFTER).await;
            for other in NODES.into_iter().filter(|&n| n != to) {
                match timeout(HEDGE_AFTER, exchange(cluster, from, other, req.clone())).await {
                    Ok(Ok(())) => return Ok(()),
                    Ok(Err(AttemptError::NotLeader(Some(h)))) if h != to => {
                        return Err(AttemptError::NotLeader(Some(h)))
                    }
                    _ => {}
                }
            }
        }
    };
    let hedged = async {
        // Biased: a seed must decide everything, tokio's random pick too.
        tokio::select! {
            biased;
            r = main => r,
            r = probe => r,
        }
    };
    timeout(ATTEMPT_TIMEOUT, hedged)
        .await
        .unwrap_or(Err(AttemptError::Failed))
}

/// One request and its reply over the network: the node handles the
/// request in a task of its own (it goes on if the producer stops
/// waiting), and a duplicated request is handled twice.
async fn exchange(
    cluster: &Arc<Cluster>,
    from: NodeId,
    to: NodeId,
    req: Vec<AppendCmd>,
) -> Result<(), AttemptError> {
    let Fate::Deliver {
        delay_ms,
        duplicate_ms,
    } = cluster.net.fate(from, to)
    else {
        return std::future::pending().await;
    };
    if let Some(after) = duplicate_ms {
        let (c, req) = (cluster.clone(), req.clone());
        tokio::spawn(async move {
            sleep(Duration::from_millis(delay_ms + after)).await;
            if let Some(g) = c.group(to) {
                let _ = append(&g, req).await;
            }
        });
    }
    sleep(Duration::from_millis(delay_ms)).await;
    // A node that is down refuses the connection at once.
    let g = cluster.group(to).ok_or(AttemptError::Failed)?;
    let res = tokio::spawn(async move { append(&g, req).await })
        .await
        .map_err(|_| AttemptError::Failed)?;
    match cluster.net.fate(to, from) {
        Fate::Drop { .. } => std::future::pending().await,
        Fate::Deliver { delay_ms, .. } => sleep(Duration::from_millis(delay_ms)).await,
    }
    match res {
        Ok(_) => Ok(()),
        Err(AppendError::NotLeader(l)) => Err(AttemptError::NotLeader(l)),
        Err(AppendError::Unavailable(_)) => Err(AttemptError::Failed),
    }
}

/// Reads a random live replica every so often until `until`. A replica's
/// read failing is a failure of the run.
pub async fn reader(
    cluster: Arc<Cluster>,
    ledger: SharedLedger,
    mut rng: Rng,
    until: Instant,
) -> Result<(), String> {
    while Instant::now() < until {
        sleep(Duration::from_millis(rng.range(50, 400))).await;
        let node = *rng.pick(&NODES);
        if let Some(g) = cluster.group(node) {
            let recs = read(&g).map_err(|e| format!("a read on node {node} failed: {e}"))?;
            ledger.lock().expect("ledger lock").reads.push((node, recs));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_runs_keep_every_position_in_order() {
        let mut p = Producer {
            producer_id: 7,
            endpoint: 100,
            rng: Rng::new(4),
        };
        let mut next = 0;
        let runs: Vec<AppendCmd> = (0..5).map(|_| p.batch(&mut next)).collect();
        let m = merge_runs(&runs);
        m.check_seqs().unwrap();
        let want: Vec<u64> = runs
            .iter()
            .flat_map(|r| (0..r.records as usize).map(|i| r.seq(i)))
            .collect();
        let got: Vec<u64> = (0..m.records as usize).map(|i| m.seq(i)).collect();
        assert_eq!(got, want);
        assert_eq!(m.producer_id, 7);
    }
}
