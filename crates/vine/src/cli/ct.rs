//! `vine ct …`: system containers, through the daemon's socket. Containers are instances of
//! kind `container` beside VMs (`/api/vms`), so every control is `vine vm`'s; this module adds
//! what differs: creation from an image, listings of containers only, and image import.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use daemon::protocol::VmInfo;
use serde_json::{json, Value};

use super::lazy::Lazy;
use super::size::parse_memory;
use super::vm::{self, OffArgs, SetArgs, ShutdownArgs, Target, VmCommand};

/// Container subcommands.
#[derive(Debug, Subcommand)]
pub enum CtCommand {
    /// Make a container from an image (it starts off unless --start).
    Create(Lazy<CreateArgs>),
    /// Every container with its state.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One container in detail.
    Show {
        /// The container.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Start its init.
    Start(Target),
    /// Freeze every process of it.
    Pause(Target),
    /// Thaw it.
    Resume(Target),
    /// Checkpoint it to disk with CRIU and stop it.
    Save(Target),
    /// Continue from the checkpoint.
    Restore(Target),
    /// Throw the checkpoint away.
    DiscardState(Target),
    /// Ask its init to power off, waiting for it.
    Shutdown(ShutdownArgs),
    /// Kill every process of it at once.
    Off(OffArgs),
    /// Kill it and start its init again.
    Reset(Target),
    /// Unregister it; its files (root file system included) stay.
    Remove(Target),
    /// Unregister it and delete its files, root file system included.
    Delete(Target),
    /// Change CPU weight, reservation, cap or memory limit (at once while it runs).
    Set(SetArgs),
    /// Move a container that is off to another host of the pool (its root goes with it).
    Move {
        /// The container.
        name: String,
        /// The host it goes to.
        #[arg(long)]
        to: String,
    },
    /// Its console (`/dev/console`), live on this terminal (root on its host; Ctrl+] q leaves
    /// it), or with --log what it showed.
    Console {
        /// The container.
        name: String,
        /// Print the latest 64 KiB of the log instead.
        #[arg(long)]
        log: bool,
        /// With --log: all of the kept log, oldest first.
        #[arg(long, requires = "log")]
        all: bool,
    },
    /// Container images: root file system tarballs kept as volumes of storage pools.
    #[command(subcommand)]
    Image(ImageCommand),
}

/// `vine ct image …`.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Import a root file system tarball (.tar, .tar.gz, .tar.xz, .tar.zst) as image POOL/NAME.
    Import {
        /// The image's volume, POOL/NAME.
        volume: String,
        /// The tarball.
        file: PathBuf,
    },
}

/// Options of `vine ct create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Name: letters, digits, '-', '_', '.'.
    pub name: String,
    /// Its image, POOL/NAME (a root file system tarball; see `vine ct image import`).
    #[arg(long)]
    pub image: String,
    /// CPUs it may use at once (default 1).
    #[arg(long)]
    pub cpus: Option<u32>,
    /// Its memory limit, e.g. 256M or 1G; a bare number is MiB.
    #[arg(long, value_parser = parse_memory)]
    pub memory: u64,
    /// A NIC: NETWORK[,mac=MAC] (repeatable).
    #[arg(long = "nic")]
    pub nics: Vec<String>,
    /// Relative CPU weight, 1–10000.
    #[arg(long)]
    pub cpu_weight: Option<u32>,
    /// CPU reservation, % of one host CPU.
    #[arg(long)]
    pub cpu_reserve: Option<u32>,
    /// CPU cap, % of one host CPU.
    #[arg(long)]
    pub cpu_max: Option<u32>,
    /// Seconds its init gets to power off.
    #[arg(long)]
    pub shutdown_timeout: Option<u32>,
    /// In a pool: the host to make it on.
    #[arg(long)]
    pub host: Option<String>,
    /// Start it once made.
    #[arg(long)]
    pub start: bool,
    /// Print the new container as JSON.
    #[arg(long)]
    pub json: bool,
}

fn new_ct(a: &CreateArgs) -> anyhow::Result<Value> {
    let mut nics = Vec::new();
    for spec in &a.nics {
        let mut parts = spec.split(',');
        let network = parts.next().filter(|p| !p.is_empty()).context("--nic needs a network")?;
        let mut mac = None;
        for opt in parts {
            match opt.split_once('=') {
                Some(("mac", m)) => mac = Some(m.to_ascii_lowercase()),
                _ => bail!("--nic {spec}: unknown option {opt:?} (known: mac=MAC)"),
            }
        }
        nics.push(json!({ "network": network, "mac": mac }));
    }
    let mut v = json!({
        "name": a.name, "kind": "container", "image": a.image, "cpus": a.cpus, "memory": a.memory,
        "nics": nics, "cpu_weight": a.cpu_weight, "cpu_reserve": a.cpu_reserve, "cpu_max": a.cpu_max,
        "shutdown_timeout": a.shutdown_timeout, "start": a.start,
    });
    if let Some(h) = &a.host {
        v["host"] = json!(h);
    }
    Ok(v)
}

/// Checks that `file` is a tarball tar can list, holding `/sbin/init`.
fn check_tarball(file: &Path) -> anyhow::Result<()> {
    let out = std::process::Command::new("tar").arg("-tf").arg(file).output().context("cannot run tar")?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        bail!("{}: not a tarball tar can read: {}", file.display(), why.lines().next().unwrap_or("").trim());
    }
    let list = String::from_utf8_lossy(&out.stdout);
    // `/sbin/init`, or `/usr/sbin/init` where `/sbin` links to `usr/sbin` (merged /usr).
    let has_init = list
        .lines()
        .any(|l| matches!(l.trim_start_matches("./").trim_start_matches('/'), "sbin/init" | "usr/sbin/init"));
    if !has_init {
        bail!("{}: holds no sbin/init, so a container made from it would not start", file.display());
    }
    Ok(())
}

/// Runs a container subcommand.
pub fn run(cmd: CtCommand) -> anyhow::Result<i32> {
    let as_vm = match cmd {
        CtCommand::Create(Lazy(a)) => {
            let v = vm::rest("POST", "/api/vms", Some(&new_ct(&a)?))?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let verb = if a.start { "created and started" } else { "created" };
                match v["host"].as_str() {
                    Some(h) => println!("{verb} container '{}' on host '{h}'", a.name),
                    None => println!("{verb} container '{}' from image {}", a.name, a.image),
                }
            }
            return Ok(0);
        }
        CtCommand::List { json } => {
            let all: Vec<VmInfo> = serde_json::from_value(vm::rest("GET", "/api/vms", None)?)?;
            let cts: Vec<VmInfo> = all.into_iter().filter(|v| v.kind == vmconfig::Kind::Container).collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&cts)?);
            } else {
                vm::print_table(&cts);
            }
            return Ok(0);
        }
        CtCommand::Image(ImageCommand::Import { volume, file }) => {
            if vmconfig::volume_ref(&volume).is_none() {
                bail!("{volume:?} is not a volume POOL/NAME");
            }
            check_tarball(&file)?;
            let v = super::pool::upload(&volume, &file)?;
            println!("imported image {volume} ({} bytes)", v["file_bytes"].as_u64().unwrap_or(0));
            return Ok(0);
        }
        CtCommand::Show { name, json } => VmCommand::Show { name, json },
        CtCommand::Start(t) => VmCommand::Start(t),
        CtCommand::Pause(t) => VmCommand::Pause(t),
        CtCommand::Resume(t) => VmCommand::Resume(t),
        CtCommand::Save(t) => VmCommand::Save(t),
        CtCommand::Restore(t) => VmCommand::Restore(t),
        CtCommand::DiscardState(t) => VmCommand::DiscardState(t),
        CtCommand::Shutdown(a) => VmCommand::Shutdown(a),
        CtCommand::Off(a) => VmCommand::Off(a),
        CtCommand::Reset(t) => VmCommand::Reset(t),
        CtCommand::Remove(t) => VmCommand::Remove(t),
        CtCommand::Delete(t) => VmCommand::Delete(t),
        CtCommand::Set(a) => VmCommand::Set(a),
        CtCommand::Move { name, to } => VmCommand::Move { name, to },
        CtCommand::Console { name, log: false, .. } => return live_console(&name),
        CtCommand::Console { name, log, all } => VmCommand::Console { name, log, all },
    };
    vm::run(as_vm)
}

/// Attaches this terminal to the container's console with LXC's own `lxc-console`, when the
/// container is on this host and this is its root.
fn live_console(name: &str) -> anyhow::Result<i32> {
    use std::os::unix::process::CommandExt;
    let v = vm::rest("GET", &format!("/api/vms/{}", api::client::encode(name)), None)?;
    let i: VmInfo = serde_json::from_value(v)?;
    let Some(c) = i.container else { bail!("'{name}' is a VM: its live console is the web console's") };
    if !Path::new(&c.lxc_path).join(name).join("config").exists() {
        bail!(
            "'{name}' runs on another host{}: open its console in the web UI, or run this there",
            i.host.map(|h| format!(" ({h})")).unwrap_or_default()
        );
    }
    eprintln!("console of '{name}' (Ctrl+] q leaves it)");
    let e = std::process::Command::new("lxc-console")
        .arg("-P")
        .arg(&c.lxc_path)
        .args(["-n", name, "-t", "0", "-e", "^]"])
        .exec();
    bail!("cannot run lxc-console: {e}")
}
