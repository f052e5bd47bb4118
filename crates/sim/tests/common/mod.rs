//! Shared helpers: where the PlanetLab traces are.

use std::path::PathBuf;

/// The ten PlanetLab days.
#[allow(dead_code)] // not every test file uses it
pub const DAYS: [&str; 10] = [
    "20110303", "20110306", "20110309", "20110322", "20110325", "20110403", "20110409", "20110411",
    "20110412", "20110420",
];

/// `shared/traces/planetlab` beside the repository (or `$VINE_TRACES`).
pub fn planetlab() -> PathBuf {
    let dir = std::env::var_os("VINE_TRACES").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/traces/planetlab")
    });
    assert!(dir.is_dir(), "PlanetLab traces not found at {} (set VINE_TRACES)", dir.display());
    dir
}

/// Loads one day.
pub fn day(name: &str) -> sim::Trace {
    sim::load_day(&planetlab().join(name)).expect("trace loads")
}
