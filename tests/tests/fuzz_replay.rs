//! Replays the committed fuzz corpora (`tests/fuzz/corpus/<target>/`) and
//! the inputs of crashes found and fixed (`tests/fuzz/regressions/<target>/`)
//! through the fuzz harnesses, on stable, in a plain `cargo test`: what the
//! fuzzer once explored stays panic-free. The harnesses are the same file
//! the cargo-fuzz targets compile (`tests/fuzz/src/harness.rs`); see
//! `docs/fuzzing.md`. No processes, no network: every input runs in memory
//! (the disk harnesses on a simulated file system), so this is bounded by
//! the corpora's size (a few thousand small files).

#[path = "../fuzz/src/harness.rs"]
mod harness;
#[path = "../fuzz/src/seeds.rs"]
mod seeds;

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn harness_of(target: &str) -> harness::Harness {
    harness::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|(_, run)| *run)
        .unwrap_or_else(|| panic!("no fuzz harness named {target}"))
}

/// Runs every input of `dir` through `run`; returns the files that panicked.
fn replay_dir(dir: &Path, run: harness::Harness) -> (usize, Vec<PathBuf>) {
    let files = harness::corpus_files(dir)
        .unwrap_or_else(|e| panic!("reading the corpus {}: {e}", dir.display()));
    let mut failed = Vec::new();
    for file in &files {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        if std::panic::catch_unwind(|| run(&data)).is_err() {
            failed.push(file.clone());
        }
    }
    (files.len(), failed)
}

fn replay(target: &str) {
    let run = harness_of(target);
    let corpus = fuzz_dir().join("corpus").join(target);
    let (count, mut failed) = replay_dir(&corpus, run);
    assert!(count > 0, "the corpus {} is empty", corpus.display());
    let regressions = fuzz_dir().join("regressions").join(target);
    if regressions.is_dir() {
        failed.extend(replay_dir(&regressions, run).1);
    }
    assert!(
        failed.is_empty(),
        "{target}: {} input(s) panicked (reproduce with `cargo +nightly fuzz run {target} FILE` \
         in tests/fuzz): {failed:#?}",
        failed.len()
    );
}

macro_rules! replay_tests {
    ($($target:ident),* $(,)?) => {
        $(
            #[test]
            fn $target() {
                replay(stringify!($target));
            }
        )*

        /// Every harness has its replay test above.
        #[test]
        fn every_target_is_replayed() {
            let tested = [$(stringify!($target)),*];
            let targets: Vec<&str> = harness::TARGETS.iter().map(|(name, _)| *name).collect();
            assert_eq!(targets, tested);
        }
    };
}

replay_tests!(
    wire_request,
    record_batch,
    peer_message,
    raft_command,
    manifest,
    snapshot,
    edge_buffer_frame,
    core_log_segment,
);

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/dev-data-v0.1")
}

/// The seeds (valid inputs of every format) build, pass their harnesses
/// and are accepted by their decoders: they keep up with the formats.
#[test]
fn seeds_pass_the_harnesses() {
    let seeds = seeds::all(&fixtures()).expect("the fixture data directory reads");
    for (target, _) in harness::TARGETS {
        assert!(
            seeds.iter().any(|(t, _, _)| t == target),
            "no seed for {target}"
        );
    }
    for (target, name, bytes) in &seeds {
        let run = harness_of(target);
        match std::panic::catch_unwind(|| run(bytes)) {
            Ok(true) => {}
            Ok(false) => panic!("seed {target}/{name} is refused by its decoder"),
            Err(_) => panic!("seed {target}/{name} panicked"),
        }
    }
}

/// Writes the seeds into the corpora: `cargo test -p strata-tests --test
/// fuzz_replay write_seeds -- --ignored` (then `cargo fuzz cmin`).
#[test]
#[ignore = "writes into tests/fuzz/corpus"]
fn write_seeds() {
    for (target, name, bytes) in seeds::all(&fixtures()).expect("the fixtures read") {
        let dir = fuzz_dir().join("corpus").join(target);
        std::fs::create_dir_all(&dir).expect("create the corpus directory");
        std::fs::write(dir.join(name), bytes).expect("write a seed");
    }
}
