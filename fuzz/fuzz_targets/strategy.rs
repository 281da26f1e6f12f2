//! Fuzz target `strategy`: see `harness::strategy` for what must hold for every input.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::strategy(data));
