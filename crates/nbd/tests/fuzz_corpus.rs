//! Replays the committed cargo-fuzz corpus of the NBD decoders (fuzz/corpus/nbd_*, grown by
//! scripts/fuzz.sh) on every test run.

use std::path::Path;

fn inputs(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target);
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries.map(|e| std::fs::read(e.unwrap().path()).unwrap()).collect()
}

#[test]
fn request_corpus_decodes_without_panics() {
    let all = inputs("nbd_request");
    for data in &all {
        if let Ok(h) = nbd::proto::decode_request(data) {
            let _ = nbd::proto::Command::from_header(&h);
        }
    }
    assert!(!all.is_empty(), "the nbd_request corpus is missing");
}

#[test]
fn option_corpus_decodes_without_panics() {
    let all = inputs("nbd_option");
    for data in &all {
        let _ = nbd::proto::decode_option_header(data);
        if data.len() >= 4 {
            let option = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
            let _ = nbd::proto::decode_option(option, &data[4..]);
        }
    }
    assert!(!all.is_empty(), "the nbd_option corpus is missing");
}
