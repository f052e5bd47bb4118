//! `vine network …`: virtual networks and their DHCP servers, through the daemon's socket; and
//! `vine network dhcp-serve`, the DHCP server process the daemon starts for each network.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use daemon::protocol::NetworkCreate;

use super::vm::rest;
use serde_json::Value;

/// Network subcommands.
#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a network (bridge, rules and DHCP server).
    Create(CreateArgs),
    /// Every network.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One network in detail.
    Show {
        /// The network.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a network no VM NIC uses (bridge, rules, DHCP server and leases go).
    Delete {
        /// The network.
        name: String,
    },
    /// Always give this MAC this address.
    Reserve {
        /// The network.
        name: String,
        /// The client's MAC.
        #[arg(long)]
        mac: String,
        /// The address.
        #[arg(long)]
        ip: String,
    },
    /// The DHCP leases of a network.
    Leases {
        /// The network.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a network's DHCP server (started by the daemon).
    #[command(hide = true)]
    DhcpServe {
        /// The bridge.
        #[arg(long)]
        interface: String,
        /// Its settings (JSON).
        #[arg(long)]
        config: PathBuf,
        /// The lease journal.
        #[arg(long)]
        leases: PathBuf,
    },
    /// Plug a container's NIC port into its network's bridge: LXC's `script.up` hook, run with
    /// LXC's own arguments after these (the last is the port: the veth's host side).
    #[command(hide = true)]
    PlugPort {
        /// The bridge.
        bridge: String,
        /// What LXC adds: container, `net`, `up`, the type, the port.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        lxc: Vec<String>,
    },
}

/// Network kinds.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KindArg {
    /// VMs only.
    Internal,
    /// VMs and the host.
    Host,
    /// VMs, the host, and outside through the host (masquerading).
    Nat,
    /// VMs on a host NIC's LAN.
    Bridged,
}

/// Options of `vine network create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Name.
    pub name: String,
    /// Kind.
    #[arg(long, value_enum)]
    pub kind: KindArg,
    /// Subnet, e.g. 10.1.2.0/24 (default: a free 10.77.N.0/24).
    #[arg(long)]
    pub subnet: Option<String>,
    /// DHCP range A-B (default: .100 to .254 of a /24).
    #[arg(long)]
    pub range: Option<String>,
    /// Gateway handed out (default: the host's address; none on internal networks).
    #[arg(long)]
    pub gateway: Option<String>,
    /// DNS servers handed out, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub dns: Vec<String>,
    /// Lease time, e.g. 90s, 30m, 1h, 2d (default 1h).
    #[arg(long, value_parser = parse_duration)]
    pub lease: Option<u32>,
    /// The host NIC a bridged network holds.
    #[arg(long)]
    pub uplink: Option<String>,
    /// No DHCP server on this network.
    #[arg(long)]
    pub no_dhcp: bool,
    /// The network spans the pool: every host has it (joined by VXLAN), so VMs on different
    /// hosts share it and keep it when they migrate; this host holds its address, DHCP server
    /// and NAT.
    #[arg(long)]
    pub span: bool,
    /// Print the network as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Parses `90`, `90s`, `30m`, `1h`, `2d` into seconds.
pub fn parse_duration(s: &str) -> Result<u32, String> {
    let (num, mult) = match s.char_indices().last() {
        Some((i, 's')) => (&s[..i], 1),
        Some((i, 'm')) => (&s[..i], 60),
        Some((i, 'h')) => (&s[..i], 3600),
        Some((i, 'd')) => (&s[..i], 86400),
        _ => (s, 1),
    };
    let n: u32 = num.parse().map_err(|_| format!("{s:?} is not a duration like 90s, 30m, 1h or 2d"))?;
    n.checked_mul(mult).ok_or_else(|| format!("{s:?} is too long"))
}

/// `/api/networks/NAME` plus `rest`.
fn net_path(name: &str, rest: &str) -> String {
    format!("/api/networks/{}{rest}", api::client::encode(name))
}

fn describe(v: &Value) -> String {
    let d = &v["dhcp"];
    let addr = match v["address"].as_array() {
        Some(a) => format!("{}/{}", a[0].as_str().unwrap_or(""), a[1]),
        None => "-".into(),
    };
    let dhcp = if d.is_null() {
        "no DHCP".to_string()
    } else {
        format!(
            "DHCP {}-{}, lease {} s",
            d["range_start"].as_str().unwrap_or(""),
            d["range_end"].as_str().unwrap_or(""),
            d["lease_s"]
        )
    };
    let span = match v["span"].as_object() {
        Some(s) => format!("; spans the pool: VNI {}, home '{}'", s["vni"], s["home"].as_str().unwrap_or("")),
        None => String::new(),
    };
    format!(
        "{:<16} {:<9} {:<12} {:<18} {dhcp}{span}",
        v["name"].as_str().unwrap_or(""),
        v["kind"].as_str().unwrap_or(""),
        v["bridge"].as_str().unwrap_or(""),
        addr,
    )
}

/// Runs a network subcommand.
pub fn run(cmd: NetworkCommand) -> anyhow::Result<i32> {
    match cmd {
        NetworkCommand::Create(a) => {
            let kind = match a.kind {
                KindArg::Internal => netconf::Kind::Internal,
                KindArg::Host => netconf::Kind::Host,
                KindArg::Nat => netconf::Kind::Nat,
                KindArg::Bridged => netconf::Kind::Bridged,
            };
            let body = serde_json::to_value(NetworkCreate {
                name: a.name.clone(),
                kind,
                subnet: a.subnet,
                range: a.range,
                gateway: a.gateway,
                dns: a.dns,
                lease_s: a.lease,
                uplink: a.uplink,
                no_dhcp: a.no_dhcp,
                span: a.span,
            })?;
            let v = rest("POST", "/api/networks", Some(&body))?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("created network '{}' on bridge {}", a.name, v["bridge"].as_str().unwrap_or(""));
            }
            Ok(0)
        }
        NetworkCommand::List { json } => {
            let v = rest("GET", "/api/networks", None)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("{:<16} {:<9} {:<12} {:<18} DHCP", "NAME", "KIND", "BRIDGE", "ADDRESS");
                for n in v.as_array().into_iter().flatten() {
                    println!("{}", describe(n));
                }
            }
            Ok(0)
        }
        NetworkCommand::Show { name, json } => {
            let v = rest("GET", &net_path(&name, ""), None)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("{}", describe(&v));
                if let Some(r) = v["dhcp"]["reservations"].as_object() {
                    for (mac, ip) in r {
                        println!("  reserved {} for {mac}", ip.as_str().unwrap_or(""));
                    }
                }
            }
            Ok(0)
        }
        NetworkCommand::Delete { name } => {
            let v = rest("DELETE", &net_path(&name, ""), None)?;
            println!("{}", v["message"].as_str().unwrap_or("done"));
            Ok(0)
        }
        NetworkCommand::Reserve { name, mac, ip } => {
            rest(
                "POST",
                &net_path(&name, "/reservations"),
                Some(&serde_json::json!({ "mac": mac, "ip": ip })),
            )?;
            println!("reserved {ip} for {mac} on '{name}'");
            Ok(0)
        }
        NetworkCommand::Leases { name, json } => {
            let v = rest("GET", &net_path(&name, "/leases"), None)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("{:<16} {:<18} {:<9} EXPIRES (Unix s)", "IP", "MAC", "STATE");
                for l in v.as_array().into_iter().flatten() {
                    println!(
                        "{:<16} {:<18} {:<9} {}",
                        l["ip"].as_str().unwrap_or(""),
                        l["mac"].as_str().unwrap_or(""),
                        l["state"].as_str().unwrap_or(""),
                        l["expires"]
                    );
                }
            }
            Ok(0)
        }
        NetworkCommand::PlugPort { bridge, lxc } => {
            use netconf::kernel::Kernel;
            let port = lxc.last().context("no port: LXC names it last")?;
            if !port.starts_with("vt") {
                bail!("{port:?} is not a port vine named (vt…)");
            }
            netconf::kernel::Live
                .replug(port, &bridge)
                .with_context(|| format!("plugging {port} into {bridge}"))?;
            Ok(0)
        }
        NetworkCommand::DhcpServe { interface, config, leases } => {
            let text =
                std::fs::read_to_string(&config).with_context(|| format!("reading {}", config.display()))?;
            let cfg: dhcp::DhcpConfig =
                serde_json::from_str(&text).with_context(|| format!("parsing {}", config.display()))?;
            if let Err(e) = cfg.validate() {
                bail!("{}: {e}", config.display());
            }
            let stop = Arc::new(AtomicBool::new(false));
            for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
                signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
            }
            let stats = leases.with_file_name("dhcp-stats.json");
            let opts = dhcp::serve::ServeOptions {
                interface: interface.clone(),
                config: cfg,
                leases,
                stats: Some(stats),
            };
            dhcp::serve::serve(&opts, &stop, &|| println!("vine dhcp: ready on {interface}"))
                .with_context(|| format!("DHCP server on {interface}"))?;
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("90").unwrap(), 90);
        assert_eq!(parse_duration("30m").unwrap(), 1800);
        assert_eq!(parse_duration("1h").unwrap(), 3600);
        assert_eq!(parse_duration("2d").unwrap(), 172_800);
        assert!(parse_duration("1w").unwrap_err().contains("not a duration"));
    }
}
