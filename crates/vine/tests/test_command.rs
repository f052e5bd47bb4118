//! The test command's own behaviour (`scripts/run-tests.sh`, called by `scripts/test.sh`): on a
//! scratch crate with one passing and one deliberately failing test it prints each test
//! binary's time and the totals line, and exits with cargo's failing status.

use std::path::Path;
use std::process::Command;

#[test]
fn a_failing_run_still_prints_times_and_totals_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let krate = dir.path().join("scratch");
    std::fs::create_dir_all(krate.join("src")).unwrap();
    std::fs::write(
        krate.join("Cargo.toml"),
        "[package]\nname = \"scratch\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n",
    )
    .unwrap();
    std::fs::write(
        krate.join("src/lib.rs"),
        "#[test]\nfn passes() {}\n\n#[test]\nfn fails_on_purpose() {\n    panic!(\"deliberately\");\n}\n",
    )
    .unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new("bash")
        .arg(root.join("scripts/run-tests.sh"))
        .arg("--manifest-path")
        .arg(krate.join("Cargo.toml"))
        .env("CARGO", env!("CARGO"))
        .env("CARGO_TARGET_DIR", dir.path().join("target"))
        .env("CARGO_TERM_COLOR", "never")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(101), "cargo test's status is passed on\n{stdout}\n{stderr}");
    assert!(stdout.contains("test fails_on_purpose ... FAILED"), "{stdout}");
    assert!(stdout.contains("== 1 passed, 1 failed"), "totals line missing:\n{stdout}");
    assert!(stdout.contains("== time per test binary"), "{stdout}");
    assert!(
        stdout.lines().any(|l| l.contains(" s  unittests src/lib.rs") && l.ends_with("(1 failed)")),
        "the failing binary's time line is missing:\n{stdout}"
    );
    assert!(stderr.contains("cargo test failed (exit status 101"), "{stderr}");
    assert!(dir.path().join("target/test.log").exists(), "the log is kept under the target directory");
}
