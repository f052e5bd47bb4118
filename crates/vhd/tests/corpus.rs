//! Issue 2, must-show 6: the committed corpus of malformed images (tests/corpus, built by
//! make.py). Each must be refused with an error that names the field and its offset, and
//! `check` must report it, never panic.

use std::path::Path;

use vhd::{Disk, OpenOptions};

#[test]
fn every_malformed_image_is_refused_naming_field_and_offset() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let expected = std::fs::read_to_string(dir.join("EXPECTED")).unwrap();
    let mut n = 0;
    for line in expected.lines() {
        let (name, want) = line.split_once('\t').unwrap();
        let path = dir.join(name);
        let err = Disk::open(&path, OpenOptions { lock: false, ..Default::default() }).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(want), "{name}: error {msg:?} does not contain {want:?}");
        assert!(msg.contains(name), "{name}: error {msg:?} does not name the file");
        let report = vhd::check::check(&path, false).unwrap();
        assert!(!report.is_clean(), "{name}: check found nothing wrong");
        n += 1;
    }
    assert!(n >= 18, "corpus has only {n} images");
}
