//! Fuzz target `engine_frames`: the property is `fuzz_checks::engine_frames`
//! (sim/tests/fuzz_checks/mod.rs), shared with the proptest version in CI
//! (sim/tests/frame_sequences.rs).
#![no_main]

#[path = "../../sim/tests/fuzz_checks/mod.rs"]
mod fuzz_checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_checks::engine_frames(data));
