//! The `strata` CLI against real daemons: stream admin, produce from stdin
//! with a key separator, consume as JSON, and bad arguments.

use anyhow::{bail, Result};
use std::process::Output;
use std::time::{Duration, Instant};
use strata_tests::{strata_output, wait_for, Pipeline};

/// Asserts that the command succeeded, showing its stderr if not.
fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_tour() -> Result<()> {
    let p = Pipeline::start("").await?;
    let ca = p.pki.ca.display().to_string();
    let core = p.core_addr.to_string();
    let edge = p.edge_addr.to_string();
    let run = |args: &[&str], stdin: &str| -> Result<Output> {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--ca", &ca]);
        strata_output(&all, stdin)
    };

    let out = run(
        &["stream", "create", "cli", "--shards", "3", "--core", &core],
        "",
    )?;
    assert_ok(&out);
    let out = run(
        &["stream", "describe", "cli", "--json", "--core", &core],
        "",
    )?;
    let d: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(d["shards"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        d["shards"][2]["end_hash_key"],
        "340282366920938463463374607431768211455"
    );
    assert!(d["retention"]["total_ms"].is_null(), "unlimited by default");
    // Retention changes after creation.
    let out = run(
        &[
            "stream",
            "retention",
            "cli",
            "--retention",
            "400d",
            "--json",
            "--core",
            &core,
        ],
        "",
    )?;
    let d: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| anyhow::anyhow!("{e}: {}", String::from_utf8_lossy(&out.stderr)))?;
    assert_eq!(d["retention"]["total_ms"], 400 * 86_400_000u64);

    let out = run(
        &["produce", "cli", "--edge", &edge, "--key-sep", ":"],
        "dev-1:{\"t\":1}\ndev-2:{\"t\":2}\ndev-1:{\"t\":3}\n",
    )?;
    assert_ok(&out);
    let out = run(
        &["produce", "cli", "--edge", &edge, "--key", "dev-9", "hello"],
        "",
    )?;
    assert_ok(&out);

    // The edge forwards asynchronously: wait until all four are consumable.
    let deadline = Instant::now() + Duration::from_secs(60);
    let lines = loop {
        let out = run(&["consume", "cli", "--core", &core, "--json"], "")?;
        assert_ok(&out);
        let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)?
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?;
        if lines.len() >= 4 || Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(lines.len(), 4, "{lines:?}");
    for l in &lines {
        for field in ["stream", "shard", "offset", "timestamp", "key", "data"] {
            assert!(l.get(field).is_some(), "missing {field} in {l}");
        }
    }
    let dev1: Vec<&str> = lines
        .iter()
        .filter(|l| l["key"] == "dev-1")
        .map(|l| l["data"].as_str().unwrap())
        .collect();
    assert_eq!(dev1, ["{\"t\":1}", "{\"t\":3}"], "per-key order");
    assert!(lines
        .iter()
        .any(|l| l["key"] == "dev-9" && l["data"] == "hello"));

    let out = run(&["consume", "cli", "--core", &core, "--limit", "1"], "")?;
    assert_eq!(String::from_utf8(out.stdout)?.lines().count(), 1);

    // Synthetic records: `<key>:<i>:` padded to the size, keys key-0..2,
    // each key's records in order.
    let out = run(&["stream", "create", "gen", "--core", &core], "")?;
    assert_ok(&out);
    let out = run(
        &[
            "produce",
            "gen",
            "--edge",
            &edge,
            "--generate",
            "300",
            "--size",
            "40",
            "--keys",
            "3",
            "--batch-records",
            "50",
            "--quiet",
        ],
        "",
    )?;
    assert_ok(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("produced 300 records"));
    let generated = wait_for("300 generated records", Duration::from_secs(60), || {
        let out = run(&["consume", "gen", "--core", &core, "--json"], "");
        async move {
            let lines: Vec<serde_json::Value> = String::from_utf8(out?.stdout)?
                .lines()
                .map(serde_json::from_str)
                .collect::<Result<_, _>>()?;
            Ok((lines.len() >= 300).then_some(lines))
        }
    })
    .await?;
    assert_eq!(generated.len(), 300);
    let mut last_i: std::collections::HashMap<String, i64> = Default::default();
    for l in &generated {
        let (key, data) = (l["key"].as_str().unwrap(), l["data"].as_str().unwrap());
        assert_eq!(data.len(), 40, "{l}");
        let mut parts = data.splitn(3, ':');
        assert_eq!(parts.next(), Some(key), "{l}");
        let i: i64 = parts.next().unwrap().parse()?;
        assert_eq!(i % 3, key.trim_start_matches("key-").parse::<i64>()?, "{l}");
        assert!(parts.next().unwrap().bytes().all(|b| b == b'x'), "{l}");
        let prev = last_i.insert(key.to_owned(), i).unwrap_or(-1);
        assert!(i > prev, "per-key order: {l}");
    }
    assert_eq!(last_i.len(), 3);

    // Bad arguments: clear errors, non-zero exit, nothing changed.
    let out = run(
        &["consume", "cli", "--core", &core, "--from", "offset:x"],
        "",
    )?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("offset"));
    let out = run(
        &["produce", "cli", "--edge", &edge, "--key-sep", ":"],
        "no separator here\n",
    )?;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 1"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(
        &["stream", "create", "x", "--shards", "0", "--core", &core],
        "",
    )?;
    assert!(!out.status.success());
    let out = run(&["consume", "nope", "--core", &core], "")?;
    assert!(String::from_utf8_lossy(&out.stderr).contains("UNKNOWN_STREAM"));
    let out = strata_output(
        &[
            "stream",
            "list",
            "--core",
            &core,
            "--ca",
            "/nonexistent/ca.pem",
        ],
        "",
    )?;
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/ca.pem"));

    let out = run(&["stream", "list", "--json", "--core", &core], "")?;
    let l: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(l.as_array().map(Vec::len), Some(2), "cli and gen: {l}");
    Ok(())
}

/// The README's identities-and-access example, as a user types it (with
/// the test's addresses).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_device_dashboard_admin_example() -> Result<()> {
    let p = Pipeline::start("").await?;
    let ca = p.pki.ca.display().to_string();
    let tls = p.pki.ca.parent().unwrap().display().to_string();
    let devices = p.dir.path().join("devices");
    let dev = devices.display().to_string();
    let (core, edge) = (p.core_addr.to_string(), p.edge_addr.to_string());
    let run = |args: &[&str]| -> Result<Output> {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--ca", &ca]);
        strata_output(&all, "")
    };
    let ok = |out: Output| -> Result<String> {
        if !out.status.success() {
            bail!("failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    for name in ["sensor-1", "dash-1"] {
        ok(strata_output(
            &["identity", "issue", name, "--out", &dev, "--ca-dir", &tls],
            "",
        )?)?;
    }
    ok(run(&["stream", "create", "sensors", "--core", &core])?)?;
    ok(run(&[
        "acl",
        "add",
        "--principal",
        "sensor-*",
        "--allow",
        "produce",
        "--stream",
        "sensors",
        "--key-prefix",
        "${principal}",
        "--core",
        &core,
    ])?)?;
    ok(run(&[
        "acl",
        "add",
        "--principal",
        "dash-*",
        "--allow",
        "consume,describe",
        "--stream",
        "sensors",
        "--core",
        &core,
    ])?)?;
    let id = |n: &str| {
        (
            devices.join(format!("{n}.pem")).display().to_string(),
            devices.join(format!("{n}-key.pem")).display().to_string(),
        )
    };
    let (sc, sk) = id("sensor-1");
    let (dc, dk) = id("dash-1");
    // The edge learns the rules within 2 s: retry the first write briefly.
    let produce_as_device = |key: &str, value: &str| {
        run(&[
            "produce",
            "sensors",
            "--edge",
            &edge,
            "--cert",
            &sc,
            "--cert-key",
            &sk,
            "--key",
            key,
            value,
        ])
    };
    wait_for(
        "the device's first write",
        Duration::from_secs(15),
        || async {
            let out = produce_as_device("sensor-1/t", "21.5")?;
            if !out.status.success() {
                bail!("{}", String::from_utf8_lossy(&out.stderr));
            }
            Ok(Some(()))
        },
    )
    .await?;
    let out = produce_as_device("sensor-2/t", "9")?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("PERMISSION_DENIED") || err.contains("may write"),
        "{err}"
    );
    // The record reaches the core once forwarded: read as the README does
    // (up to the end as of the start) until it is there.
    wait_for(
        "the device's record at the dashboard",
        Duration::from_secs(30),
        || async {
            let got = ok(run(&[
                "consume",
                "sensors",
                "--core",
                &core,
                "--cert",
                &dc,
                "--cert-key",
                &dk,
                "--from",
                "oldest",
                "--limit",
                "5",
            ])?)?;
            Ok(got.contains("21.5").then_some(()))
        },
    )
    .await?;
    let who = ok(run(&[
        "whoami",
        "--core",
        &core,
        "--cert",
        &dc,
        "--cert-key",
        &dk,
    ])?)?;
    assert_eq!(who.trim(), "dash-1");
    let listed = ok(run(&["acl", "list", "--core", &core])?)?;
    assert!(
        listed.contains("sensor-*") && listed.contains("dash-*"),
        "{listed}"
    );
    // The dashboard cannot write or administer.
    let out = run(&[
        "acl",
        "remove",
        "1",
        "--core",
        &core,
        "--cert",
        &dc,
        "--cert-key",
        &dk,
    ])?;
    assert!(!out.status.success());
    Ok(())
}
