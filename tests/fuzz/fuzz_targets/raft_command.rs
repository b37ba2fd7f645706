//! `cargo fuzz run raft_command`: see `src/harness.rs`.
#![no_main]

#[path = "../src/harness.rs"]
#[allow(dead_code)]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness::raft_command(data);
});
