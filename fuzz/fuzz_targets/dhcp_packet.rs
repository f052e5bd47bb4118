//! Fuzz target: a DHCP message from the network, decoded, re-encoded and answered by a server
//! with a small pool (`dhcp::fuzz_one`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    dhcp::fuzz_one(data);
});
