//! The figures a run is judged by, defined as CloudSim's `Helper` computes them: energy (kWh),
//! SLATAH, PDM, SLAV = SLATAH × PDM, ESV = energy × SLAV, migrations, host shutdowns.

use serde::Serialize;

/// W·s in one kWh.
pub const WS_PER_KWH: f64 = 3600.0 * 1000.0;

/// A run's results.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Metrics {
    /// Energy, kWh.
    pub energy_kwh: f64,
    /// SLA violation time per active host: host-time with allocated < requested CPU over active
    /// host-time (a fraction).
    pub slatah: f64,
    /// Performance degradation due to migration: CPU demand lost while migrating over all demand.
    pub pdm: f64,
    /// SLATAH × PDM.
    pub slav: f64,
    /// Energy × SLAV.
    pub esv: f64,
    /// Live migrations started.
    pub migrations: u64,
    /// Times a host went from on to off.
    pub host_shutdowns: u64,
}

impl Metrics {
    /// Derives SLAV and ESV.
    pub fn new(energy_ws: f64, slatah: f64, pdm: f64, migrations: u64, host_shutdowns: u64) -> Self {
        let energy_kwh = energy_ws / WS_PER_KWH;
        let slav = slatah * pdm;
        Metrics { energy_kwh, slatah, pdm, slav, esv: energy_kwh * slav, migrations, host_shutdowns }
    }
}
