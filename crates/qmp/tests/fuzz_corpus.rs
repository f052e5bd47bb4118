//! Replays the committed cargo-fuzz corpus of the QMP decoder (fuzz/corpus/qmp_message, grown by
//! scripts/fuzz.sh) on every test run.

use std::path::Path;

#[test]
fn qmp_corpus_decodes_without_panics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/qmp_message");
    let mut n = 0;
    for e in std::fs::read_dir(dir).expect("the qmp_message corpus is committed") {
        let data = std::fs::read(e.unwrap().path()).unwrap();
        if let Ok(line) = std::str::from_utf8(&data) {
            let _ = qmp::wire::decode(line);
        }
        n += 1;
    }
    assert!(n > 0, "the qmp_message corpus is empty");
}
