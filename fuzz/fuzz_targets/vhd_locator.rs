//! Fuzz target: vhd::fuzzing::locator_payload (never panics on arbitrary bytes).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| vhd::fuzzing::locator_payload(data));
