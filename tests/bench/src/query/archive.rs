//! The archive `strata-bench query` reads: one day of synthetic sensor
//! readings in one stream, written straight to a directory with the core's
//! own Parquet encoder ([`SegmentWriter`]) and manifests ([`Manifest`]), in
//! the layout the core's tiering writes (docs/tiering.md):
//!
//! ```text
//! <dir>/stream=sensors/date=2026-11-19/hour=<HH>/shard-<id>-<first offset, 20 digits>.parquet
//! <dir>/_strata/manifests/stream=sensors/shard-<id>.json
//! <dir>/bench-archive.json      what was generated (spec, sizes, time taken)
//! ```
//!
//! Pushing a gigabyte through edge → core → tiering would take far longer
//! than the queries it is for, and would measure the pipeline, not the
//! query; the objects are byte for byte what the core would write for the
//! same records, since they come from the same encoder.
//!
//! Layout: `hours` hours from 2026-11-19T00:00Z, `shards` shards, each
//! shard-hour cut into `objects_per_hour` objects (the core's default
//! `segment_age_max_ms` of 10 minutes gives 6). Every shard-hour holds the
//! same number of records, timestamps spread evenly over the hour, offsets
//! dense per shard; so an hour holds exactly `shards × records_per_shard_hour`
//! records, and exactly its own objects have timestamps inside it. Devices
//! are the partition keys, each in one shard (device `i` in shard
//! `i % shards`).
//!
//! The record count is chosen so that the objects reach `target_bytes`: a
//! sample object is encoded first to learn the Parquet bytes per record.
//! An archive whose `bench-archive.json` has the same [`Spec`] (and whose
//! objects are all there, with their sizes) is reused.

use crate::tier::Device;
use anyhow::{bail, ensure, Context, Result};
use object_store::path::Path as StorePath;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;
use strata_archive::{keys, Manifest, SegmentWriter, TieredObject, WriterOptions};
use strata_schema::batch::{self, Builder, NewRecord};

pub const STREAM: &str = "sensors";
/// The archive's day.
pub const DATE: &str = "2026-11-19";
/// 2026-11-19T00:00:00Z.
pub const DAY_START_MS: i64 = 1_795_046_400_000;
const HOUR_MS: i64 = 3_600_000;
/// Bump when the payload or the layout changes: older archives are rebuilt.
const GENERATOR_VERSION: u32 = 1;
/// Records per flatbuffers batch handed to the encoder.
const BATCH_RECORDS: u64 = 2048;
/// Records of the sample object that sets the record count.
const SAMPLE_RECORDS: u64 = 40_000;
/// Records are added until the estimate is this much above the target, so
/// that the objects reach it despite the estimate's error.
const TARGET_MARGIN: f64 = 1.02;
/// Random characters of each reading's `fw` token: they carry most of the
/// entropy, so they set the compression ratio.
const TOKEN_CHARS: usize = 20;
const FILE: &str = "bench-archive.json";

/// What to generate: equal specs give equal archives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// [`GENERATOR_VERSION`] of the code that wrote it.
    pub generator: u32,
    /// Parquet bytes to reach, at least.
    pub target_bytes: u64,
    pub shards: u32,
    pub hours: u32,
    pub objects_per_hour: u32,
    pub devices: u32,
    pub seed: u64,
}

impl Spec {
    pub fn new(
        target_bytes: u64,
        shards: u32,
        hours: u32,
        objects_per_hour: u32,
        devices: u32,
        seed: u64,
    ) -> Self {
        Self {
            generator: GENERATOR_VERSION,
            target_bytes: target_bytes.max(1),
            shards: shards.max(1),
            hours: hours.clamp(1, 24),
            objects_per_hour: objects_per_hour.max(1),
            devices: devices.max(shards.max(1)),
            seed,
        }
    }

    /// Directory name under the archive root: one per spec.
    pub fn dir_name(&self) -> String {
        format!(
            "{STREAM}-v{}-{}MB-{}s-{}h-{}o-{}d-seed{}",
            self.generator,
            self.target_bytes / 1_000_000,
            self.shards,
            self.hours,
            self.objects_per_hour,
            self.devices,
            self.seed
        )
    }
}

/// A generated archive: its spec and what it holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Archive {
    pub spec: Spec,
    pub records_per_shard_hour: u64,
    pub records: u64,
    pub objects: u64,
    /// Size of the Parquet objects.
    pub parquet_bytes: u64,
    /// Keys + values, as the core counts payload.
    pub payload_bytes: u64,
    /// The JSON values alone.
    pub json_bytes: u64,
    /// The sample's Parquet bytes per record, which set the record count.
    pub sample_bytes_per_record: f64,
    pub generated_utc: String,
    pub generate_secs: f64,
    /// CPU time of the generating process over `generate_secs`.
    pub generate_cpu_secs: f64,
    pub workers: usize,
}

impl Archive {
    /// Records of hour `h` (all shards).
    pub fn records_per_hour(&self) -> u64 {
        self.records_per_shard_hour * u64::from(self.spec.shards)
    }
}

/// Where the archive of `spec` is, and whether it was made by this call.
pub struct Ready {
    pub dir: PathBuf,
    pub archive: Archive,
    pub reused: bool,
}

/// Returns the archive of `spec` under `root`, generating it unless a
/// complete one is there.
pub fn ensure(root: &Path, spec: &Spec) -> Result<Ready> {
    let dir = root.join(spec.dir_name());
    match load(&dir, spec) {
        Ok(Some(archive)) => {
            return Ok(Ready {
                dir,
                archive,
                reused: true,
            })
        }
        Ok(None) => {}
        Err(e) => eprintln!(
            "   archive in {} is not usable ({e:#}): rebuilding",
            dir.display()
        ),
    }
    if dir.exists() {
        ensure!(
            dir.join(FILE).exists(),
            "{} exists but has no {FILE}: not removing what this tool did not write",
            dir.display()
        );
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    // Written under a temporary name, renamed when complete: an interrupted
    // run never leaves a directory that looks finished.
    let partial = root.join(format!("{}.partial", spec.dir_name()));
    if partial.exists() {
        std::fs::remove_dir_all(&partial)
            .with_context(|| format!("removing {}", partial.display()))?;
    }
    std::fs::create_dir_all(&partial).with_context(|| format!("creating {}", partial.display()))?;
    let archive = generate(&partial, spec)?;
    std::fs::rename(&partial, &dir)
        .with_context(|| format!("renaming {} to {}", partial.display(), dir.display()))?;
    Ok(Ready {
        dir,
        archive,
        reused: false,
    })
}

/// The archive in `dir` if it was generated from `spec` and every object
/// its manifests list is there with its size; `None` if there is none.
fn load(dir: &Path, spec: &Spec) -> Result<Option<Archive>> {
    let Ok(bytes) = std::fs::read(dir.join(FILE)) else {
        return Ok(None);
    };
    let a: Archive = serde_json::from_slice(&bytes).context("parsing bench-archive.json")?;
    if a.spec != *spec {
        bail!("it was generated from another spec: {:?}", a.spec);
    }
    let (mut objects, mut bytes) = (0u64, 0u64);
    for shard in 0..spec.shards {
        let key = keys::manifest_key(&StorePath::default(), STREAM, shard);
        let path = dir.join(key.as_ref());
        let m = Manifest::from_json(
            &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
        )?;
        for o in &m.objects {
            let p = dir.join(&o.key);
            let len = std::fs::metadata(&p)
                .with_context(|| format!("{} is missing", p.display()))?
                .len();
            ensure!(
                len == o.bytes,
                "{} has {len} bytes, manifest says {}",
                p.display(),
                o.bytes
            );
            objects += 1;
            bytes += len;
        }
    }
    ensure!(
        objects == a.objects && bytes == a.parquet_bytes,
        "{objects} objects of {bytes} bytes, {FILE} says {} of {}",
        a.objects,
        a.parquet_bytes
    );
    Ok(Some(a))
}

// ---- the readings -------------------------------------------------------------

/// Readings of one shard's devices, each a slow random walk, devices drawn
/// at random: `{"device":"dev-0042","seq":1234,"temperature":21.37,
/// "humidity":48.2,"battery":3.91,"rssi":-67,"status":"ok",
/// "fw":"<20 random characters>"}` (about 150 B).
pub struct Readings {
    rng: rand::rngs::StdRng,
    devices: Vec<Device>,
    token: [u8; TOKEN_CHARS],
}

const TOKEN_ALPHABET: &[u8; 64] =
    b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_";

impl Readings {
    /// The devices of `shard`, seeded by `seed`.
    pub fn new(seed: u64, devices: u32, shards: u32, shard: u32) -> Self {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let devices = (0..devices)
            .filter(|i| i % shards == shard)
            .map(|i| Device::new(&mut rng, i))
            .collect();
        Self {
            rng,
            devices,
            token: [b'0'; TOKEN_CHARS],
        }
    }

    /// Writes the next reading into `out`; returns its device.
    pub fn next(&mut self, out: &mut Vec<u8>) -> usize {
        let i = self.rng.random_range(0..self.devices.len());
        let r = &mut self.rng;
        let d = &mut self.devices[i];
        let status = d.step(r);
        // 6 bits per character from one draw per 10 characters.
        for chunk in self.token.chunks_mut(10) {
            let mut bits: u64 = r.random();
            for c in chunk {
                *c = TOKEN_ALPHABET[(bits & 63) as usize];
                bits >>= 6;
            }
        }
        let token = std::str::from_utf8(&self.token).expect("the alphabet is ASCII");
        out.clear();
        let _ = write!(
            out,
            r#"{{"device":"{}","seq":{},"temperature":{:.2},"humidity":{:.1},"battery":{:.2},"rssi":{},"status":"{status}","fw":"{token}"}}"#,
            d.id, d.seq, d.temp, d.humidity, d.battery, d.rssi
        );
        i
    }

    pub fn key(&self, device: usize) -> &str {
        &self.devices[device].id
    }
}

// ---- writing ------------------------------------------------------------------

/// One shard-hour's share of the work.
#[derive(Debug, Clone, Copy)]
struct Task {
    shard: u32,
    hour: u32,
}

#[derive(Debug, Default)]
struct Written {
    objects: Vec<(u32, TieredObject)>,
    records: u64,
    payload_bytes: u64,
    json_bytes: u64,
}

/// Encodes records `[lo, hi)` of a shard-hour of `n` records as one object;
/// returns it with its JSON bytes.
fn encode_object(
    gen: &mut Readings,
    task: Task,
    n: u64,
    (lo, hi): (u64, u64),
    progress: &indicatif::ProgressBar,
) -> Result<(strata_archive::EncodedObject, u64)> {
    let hour_start = DAY_START_MS + i64::from(task.hour) * HOUR_MS;
    let base_offset = u64::from(task.hour) * n;
    let mut w = SegmentWriter::new(STREAM, task.shard, WriterOptions::default())?;
    let mut b = Builder::with_capacity(BATCH_RECORDS as usize * 200);
    let mut value = Vec::with_capacity(256);
    let mut json_bytes = 0;
    let mut i = lo;
    while i < hi {
        let m = BATCH_RECORDS.min(hi - i);
        for r in i..i + m {
            // Spread evenly over the hour, never past its end.
            let ts = hour_start + (i128::from(r) * i128::from(HOUR_MS) / i128::from(n)) as i64;
            let dev = gen.next(&mut value);
            json_bytes += value.len() as u64;
            b.push(&NewRecord {
                key: Some(gen.key(dev)),
                value: &value,
                timestamp_ms: ts,
                headers: &[],
            });
        }
        let bytes = b.finish();
        let records = batch::open(&bytes)?.records();
        for (x, rec) in records.iter().enumerate() {
            w.push(base_offset + i + x as u64, &rec)?;
        }
        i += m;
        progress.inc(m);
    }
    Ok((w.finish()?, json_bytes))
}

fn write_task(
    dir: &Path,
    spec: &Spec,
    n: u64,
    task: Task,
    progress: &indicatif::ProgressBar,
) -> Result<Written> {
    let seed = spec
        .seed
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(u64::from(task.shard) << 32 | u64::from(task.hour));
    let mut gen = Readings::new(seed, spec.devices, spec.shards, task.shard);
    let k = u64::from(spec.objects_per_hour);
    let mut out = Written::default();
    for j in 0..k {
        let (lo, hi) = (n * j / k, n * (j + 1) / k);
        if lo == hi {
            continue;
        }
        let (enc, json) = encode_object(&mut gen, task, n, (lo, hi), progress)?;
        let key = enc.key(&StorePath::default(), STREAM, task.shard, 1);
        let path = dir.join(key.as_ref());
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, &enc.parquet)
            .with_context(|| format!("writing {}", path.display()))?;
        out.records += enc.records;
        out.payload_bytes += enc.payload_bytes;
        out.json_bytes += json;
        out.objects.push((task.shard, enc.tiered_object(&key)));
    }
    Ok(out)
}

/// Parquet bytes per record of a sample object, to size the archive.
fn sample_bytes_per_record(spec: &Spec) -> Result<f64> {
    let mut gen = Readings::new(spec.seed ^ 0x5a5a, spec.devices, spec.shards, 0);
    let hidden = indicatif::ProgressBar::hidden();
    let task = Task { shard: 0, hour: 0 };
    let (enc, _) = encode_object(&mut gen, task, SAMPLE_RECORDS, (0, SAMPLE_RECORDS), &hidden)?;
    Ok(enc.object_bytes() as f64 / enc.records as f64)
}

/// Records per shard-hour for `target_bytes` at `bytes_per_record`: a
/// multiple of `objects_per_hour`, at least one record per object.
pub fn records_per_shard_hour(spec: &Spec, bytes_per_record: f64) -> u64 {
    let cells = f64::from(spec.shards) * f64::from(spec.hours);
    let n = (spec.target_bytes as f64 * TARGET_MARGIN / cells / bytes_per_record.max(1.0)).ceil()
        as u64;
    let k = u64::from(spec.objects_per_hour);
    n.div_ceil(k).max(1) * k
}

/// Writes the whole archive into `dir`, shard-hours spread over one worker
/// thread per core.
fn generate(dir: &Path, spec: &Spec) -> Result<Archive> {
    let started = Instant::now();
    let cpu0 = crate::procfs::read_proc(std::process::id())?.cpu_s;
    let bpr = sample_bytes_per_record(spec)?;
    let n = records_per_shard_hour(spec, bpr);
    let tasks: Vec<Task> = (0..spec.hours)
        .flat_map(|hour| (0..spec.shards).map(move |shard| Task { shard, hour }))
        .collect();
    let total = n * tasks.len() as u64;
    eprintln!(
        "   generating {} records ({} per shard-hour; sample: {bpr:.1} B of Parquet per record) \
         for {} MB of Parquet into {}",
        total,
        n,
        spec.target_bytes / 1_000_000,
        dir.display()
    );
    let progress = indicatif::ProgressBar::new(total).with_style(
        indicatif::ProgressStyle::with_template(
            "   {spinner} [{elapsed_precise}] {bar:40} {human_pos}/{human_len} records  {per_sec}  {msg}  eta {eta}",
        )
        .expect("valid template"),
    );
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(tasks.len());
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let parquet = AtomicU64::new(0);
    let done = Mutex::new(Written::default());
    let first_error = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let Some(&task) = tasks.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        return;
                    };
                    match write_task(dir, spec, n, task, &progress) {
                        Ok(w) => {
                            let b: u64 = w.objects.iter().map(|(_, o)| o.bytes).sum();
                            let mb = (parquet.fetch_add(b, Ordering::Relaxed) + b) / 1_000_000;
                            progress.set_message(format!("{mb} MB of Parquet"));
                            let mut d = done.lock().expect("no worker panics holding it");
                            d.records += w.records;
                            d.payload_bytes += w.payload_bytes;
                            d.json_bytes += w.json_bytes;
                            d.objects.extend(w.objects);
                        }
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            first_error
                                .lock()
                                .expect("no worker panics holding it")
                                .get_or_insert(e);
                        }
                    }
                }
            });
        }
    });
    progress.finish_and_clear();
    if let Some(e) = first_error.into_inner().expect("workers joined") {
        return Err(e.context("generating the archive"));
    }
    let mut done = done.into_inner().expect("workers joined");
    ensure!(
        done.records == total,
        "wrote {} records, meant {total}",
        done.records
    );
    done.objects
        .sort_by_key(|(shard, o)| (*shard, o.first_offset));
    let mut parquet_bytes = 0;
    for shard in 0..spec.shards {
        let mut m = Manifest::new(STREAM, shard);
        for (_, o) in done.objects.iter().filter(|(s, _)| *s == shard) {
            parquet_bytes += o.bytes;
            m.push(o.clone())?;
        }
        let path = dir.join(keys::manifest_key(&StorePath::default(), STREAM, shard).as_ref());
        std::fs::create_dir_all(path.parent().expect("a manifest key has a parent"))?;
        std::fs::write(&path, m.to_json())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let archive = Archive {
        spec: spec.clone(),
        records_per_shard_hour: n,
        records: done.records,
        objects: done.objects.len() as u64,
        parquet_bytes,
        payload_bytes: done.payload_bytes,
        json_bytes: done.json_bytes,
        sample_bytes_per_record: bpr,
        generated_utc: chrono::Utc::now().format("%Y-%m-%d %H:%M:%S").to_string(),
        generate_secs: started.elapsed().as_secs_f64(),
        generate_cpu_secs: crate::procfs::read_proc(std::process::id())?.cpu_s - cpu0,
        workers,
    };
    std::fs::write(
        dir.join(FILE),
        serde_json::to_vec_pretty(&archive).expect("plain struct serializes"),
    )?;
    Ok(archive)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_start_is_midnight_utc_of_the_date() {
        let t = chrono::DateTime::from_timestamp_millis(DAY_START_MS).unwrap();
        assert_eq!(
            t.format("%Y-%m-%dT%H:%M:%S").to_string(),
            format!("{DATE}T00:00:00")
        );
    }

    #[test]
    fn readings_are_seeded_json_with_a_temperature() {
        let (mut a, mut b) = (Readings::new(3, 100, 4, 1), Readings::new(3, 100, 4, 1));
        let (mut va, mut vb) = (Vec::new(), Vec::new());
        let mut total = 0;
        for _ in 0..1000 {
            let d = a.next(&mut va);
            assert_eq!(d, b.next(&mut vb));
            assert_eq!(va, vb);
            let s = std::str::from_utf8(&va).unwrap();
            let id: u32 = a.key(d)[4..].parse().unwrap();
            assert_eq!(id % 4, 1, "device {id} belongs to shard 1");
            assert!(s.starts_with(&format!(r#"{{"device":"{}","seq":"#, a.key(d))));
            assert!(
                s.contains(r#","temperature":"#) && s.ends_with("\"}"),
                "{s}"
            );
            total += va.len();
        }
        assert!(
            (130..=170).contains(&(total / 1000)),
            "{} B per reading",
            total / 1000
        );
    }

    #[test]
    fn record_count_reaches_the_target_in_whole_objects() {
        let spec = Spec::new(1_000_000_000, 4, 24, 6, 1000, 7);
        let n = records_per_shard_hour(&spec, 40.0);
        assert_eq!(n % 6, 0);
        assert!(n as f64 * 96.0 * 40.0 >= 1e9 * TARGET_MARGIN);
        assert!(((n - 6) as f64) * 96.0 * 40.0 < 1e9 * TARGET_MARGIN);
    }

    #[test]
    fn a_tiny_archive_is_complete_and_reused() {
        let root = tempfile::tempdir().unwrap();
        let spec = Spec::new(200_000, 2, 3, 2, 10, 1);
        let first = ensure(root.path(), &spec).unwrap();
        assert!(!first.reused);
        let a = &first.archive;
        assert_eq!(a.objects, 2 * 3 * 2);
        assert_eq!(a.records, a.records_per_shard_hour * 6);
        assert!(a.parquet_bytes >= spec.target_bytes, "{a:?}");
        let m = Manifest::from_json(
            &std::fs::read(
                first
                    .dir
                    .join("_strata/manifests/stream=sensors/shard-1.json"),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(m.tiered_to(), a.records_per_shard_hour * 3);
        let hour2 = &m.objects[4];
        let key = format!(
            "stream={STREAM}/date={DATE}/hour=02/shard-1-{:020}-{:020}-1.parquet",
            2 * a.records_per_shard_hour,
            hour2.next_offset
        );
        assert!(first.dir.join(&key).is_file(), "{key} missing");
        assert_eq!(hour2.key, key);
        assert_eq!(hour2.min_timestamp_ms, DAY_START_MS + 2 * HOUR_MS);
        assert!(m.objects[5].max_timestamp_ms < DAY_START_MS + 3 * HOUR_MS);
        let again = ensure(root.path(), &spec).unwrap();
        assert!(again.reused);
        assert_eq!(again.archive.parquet_bytes, a.parquet_bytes);
    }
}
