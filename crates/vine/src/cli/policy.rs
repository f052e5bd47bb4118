//! `vine policy …`: policies as data, and the trace-driven simulator.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use policy::spec::{Policy, BUILTIN_NAMES, DEFAULT_POLICY};

/// Policy subcommands.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Replay a day of workload traces under one or more policies and print energy and SLA
    /// figures; or, with `--replay`, plan again the rounds a live pool's coordinator recorded.
    Simulate {
        /// A day directory of PlanetLab traces (one file per VM).
        #[arg(long, required_unless_present = "replay", conflicts_with = "replay")]
        trace: Option<PathBuf>,
        /// A coordinator's record of rounds (`vine policy status` names it): every round is
        /// planned again from its snapshot and rules, and its commands printed beside the ones
        /// the live pool was sent. Exits 1 if any differ.
        #[arg(long)]
        replay: Option<PathBuf>,
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
    /// How far the pool's policy engine acts: `off`, `advise` (plans are recorded as advice,
    /// nothing is done) or `automatic` (plans are carried out); for the pool, or one VM.
    Mode {
        /// `off`, `advise` or `automatic` (with --vm also `default`: the pool's).
        #[arg(value_parser = ["off", "advise", "automatic", "default"])]
        mode: String,
        /// Only this VM.
        #[arg(long)]
        vm: Option<String>,
    },
    /// The policy the pool runs (a built-in name or a policy file).
    Use {
        /// Built-in policy name or a policy file (.toml or .json).
        policy: String,
    },
    /// The pool's planning interval, migration threshold, parallel migrations, power program.
    Set {
        /// Seconds between planning rounds (2 to 3600).
        #[arg(long)]
        interval: Option<u32>,
        /// Migration threshold: 1 (only relieve overloaded hosts) to 5 (every move planned).
        #[arg(long)]
        threshold: Option<u8>,
        /// Live migrations at once (1 to 8).
        #[arg(long)]
        parallel: Option<u32>,
        /// Program run as `PROGRAM off HOST` / `PROGRAM on HOST` to power hosts that go to
        /// standby or are woken (wake-on-LAN, IPMI, Redfish); `""`: none.
        #[arg(long)]
        power_program: Option<String>,
    },
    /// One VM's rules: its own mode, a pin to a host, an affinity group (`""` clears one).
    Vm {
        /// The VM.
        name: String,
        /// `off`, `advise`, `automatic`, or `default` (the pool's).
        #[arg(long)]
        mode: Option<String>,
        /// The host it runs on and nowhere else.
        #[arg(long)]
        pin: Option<String>,
        /// Its affinity group: the group's VMs stay on one host.
        #[arg(long)]
        together: Option<String>,
        /// `on`: the pool's resizer caps its CPU and sizes its balloon from what it uses
        /// while it runs; `off`: it keeps what its definition says.
        #[arg(long, value_parser = ["on", "off"])]
        resize: Option<String>,
    },
    /// The pool's automation: mode, policy, rules, coordinator, its last round.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// What the coordinator's last round advised or did, and why.
    Advice {
        /// Print JSON.
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
        PolicyCommand::Mode { mode, vm } => match vm {
            Some(vm) => vm_rules(&vm, serde_json::json!({ "mode": mode })),
            None if mode == "default" => anyhow::bail!("mode: 'default' is for one VM (--vm NAME)"),
            None => set(serde_json::json!({ "mode": mode })),
        },
        PolicyCommand::Use { policy } => {
            let p = load_policy(&policy)?;
            set(serde_json::json!({ "policy": p }))
        }
        PolicyCommand::Set { interval, threshold, parallel, power_program } => {
            let mut body = serde_json::Map::new();
            if let Some(i) = interval {
                body.insert("interval_s".into(), i.into());
            }
            if let Some(t) = threshold {
                body.insert("threshold".into(), t.into());
            }
            if let Some(p) = parallel {
                body.insert("parallel".into(), p.into());
            }
            if let Some(p) = power_program {
                body.insert("power_program".into(), p.into());
            }
            if body.is_empty() {
                anyhow::bail!("nothing to set: give --interval, --threshold, --parallel or --power-program");
            }
            set(body.into())
        }
        PolicyCommand::Vm { name, mode, pin, together, resize } => {
            let mut body = serde_json::Map::new();
            if let Some(m) = mode {
                body.insert("mode".into(), m.into());
            }
            if let Some(p) = pin {
                body.insert("pin".into(), p.into());
            }
            if let Some(g) = together {
                body.insert("together".into(), g.into());
            }
            if let Some(r) = resize {
                body.insert("resize".into(), (r == "on").into());
            }
            if body.is_empty() {
                anyhow::bail!("nothing to set: give --mode, --pin, --together or --resize");
            }
            vm_rules(&name, body.into())
        }
        PolicyCommand::Status { json } => status(json),
        PolicyCommand::Advice { json } => advice(json),
        PolicyCommand::Simulate { replay: Some(file), json, .. } => replay(&file, json),
        PolicyCommand::Simulate { trace, policy, hosts, memory, json, plot, explain, .. } => {
            let trace = trace.context("--trace or --replay is needed")?;
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

fn set(body: serde_json::Value) -> anyhow::Result<i32> {
    let v = super::vm::rest("PUT", "/api/policy", Some(&body))?;
    println!("{}", v["message"].as_str().unwrap_or("done"));
    Ok(0)
}

fn vm_rules(name: &str, body: serde_json::Value) -> anyhow::Result<i32> {
    let path = format!("/api/policy/vms/{}", api::client::encode(name));
    let v = super::vm::rest("PUT", &path, Some(&body))?;
    println!("{}", v["message"].as_str().unwrap_or("done"));
    Ok(0)
}

fn status(json: bool) -> anyhow::Result<i32> {
    let v = super::vm::rest("GET", "/api/policy", None)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    let s = |k: &str| v[k].as_str().map(String::from).unwrap_or_else(|| v[k].to_string());
    println!("mode:         {}", s("mode"));
    println!("policy:       {}", s("policy"));
    println!("interval:     {} s", v["interval_s"]);
    println!("threshold:    {} of 5", v["threshold"]);
    println!("parallel:     {} migration(s) at once", v["parallel"]);
    println!("power:        {}", v["power_program"].as_str().unwrap_or("none (standby is a state only)"));
    println!("coordinator:  {}", v["coordinator"].as_str().unwrap_or("none now"));
    if let Some(r) = v["last_round"].as_object() {
        println!(
            "last round:   {} on host {} ({} command(s)); record {}",
            r["round"],
            r["host"].as_str().unwrap_or("?"),
            r["actions"].as_array().map_or(0, Vec::len),
            r["record"].as_str().unwrap_or("?")
        );
    }
    for (vm, r) in v["vms"].as_object().into_iter().flatten() {
        let mut said = Vec::new();
        if let Some(m) = r["mode"].as_str() {
            said.push(format!("mode {m}"));
        }
        if let Some(p) = r["pin"].as_str() {
            said.push(format!("pinned to {p}"));
        }
        if let Some(g) = r["together"].as_str() {
            said.push(format!("with group {g}"));
        }
        if r["resize"] == true {
            said.push("resized while it runs".into());
        }
        println!("vm {vm}: {}", said.join(", "));
    }
    Ok(0)
}

fn advice(json: bool) -> anyhow::Result<i32> {
    let v = super::vm::rest("GET", "/api/policy", None)?;
    let last = &v["last_round"];
    if json {
        println!("{}", serde_json::to_string_pretty(last)?);
        return Ok(0);
    }
    if last.is_null() {
        println!("no round yet (mode {}): vine policy mode advise", v["mode"].as_str().unwrap_or("?"));
        return Ok(0);
    }
    println!(
        "round {} of policy '{}' on host {} (mode {}):",
        last["round"],
        last["policy"].as_str().unwrap_or("?"),
        last["host"].as_str().unwrap_or("?"),
        last["mode"].as_str().unwrap_or("?")
    );
    let actions = last["actions"].as_array().cloned().unwrap_or_default();
    if actions.is_empty() {
        println!("  nothing to do");
    }
    for a in &actions {
        println!(
            "  - [{}] {}: {}",
            a["outcome"].as_str().unwrap_or("?"),
            a["text"].as_str().unwrap_or("?"),
            a["why"].as_str().unwrap_or("")
        );
    }
    for h in last["held_back"].as_array().into_iter().flatten() {
        println!("  held back: {}", h.as_str().unwrap_or(""));
    }
    for h in last["unreachable"].as_array().into_iter().flatten() {
        println!("  left out: {}", h.as_str().unwrap_or(""));
    }
    Ok(0)
}

/// `vine policy simulate --replay FILE`: every recorded round planned again.
fn replay(file: &std::path::Path, json: bool) -> anyhow::Result<i32> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let (header, rounds) =
        policy::replay::parse_record(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let again = policy::replay::replay(&header, &rounds);
    let differ: Vec<u64> =
        rounds.iter().zip(&again).filter(|(r, a)| &r.commands != *a).map(|(r, _)| r.round).collect();
    if json {
        let out: Vec<serde_json::Value> = rounds
            .iter()
            .zip(&again)
            .map(|(r, a)| serde_json::json!({ "round": r.round, "recorded": r.commands, "replayed": a }))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "policy": header.policy.name, "host": header.host, "rounds": out, "differ": differ
            }))?
        );
    } else {
        println!(
            "{} round(s) of policy '{}' recorded on host {}, planned again:",
            rounds.len(),
            header.policy.name,
            header.host
        );
        for (r, a) in rounds.iter().zip(&again) {
            if a.is_empty() && r.commands.is_empty() {
                continue;
            }
            let mark = if &r.commands == a { "same" } else { "DIFFERENT" };
            println!("round {} ({mark}):", r.round);
            for c in a {
                println!("  {c}");
            }
        }
        if differ.is_empty() {
            println!("every round gives the commands the live pool was sent");
        } else {
            println!("rounds whose commands differ: {differ:?}");
        }
    }
    Ok(if differ.is_empty() { 0 } else { 1 })
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
