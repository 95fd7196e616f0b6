//! Fuzz target `dhcpv6`: the property is `fuzz_checks::dhcpv6`
//! (engine/tests/fuzz_checks/mod.rs), shared with the proptest version in
//! CI (engine/tests/fuzz_props.rs).
#![no_main]

#[path = "../../engine/tests/fuzz_checks/mod.rs"]
mod fuzz_checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_checks::dhcpv6(data));
