//! One simulated day: hosts built as in CloudSim's PlanetLab experiment, VMs placed, then a
//! planning step every 300 s whose commands the simulator's [`Sender`] applies.

use std::time::{Duration, Instant};

use policy::prescriber::Command;
use policy::sender::SendError;
use policy::spec::{Migrations, Policy};
use policy::{HostSpec, Planner, PowerCurve, Reason, Sender};
use serde::Serialize;

use crate::datacenter::{DataCentre, MemoryModel, Totals, TICK_OFFSET_S};
use crate::metrics::Metrics;
use crate::trace::{Trace, SAMPLES_PER_DAY, SAMPLE_PERIOD_S};

/// Hosts in CloudSim's PlanetLab experiment.
pub const DEFAULT_HOSTS: usize = 800;
/// Simulated time, seconds (24 h).
pub const SIMULATION_LIMIT_S: f64 = SAMPLES_PER_DAY as f64 * SAMPLE_PERIOD_S;

/// HP ProLiant ML110 G4: 2 × 1860 MIPS, 4 GB.
pub const G4: HostSpec = HostSpec { pes: 2, pe_mips: 1860.0, ram_mb: 4096, power: PowerCurve::HP_ML110_G4 };
/// HP ProLiant ML110 G5: 2 × 2660 MIPS, 4 GB.
pub const G5: HostSpec = HostSpec { pes: 2, pe_mips: 2660.0, ram_mb: 4096, power: PowerCurve::HP_ML110_G5 };

/// `n` hosts, G4 at even and G5 at odd positions.
pub fn cloudsim_hosts(n: usize) -> Vec<HostSpec> {
    (0..n).map(|i| if i % 2 == 0 { G4 } else { G5 }).collect()
}

/// One point of the day's time series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    /// Seconds since start.
    pub time: f64,
    /// Average power since the previous point, kW.
    pub power_kw: f64,
    /// SLATAH within the interval since the previous point (fraction).
    pub slatah: f64,
    /// Migrations started in the interval.
    pub migrations: u64,
    /// Hosts on.
    pub hosts_on: usize,
}

/// A whole run's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Policy name.
    pub policy: String,
    /// Day.
    pub day: String,
    /// Hosts simulated.
    pub hosts: usize,
    /// How VMs occupy memory.
    pub memory: MemoryModel,
    /// VMs in the trace.
    pub vms: usize,
    /// VMs that fitted nowhere at creation.
    pub vms_not_placed: usize,
    /// The figures.
    #[serde(flatten)]
    pub metrics: Metrics,
    /// The most VM memory any host held at any time, as a fraction of its memory (above 1 only in
    /// the `trace` memory model, where hosts may hold more VMs than their memory).
    pub peak_memory_use: f64,
    /// Migrations planned to relieve an overloaded host.
    pub migrations_for_overload: u64,
    /// Migrations planned to empty an under-used host.
    pub migrations_for_underload: u64,
    /// Mean planning time per interval, ms.
    pub planning_ms_mean: f64,
    /// Longest planning step, ms.
    pub planning_ms_max: f64,
    /// Time series, one point per interval.
    pub series: Vec<Point>,
    /// The first commands of the day with their reasons (as many as [`Setup::commands_kept`]).
    pub sample_commands: Vec<String>,
}

/// The simulator's Sender: applies migrations to the simulated data centre.
struct SimSender<'a, 't> {
    dc: &'a mut DataCentre<'t>,
    time: f64,
}

impl Sender for SimSender<'_, '_> {
    fn send(&mut self, commands: &[Command]) -> Result<(), SendError> {
        for c in commands {
            if let Command::Migrate { vm, to, .. } = c {
                self.dc.start_migration(vm.0 as usize, to.0 as usize, self.time);
            }
            // Switch-offs need no action: a host with nothing to run draws no power here.
        }
        Ok(())
    }
}

/// How a day is simulated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Setup {
    /// Number of CloudSim hosts (G4 and G5 alternating).
    pub hosts: usize,
    /// How VMs occupy memory.
    pub memory: MemoryModel,
    /// How many of the day's commands (the first ones) the report keeps with their reasons.
    pub commands_kept: usize,
}

impl Default for Setup {
    /// The reference experiment: 800 hosts, CloudSim's memory model, the first 8 commands kept.
    fn default() -> Self {
        Setup { hosts: DEFAULT_HOSTS, memory: MemoryModel::Trace, commands_kept: 8 }
    }
}

/// Simulates `trace` under `policy` as `setup` says.
pub fn simulate(trace: &Trace, policy: &Policy, setup: &Setup) -> Report {
    let Setup { hosts, memory, commands_kept } = *setup;
    let mut dc = DataCentre::new(cloudsim_hosts(hosts), &trace.vms, policy.power, memory);
    dc.place_initial(policy.placement, policy.migrations.initial_threshold());
    let mut planner = Planner::new(policy.clone());
    let migrate = !matches!(policy.migrations, Migrations::None);
    let mut t = TICK_OFFSET_S + SAMPLE_PERIOD_S;
    let mut planning = Vec::new();
    let mut series = Vec::new();
    let mut sample_commands = Vec::new();
    let (mut for_overload, mut for_underload) = (0, 0);
    let mut peak_memory_use = dc.memory_use();
    let mut prev = dc.totals();
    prev.time = 0.0;
    while t <= SIMULATION_LIMIT_S {
        dc.tick(t);
        if migrate {
            let started = Instant::now();
            let snap = dc.snapshot(t, SAMPLE_PERIOD_S);
            let plan = planner.plan(&snap);
            for m in &plan.migrations {
                match m.reason {
                    Reason::Overload { .. } => for_overload += 1,
                    Reason::Underload { .. } => for_underload += 1,
                }
            }
            let commands = policy::prescribe(&plan);
            planning.push(started.elapsed());
            for c in commands.iter().take(commands_kept.saturating_sub(sample_commands.len())) {
                sample_commands.push(format!("t={t:.1}s {c}"));
            }
            SimSender { dc: &mut dc, time: t }
                .send(&commands)
                .expect("the simulated data centre accepts every command");
            peak_memory_use = peak_memory_use.max(dc.memory_use());
            dc.finish_migrations(t + SAMPLE_PERIOD_S);
        }
        let now = dc.totals();
        series.push(point(&prev, &now, t));
        prev = now;
        prev.time = t;
        t += SAMPLE_PERIOD_S;
    }
    let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
    let planning_ms_mean =
        if planning.is_empty() { 0.0 } else { planning.iter().map(ms).sum::<f64>() / planning.len() as f64 };
    let planning_ms_max = planning.iter().map(ms).fold(0.0, f64::max);
    let vms_not_placed = dc.unplaced();
    Report {
        policy: policy.name.clone(),
        day: trace.day.clone(),
        hosts,
        memory,
        vms: trace.vms.len(),
        vms_not_placed,
        peak_memory_use,
        migrations_for_overload: for_overload,
        migrations_for_underload: for_underload,
        metrics: dc.finish(),
        planning_ms_mean,
        planning_ms_max,
        series,
        sample_commands,
    }
}

fn point(prev: &Totals, now: &Totals, t: f64) -> Point {
    let dt = (t - prev.time).max(f64::MIN_POSITIVE);
    let active = now.active_s - prev.active_s;
    Point {
        time: t,
        power_kw: (now.energy_ws - prev.energy_ws) / dt / 1000.0,
        slatah: if active > 0.0 { (now.violation_s - prev.violation_s) / active } else { 0.0 },
        migrations: now.migrations - prev.migrations,
        hosts_on: now.hosts_on,
    }
}
