//! Fuzz target: the NBD request header decoder and command validation.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(h) = nbd::proto::decode_request(data) {
        let _ = nbd::proto::Command::from_header(&h);
    }
});
