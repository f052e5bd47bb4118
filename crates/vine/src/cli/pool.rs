//! `vine pool …` (storage pools: named directories of volumes) and `vine volume …` (the disks,
//! ISOs, kernels and initrds in them, named `POOL/NAME`), through the daemon's REST API.
//! Uploads and downloads stream with a progress bar on a terminal.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Subcommand;
use serde_json::{json, Value};

use super::vm::{client, rest};
use api::client::encode;

/// `vine pool …`.
#[derive(Debug, Subcommand)]
pub enum PoolCommand {
    /// Register a pool over a directory (made if missing; administrators).
    Create {
        /// Name.
        name: String,
        /// Its directory.
        #[arg(long)]
        path: String,
        /// In a pool of hosts: a directory every host mounts at the same path; every host
        /// registers it, and each volume has one writer in the whole pool.
        #[arg(long)]
        shared: bool,
    },
    /// Pools you may use, with free space.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One pool.
    Show {
        /// Name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Unregister a pool no VM uses (its files stay; administrators).
    Delete {
        /// Name.
        name: String,
    },
}

/// `vine volume …`.
#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Make a disk volume: a dynamic VHD of --size, or a differencing child of --parent.
    Create {
        /// `POOL/NAME` (the name ends in .vhd).
        volume: String,
        /// Size, e.g. 20G or 512M; a bare number is GiB.
        #[arg(long, value_parser = super::size::parse_disk_size, conflicts_with = "parent", required_unless_present = "parent")]
        size: Option<u64>,
        /// The parent volume `POOL/NAME`.
        #[arg(long)]
        parent: Option<String>,
    },
    /// The volumes of a pool.
    List {
        /// The pool.
        pool: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One volume.
    Show {
        /// `POOL/NAME`.
        volume: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a volume no VM attaches.
    Delete {
        /// `POOL/NAME`.
        volume: String,
    },
    /// Upload a file as a new volume (a VHD, an ISO, a kernel, an initrd).
    Upload {
        /// `POOL/NAME`.
        volume: String,
        /// The file.
        file: PathBuf,
    },
    /// Download a volume into a file.
    Download {
        /// `POOL/NAME`.
        volume: String,
        /// The file to write (must not exist).
        file: PathBuf,
    },
}

fn split(volume: &str) -> anyhow::Result<(&str, &str)> {
    vmconfig::volume_ref(volume).with_context(|| {
        format!("{volume:?} is not a volume: POOL/NAME, both of letters, digits, '-', '_', '.'")
    })
}

fn target(volume: &str) -> anyhow::Result<String> {
    let (pool, name) = split(volume)?;
    Ok(format!("/api/pools/{}/volumes/{}", encode(pool), encode(name)))
}

fn mib(v: &Value) -> String {
    v.as_u64().map(|b| format!("{} MiB", b >> 20)).unwrap_or_else(|| "-".into())
}

fn print_pool(p: &Value) {
    println!(
        "{:<16} {:>12} free of {:>12}{}  {} volume(s)  {}",
        p["name"].as_str().unwrap_or(""),
        mib(&p["free_bytes"]),
        mib(&p["total_bytes"]),
        match (p["low_space"] == true, p["shared"] == true) {
            (true, true) => " (low, shared)",
            (true, false) => " (low)",
            (false, true) => " (shared)",
            (false, false) => "",
        },
        p["volumes"],
        p["path"].as_str().unwrap_or("")
    );
}

fn print_volume(v: &Value) {
    let used: Vec<&str> = v["used_by"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    println!(
        "{:<32} {:<17} {:>10} {:>10}  {}{}",
        v["volume"].as_str().unwrap_or(""),
        v["format"].as_str().unwrap_or(""),
        mib(&v["file_bytes"]),
        mib(&v["virtual_bytes"]),
        v["parent"].as_str().map(|p| format!("parent {p}  ")).unwrap_or_default(),
        if used.is_empty() { String::new() } else { format!("used by {}", used.join(", ")) }
    );
}

fn json_or(v: &Value, json: bool, print: impl Fn(&Value)) -> anyhow::Result<i32> {
    if json {
        println!("{}", serde_json::to_string_pretty(v)?);
    } else {
        print(v);
    }
    Ok(0)
}

/// Uploads `file` as the new volume `volume` (streamed, with progress on a terminal); the
/// volume's description.
pub fn upload(volume: &str, file: &std::path::Path) -> anyhow::Result<Value> {
    let t = format!("{}/content", target(volume)?);
    let (bar, mut tick) = super::disk::progress(&format!("uploading {volume}"));
    let tick = std::cell::RefCell::new(&mut tick);
    let (status, v) = client().upload(&t, file, &|done, total| (tick.borrow_mut())(done, total))?;
    bar.finish_and_clear();
    if !(200..300).contains(&status) {
        bail!("{}", v["error"].as_str().map(String::from).unwrap_or_else(|| format!("HTTP {status}: {v}")));
    }
    Ok(v)
}

/// Runs `vine pool …`.
pub fn pool(cmd: PoolCommand) -> anyhow::Result<i32> {
    match cmd {
        PoolCommand::Create { name, path, shared } => {
            let path = if path.starts_with('/') {
                path
            } else {
                std::env::current_dir()?.join(&path).display().to_string()
            };
            let v =
                rest("POST", "/api/pools", Some(&json!({ "name": name, "path": path, "shared": shared })))?;
            print_pool(&v);
            Ok(0)
        }
        PoolCommand::List { json } => {
            let v = rest("GET", "/api/pools", None)?;
            json_or(&v, json, |v| v.as_array().into_iter().flatten().for_each(print_pool))
        }
        PoolCommand::Show { name, json } => {
            let v = rest("GET", &format!("/api/pools/{}", encode(&name)), None)?;
            json_or(&v, json, print_pool)
        }
        PoolCommand::Delete { name } => {
            rest("DELETE", &format!("/api/pools/{}", encode(&name)), None)?;
            println!("deleted pool '{name}' (its files are kept)");
            Ok(0)
        }
    }
}

/// Runs `vine volume …`.
pub fn volume(cmd: VolumeCommand) -> anyhow::Result<i32> {
    match cmd {
        VolumeCommand::Create { volume, size, parent } => {
            let (pool, name) = split(&volume)?;
            let v = rest(
                "POST",
                &format!("/api/pools/{}/volumes", encode(pool)),
                Some(&json!({ "name": name, "size": size, "parent": parent })),
            )?;
            print_volume(&v);
            Ok(0)
        }
        VolumeCommand::List { pool, json } => {
            let v = rest("GET", &format!("/api/pools/{}/volumes", encode(&pool)), None)?;
            json_or(&v, json, |v| v.as_array().into_iter().flatten().for_each(print_volume))
        }
        VolumeCommand::Show { volume, json } => {
            let v = rest("GET", &target(&volume)?, None)?;
            json_or(&v, json, print_volume)
        }
        VolumeCommand::Delete { volume } => {
            rest("DELETE", &target(&volume)?, None)?;
            println!("deleted volume '{volume}'");
            Ok(0)
        }
        VolumeCommand::Upload { volume, file } => {
            print_volume(&upload(&volume, &file)?);
            Ok(0)
        }
        VolumeCommand::Download { volume, file } => {
            let t = format!("{}/content", target(&volume)?);
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&file)
                .with_context(|| format!("creating {}", file.display()))?;
            let (bar, mut tick) = super::disk::progress(&format!("downloading {volume}"));
            let tick = std::cell::RefCell::new(&mut tick);
            let got = client().download(&t, &mut out, &|done, total| (tick.borrow_mut())(done, total));
            bar.finish_and_clear();
            let got = match got {
                Ok(n) => n,
                Err(e) => {
                    let _ = std::fs::remove_file(&file);
                    return Err(e.into());
                }
            };
            out.sync_all().with_context(|| format!("syncing {}", file.display()))?;
            println!("downloaded {volume} to {} ({got} bytes)", file.display());
            Ok(0)
        }
    }
}
