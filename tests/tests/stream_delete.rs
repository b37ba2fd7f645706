//! `strata stream delete` against real processes: a deleted stream is gone
//! from listings and from every replica's disk, produces to it are refused
//! once the edge dropped it, and a stream created again under its name
//! starts empty; in a three-zone cluster, a replica that was down during
//! the deletion holds the name back until it has removed its copy.

use anyhow::{bail, Result};
use std::time::{Duration, Instant};
use strata_client::cluster::Cluster;
use strata_client::{api, ClientError};
use strata_schema::batch::{Builder, NewRecord};
use strata_schema::fb::ErrorCode;
use strata_tests::cluster::TestCluster;
use strata_tests::{bounded, strata_ok, strata_output, wait_for, workload, Pipeline};

fn batch(n: usize, tag: &str) -> bytes::Bytes {
    let mut b = Builder::default();
    for i in 0..n {
        let (k, v) = (format!("k{i}"), format!("{tag}-{i}"));
        b.push(&NewRecord {
            key: Some(&k),
            value: v.as_bytes(),
            timestamp_ms: i as i64,
            headers: &[],
        });
    }
    b.finish()
}

async fn committed(c: &Cluster, stream: &str) -> Result<Vec<String>> {
    let recs = workload::read_all(c, stream).await?;
    Ok(recs
        .iter()
        .map(|r| String::from_utf8_lossy(&r.data).into_owned())
        .collect())
}

async fn wait_committed(c: &Cluster, stream: &str, n: usize) -> Result<Vec<String>> {
    wait_for(
        &format!("{n} records in {stream}"),
        Duration::from_secs(30),
        || async move {
            let v = committed(c, stream).await?;
            Ok((v.len() >= n).then_some(v))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_stream_is_gone_everywhere_and_its_name_starts_empty() -> Result<()> {
    bounded(150, async {
        let p = Pipeline::start("").await?;
        let ca = p.pki.ca.display().to_string();
        let core = p.core_addr.to_string();
        let cluster = Cluster::new(vec![p.core_addr], &p.pki.ca)?;
        strata_ok(&[
            "stream", "create", "doomed", "--shards", "2", "--ca", &ca, "--core", &core,
        ])?;
        let edge = p.client(p.edge_addr);
        api::produce(&edge, "doomed", &batch(10, "old")).await?;
        wait_committed(&cluster, "doomed", 10).await?;
        let shards_dir = p.dir.path().join("core").join("shards").join("doomed");
        assert!(shards_dir.exists());

        let out = strata_ok(&[
            "stream",
            "delete",
            "doomed",
            "--purge-archive",
            "--ca",
            &ca,
            "--core",
            &core,
        ])?;
        assert!(out.contains("deleted stream doomed"), "{out}");
        let list = strata_ok(&["stream", "list", "--ca", &ca, "--core", &core])?;
        assert!(!list.contains("doomed"), "{list}");
        wait_for(
            "the core to remove the replicas",
            Duration::from_secs(15),
            || {
                let gone = !shards_dir.exists();
                async move { Ok(gone.then_some(())) }
            },
        )
        .await?;
        // Deleting it again names it.
        let again = strata_output(
            &["stream", "delete", "doomed", "--ca", &ca, "--core", &core],
            "",
        )?;
        assert!(!again.status.success());
        assert!(String::from_utf8_lossy(&again.stderr).contains("\"doomed\""));

        // The edge drops the stream once the core keeps saying it is gone;
        // from then on a produce is refused.
        let t0 = Instant::now();
        let refused = wait_for(
            "the edge to refuse the deleted stream",
            Duration::from_secs(40),
            || {
                let edge = &edge;
                async move {
                    match api::produce(edge, "doomed", &batch(1, "late")).await {
                        Ok(_) => Ok(None),
                        Err(ClientError::Remote(e)) if e.code == ErrorCode::UnknownStream => {
                            Ok(Some(e.message))
                        }
                        Err(e) => bail!("unexpected {e}"),
                    }
                }
            },
        )
        .await?;
        println!("edge refused after {:?}: {refused}", t0.elapsed());
        assert!(refused.contains("doomed"), "{refused}");
        let edge_dir = p.dir.path().join("edge");
        wait_for(
            "the edge to remove the buffer",
            Duration::from_secs(10),
            || {
                let gone = !edge_dir.join("buffers").join("doomed").exists();
                async move { Ok(gone.then_some(())) }
            },
        )
        .await?;
        let cache = std::fs::read_to_string(edge_dir.join("streams.json"))?;
        assert!(!cache.contains("doomed"), "{cache}");

        // The same name again: a new, empty stream.
        strata_ok(&["stream", "create", "doomed", "--ca", &ca, "--core", &core])?;
        api::produce(&edge, "doomed", &batch(3, "new")).await?;
        let got = wait_committed(&cluster, "doomed", 3).await?;
        assert_eq!(got, vec!["new-0", "new-1", "new-2"]);
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_down_during_the_deletion_removes_its_copy_when_back() -> Result<()> {
    bounded(180, async {
        let mut c = TestCluster::start(3, false).await?;
        c.create_stream("gone", 2, 3).await?;
        let edge = c.client(c.edge_addr);
        api::produce(&edge, "gone", &batch(20, "old")).await?;
        let cluster = c.cluster();
        wait_committed(&cluster, "gone", 20).await?;
        c.wait_caught_up("gone", 2).await?;
        assert!((1..=3).all(|id| c.shard_dir(id, "gone", 0).exists()));

        // A replica that is not the metadata leader is down while the
        // stream is deleted (the deletion needs a metadata quorum only).
        let down = if c.meta_leader().await? == 3 { 2 } else { 3 };
        c.kill9(down);
        let d = cluster
            .any(|cl| async move { api::delete_stream(&cl, "gone", false).await })
            .await?;
        assert_eq!(d.name, "gone");
        for id in (1..=3).filter(|&id| id != down) {
            let dir = c.shard_dir(id, "gone", 0);
            wait_for(
                &format!("node {id} to remove its replica"),
                Duration::from_secs(15),
                || {
                    let gone = !dir.exists();
                    async move { Ok(gone.then_some(())) }
                },
            )
            .await?;
        }
        assert!(
            c.shard_dir(down, "gone", 0).exists(),
            "node {down} was down"
        );
        // Asked of the metadata leader directly (the SDK's routing would
        // retry the UNAVAILABLE answer until its deadline).
        let leader = c.client(c.addr_of(c.meta_leader().await?)?);
        let held = api::create_stream(&leader, "gone", 2, 3).await;
        match held {
            Err(ClientError::Remote(e)) if e.code == ErrorCode::Unavailable => {
                assert!(
                    e.message.contains("have not removed its data"),
                    "{}",
                    e.message
                )
            }
            other => bail!("expected UNAVAILABLE while node {down} holds a copy, got {other:?}"),
        }

        c.restart(down)?;
        let dir = c.shard_dir(down, "gone", 0);
        wait_for(
            "the restarted node to remove its copy",
            Duration::from_secs(60),
            || {
                let gone = !dir.exists();
                async move { Ok(gone.then_some(())) }
            },
        )
        .await?;
        c.create_stream("gone", 2, 3).await?;
        api::produce(&edge, "gone", &batch(3, "new")).await?;
        let mut got = wait_committed(&cluster, "gone", 3).await?;
        got.sort();
        assert_eq!(got, vec!["new-0", "new-1", "new-2"]);
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_streams_archive_is_kept_until_purged() -> Result<()> {
    bounded(150, async {
        // Seal segments after 1 s so the stream has an archive quickly.
        let p = Pipeline::start_with("", "segment_age_max_ms = 1000\n").await?;
        let ca = p.pki.ca.display().to_string();
        let core = p.core_addr.to_string();
        let admin = p.client(p.core_addr);
        api::create_stream(&admin, "arch", 1, 1).await?;
        api::produce(&p.client(p.edge_addr), "arch", &batch(10, "old")).await?;
        let info = wait_for("the stream to be tiered", Duration::from_secs(60), || {
            let admin = &admin;
            async move {
                let d = api::describe_stream(admin, "arch").await?;
                let done = d
                    .shards
                    .iter()
                    .all(|s| s.next_offset == 10 && s.tiered_offset == 10);
                Ok(done.then_some(d))
            }
        })
        .await?;
        let root = info
            .archive_url
            .strip_prefix("file://")
            .and_then(|u| u.strip_suffix("/stream=arch"))
            .map(std::path::PathBuf::from)
            .ok_or_else(|| anyhow::anyhow!("archive url {}", info.archive_url))?;
        let archived = |root: &std::path::Path| -> Result<usize> {
            Ok(strata_tests::files_under(root)?
                .iter()
                .filter(|f| f.to_string_lossy().contains("stream=arch"))
                .count())
        };
        assert!(archived(&root)? >= 2, "a data object and a manifest");

        let out = strata_ok(&["stream", "delete", "arch", "--ca", &ca, "--core", &core])?;
        assert!(out.contains("archive is kept"), "{out}");
        // The kept archive holds the name: a new stream would write over it.
        match api::create_stream(&admin, "arch", 1, 1).await {
            Err(ClientError::Remote(e)) if e.code == ErrorCode::StreamExists => {
                assert!(e.message.contains("--purge-archive"), "{}", e.message)
            }
            other => bail!("expected STREAM_EXISTS over a kept archive, got {other:?}"),
        }
        // Purging a deleted stream's archive.
        let out = strata_ok(&[
            "stream",
            "delete",
            "arch",
            "--purge-archive",
            "--ca",
            &ca,
            "--core",
            &core,
        ])?;
        assert!(out.contains("purged its archive"), "{out}");
        assert_eq!(archived(&root)?, 0);
        strata_ok(&["stream", "create", "arch", "--ca", &ca, "--core", &core])?;
        Ok(())
    })
    .await
}
