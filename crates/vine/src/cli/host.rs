//! `vine host …`: facts about this host, and the hosts of its pool.

use clap::Subcommand;
use serde_json::Value;

use super::vm::rest;

/// Host subcommands.
#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// CPUs, memory, the accelerator vine uses (and why) and the cgroup version.
    Info {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Every host of the pool with its state (this host alone when it is in no pool).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Puts a host of the pool in maintenance (it keeps its VMs, gets no new ones) or takes it out.
    Maintenance {
        /// The host's name.
        name: String,
        /// `on` or `off`.
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
    /// Puts a host of the pool that runs no VM in standby: it takes no VMs and counts as
    /// powered off (the pool's power program, if it has one, powers it off).
    Standby {
        /// The host's name.
        name: String,
    },
    /// Wakes a host from standby (the pool's power program powers it on first).
    Wake {
        /// The host's name.
        name: String,
    },
    /// Live-migrates every running or paused VM away from a host (to where placement puts
    /// each), after putting it in maintenance.
    Evacuate {
        /// The host's name.
        name: String,
        /// Most live migrations at once.
        #[arg(long, default_value_t = 2)]
        parallel: u32,
    },
    /// One host of the pool.
    Show {
        /// The host's name (`vine host list`).
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn gib(bytes: &Value) -> String {
    format!("{:.1} GiB", bytes.as_u64().unwrap_or(0) as f64 / (1u64 << 30) as f64)
}

fn standby(name: &str, on: bool) -> anyhow::Result<i32> {
    let body = serde_json::json!({ "standby": on });
    let v = rest("PUT", &format!("/api/hosts/{}/standby", api::client::encode(name)), Some(&body))?;
    println!("{}", v["message"].as_str().unwrap_or("done"));
    Ok(0)
}

/// Runs a host subcommand.
pub fn run(cmd: HostCommand) -> anyhow::Result<i32> {
    match cmd {
        HostCommand::Info { json } => {
            let info = host::host_info(&host::LiveHost)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&info)?);
                return Ok(0);
            }
            println!("hostname:     {}", info.hostname);
            println!("kernel:       {}", info.kernel);
            println!("cpus:         {}", info.cpus);
            println!(
                "memory:       {} bytes ({:.1} GiB)",
                info.memory_bytes,
                info.memory_bytes as f64 / (1u64 << 30) as f64
            );
            println!("accelerator:  {} ({})", info.accelerator.kind.qemu_name(), info.accelerator.reason);
            match &info.cgroup {
                host::CgroupLayout::V2 { mount, controllers } => {
                    println!("cgroup:       v2 at {mount} (controllers: {})", controllers.join(" "))
                }
                host::CgroupLayout::V1 { controllers } => {
                    let list: Vec<String> = controllers.iter().map(|(c, m)| format!("{c} at {m}")).collect();
                    println!("cgroup:       v1 ({})", list.join(", "))
                }
            }
            Ok(0)
        }
        HostCommand::List { json } => {
            let v = rest("GET", "/api/hosts", None)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(0);
            }
            println!(
                "{:<20} {:<12} {:>5} {:>10} {:>5} {:>8} {:>10} {:>8} {:>8}  {:<6} URL",
                "NAME",
                "STATE",
                "CPUS",
                "MEMORY",
                "VMS",
                "RUNNING",
                "MEM HELD",
                "CPU RES",
                "CPU USED",
                "ACCEL"
            );
            for h in v.as_array().into_iter().flatten() {
                let l = &h["load"];
                let or_dash = |s: String| if l.is_null() { "-".to_string() } else { s };
                println!(
                    "{:<20} {:<12} {:>5} {:>10} {:>5} {:>8} {:>10} {:>8} {:>8}  {:<6} {}",
                    h["name"].as_str().unwrap_or(""),
                    h["state"].as_str().unwrap_or(""),
                    h["cpus"].as_u64().unwrap_or(0),
                    gib(&h["memory_bytes"]),
                    or_dash(l["vms"].to_string()),
                    or_dash(l["running"].to_string()),
                    or_dash(gib(&l["memory_held_bytes"])),
                    or_dash(format!("{}%", l["cpu_reserved_pct"])),
                    or_dash(format!("{:.1}", l["cpu_used"].as_f64().unwrap_or(0.0))),
                    h["accelerator"].as_str().unwrap_or(""),
                    h["url"].as_str().unwrap_or("")
                );
            }
            Ok(0)
        }
        HostCommand::Maintenance { name, state } => {
            let body = serde_json::json!({ "maintenance": state == "on" });
            let v =
                rest("PUT", &format!("/api/hosts/{}/maintenance", api::client::encode(&name)), Some(&body))?;
            println!("{}", v["message"].as_str().unwrap_or("done"));
            Ok(0)
        }
        HostCommand::Standby { name } => standby(&name, true),
        HostCommand::Wake { name } => standby(&name, false),
        HostCommand::Evacuate { name, parallel } => {
            eprintln!("evacuating host '{name}' ({parallel} live migration(s) at a time)");
            let body = serde_json::json!({ "parallel": parallel });
            let v =
                rest("POST", &format!("/api/hosts/{}/evacuate", api::client::encode(&name)), Some(&body))?;
            for m in v["moved"].as_array().into_iter().flatten() {
                println!("{} -> {}", m["name"].as_str().unwrap_or("?"), m["host"].as_str().unwrap_or("?"));
            }
            println!("{}", v["message"].as_str().unwrap_or("done"));
            Ok(0)
        }
        HostCommand::Show { name, json } => {
            let h = rest("GET", &format!("/api/hosts/{}", api::client::encode(&name)), None)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&h)?);
                return Ok(0);
            }
            for (k, v) in [
                ("name", h["name"].as_str().unwrap_or("").to_string()),
                ("state", h["state"].as_str().unwrap_or("").to_string()),
                ("url", h["url"].as_str().unwrap_or("").to_string()),
                ("cpus", h["cpus"].to_string()),
                ("memory", gib(&h["memory_bytes"])),
                ("accelerator", h["accelerator"].as_str().unwrap_or("").to_string()),
                ("version", h["version"].as_str().unwrap_or("").to_string()),
                ("joined", super::admin::format_time(h["joined_ms"].as_i64().unwrap_or(0) / 1000)),
                ("vms", format!("{} ({} running)", h["load"]["vms"], h["load"]["running"])),
                ("memory held", gib(&h["load"]["memory_held_bytes"])),
                ("cpu reserved", format!("{}% of one CPU", h["load"]["cpu_reserved_pct"])),
                ("cpu used", format!("{:.1} CPUs", h["load"]["cpu_used"].as_f64().unwrap_or(0.0))),
            ] {
                println!("{:<13} {v}", format!("{k}:"));
            }
            Ok(0)
        }
    }
}
