//! Shared by the benchmark smoke tests.

use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Runs `strata-bench` with `args`, bounded: a harness that hangs past
/// `limit` is killed and fails the test instead of hanging CI. Returns its
/// exit status and stdout (the results table).
pub fn run_bench(args: &[&std::ffi::OsStr], limit: Duration) -> (ExitStatus, String) {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata-bench"))
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start strata-bench");
    let deadline = started + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("strata-bench {args:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut table = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut table).unwrap();
    (status, table)
}
