//! `cargo fuzz run wire_request`: see `src/harness.rs`.
#![no_main]

#[path = "../src/harness.rs"]
#[allow(dead_code)]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness::wire_request(data);
});
