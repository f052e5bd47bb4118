//! `vine vm migrate NAME --to HOST`: a live migration, with its progress on a terminal (memory
//! and disk sent, dirty rate, expected downtime) while the request runs; `--cancel` stops one.

use std::io::IsTerminal;
use std::time::Duration;

use api::client::encode;
use clap::Args;
use serde_json::{json, Value};

use super::size::parse_size;
use super::vm::rest;

/// Arguments of `vine vm migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The VM (running or paused).
    name: String,
    /// The host of the pool it goes to.
    #[arg(long, required_unless_present = "cancel")]
    to: Option<String>,
    /// Most bytes per second for memory and disks, e.g. 500M (default: no limit).
    #[arg(long, value_parser = parse_size)]
    bandwidth: Option<u64>,
    /// Longest pause of the guest at switchover, in milliseconds (default 100).
    #[arg(long)]
    downtime: Option<u64>,
    /// Give up after this many seconds (default 600); the VM goes on where it was.
    #[arg(long)]
    timeout: Option<u64>,
    /// Past the timeout, switch to post-copy instead of giving up: the guest runs on the
    /// destination while the memory it still lacks is fetched.
    #[arg(long)]
    postcopy: bool,
    /// Cancel the migration under way instead.
    #[arg(long, conflicts_with_all = ["to", "bandwidth", "downtime", "timeout", "postcopy"])]
    cancel: bool,
    /// Print the outcome as JSON.
    #[arg(long)]
    json: bool,
}

fn mib(b: u64) -> u64 {
    b >> 20
}

/// One line of progress.
fn line(p: &Value) -> String {
    let u = |k: &str| p[k].as_u64().unwrap_or(0);
    let mut s =
        format!("{:>5.1} s  {:<10}", u("elapsed_ms") as f64 / 1e3, p["phase"].as_str().unwrap_or("?"));
    if u("disk_total") > 0 {
        s.push_str(&format!("  disk {}/{} MiB", mib(u("disk_transferred")), mib(u("disk_total"))));
    }
    if u("ram_total") > 0 {
        s.push_str(&format!(
            "  memory sent {} MiB, {} MiB left of {} MiB, dirtied {} MiB/s, link {} MiB/s",
            mib(u("ram_transferred")),
            mib(u("ram_remaining")),
            mib(u("ram_total")),
            mib(u("dirty_rate")),
            mib(u("throughput")),
        ));
    }
    if let Some(d) = p["expected_downtime_ms"].as_u64() {
        s.push_str(&format!(", expected downtime {d} ms"));
    }
    if let Some(t) = p["cpu_throttle_pct"].as_u64() {
        s.push_str(&format!(", guest throttled {t}%"));
    }
    s
}

/// Runs `vine vm migrate`.
pub fn run(a: MigrateArgs) -> anyhow::Result<i32> {
    let target = format!("/api/vms/{}/migration", encode(&a.name));
    if a.cancel {
        let v = rest("DELETE", &target, None)?;
        println!("{}", v["message"].as_str().unwrap_or("cancelling"));
        return Ok(0);
    }
    let to = a.to.clone().expect("clap requires --to");
    let mut body = json!({ "to": to, "postcopy": a.postcopy });
    for (k, v) in [("bandwidth", a.bandwidth), ("downtime_ms", a.downtime), ("timeout_s", a.timeout)] {
        if let Some(v) = v {
            body[k] = json!(v);
        }
    }
    let path = format!("/api/vms/{}/migrate", encode(&a.name));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(rest("POST", &path, Some(&body)));
    });
    let terminal = std::io::stderr().is_terminal() && !a.json;
    if !a.json {
        eprintln!("migrating '{}' live to host '{to}'", a.name);
    }
    // The answer ends the wait at once; meanwhile the progress is shown twice a second.
    let answer = loop {
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(r) => break r,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                anyhow::bail!("the request's thread ended without an answer")
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        if !terminal {
            continue;
        }
        if let Ok(p) = rest("GET", &target, None) {
            if p["to"] == to.as_str() {
                eprint!("\r\x1b[K{}", line(&p));
            }
        }
    };
    if terminal {
        eprintln!();
    }
    let v = answer?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{}", v["message"].as_str().unwrap_or("migrated"));
    }
    Ok(0)
}
