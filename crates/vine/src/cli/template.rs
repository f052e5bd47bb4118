//! `vine template …`: VM templates (read-only base disks with settings) through the REST API;
//! `vine vm create NAME --template T` makes VMs from them (docs/provisioning.md).

use api::client::encode;
use clap::Subcommand;
use serde_json::{json, Value};

use super::size::parse_memory;
use super::vm::rest;

/// `vine template …`.
#[derive(Debug, Subcommand)]
pub enum TemplateCommand {
    /// Make a template from a VM that is off (its settings and a copy of each disk) or from a
    /// volume (one disk; settings from the options).
    Create {
        /// Name: letters, digits, '-', '_', '.'.
        name: String,
        /// The VM (off) it is made from.
        #[arg(long, conflicts_with = "from_volume", required_unless_present = "from_volume")]
        from_vm: Option<String>,
        /// The volume `POOL/NAME` it is made from.
        #[arg(long)]
        from_volume: Option<String>,
        /// The storage pool its base disks go to (default: the pool of the source's first disk).
        #[arg(long)]
        pool: Option<String>,
        /// vCPUs of VMs made from it (with --from-volume).
        #[arg(long, requires = "from_volume")]
        cpus: Option<u32>,
        /// Memory of VMs made from it, e.g. 512M (with --from-volume).
        #[arg(long, value_parser = parse_memory, requires = "from_volume")]
        memory: Option<u64>,
        /// A NIC on this network (repeatable; with --from-volume).
        #[arg(long = "nic", requires = "from_volume")]
        nics: Vec<String>,
        /// A description.
        #[arg(long)]
        description: Option<String>,
        /// Print the template as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Templates you may use.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One template, with its bases and the VMs made from them.
    Show {
        /// Name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a template and its bases (refused while linked clones stand on them).
    Delete {
        /// Name.
        name: String,
    },
}

fn mib(v: &Value) -> String {
    v.as_u64().map(|b| format!("{}M", b >> 20)).unwrap_or_else(|| "-".into())
}

fn print_line(t: &Value) {
    let bases: Vec<&str> =
        t["bases"].as_array().into_iter().flatten().filter_map(|b| b["volume"].as_str()).collect();
    println!(
        "{:<24} {:>4} {:>8} {:>6}  {}",
        t["name"].as_str().unwrap_or(""),
        t["cpus"],
        mib(&t["memory"]),
        t["clones"].as_array().map_or(0, Vec::len),
        bases.join(", ")
    );
}

fn print_one(t: &Value) {
    println!("template:    {}", t["name"].as_str().unwrap_or(""));
    if let Some(d) = t["description"].as_str() {
        println!("description: {d}");
    }
    println!("made from:   {}", t["source"].as_str().unwrap_or(""));
    let created = t["created_ms"].as_i64().map(|ms| super::admin::format_time(ms / 1000)).unwrap_or_default();
    println!("created:     {created}");
    println!("cpus:        {}", t["cpus"]);
    println!("memory:      {}", mib(&t["memory"]));
    let nets: Vec<&str> = t["networks"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    println!("networks:    {}", if nets.is_empty() { "-".into() } else { nets.join(", ") });
    for b in t["bases"].as_array().into_iter().flatten() {
        println!(
            "base:        {} ({} virtual, {} on disk, {} linked clone(s))",
            b["volume"].as_str().unwrap_or(""),
            mib(&b["virtual_bytes"]),
            mib(&b["file_bytes"]),
            b["clones"].as_array().map_or(0, Vec::len)
        );
    }
    let vms: Vec<&str> = t["clones"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    println!("VMs:         {}", if vms.is_empty() { "-".into() } else { vms.join(", ") });
}

/// Runs `vine template …`.
pub fn run(cmd: TemplateCommand) -> anyhow::Result<i32> {
    match cmd {
        TemplateCommand::Create {
            name,
            from_vm,
            from_volume,
            pool,
            cpus,
            memory,
            nics,
            description,
            json,
        } => {
            let body = json!({
                "name": name, "from_vm": from_vm, "from_volume": from_volume, "pool": pool,
                "cpus": cpus, "memory": memory, "networks": nics, "description": description,
            });
            let v = rest("POST", "/api/templates", Some(&body))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print_one(&v);
            }
        }
        TemplateCommand::List { json } => {
            let v = rest("GET", "/api/templates", None)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("{:<24} {:>4} {:>8} {:>6}  BASES", "NAME", "CPUS", "MEMORY", "VMS");
                v.as_array().into_iter().flatten().for_each(print_line);
            }
        }
        TemplateCommand::Show { name, json } => {
            let v = rest("GET", &format!("/api/templates/{}", encode(&name)), None)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print_one(&v);
            }
        }
        TemplateCommand::Delete { name } => {
            rest("DELETE", &format!("/api/templates/{}", encode(&name)), None)?;
            println!("deleted template '{name}' and its base disk(s)");
        }
    }
    Ok(0)
}
