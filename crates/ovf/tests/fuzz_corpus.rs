//! Replays the committed cargo-fuzz corpus of the OVF reader (fuzz/corpus/ovf_descriptor, grown by
//! scripts/fuzz.sh) on every test run.

use std::path::Path;

#[test]
fn ovf_corpus_reads_without_panics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/ovf_descriptor");
    let mut n = 0;
    for e in std::fs::read_dir(dir).expect("the ovf_descriptor corpus is committed") {
        let data = std::fs::read(e.unwrap().path()).unwrap();
        if let Ok(text) = std::str::from_utf8(&data) {
            let _ = ovf::parse(text);
            let _ = ovf::Manifest::parse(text);
        }
        n += 1;
    }
    assert!(n > 0, "the ovf_descriptor corpus is empty");
}
