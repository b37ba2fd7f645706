//! `cargo fuzz run edge_buffer_frame`: see `src/harness.rs`.
#![no_main]

#[path = "../src/harness.rs"]
#[allow(dead_code)]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness::edge_buffer_frame(data);
});
