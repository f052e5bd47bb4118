//! Fuzz target: decoding a line QEMU sends over QMP.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(line) = std::str::from_utf8(data) {
        let _ = qmp::wire::decode(line);
    }
});
