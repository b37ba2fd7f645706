//! The core's view of a run, read from outside it: its `tiered a segment`
//! log lines, its Prometheus metrics, and the sizes of its files.

use anyhow::{Context, Result};
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One `tiered a segment` line of the core's log.
#[derive(Debug, Clone, PartialEq)]
pub struct TieredLine {
    /// When the line was written (the object is uploaded and committed), ms since the epoch.
    pub at_ms: i64,
    pub key: String,
    pub records: u64,
    pub payload_bytes: u64,
    pub object_bytes: u64,
    pub ms: u64,
}

/// Removes ANSI colour sequences (the daemons' log is coloured).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte (a letter).
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Parses a `tiered a segment` line (ANSI already stripped).
pub fn parse_tiered_line(line: &str) -> Option<TieredLine> {
    let (_, fields) = line.split_once("tiered a segment")?;
    let at = line.split_whitespace().next()?;
    let at_ms = chrono::DateTime::parse_from_rfc3339(at)
        .ok()?
        .timestamp_millis();
    let field = |name: &str| {
        fields
            .split_whitespace()
            .find_map(|t| t.strip_prefix(name)?.strip_prefix('='))
    };
    let num = |name: &str| field(name)?.parse::<u64>().ok();
    Some(TieredLine {
        at_ms,
        key: field("key")?.to_string(),
        records: num("records")?,
        payload_bytes: num("payload_bytes")?,
        object_bytes: num("object_bytes")?,
        ms: num("ms")?,
    })
}

pub(super) fn read_log(path: &Path) -> String {
    strip_ansi(&std::fs::read_to_string(path).unwrap_or_default())
}

/// Sum of the Prometheus samples named `name` (any labels).
pub fn prom_sum(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for l in text.lines() {
        let Some(rest) = l.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        let v: f64 = rest.rsplit(' ').next()?.trim().parse().ok()?;
        *found.get_or_insert(0.0) += v;
    }
    found
}

pub(super) async fn scrape(port: u16) -> Result<String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .context("connecting to the core's metrics endpoint")?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .context("reading /metrics timed out")??;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

pub(super) fn free_tcp_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Bytes of the files under `dir` whose name ends with `suffix`.
pub(super) fn dir_bytes(dir: &Path, suffix: &str) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path(), suffix),
            Ok(_) if e.file_name().to_string_lossy().ends_with(suffix) => {
                e.metadata().map_or(0, |m| m.len())
            }
            _ => 0,
        })
        .sum()
}
