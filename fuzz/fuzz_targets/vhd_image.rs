//! Fuzz target: vhd::fuzzing::image (never panics on arbitrary bytes).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| vhd::fuzzing::image(data));
