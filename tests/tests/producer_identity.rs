//! Exactly-once bound to the producer identity, with real processes: an
//! edge started on a restored (older) copy of its data directory refuses to
//! start, naming the shards, the positions and the fix; `strata-edge
//! --retire-producer` then continues under a new producer id, and the core
//! ends up with every record exactly once (compared payload by payload).
//! The same holds when the core is down while the restored copy starts: the
//! edge accepts writes, then stops with the same error once the core
//! answers, and the records it accepted meanwhile are not lost either.

use anyhow::{bail, Context, Result};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use strata_client::api;
use strata_client::cluster::Cluster;
use strata_schema::batch::{Builder, NewRecord};
use strata_schema::hashkey;
use strata_tests::{bin, bounded, copy_dir, wait_for, workload, Pipeline, Proc};

const STREAM: &str = "telemetry";

/// Which devices' keys the core routes to each of the stream's two shards.
fn keys_per_shard() -> [String; 2] {
    let ranges = hashkey::even_ranges(2);
    let first_in = |shard: usize| {
        (0..)
            .map(|i| format!("device-{i}"))
            .find(|k| hashkey::route(&ranges, hashkey::hash_key(k.as_bytes())) == shard)
            .expect("some key hashes to each half")
    };
    [first_in(0), first_in(1)]
}

/// Produces `v-{from}`..`v-{to-1}` to the edge, 10 records a request,
/// record `i` under key `key(i)`.
async fn produce_keyed(
    p: &Pipeline,
    from: u32,
    to: u32,
    key: impl Fn(u32) -> String,
) -> Result<()> {
    let edge = p.client(p.edge_addr);
    for start in (from..to).step_by(10) {
        let mut b = Builder::default();
        for i in start..(start + 10).min(to) {
            let key = key(i);
            let value = format!("v-{i}");
            b.push(&NewRecord {
                key: Some(&key),
                value: value.as_bytes(),
                timestamp_ms: i64::from(i),
                headers: &[],
            });
        }
        api::produce(&edge, STREAM, &b.finish()).await?;
    }
    edge.close().await;
    Ok(())
}

/// [`produce_keyed`] over 8 devices, so over both shards.
async fn produce(p: &Pipeline, from: u32, to: u32) -> Result<()> {
    produce_keyed(p, from, to, |i| format!("device-{}", i % 8)).await
}

/// Every value in the stream, sorted.
async fn values(core: &Cluster) -> Result<Vec<String>> {
    let mut v: Vec<String> = workload::read_all(core, STREAM)
        .await?
        .into_iter()
        .map(|r| String::from_utf8_lossy(&r.data).into_owned())
        .collect();
    v.sort();
    Ok(v)
}

/// Waits until the core holds `n` records, then checks they are exactly
/// `v-0`..`v-{n-1}`, each once.
async fn holds_exactly(core: &Cluster, n: u32) -> Result<()> {
    let got = wait_for(
        &format!("{n} records at the core"),
        Duration::from_secs(60),
        || async {
            let v = values(core).await?;
            Ok((v.len() >= n as usize).then_some(v))
        },
    )
    .await?;
    let mut want: Vec<String> = (0..n).map(|i| format!("v-{i}")).collect();
    want.sort();
    if got != want {
        let extra: Vec<&String> = got.iter().filter(|v| !want.contains(v)).collect();
        let missing: Vec<&String> = want.iter().filter(|v| !got.contains(v)).collect();
        bail!(
            "the core holds {} records, want {n}: missing {missing:?}, unexpected {extra:?}",
            got.len()
        );
    }
    Ok(())
}

/// Runs `strata-edge` with `args` until it exits (bounded); returns whether
/// it succeeded and its output.
async fn run_to_exit(args: &[&str], timeout: Duration) -> Result<(bool, String)> {
    let mut child = Command::new(bin("strata-edge")?)
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            let out = child.wait_with_output()?;
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            return Ok((status.success(), text));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("strata-edge {args:?} did not exit within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts the edge with `--retire-producer` (as the pipeline's edge).
async fn start_retiring(p: &mut Pipeline) -> Result<()> {
    let d = p.dir.path();
    let cfg = d.join("edge.toml");
    p.edge = Proc::spawn_args(
        "strata-edge",
        &[
            "--config",
            cfg.to_str().context("utf-8 path")?,
            "--retire-producer",
        ],
        &d.join("edge-retire.out"),
        &d.join("edge.log"),
    )?;
    p.wait_edge().await
}

fn producer_id(p: &Pipeline) -> Result<u64> {
    Ok(
        std::fs::read_to_string(p.dir.path().join("edge/producer_id"))?
            .trim()
            .parse()?,
    )
}

/// How the original went on after the copy was taken.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Later {
    /// Its next records went to both shards: the core holds everything the
    /// copy buffers, in every shard, beyond the copy's end.
    BothShards,
    /// Its next records went to shard 0 only: shard 1's mark stays below
    /// the copy's end, so the copy's unforwarded records are sent again
    /// under the retired id and the core drops them as duplicates.
    ShardZero,
}

/// `n` records reach the core; `pending` more are buffered while the core
/// is down; the edge's directory is copied (with those `pending` records
/// unforwarded in it); the original forwards them and `m` more as `later`
/// says; then the copy replaces the original's directory. Returns the
/// producer id and a client of the core, which is up.
async fn restore_an_older_copy(
    p: &mut Pipeline,
    (n, pending, m): (u32, u32, u32),
    later: Later,
) -> Result<(u64, Cluster)> {
    api::create_stream(&p.client(p.core_addr), STREAM, 2, 1).await?;
    let core = Cluster::new(vec![p.core_addr], &p.pki.ca)?;
    produce(p, 0, n).await?;
    holds_exactly(&core, n).await?;
    core.close().await;
    assert!(p.core.stop(), "the core stops cleanly");
    let [k0, _] = keys_per_shard();
    // The last pending record goes to shard 0, so with `ShardZero` shard 1's
    // mark ends below the copy's end.
    let last = n + pending - 1;
    produce_keyed(p, n, n + pending, |i| {
        if i == last {
            k0.clone()
        } else {
            format!("device-{}", i % 8)
        }
    })
    .await?;
    assert!(p.edge.stop(), "the edge stops cleanly");
    let edge_dir = p.dir.path().join("edge");
    let snapshot = p.dir.path().join("edge-snapshot");
    copy_dir(&edge_dir, &snapshot)?;

    p.restart_core().await?;
    let core = Cluster::new(vec![p.core_addr], &p.pki.ca)?;
    p.restart_edge().await?;
    let to = n + pending + m;
    match later {
        Later::BothShards => produce(p, n + pending, to).await?,
        Later::ShardZero => produce_keyed(p, n + pending, to, |_| k0.clone()).await?,
    }
    holds_exactly(&core, to).await?;
    assert!(p.edge.stop(), "the edge stops cleanly");
    let id = producer_id(p)?;
    std::fs::remove_dir_all(&edge_dir)?;
    copy_dir(&snapshot, &edge_dir)?;
    Ok((id, core))
}

/// The `strata-edge --retire-producer` run's log, without terminal colours.
fn retire_log(p: &Pipeline) -> Result<String> {
    let raw = std::fs::read_to_string(p.dir.path().join("edge-retire.out"))?;
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // An SGR sequence: ESC [ ... m
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

fn assert_names_the_fix(text: &str, id: u64, n: u32) {
    for want in [
        format!("under producer id {id}"),
        format!("stream \"{STREAM}\": the buffer numbers new records from position {n}"),
        "in shard".to_string(),
        "strata-edge --retire-producer".to_string(),
        "docs/operations.md#restored-or-cloned-edge-data-directories".to_string(),
    ] {
        assert!(text.contains(&want), "{want:?} not in:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_edge_refuses_to_start_and_retiring_its_id_loses_and_duplicates_nothing(
) -> Result<()> {
    bounded(300, async {
        let (n, pending, m, k) = (40, 20, 30, 20);
        let mut p = Pipeline::start("").await?;
        let (old_id, core) =
            restore_an_older_copy(&mut p, (n, pending, m), Later::ShardZero).await?;
        let copy_end = n + pending;

        let cfg = p.dir.path().join("edge.toml");
        let (ok, text) = run_to_exit(
            &["--config", cfg.to_str().context("utf-8 path")?],
            Duration::from_secs(60),
        )
        .await?;
        assert!(!ok, "the restored edge must refuse to start:\n{text}");
        assert_names_the_fix(&text, old_id, copy_end);
        // Only shard 0 is ahead of the copy, by the `m` records sent there.
        let ahead = format!("up to position {} in shard 0.", copy_end + m - 1);
        assert!(text.contains(&ahead), "{ahead:?} not in:\n{text}");
        // Refusing changed nothing at the core.
        holds_exactly(&core, copy_end + m).await?;

        start_retiring(&mut p).await?;
        let new_id = producer_id(&p)?;
        assert_ne!(new_id, old_id, "a new producer id");
        let retired = std::fs::read_to_string(p.dir.path().join("edge/retired_producer_ids.json"))?;
        assert!(retired.contains(&old_id.to_string()), "{retired}");
        // Shard 1's mark is below the copy's end: its `pending` unforwarded
        // records go to the core again under the old id, which drops them.
        let log = retire_log(&p)?;
        for want in [
            format!("switch_at={copy_end}"),
            "acknowledged_as_held=0".to_string(),
            format!("sent_again_under_retired_id={pending}"),
            format!("retired={old_id} producer_id={new_id}"),
        ] {
            assert!(log.contains(&want), "{want:?} not in:\n{log}");
        }
        let total = copy_end + m;
        produce(&p, total, total + k).await?;
        holds_exactly(&core, total + k).await?;

        // The new id sticks: a normal start passes the check and forwards.
        assert!(p.edge.stop(), "the edge stops cleanly");
        p.restart_edge().await?;
        assert_eq!(producer_id(&p)?, new_id);
        produce(&p, total + k, total + 2 * k).await?;
        holds_exactly(&core, total + 2 * k).await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_edge_started_while_the_core_is_down_stops_once_it_answers_and_loses_nothing(
) -> Result<()> {
    bounded(300, async {
        let (n, pending, m, j, k) = (40, 20, 30, 20, 10);
        let mut p = Pipeline::start("").await?;
        let (old_id, core) =
            restore_an_older_copy(&mut p, (n, pending, m), Later::BothShards).await?;
        let copy_end = n + pending;
        core.close().await;
        assert!(p.core.stop(), "the core stops cleanly");

        // The edge cannot check, so it starts and accepts known streams,
        // numbering them from the copy's end.
        p.restart_edge().await?;
        let total = copy_end + m;
        produce(&p, total, total + j).await?;
        p.restart_core().await?;
        wait_for(
            "the edge to stop on the high-water check",
            Duration::from_secs(60),
            || {
                let running = p.edge.is_running();
                async move { Ok((!running).then_some(())) }
            },
        )
        .await?;
        let text = std::fs::read_to_string(&p.edge.log)?;
        assert_names_the_fix(&text, old_id, copy_end);

        start_retiring(&mut p).await?;
        // Both shards hold the copy's `pending` records: acknowledged as
        // they are; the `j` accepted unchecked go under the new id.
        let log = retire_log(&p)?;
        for want in [
            format!("switch_at={copy_end}"),
            format!("acknowledged_as_held={pending}"),
            "sent_again_under_retired_id=0".to_string(),
            format!("under_new_id={j}"),
        ] {
            assert!(log.contains(&want), "{want:?} not in:\n{log}");
        }
        let core = Cluster::new(vec![p.core_addr], &p.pki.ca)?;
        produce(&p, total + j, total + j + k).await?;
        holds_exactly(&core, total + j + k).await?;
        Ok(())
    })
    .await
}
