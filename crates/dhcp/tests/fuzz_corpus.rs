//! Replays the committed cargo-fuzz corpus of the DHCP server (fuzz/corpus/dhcp_packet, seeded by
//! hand and grown by scripts/fuzz.sh) through `dhcp::fuzz_one` on every test run, and feeds the
//! server truncations and bit flips of each input, so a fix once found by the fuzzer stays fixed
//! without cargo-fuzz installed.

use std::path::Path;

#[test]
fn dhcp_fuzz_corpus_replays_without_panics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/dhcp_packet");
    let mut n = 0;
    for e in std::fs::read_dir(dir).expect("the dhcp_packet corpus is committed") {
        let data = std::fs::read(e.unwrap().path()).unwrap();
        dhcp::fuzz_one(&data);
        for cut in (0..data.len()).step_by(7) {
            dhcp::fuzz_one(&data[..cut]);
        }
        for i in (0..data.len()).step_by(3) {
            let mut d = data.clone();
            d[i] ^= 0xa5;
            dhcp::fuzz_one(&d);
        }
        n += 1;
    }
    assert!(n >= 9, "only {n} corpus inputs");
}
