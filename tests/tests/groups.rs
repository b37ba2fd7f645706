//! Consumer groups with real processes: three `strata consume --group`
//! members share a 4-shard stream while an edge keeps producing; one member
//! is killed (SIGKILL) and a new one joins. Every record is processed at
//! least once, none is skipped, each member reads a shard in offset order
//! (so per-key order holds), and re-delivery starts no earlier than the
//! group's checkpoint before the kill and touches only the killed member's
//! shards. A second run of the group resumes where the group stopped.

use anyhow::{anyhow, bail, Result};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;
use strata_client::api::StreamInfo;
use strata_client::cluster::Cluster;
use strata_tests::{wait_for, workload, Pipeline, Proc};

const STREAM: &str = "readings";
const GROUP: &str = "billing";
const WAIT: Duration = Duration::from_secs(120);

/// (shard, offset) positions, in the order a member printed them.
type Positions = Vec<(u32, u64)>;

/// A printed record: `shard/offset key i|attempt|...`.
struct Line {
    shard: u32,
    offset: u64,
    key: String,
    /// The workload's record number.
    i: u64,
    /// Which attempt of the producer's batch it came in.
    attempt: u32,
}

fn parse_line(line: &str) -> Option<Line> {
    let mut parts = line.splitn(3, ' ');
    let (s, o) = parts.next()?.split_once('/')?;
    let key = parts.next()?.to_string();
    let mut value = parts.next()?.split('|');
    let i = value.next()?.parse().ok()?;
    let attempt = value.next()?.parse().ok()?;
    Some(Line {
        shard: s.parse().ok()?,
        offset: o.parse().ok()?,
        key,
        i,
        attempt,
    })
}

/// The records in `text`, as `consume` prints them; a last line without
/// its newline may be partly written and is left out.
fn printed(text: &str) -> Result<Vec<Line>> {
    let mut v = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        match parse_line(line) {
            Some(l) => v.push(l),
            None if !text.ends_with('\n') => break,
            None => bail!("unexpected line {line:?}"),
        }
    }
    Ok(v)
}

/// What a member printed so far.
fn consumed_records(out: &Path) -> Result<Vec<Line>> {
    printed(&std::fs::read_to_string(out).unwrap_or_default())
}

/// (shard, offset) of each record a member printed.
fn consumed(out: &Path) -> Result<Positions> {
    Ok(consumed_records(out)?
        .into_iter()
        .map(|l| (l.shard, l.offset))
        .collect())
}

struct Members {
    dir: PathBuf,
    core: String,
    ca: String,
    procs: BTreeMap<String, Proc>,
}

impl Members {
    fn start(&mut self, name: &str) -> Result<()> {
        let out = self.dir.join(format!("{name}.out"));
        let log = self.dir.join(format!("{name}.log"));
        let args = [
            "consume",
            STREAM,
            "--core",
            &self.core,
            "--ca",
            &self.ca,
            "--group",
            GROUP,
            "--member",
            name,
            "--session",
            "2s",
            "--follow",
        ];
        let p = Proc::spawn_args("strata", &args, &out, &log)?;
        self.procs.insert(name.to_string(), p);
        Ok(())
    }

    fn outputs(&self) -> Result<Vec<(String, Positions)>> {
        self.procs
            .keys()
            .map(|m| Ok((m.clone(), consumed(&self.dir.join(format!("{m}.out")))?)))
            .collect()
    }

    /// Kills `victim` (SIGKILL: it commits nothing more) and starts
    /// `joiner`; returns the group's checkpoints and the victim's shards
    /// just before.
    async fn kill(&mut self, cluster: &Cluster, victim: &str, joiner: &str) -> Result<Killed> {
        let before = describe(cluster).await?;
        let group = before
            .groups
            .iter()
            .find(|g| g.name == GROUP)
            .ok_or_else(|| anyhow!("no group {GROUP}"))?;
        let killed = Killed {
            checkpoints: group
                .shards
                .iter()
                .map(|s| (s.shard, s.checkpoint.map_or(0, |c| c.offset)))
                .collect(),
            shards: group
                .shards
                .iter()
                .filter(|s| s.owner == victim)
                .map(|s| s.shard)
                .collect(),
        };
        self.procs
            .get_mut(victim)
            .ok_or_else(|| anyhow!("no {victim}"))?
            .kill9();
        self.start(joiner)?;
        Ok(killed)
    }

    /// Whether the members together printed every offset below `ends`.
    fn read_all(&self, ends: &BTreeMap<u32, u64>) -> Result<bool> {
        let mut seen: BTreeMap<u32, std::collections::BTreeSet<u64>> = BTreeMap::new();
        for (_, v) in self.outputs()? {
            for (s, o) in v {
                seen.entry(s).or_default().insert(o);
            }
        }
        Ok(ends
            .iter()
            .all(|(s, e)| seen.get(s).map_or(0, |x| x.len() as u64) >= *e))
    }

    /// Stops `names` (SIGTERM): each commits and leaves the group.
    fn stop(&mut self, names: &[&str]) -> Result<()> {
        for m in names {
            let proc = self.procs.get_mut(*m).ok_or_else(|| anyhow!("no {m}"))?;
            if !proc.stop() {
                bail!("member {m} did not leave cleanly");
            }
        }
        Ok(())
    }

    fn logs(&self) -> String {
        let mut s = String::new();
        for (m, p) in &self.procs {
            s += &format!("--- member {m} ---\n{}\n", p.log_tail());
        }
        s
    }
}

async fn describe(c: &Cluster) -> Result<StreamInfo> {
    Ok(c.describe(STREAM).await?)
}

/// A member killed mid-stream: where the group stood just before.
struct Killed {
    checkpoints: HashMap<u32, u64>,
    shards: Vec<u32>,
}

/// Whether the group has committed every record of the stream.
fn group_caught_up(d: &StreamInfo) -> bool {
    d.groups
        .iter()
        .find(|g| g.name == GROUP)
        .is_some_and(|g| g.lag(d).iter().all(|l| l.records == 0))
}

/// Checks that member `m` read forwards: each shard in strictly increasing
/// offsets and each key's acknowledged records in strictly increasing
/// record number. A member never reads a record twice or goes back: a live
/// member hands a shard over at a commit of all it read, and the shard
/// comes back no earlier than that; only a killed member's uncommitted
/// records are read again, by the others. (A batch the producer retried
/// may be in the core twice under two attempts; only the acknowledged
/// attempt has to be in order, as in `workload::verify`.)
fn read_forwards(m: &str, recs: &[Line], acked: &HashSet<(u64, u32)>) -> Result<()> {
    let mut last: HashMap<u32, u64> = HashMap::new();
    for l in recs {
        if let Some(prev) = last.insert(l.shard, l.offset).filter(|&p| p >= l.offset) {
            bail!(
                "member {m} read {s}/{o} after {s}/{prev}: backwards",
                s = l.shard,
                o = l.offset
            );
        }
    }
    let acked_recs = recs.iter().filter(|l| acked.contains(&(l.i, l.attempt)));
    workload::keys_in_order(
        &format!("member {m}"),
        acked_recs.map(|l| (l.key.as_str(), l.i)),
    )?;
    Ok(())
}

/// Every offset below `ends` was processed (`count`: times each was), and
/// re-delivery is bounded by the checkpoints before the kill, and only in
/// the killed member's shards: a rebalance between live members hands
/// shards over at a commit. Returns the records delivered again.
fn check_deliveries(
    count: &HashMap<(u32, u64), u32>,
    ends: &BTreeMap<u32, u64>,
    killed: &Killed,
) -> Result<u32> {
    for (s, e) in ends {
        for o in 0..*e {
            if !count.contains_key(&(*s, o)) {
                bail!("record {s}/{o} was never processed");
            }
        }
    }
    let mut again = 0;
    for ((s, o), n) in count {
        if *n > 1 {
            again += n - 1;
            if !killed.shards.contains(s) {
                bail!(
                    "{s}/{o} was delivered {n} times, but the killed member did not own shard {s}"
                );
            }
            let cp = killed.checkpoints.get(s).copied().unwrap_or(0);
            if *o < cp {
                bail!("{s}/{o} was delivered {n} times, though the group had committed {s}/{cp}");
            }
        }
    }
    Ok(again)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_shares_shards_survives_a_killed_member_and_resumes() -> Result<()> {
    let metrics = strata_tests::free_udp_addr();
    let p = Pipeline::start_with("", &format!("metrics_addr = \"{metrics}\"")).await?;
    let mut members = Members {
        dir: p.dir.path().to_path_buf(),
        core: p.core_addr.to_string(),
        ca: p.pki.ca.display().to_string(),
        procs: BTreeMap::new(),
    };
    let r = tokio::time::timeout(Duration::from_secs(300), run(&p, &mut members, metrics)).await;
    let r = r.unwrap_or_else(|_| Err(anyhow!("test exceeded 300 s")));
    if r.is_err() {
        eprintln!("{}--- core ---\n{}\n", members.logs(), p.core.log_tail());
    }
    r
}

async fn run(p: &Pipeline, members: &mut Members, metrics: std::net::SocketAddr) -> Result<()> {
    let cluster = Cluster::new(vec![p.core_addr], &p.pki.ca)?;
    strata_client::api::create_stream(&*cluster.client(p.core_addr)?, STREAM, 4, 1).await?;
    for m in ["m1", "m2", "m3"] {
        members.start(m)?;
    }
    wait_for("three members sharing the shards", WAIT, || async {
        let d = describe(&cluster).await?;
        Ok(d.groups
            .iter()
            .find(|g| g.name == GROUP)
            .filter(|g| g.members.len() == 3 && g.shards.iter().all(|s| !s.owner.is_empty()))
            .map(|_| ()))
    })
    .await?;

    let producers = workload::start(p.edge_addr, &p.pki.ca, STREAM, 100_000_000, 40, 2, 100);
    producers.wait_acked(4_000, WAIT).await?;
    // Every member is reading before one of them dies.
    wait_for("every member to have read records", WAIT, || async {
        let outs = members.outputs()?;
        Ok(outs.iter().all(|(_, v)| !v.is_empty()).then_some(()))
    })
    .await?;

    // m1 dies without committing what it read since its last heartbeat.
    let killed = members.kill(&cluster, "m1", "m4").await?;
    let acked = producers.acked_count();
    producers.wait_acked(acked + 4_000, WAIT).await?;
    let acked = producers.stop().await?;

    // Everything the edge acknowledged reaches the core, then the members.
    wait_for(
        "the core to hold every acknowledged record",
        WAIT,
        || async {
            let d = describe(&cluster).await?;
            Ok((d.records() as usize >= acked.len()).then_some(()))
        },
    )
    .await?;
    let end = describe(&cluster).await?;
    let ends: BTreeMap<u32, u64> = end.shards.iter().map(|s| (s.id, s.next_offset)).collect();
    wait_for("the members to read every record", WAIT, || async {
        Ok(members.read_all(&ends)?.then_some(()))
    })
    .await?;
    wait_for("the group to commit every record", WAIT, || async {
        Ok(group_caught_up(&describe(&cluster).await?).then_some(()))
    })
    .await?;
    // The shard leader exports the group's lag: zero in every shard now.
    wait_for("the lag gauges to reach zero", WAIT, || async {
        let text = workload::scrape(metrics).await?;
        let zero = ends.keys().all(|s| {
            let line = format!(
                "strata_core_group_lag_records{{stream=\"{STREAM}\",group=\"{GROUP}\",shard=\"{s}\"}} 0"
            );
            text.lines().any(|l| l == line)
        });
        Ok(zero.then_some(()))
    })
    .await?;
    members.stop(&["m2", "m3", "m4"])?;

    // Each member reads forwards (no record twice, nothing backwards). A
    // jump forward is a shard coming back to a member after another member
    // read on: the record before the jump must have been read by another
    // member.
    for m in members.procs.keys() {
        let recs = consumed_records(&members.dir.join(format!("{m}.out")))?;
        read_forwards(m, &recs, &acked)?;
    }
    let outputs = members.outputs()?;
    let mut count: HashMap<(u32, u64), u32> = HashMap::new();
    let mut by: HashMap<(u32, u64), Vec<&str>> = HashMap::new();
    for (m, v) in &outputs {
        for &(s, o) in v {
            *count.entry((s, o)).or_default() += 1;
            by.entry((s, o)).or_default().push(m);
        }
    }
    for (m, v) in &outputs {
        let mut last: HashMap<u32, u64> = HashMap::new();
        for &(s, o) in v {
            if let Some(&prev) = last.get(&s) {
                let covered = by
                    .get(&(s, o.wrapping_sub(1)))
                    .is_some_and(|ms| ms.iter().any(|x| x != m));
                if o > prev + 1 && !covered {
                    bail!("member {m} skipped from {s}/{prev} to {s}/{o}, and nobody else read {s}/{}", o - 1);
                }
            }
            last.insert(s, o);
        }
    }
    let again = check_deliveries(&count, &ends, &killed)?;
    eprintln!(
        "records {}, delivered again {again} (m1 owned shards {:?})",
        ends.values().sum::<u64>(),
        killed.shards
    );

    // The group stopped at the end: a new member resumes there, reads
    // nothing and exits successfully.
    let args = [
        "consume",
        STREAM,
        "--core",
        &members.core,
        "--ca",
        &members.ca,
        "--group",
        GROUP,
        "--member",
        "m5",
    ];
    let got = printed(&strata(&args).await?)?;
    if !got.is_empty() {
        bail!("a resumed member read {} records again", got.len());
    }
    Ok(())
}

/// Runs `strata ARGS` to completion (bounded); its stdout, or why it failed.
async fn strata(args: &[&str]) -> Result<String> {
    let mut cmd = tokio::process::Command::new(strata_tests::bin("strata")?);
    cmd.args(args).kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(90), cmd.output())
        .await
        .map_err(|_| anyhow!("strata {args:?} did not finish within 90 s"))??;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        bail!(
            "strata {args:?} failed ({}): {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(stdout)
}

/// A group of three reads while one shard is split and two are merged; one
/// member is killed and another joins. Every record is processed at least
/// once and none is skipped; the core holds each acknowledged record once,
/// in per-key order along the lineage; a child is never read (committed)
/// before the group finished its parents; each member reads every key in
/// order; re-delivery is bounded by the checkpoints before the kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_reads_through_a_split_and_a_merge_in_key_order() -> Result<()> {
    let p = Pipeline::start("").await?;
    let mut members = Members {
        dir: p.dir.path().to_path_buf(),
        core: p.core_addr.to_string(),
        ca: p.pki.ca.display().to_string(),
        procs: BTreeMap::new(),
    };
    let r = tokio::time::timeout(Duration::from_secs(300), reshard_run(&p, &mut members)).await;
    let r = r.unwrap_or_else(|_| Err(anyhow!("test exceeded 300 s")));
    if r.is_err() {
        eprintln!(
            "{}--- core ---\n{}\n--- edge ---\n{}\n",
            members.logs(),
            p.core.log_tail(),
            p.edge.log_tail()
        );
    }
    r
}

/// Checks, on one description, that no child has a checkpoint while the
/// group has not finished one of its parents.
fn lineage_respected(d: &StreamInfo) -> Result<()> {
    let Some(g) = d.groups.iter().find(|g| g.name == GROUP) else {
        return Ok(());
    };
    let cp = |s: u32| {
        g.shards
            .iter()
            .find(|x| x.shard == s)
            .and_then(|x| x.checkpoint)
            .map(|c| c.offset)
    };
    for sh in &d.shards {
        if cp(sh.id).unwrap_or(0) == 0 {
            continue;
        }
        for parent in &sh.parents {
            let p = d.shards.iter().find(|x| x.id == *parent);
            let end = p.and_then(|x| x.end_offset);
            let finished = end.is_some_and(|e| e == 0 || cp(*parent).is_some_and(|c| c >= e));
            if !finished {
                bail!(
                    "the group committed {} in child {} before finishing parent {parent} (end {end:?}, checkpoint {:?})",
                    cp(sh.id).unwrap_or(0),
                    sh.id,
                    cp(*parent)
                );
            }
        }
    }
    Ok(())
}

/// Checks that `text`, a `consume` output, holds `total` records, each
/// position once, with each key's acknowledged records in increasing order.
fn in_key_order(what: &str, text: &str, total: u64, acked: &HashSet<(u64, u32)>) -> Result<()> {
    let lines = printed(text)?;
    let positions: HashSet<(u32, u64)> = lines.iter().map(|l| (l.shard, l.offset)).collect();
    if positions.len() != lines.len() {
        bail!(
            "{what} printed {} records but only {} distinct positions",
            lines.len(),
            positions.len()
        );
    }
    if lines.len() as u64 != total {
        bail!(
            "{what} printed {} records; the stream holds {total}",
            lines.len()
        );
    }
    let acked_lines = lines.iter().filter(|l| acked.contains(&(l.i, l.attempt)));
    workload::keys_in_order(what, acked_lines.map(|l| (l.key.as_str(), l.i)))?;
    Ok(())
}

async fn reshard_run(p: &Pipeline, members: &mut Members) -> Result<()> {
    const KEYS: u64 = 40;
    let cluster = Cluster::new(vec![p.core_addr], &p.pki.ca)?;
    strata_client::api::create_stream(&*cluster.client(p.core_addr)?, STREAM, 2, 1).await?;
    for m in ["m1", "m2", "m3"] {
        members.start(m)?;
    }
    let producers = workload::start(p.edge_addr, &p.pki.ca, STREAM, 100_000_000, KEYS, 2, 100);
    producers.wait_acked(3_000, WAIT).await?;
    let base: Vec<String> = ["--core", &members.core, "--ca", &members.ca]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let cli = |args: &[&str]| {
        let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        v.extend(base.iter().cloned());
        v
    };
    let run = |v: Vec<String>| async move {
        let refs: Vec<&str> = v.iter().map(String::as_str).collect();
        strata(&refs).await
    };
    // Split shard 0 into 2 and 3 while the group reads and the edge writes.
    let out = run(cli(&["stream", "split", STREAM, "--shard", "0"])).await?;
    eprintln!("{out}");
    let d = describe(&cluster).await?;
    lineage_respected(&d)?;
    if d.shards.len() != 4 || d.shards[0].state != "closed" {
        bail!("after the split: {:?}", d.shards);
    }
    producers
        .wait_acked(producers.acked_count() + 3_000, WAIT)
        .await?;
    wait_for("the group to read the split's children", WAIT, || async {
        let d = describe(&cluster).await?;
        lineage_respected(&d)?;
        let g = d.groups.iter().find(|g| g.name == GROUP);
        let read = |s: u32| {
            g.and_then(|g| g.shards.iter().find(|x| x.shard == s))
                .and_then(|x| x.checkpoint)
                .is_some_and(|c| c.offset > 0)
        };
        Ok((read(2) && read(3)).then_some(()))
    })
    .await?;

    // m1 dies without committing; m4 joins.
    let killed = members.kill(&cluster, "m1", "m4").await?;

    // Merge 3 and 1 (adjacent: 3 is the upper half of 0) into 4.
    let out = run(cli(&["stream", "merge", STREAM, "--shards", "3,1"])).await?;
    eprintln!("{out}");
    producers
        .wait_acked(producers.acked_count() + 3_000, WAIT)
        .await?;
    let acked = producers.stop().await?;

    // The core holds every acknowledged record once, in key order along
    // the lineage (parents have lower ids than their children).
    let report = workload::verify(&cluster, STREAM, &acked, KEYS, WAIT).await?;
    eprintln!("{report:?}");
    let end = describe(&cluster).await?;
    let ends: BTreeMap<u32, u64> = end.shards.iter().map(|s| (s.id, s.next_offset)).collect();
    if ends.len() != 5 || !ends.values().all(|&e| e > 0) {
        bail!("expected 5 shards with records, got {ends:?}");
    }
    wait_for("the members to read every record", WAIT, || async {
        lineage_respected(&describe(&cluster).await?)?;
        Ok(members.read_all(&ends)?.then_some(()))
    })
    .await?;
    wait_for("the group to commit every record", WAIT, || async {
        let d = describe(&cluster).await?;
        lineage_respected(&d)?;
        Ok(group_caught_up(&d).then_some(()))
    })
    .await?;
    members.stop(&["m2", "m3", "m4"])?;

    let mut count: HashMap<(u32, u64), u32> = HashMap::new();
    for m in members.procs.keys() {
        let recs = consumed_records(&members.dir.join(format!("{m}.out")))?;
        // Each member reads forwards: every shard in offset order and every
        // key in order along the lineage, re-delivered records included.
        read_forwards(m, &recs, &acked)?;
        for l in &recs {
            *count.entry((l.shard, l.offset)).or_default() += 1;
        }
    }
    let again = check_deliveries(&count, &ends, &killed)?;
    eprintln!(
        "records {}, delivered again {again} (m1 owned shards {:?}), shards {ends:?}",
        ends.values().sum::<u64>(),
        killed.shards
    );

    // One reader (no group) prints the whole stream in one order: each
    // record once, and each key's records in order across the reshards;
    // by fetching, and by push subscriptions that end with each closed shard.
    let total = ends.values().sum::<u64>();
    let text = run(cli(&["consume", STREAM])).await?;
    in_key_order("consume", &text, total, &acked)?;
    let limit = total.to_string();
    let args = ["consume", STREAM, "--follow", "--push", "--limit", &limit];
    let text = run(cli(&args)).await?;
    in_key_order("consume --follow --push", &text, total, &acked)?;
    Ok(())
}

/// The per-member check itself: a shard read backwards, a record read
/// twice, or a key's acknowledged records going down are flagged.
#[test]
fn read_forwards_flags_backwards_and_repeated_reads() -> Result<()> {
    let acked: HashSet<(u64, u32)> = [(1, 0), (2, 0), (3, 0), (4, 1)].into_iter().collect();
    let check = |text: &str| read_forwards("m", &printed(text)?, &acked);
    check("0/0 k 1|0|\n1/0 j 2|0|\n0/5 k 3|0|\n")?;
    // An unacknowledged attempt may repeat a record number.
    check("0/0 k 4|0|\n0/1 k 4|1|\n")?;
    for bad in [
        "0/5 k 3|0|\n0/4 k 1|0|\n",
        "0/5 k 1|0|\n0/5 k 1|0|\n",
        "0/0 k 3|0|\n1/0 k 1|0|\n",
    ] {
        if check(bad).is_ok() {
            bail!("{bad:?} passed");
        }
    }
    Ok(())
}
