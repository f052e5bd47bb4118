//! Shared helpers: where the PlanetLab traces are.

use std::path::PathBuf;

/// The ten PlanetLab days.
#[allow(dead_code)] // not every test file uses it
pub const DAYS: [&str; 10] = [
    "20110303", "20110306", "20110309", "20110322", "20110325", "20110403", "20110409", "20110411",
    "20110412", "20110420",
];

/// The PlanetLab traces: `$VINE_TRACES`, else `shared/traces/planetlab` beside the repository,
/// else the committed archive `testdata/planetlab-traces.tar.xz` unpacked into `target/testdata/`.
pub fn planetlab() -> PathBuf {
    if let Some(dir) = std::env::var_os("VINE_TRACES").map(PathBuf::from) {
        assert!(dir.is_dir(), "VINE_TRACES={} is not a directory", dir.display());
        return dir;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let beside = root.join("../shared/traces/planetlab");
    if beside.is_dir() {
        return beside;
    }
    unpacked(&root)
}

/// Unpacks the committed archive once (serialised across test processes by a lock file).
fn unpacked(root: &std::path::Path) -> PathBuf {
    use std::process::Command;
    let out = root.join("target/testdata/traces");
    let dir = out.join("planetlab");
    let done = out.join(".unpacked");
    std::fs::create_dir_all(&out).unwrap();
    let held = Command::new("flock")
        .arg(out.join(".lock"))
        .arg("sh")
        .arg("-c")
        .arg(format!(
            "[ -f {done} ] || {{ tar -xJf {archive} -C {out} && touch {done}; }}",
            done = done.display(),
            archive = root.join("testdata/planetlab-traces.tar.xz").display(),
            out = out.display()
        ))
        .status()
        .expect("flock and tar are installed");
    assert!(held.success() && dir.is_dir(), "cannot unpack the PlanetLab traces into {}", out.display());
    dir
}

/// Loads one day.
pub fn day(name: &str) -> sim::Trace {
    sim::load_day(&planetlab().join(name)).expect("trace loads")
}
