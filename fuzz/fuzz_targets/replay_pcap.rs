//! Fuzz target `replay_pcap`: the property is `fuzz_checks::replay_pcap`
//! (sim/tests/fuzz_checks/mod.rs), shared with the proptest version in CI
//! (sim/tests/frame_sequences.rs).
#![no_main]

#[path = "../../sim/tests/fuzz_checks/mod.rs"]
mod fuzz_checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_checks::replay_pcap(data));
