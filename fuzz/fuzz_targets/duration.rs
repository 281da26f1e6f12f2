//! Fuzz target `duration`: see `harness::duration` for what must hold for every input.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::duration(data));
