//! Fuzz target `job`: see `harness::job` for what must hold for every input.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::job(data));
