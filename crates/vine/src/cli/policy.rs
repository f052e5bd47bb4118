//! `vine policy …`: policies as data, and the trace-driven simulator.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use policy::spec::{Policy, BUILTIN_NAMES, DEFAULT_POLICY};

/// Policy subcommands.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Replay a day of workload traces under one or more policies and print energy and SLA figures.
    Simulate {
        /// A day directory of PlanetLab traces (one file per VM).
        #[arg(long)]
        trace: PathBuf,
        /// Built-in policy name or a policy file (.toml or .json); repeat or separate with commas to compare.
        #[arg(long, default_value = DEFAULT_POLICY, value_delimiter = ',')]
        policy: Vec<String>,
        /// Number of hosts (alternating HP ML110 G4 and G5).
        #[arg(long, default_value_t = sim::DEFAULT_HOSTS)]
        hosts: usize,
        /// How much memory a VM occupies after creation: `trace` (what its trace says; PlanetLab
        /// has none, as in CloudSim's experiment) or `allocated` (all of it, as on a live vine host).
        #[arg(long, default_value = "trace")]
        memory: sim::MemoryModel,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Draw energy and SLA violation over the day into this SVG file.
        #[arg(long)]
        plot: Option<PathBuf>,
        /// Print every command with its reason (can be long; with --json, as `sample_commands`).
        #[arg(long)]
        explain: bool,
    },
    /// Print a policy as TOML (a starting point for your own).
    Show {
        /// Built-in policy name or a policy file.
        #[arg(default_value = DEFAULT_POLICY)]
        policy: String,
    },
    /// List the built-in policies.
    List,
    /// Ask the running daemon's live metrics what the policy would do now, and why; changes nothing.
    DryRun {
        /// Built-in policy name or a policy file.
        #[arg(long, default_value = DEFAULT_POLICY)]
        policy: String,
        /// Print JSON (the snapshot the plan was made from, the plan and the commands).
        #[arg(long)]
        json: bool,
    },
    /// Time one planning step on a synthetic pool (hosts = VMs / 10), for bench/policy.sh.
    Bench {
        /// Number of VMs.
        #[arg(long)]
        vms: usize,
        /// Policies to time (comma-separated).
        #[arg(long, default_value = DEFAULT_POLICY, value_delimiter = ',')]
        policy: Vec<String>,
        /// Repetitions (the median is printed).
        #[arg(long, default_value_t = 3)]
        repeat: usize,
    },
}

fn load_policy(arg: &str) -> anyhow::Result<Policy> {
    if BUILTIN_NAMES.contains(&arg) {
        return Ok(Policy::builtin(arg)?);
    }
    let path = PathBuf::from(arg);
    if !path.exists() {
        return Ok(Policy::builtin(arg)?);
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading policy {}", path.display()))?;
    let policy = if path.extension().is_some_and(|e| e == "json") {
        Policy::from_json(&text)
    } else {
        Policy::from_toml(&text)
    };
    policy.with_context(|| format!("policy file {}", path.display()))
}

/// Runs a policy subcommand.
pub fn run(cmd: PolicyCommand) -> anyhow::Result<i32> {
    match cmd {
        PolicyCommand::DryRun { policy, json } => dry_run(&policy, json),
        PolicyCommand::List => {
            for name in BUILTIN_NAMES {
                let p = Policy::builtin(name)?;
                println!("{name:<12} {}", p.description);
            }
            Ok(0)
        }
        PolicyCommand::Bench { vms, policy, repeat } => {
            let snap = sim::bench::synthetic((vms / 10).max(2), vms, 42);
            for name in &policy {
                let p = load_policy(name)?;
                let mut times = Vec::new();
                let mut moves = 0;
                for _ in 0..repeat.max(1) {
                    let started = std::time::Instant::now();
                    let plan = policy::Planner::new(p.clone()).plan(&snap);
                    times.push(started.elapsed().as_secs_f64() * 1000.0);
                    moves = plan.migrations.len();
                }
                times.sort_by(f64::total_cmp);
                println!(
                    "{{\"policy\": \"{}\", \"vms\": {vms}, \"hosts\": {}, \"ms\": {:.3}, \"migrations\": {moves}}}",
                    p.name,
                    snap.hosts.len(),
                    times[times.len() / 2]
                );
            }
            Ok(0)
        }
        PolicyCommand::Show { policy } => {
            print!("{}", load_policy(&policy)?.to_toml());
            Ok(0)
        }
        PolicyCommand::Simulate { trace, policy, hosts, memory, json, plot, explain } => {
            let policies = policy.iter().map(|p| load_policy(p)).collect::<anyhow::Result<Vec<_>>>()?;
            let day =
                sim::load_day(&trace).with_context(|| format!("loading traces from {}", trace.display()))?;
            let mut reports = Vec::new();
            for p in &policies {
                let report = sim::simulate(
                    &day,
                    p,
                    &sim::Setup { hosts, memory, commands_kept: if explain { usize::MAX } else { 2 } },
                );
                if !json {
                    print_report(&report, explain);
                }
                reports.push(report);
            }
            if json {
                let out: Vec<serde_json::Value> = reports
                    .iter()
                    .map(|r| {
                        let mut v = serde_json::to_value(r).expect("reports serialise");
                        if let Some(o) = v.as_object_mut() {
                            o.remove("series");
                            if !explain {
                                o.remove("sample_commands");
                            }
                        }
                        v
                    })
                    .collect();
                let doc = if out.len() == 1 { out.into_iter().next().expect("one") } else { out.into() };
                println!("{}", serde_json::to_string_pretty(&doc)?);
            }
            if let Some(path) = plot {
                std::fs::write(&path, sim::plot::svg(&reports))
                    .with_context(|| format!("writing plot {}", path.display()))?;
            }
            Ok(0)
        }
    }
}

fn print_report(r: &sim::Report, explain: bool) {
    let m = &r.metrics;
    println!(
        "policy {} on day {} ({} hosts, {} VMs, memory model {})",
        r.policy,
        r.day,
        r.hosts,
        r.vms,
        r.memory.name()
    );
    if r.vms_not_placed > 0 {
        println!("  VMs not placed:    {} (no host had room at creation)", r.vms_not_placed);
    }
    println!("  energy:            {:.2} kWh", m.energy_kwh);
    println!("  SLATAH:            {:.2} %", m.slatah * 100.0);
    println!("  PDM:               {:.3} %", m.pdm * 100.0);
    println!("  SLAV:              {:.3e}", m.slav);
    println!("  ESV:               {:.3e}", m.esv);
    println!(
        "  migrations:        {} (planned: {} to relieve overloads, {} to empty hosts)",
        m.migrations, r.migrations_for_overload, r.migrations_for_underload
    );
    println!("  host shutdowns:    {}", m.host_shutdowns);
    println!("  peak host memory:  {:.0} % (VM memory on the fullest host)", r.peak_memory_use * 100.0);
    println!("  planning per step: {:.2} ms mean, {:.2} ms max", r.planning_ms_mean, r.planning_ms_max);
    if !r.sample_commands.is_empty() {
        println!(
            "  {}:",
            if explain { "every command, with its reason" } else { "first commands, with reasons" }
        );
        for c in &r.sample_commands {
            println!("    {c}");
        }
    }
}

/// Nominal MIPS of one host CPU: live hosts are measured in CPU time, so one CPU = 1000 "MIPS".
const LIVE_MIPS_PER_CPU: f64 = 1000.0;

/// The policy engine's view of this host from the daemon's live metrics.
fn live_snapshot(m: &serde_json::Value) -> anyhow::Result<(policy::Snapshot, Vec<String>)> {
    use policy::model::{HostId, HostSpec, HostView, PowerCurve, Snapshot, VmId, VmView};
    let cpus = m["host"]["cpus"].as_u64().context("metrics without host.cpus")? as u32;
    let memory = m["host"]["memory_bytes"].as_u64().context("metrics without host.memory_bytes")?;
    let spec = HostSpec {
        pes: cpus,
        pe_mips: LIVE_MIPS_PER_CPU,
        ram_mb: (memory >> 20) as u32,
        // Energy is not reported by a dry run; a nominal curve keeps power-aware rules working.
        power: PowerCurve::HP_ML110_G5,
    };
    let mut vms = Vec::new();
    let mut names = Vec::new();
    for (i, v) in m["vms"].as_array().into_iter().flatten().enumerate() {
        let vcpus = v["vcpus"].as_u64().unwrap_or(1) as f64;
        let history: Vec<f64> =
            v["history"].as_array().into_iter().flatten().filter_map(|x| x.as_f64()).collect();
        let mips = vcpus * LIVE_MIPS_PER_CPU;
        vms.push(VmView {
            id: VmId(i as u32),
            mips,
            ram_mb: (v["memory"].as_u64().unwrap_or(0) >> 20) as u32,
            // A running guest holds all of its memory (vine does not balloon).
            requested_ram_mb: (v["memory"].as_u64().unwrap_or(0) >> 20) as u32,
            requested_mips: history.first().copied().unwrap_or(0.0) * mips,
            history,
            host: HostId(0),
        });
        names.push(v["name"].as_str().unwrap_or("?").to_string());
    }
    let demand: f64 = vms.iter().map(|v| v.requested_mips).sum();
    let total = spec.total_mips();
    let host = HostView {
        id: HostId(0),
        spec,
        measured_mips: demand.min(total),
        available_mips: (total - demand).max(0.0),
        allocated_mips: demand.min(total),
        vms: vms.iter().map(|v| v.id).collect(),
    };
    let mut snap = Snapshot {
        time: 0.0,
        interval_s: m["interval_s"].as_f64().unwrap_or(10.0),
        migration_mb_per_s: 62.5,
        hosts: vec![host],
        vms,
        vm_index: Vec::new(),
    };
    snap.reindex();
    Ok((snap, names))
}

fn dry_run(policy_arg: &str, json: bool) -> anyhow::Result<i32> {
    let p = load_policy(policy_arg)?;
    let m = super::vm::rest("GET", "/api/metrics/live", None)?;
    let (snap, names) = live_snapshot(&m)?;
    let mut planner = policy::Planner::new(p.clone());
    let plan = planner.plan(&snap);
    let commands = policy::prescribe(&plan);
    if json {
        let out = serde_json::json!({ "policy": p.name, "vm_names": names, "snapshot": snap,
                                      "plan": plan, "commands": commands, "changed": false });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(0);
    }
    let host = &snap.hosts[0];
    let cpus = host.spec.pes;
    println!(
        "dry run of policy '{}' against the live metrics of {} (nothing is changed)",
        p.name,
        m["host"]["hostname"].as_str().unwrap_or("this host")
    );
    println!(
        "host: {cpus} CPU(s); the running VMs ask for {:.0}% of it now (sampled every {} s)",
        100.0 * snap.vms.iter().map(|v| v.requested_mips).sum::<f64>() / host.spec.total_mips(),
        snap.interval_s
    );
    for (v, name) in snap.vms.iter().zip(&names) {
        let mean =
            if v.history.is_empty() { 0.0 } else { v.history.iter().sum::<f64>() / v.history.len() as f64 };
        println!(
            "  {name}: {:.0}% of its {} vCPU(s) now, {:.0}% on average over {} sample(s)",
            100.0 * v.history.first().copied().unwrap_or(0.0),
            v.mips / LIVE_MIPS_PER_CPU,
            100.0 * mean,
            v.history.len()
        );
    }
    if let Some(t) = p.migrations.initial_threshold() {
        println!("the policy keeps a host under {:.0}% of its CPU", t * 100.0);
    }
    if commands.is_empty() {
        println!("it would do nothing: no host needs relief and none can be emptied");
    } else {
        println!("it would:");
        for c in &commands {
            let text = c.to_string();
            let text = names
                .iter()
                .enumerate()
                .fold(text, |t, (i, n)| t.replace(&format!("VM {i} "), &format!("VM {n} ")));
            println!("  - {text}");
        }
        println!("(executing plans on real hosts comes with multi-host pools; nothing was changed)");
    }
    Ok(0)
}
