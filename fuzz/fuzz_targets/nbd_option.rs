//! Fuzz target: the NBD option header and option payload decoders.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = nbd::proto::decode_option_header(data);
    if data.len() >= 4 {
        let option = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
        let _ = nbd::proto::decode_option(option, &data[4..]);
    }
});
