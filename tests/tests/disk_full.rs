//! Disk full at the edge and at the core (issue 16, item 4): the daemon's
//! `data_dir` is a small tmpfs ([`SmallDisk`]), producers write until the
//! disk is full, then space is freed. Whatever a daemon acknowledged must
//! reach the core exactly once, the daemons must not crash, and refusals
//! must be clear errors. Mounting needs root: where it is refused each test
//! prints `skipped: cannot mount a tmpfs (...)` and passes.

use anyhow::{bail, Result};
use std::time::Duration;
use strata_client::api;
use strata_schema::fb::ErrorCode;
use strata_tests::outage::{batch, core_holds_exactly, edge_counter, edge_drained};
use strata_tests::tmpfs::SmallDisk;
use strata_tests::{bounded, free_udp_addr, wait_for, DataDirs, Pipeline};

/// Which daemon keeps its `data_dir` on the small disk.
#[derive(Clone, Copy, PartialEq)]
enum OnDisk {
    Edge,
    Core,
}

/// [`Pipeline::start_with`], with the `data_dir` of `which` on `disk`.
async fn start(
    disk: &SmallDisk,
    which: OnDisk,
    edge_extra: &str,
    core_extra: &str,
) -> Result<Pipeline> {
    let on_disk = Some(disk.path().to_path_buf());
    let dirs = match which {
        OnDisk::Edge => DataDirs {
            edge: on_disk,
            ..DataDirs::default()
        },
        OnDisk::Core => DataDirs {
            core: on_disk,
            ..DataDirs::default()
        },
    };
    Pipeline::start_in(edge_extra, core_extra, &[], &dirs).await
}

/// `line` without its terminal colour codes (`ESC [ ... m`).
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|&c| c == 'm');
        } else {
            out.push(c);
        }
    }
    out
}

/// The lines of `log` that mention the disk being full or an error.
fn disk_lines(log: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .map(plain)
        .filter(|l| {
            l.contains("No space left")
                || l.contains("ERROR")
                || l.contains("panicked")
                || l.contains("WARN")
        })
        .collect()
}

fn print_lines(what: &str, lines: &[String]) {
    eprintln!("{what}: {} lines", lines.len());
    for l in lines.iter().take(12) {
        eprintln!("  {l}");
    }
}

/// The edge's buffer on a 24 MiB tmpfs, `buffer_bytes_max` 64 MiB, the core
/// down: produces go on until the disk is full and are then refused with a
/// clear error while the edge stays up; once the core is back everything
/// acknowledged arrives exactly once and produces succeed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_disk_full_refuses_clearly_and_loses_nothing() -> Result<()> {
    bounded(90, async {
        let Some(disk) = SmallDisk::mount_or_skip(24) else {
            return Ok(());
        };
        let metrics = free_udp_addr();
        let mut p = start(
            &disk,
            OnDisk::Edge,
            &format!(
                "buffer_bytes_max = 67108864\nsegment_bytes_max = 1048576\nbatch_bytes_max = 1048576\nretry_backoff_ms_max = 200\nmetrics_addr = \"{metrics}\"\n"
            ),
            "",
        )
        .await?;
        let admin = p.client(p.core_addr);
        api::create_stream(&admin, "edgefull", 2, 1).await?;
        let edge = p.client(p.edge_addr);
        let mut acked: Vec<Vec<u8>> = Vec::new();
        let (warm, values) = batch(10, 10, "warm");
        assert_eq!(api::produce(&edge, "edgefull", &warm).await?, 10);
        acked.extend(values);
        p.core.kill9();

        // ~256 KiB batches until the edge refuses one.
        let mut sent = 0;
        let refusal = loop {
            let (b, values) = batch(512, 500, &format!("down{sent}"));
            sent += 1;
            match api::produce(&edge, "edgefull", &b).await {
                Ok(n) => {
                    assert_eq!(n as usize, values.len(), "the edge acknowledged part of a batch");
                    acked.extend(values);
                }
                Err(e) => break e,
            }
            if sent > 200 {
                bail!("the edge took 50 MiB on a 24 MiB disk without refusing");
            }
        };
        eprintln!(
            "edge disk full after {} acknowledged records ({sent} batches sent), {} bytes free: code {:?}, retryable {}: {refusal}",
            acked.len(),
            disk.free_bytes()?,
            refusal.code(),
            refusal.is_retryable()
        );
        assert!(p.edge.is_running(), "the edge exited on a full disk:\n{}", p.edge.log_tail());
        // Retryable: space comes back as the backlog drains.
        assert_eq!(refusal.code(), Some(ErrorCode::BufferFull), "{refusal}");
        assert!(refusal.is_retryable(), "{refusal}");
        assert!(refusal.to_string().contains("No space left on device"), "{refusal}");
        assert!(acked.len() > 10 * 512, "only {} records taken before the disk was full", acked.len());

        // Refused again while the disk stays full, and still up.
        let (b, _) = batch(512, 500, "again");
        let again = api::produce(&edge, "edgefull", &b).await.unwrap_err();
        eprintln!("second refusal: code {:?}: {again}", again.code());
        assert_eq!(again.code(), Some(ErrorCode::BufferFull), "{again}");
        assert!(p.edge.is_running(), "the edge exited on a full disk:\n{}", p.edge.log_tail());
        print_lines("edge log (disk full, errors, warnings)", &disk_lines(&p.edge.log));

        // The core comes back: the backlog drains, exactly once.
        p.restart_core().await?;
        let accepted =
            edge_drained(&p, metrics, "edgefull", acked.len() as u64, Duration::from_secs(40))
                .await?;
        assert_eq!(accepted, acked.len() as u64, "the edge counted other records than it acknowledged");
        core_holds_exactly(&p, "edgefull", &acked).await?;

        // Space was freed as forwarded segments went: large batches are taken again.
        let (after, values) = batch(512, 500, "after");
        let errors = std::sync::Mutex::new(Vec::new());
        wait_for("the edge to accept again", Duration::from_secs(20), || {
            let (edge, after, errors) = (&edge, &after, &errors);
            async move {
                match api::produce(edge, "edgefull", after).await {
                    Ok(n) => Ok(Some(n)),
                    Err(e) => {
                        errors.lock().unwrap().push(format!("{:?}: {e}", e.code()));
                        Ok(None)
                    }
                }
            }
        })
        .await?;
        eprintln!(
            "refusals after the drain before the edge took a batch again: {:?}",
            errors.lock().unwrap()
        );
        acked.extend(values);
        edge_drained(&p, metrics, "edgefull", acked.len() as u64, Duration::from_secs(20)).await?;
        core_holds_exactly(&p, "edgefull", &acked).await?;
        assert!(p.edge.stop(), "edge did not stop cleanly");
        assert!(p.core.stop(), "core did not stop cleanly");
        drop(p);
        Ok(())
    })
    .await
}

/// Sends ~256 KiB batches through the edge until `total` records were
/// acknowledged; every refusal must be retryable (the edge's buffer is on
/// a normal disk).
async fn produce_records(
    edge: &strata_client::Client,
    stream: &str,
    tag: &str,
    total: usize,
    acked: &mut Vec<Vec<u8>>,
) -> Result<()> {
    let mut sent = 0;
    while sent < total {
        let (b, values) = batch(512, 500, &format!("{tag}{sent}"));
        match api::produce(edge, stream, &b).await {
            Ok(n) => {
                assert_eq!(
                    n as usize,
                    values.len(),
                    "the edge acknowledged part of a batch"
                );
                acked.extend(values);
                sent += n as usize;
            }
            Err(e) => bail!("the edge refused a batch: {e}"),
        }
    }
    Ok(())
}

/// The core's `data_dir` on a 32 MiB tmpfs (1 MiB segments), the edge's on
/// the normal disk: 48 MiB go through the edge, so the core's disk fills.
/// The core must not crash silently nor lose what it acknowledged; once the
/// tmpfs is made bigger, forwarding resumes and everything acknowledged
/// reaches the core exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_disk_full_loses_nothing_and_resumes_when_space_is_freed() -> Result<()> {
    bounded(150, async {
        let Some(disk) = SmallDisk::mount_or_skip(32) else {
            return Ok(());
        };
        let metrics = free_udp_addr();
        let mut p = start(
            &disk,
            OnDisk::Core,
            &format!(
                "buffer_bytes_max = 268435456\nsegment_bytes_max = 4194304\nbatch_bytes_max = 1048576\nretry_backoff_ms_max = 200\nmetrics_addr = \"{metrics}\"\n"
            ),
            "segment_bytes_max = 1048576\n",
        )
        .await?;
        let admin = p.client(p.core_addr);
        api::create_stream(&admin, "corefull", 2, 1).await?;
        let edge = p.client(p.edge_addr);
        let mut acked: Vec<Vec<u8>> = Vec::new();
        // 40 MiB of values (160 batches of 512 x 500 bytes) for a 32 MiB disk.
        produce_records(&edge, "corefull", "fill", 160 * 512, &mut acked).await?;

        // The core's disk fills (or the core exits): wait for either.
        let core_log = p.core.log.clone();
        let full = wait_for("the core's disk to fill", Duration::from_secs(30), || {
            let free = disk.free_bytes();
            let running = p.core.is_running();
            async move {
                let free = free?;
                Ok((free < 1024 * 1024 || !running).then_some(free))
            }
        })
        .await?;
        let out = edge_counter(metrics, "strata_edge_records_out_total").await?;
        let core_running = p.core.is_running();
        eprintln!(
            "core disk full: {full} bytes free, core running: {core_running}, the edge forwarded {out} of {} records",
            acked.len()
        );
        // What the core holds now it acknowledged: keep it to check later.
        let held_before = api::describe_stream(&admin, "corefull").await.map(|i| i.records());
        eprintln!("core holds (describe) while full: {held_before:?}");
        print_lines("core log (disk full, errors, warnings)", &disk_lines(&core_log));
        if !core_running {
            let text = std::fs::read_to_string(&core_log)?;
            assert!(
                text.contains("No space left on device"),
                "the core exited on a full disk without saying why:\n{}",
                p.core.log_tail()
            );
        }

        // The metadata group on the full disk: a ballast takes the last
        // free pages, then catalog changes (stream creates) until its log
        // write fails and openraft stops the group (as a restart would
        // have been needed before: chaos finding 2, docs/reliability.md).
        let meta_stopped = if core_running {
            fill_to_the_last_byte(&disk.path().join("ballast"))?;
            let mut stopped = false;
            for i in 0..5 {
                let name = format!("whilefull{i}");
                let r = tokio::time::timeout(
                    Duration::from_secs(10),
                    api::create_stream(&admin, &name, 1, 1),
                )
                .await;
                eprintln!("create {name} on the full disk: {r:?}");
                // The group's own error, passed on: its log write failed.
                if matches!(&r, Ok(Err(e)) if e.to_string().contains("/meta/")
                    && e.to_string().contains("No space left on device"))
                {
                    stopped = true;
                    break;
                }
            }
            std::fs::remove_file(disk.path().join("ballast"))?;
            stopped
        } else {
            false
        };

        // Space freed: forwarding must resume without an operator restarting
        // the core. Should it not, the core is restarted anyway, to check
        // that nothing it acknowledged was lost, and the test fails after.
        disk.resize(256)?;
        let mut restarted = false;
        if !p.core.is_running() {
            eprintln!("the core had exited; restarting it");
            p.restart_core().await?;
            restarted = true;
        }
        let resumed =
            edge_drained(&p, metrics, "corefull", acked.len() as u64, Duration::from_secs(15))
                .await;
        let wedged = match &resumed {
            Ok(_) => None,
            Err(e) => Some(format!(
                "{e:#}; the edge forwarded {} of {} records; core log: {:?}",
                edge_counter(metrics, "strata_edge_records_out_total").await?,
                acked.len(),
                disk_lines(&core_log)
                    .into_iter()
                    .find(|l| l.contains("quit RaftCore"))
            )),
        };
        if let Some(w) = &wedged {
            eprintln!("forwarding did not resume once space was freed: {w}\nrestarting the core to check what it acknowledged");
            p.core.kill9();
            p.restart_core().await?;
            restarted = true;
            edge_drained(&p, metrics, "corefull", acked.len() as u64, Duration::from_secs(30))
                .await?;
        }
        if meta_stopped && !restarted {
            // The metadata group opened again by itself: catalog changes work.
            wait_for(
                "a stream create after the metadata group stopped",
                Duration::from_secs(15),
                || {
                    let admin = &admin;
                    async move {
                        // An earlier try may have committed before failing.
                        Ok(match api::create_stream(admin, "afterfull", 1, 1).await {
                            Ok(_) => Some(()),
                            Err(e) if e.code() == Some(ErrorCode::StreamExists) => Some(()),
                            Err(_) => None,
                        })
                    }
                },
            )
            .await?;
            eprintln!("the metadata group stopped on the full disk and works again without a restart");
        }
        core_holds_exactly(&p, "corefull", &acked).await?;
        eprintln!(
            "after the disk was made bigger{}: the core holds each of the {} acknowledged records exactly once",
            if restarted { " and the core restarted" } else { "" },
            acked.len()
        );
        assert!(
            wedged.is_none(),
            "the core did not resume writing after its disk had room again (it did after a restart): {}",
            wedged.unwrap_or_default()
        );
        assert!(
            meta_stopped || !core_running,
            "five catalog changes on a full disk never stopped the metadata group: the test did not test it"
        );
        assert!(p.core.is_running(), "the core exited:\n{}", p.core.log_tail());
        assert!(p.edge.stop(), "edge did not stop cleanly");
        assert!(p.core.stop(), "core did not stop cleanly");
        drop(p);
        Ok(())
    })
    .await
}

/// Writes zeros to `path` until the file system is full.
fn fill_to_the_last_byte(path: &std::path::Path) -> Result<()> {
    use std::io::Write as _;
    let mut f = std::fs::File::create(path)?;
    let chunk = vec![0u8; 4096];
    loop {
        match f.write(&chunk) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}
