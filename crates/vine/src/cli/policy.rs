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

fn dry_run(policy_arg: &str, json: bool) -> anyhow::Result<i32> {
    let p = load_policy(policy_arg)?;
    let v = super::vm::rest("POST", "/api/policy/dry-run", Some(&serde_json::to_value(&p)?))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    let run: daemon::advice::DryRun = serde_json::from_value(v).context("the daemon's answer")?;
    let snap = &run.snapshot;
    println!(
        "dry run of policy '{}' against the live metrics of {} (nothing is changed)",
        run.policy,
        if run.hosts.len() == 1 {
            format!("host '{}'", run.hosts[0])
        } else {
            format!("{} hosts", run.hosts.len())
        }
    );
    for (h, name) in snap.hosts.iter().zip(&run.hosts) {
        println!(
            "host '{name}': {} CPU(s); its running VMs ask for {:.0}% of it now (sampled every {} s)",
            h.spec.pes,
            100.0 * (h.spec.total_mips() - h.available_mips) / h.spec.total_mips(),
            snap.interval_s
        );
        for id in &h.vms {
            let v = snap.vm(*id);
            let mean = if v.history.is_empty() {
                0.0
            } else {
                v.history.iter().sum::<f64>() / v.history.len() as f64
            };
            println!(
                "  {}: {:.0}% of its {} vCPU(s) now, {:.0}% on average over {} sample(s)",
                run.vm_names[id.0 as usize],
                100.0 * v.history.first().copied().unwrap_or(0.0),
                v.mips / daemon::advice::LIVE_MIPS_PER_CPU,
                100.0 * mean,
                v.history.len()
            );
        }
    }
    for (h, why) in &run.unreachable {
        println!("host '{h}' is left out: {why}");
    }
    if let Some(t) = p.migrations.initial_threshold() {
        println!("the policy keeps a host under {:.0}% of its CPU", t * 100.0);
    }
    if run.advice.is_empty() {
        println!("it would do nothing: no host needs relief and none can be emptied");
    } else {
        println!("it would:");
        for a in &run.advice {
            println!("  - {}: {}", a.text, a.why);
        }
    }
    Ok(0)
}
