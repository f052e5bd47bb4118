//! `vine disk` on bad input and damaged images: clear errors naming the problem and the place,
//! exit codes (1 = check found problems, 2 = failure), and `check --repair`.

mod common;

use std::os::unix::fs::FileExt;

use common::*;

fn stderr_of(args: &[&str]) -> String {
    let out = fails(vine().args(args));
    assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_arguments_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.vhd");
    let p = p.to_str().unwrap();
    let out = fails(vine().args(["disk", "create", p, "--size", "10X"]));
    assert!(text(&out).contains("unknown unit"), "{}", text(&out));
    assert!(
        stderr_of(&["disk", "create", p, "--size", "1M", "--block-size", "3000"]).contains("power of two")
    );
    assert!(stderr_of(&["disk", "create", p, "--size", "2041G"]).contains("2040 GiB"));
    assert!(stderr_of(&["disk", "create", p]).contains("--size is required"));
    assert!(stderr_of(&["disk", "info", "/nonexistent/d.vhd"]).contains("/nonexistent/d.vhd"));
    ok(vine().args(["disk", "create", p, "--size", "1M"]));
    assert!(stderr_of(&["disk", "create", p, "--size", "1M"]).contains("already exists"));
    assert!(stderr_of(&["disk", "resize", p, "--size", "512K"]).contains("shrinking"));
    assert!(stderr_of(&["disk", "commit", p]).contains("only differencing"));
    assert!(stderr_of(&["disk", "compact", &format!("{p}.nope")]).contains("nope"));
    assert!(stderr_of(&["disk", "serve", p]).contains("--socket"));
}

#[test]
fn a_file_that_is_not_a_vhd_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("notes.txt");
    std::fs::write(&p, vec![b'a'; 4096]).unwrap();
    let err = stderr_of(&["disk", "info", p.to_str().unwrap()]);
    assert!(err.contains("notes.txt") && err.contains("footer cookie at offset 0xe00"), "{err}");
    let out = fails(vine().args(["disk", "check"]).arg(&p));
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn check_repair_fixes_damaged_footer_header_and_bat() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("d.vhd");
    ok(vine().args(["disk", "create"]).arg(&p).args(["--size", "8M", "--block-size", "512K"]));
    let s = Served::start(&p, dir.path(), &[]);
    qemu_io("raw", &s.url(), &["write -P 0x3c 0 1M".into()]);
    s.stop();
    let f = std::fs::OpenOptions::new().read(true).write(true).open(&p).unwrap();
    let len = f.metadata().unwrap().len();
    // Torn EOF footer, bad header checksum, and a BAT entry pointing past the end of the file.
    f.write_all_at(&[0u8; 100], len - 512).unwrap();
    f.write_all_at(&[0xAB], 512 + 700).unwrap();
    f.write_all_at(&0x00FF_0000u32.to_be_bytes(), 1536 + 4 * 10).unwrap();
    drop(f);
    let out = fails(vine().args(["disk", "check", "--json"]).arg(&p));
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let msgs: Vec<String> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["message"].as_str().unwrap().to_string())
        .collect();
    assert!(msgs.iter().any(|m| m.contains("footer at end of file")), "{msgs:?}");
    assert!(msgs.iter().any(|m| m.contains("dynamic header checksum")), "{msgs:?}");
    assert!(msgs.iter().any(|m| m.contains("BAT entry 10")), "{msgs:?}");
    let out = ok(vine().args(["disk", "check", "--repair"]).arg(&p));
    assert!(text(&out).contains("repaired:"), "{}", text(&out));
    assert_clean(&p);
    qemu_io("vpc", p.to_str().unwrap(), &["read -P 0x3c 0 1M".into()]);
}
