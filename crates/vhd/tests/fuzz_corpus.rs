//! Replays the committed cargo-fuzz corpus (fuzz/corpus/vhd_*, grown by scripts/fuzz.sh) and
//! the malformed-image corpus through the fuzz entry points on every test run, so a fix once
//! found by the fuzzer stays fixed without cargo-fuzz installed.

use std::path::Path;

fn replay(dir: &Path, f: fn(&[u8])) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut n = 0;
    for e in entries {
        let p = e.unwrap().path();
        if p.is_file() {
            f(&std::fs::read(&p).unwrap());
            n += 1;
        }
    }
    n
}

#[test]
fn fuzz_corpus_replays_without_panics() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let mut total = 0;
    total += replay(&root.join("vhd_footer"), vhd::fuzzing::footer);
    total += replay(&root.join("vhd_header"), vhd::fuzzing::header);
    total += replay(&root.join("vhd_locator"), vhd::fuzzing::locator_payload);
    total += replay(&root.join("vhd_image"), vhd::fuzzing::image);
    total += replay(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus"), vhd::fuzzing::image);
    assert!(total >= 18, "only {total} corpus inputs replayed");
}
