//! Fuzz target: reading an OVF descriptor and a manifest (`ovf::parse`, `ovf::Manifest::parse`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ovf::parse(text);
        let _ = ovf::Manifest::parse(text);
    }
});
