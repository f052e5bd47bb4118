//! `vine vm …`: virtual machines, through the daemon's socket. Every list/show has `--json`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use api::client::encode;
use clap::{Args, Subcommand, ValueEnum};
use daemon::protocol::{Changes, ControlOptions, UndoAction, VmInfo};
use serde_json::json;
use serde_json::Value;
use vmconfig::{Bus, Disk, Nic};
use vmm::Control;

use super::lazy::Lazy;
use super::size::parse_memory;

/// VM subcommands.
#[derive(Debug, Subcommand)]
pub enum VmCommand {
    /// Define a new VM (it starts off).
    Create(Lazy<CreateArgs>),
    /// Every VM with its state.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One VM in detail.
    Show {
        /// The VM.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Turn on.
    Start(Target),
    /// Stop the guest in memory.
    Pause(Target),
    /// Continue a paused guest.
    Resume(Target),
    /// Write the guest's memory to disk and stop it.
    Save(Target),
    /// Continue from the saved state.
    Restore(Target),
    /// Throw the saved state away.
    DiscardState(Target),
    /// Ask the guest OS to shut down (ACPI power button), waiting for it.
    Shutdown(ShutdownArgs),
    /// Cut the power at once.
    Off(OffArgs),
    /// Press the reset button.
    Reset(Target),
    /// Unregister the VM; its files stay.
    Remove(Target),
    /// Unregister the VM and delete its files (directory, definition, logs, its own disks).
    Delete(Target),
    /// Change CPU weight, reservation, cap or memory (CPU changes apply to a running VM at once).
    Set(SetArgs),
    /// Move a VM that is off or saved to another host of the pool (its volumes on host-local
    /// pools are copied there; those on shared pools stay; a saved VM restores there).
    Move {
        /// The VM.
        name: String,
        /// The host it goes to.
        #[arg(long)]
        to: String,
    },
    /// Live-migrate a running or paused VM to another host of the pool: its guest goes on
    /// without a reboot (volumes on host-local pools are mirrored there; shared ones stay).
    Migrate(super::migrate::MigrateArgs),
    /// Import an appliance another platform exported (an .ova, or an .ovf with its files): its
    /// disks become volumes of a pool (converted by qemu-img), its networks map to vine's.
    Import(super::import::ImportArgs),
    /// Export a VM that is off as an appliance (.ova: OVF descriptor, SHA-256 manifest,
    /// streamOptimized VMDK disks) that vine and other platforms import.
    Export(super::export::ExportArgs),
    /// What the VM's serial console wrote.
    Console {
        /// The VM.
        name: String,
        /// Print the latest 64 KiB of the log (the live console comes with the web console).
        #[arg(long)]
        log: bool,
        /// With --log: all of the kept log (at most 8 MiB), oldest first.
        #[arg(long, requires = "log")]
        all: bool,
    },
    /// Add or remove NICs (the VM must be off).
    #[command(subcommand)]
    Nic(NicCommand),
    /// The VM's events.
    Events {
        /// The VM (all VMs when absent).
        name: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `vine vm nic …`.
#[derive(Debug, Subcommand)]
pub enum NicCommand {
    /// Plug a new NIC into a network.
    Add {
        /// The VM.
        name: String,
        /// NETWORK[,mac=MAC].
        nic: String,
    },
    /// Remove a NIC (0 = the first).
    Remove {
        /// The VM.
        name: String,
        /// Its position.
        index: usize,
    },
}

/// A VM name and the daemon's socket.
#[derive(Debug, Args)]
pub struct Target {
    /// The VM.
    pub name: String,
}

/// What to do with undo disks at the end of a session.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum UndoArg {
    /// Merge the session's writes into the disks.
    Commit,
    /// Throw the session's writes away.
    Discard,
    /// Keep the undo disks for the next session.
    Keep,
}

impl From<UndoArg> for UndoAction {
    fn from(u: UndoArg) -> Self {
        match u {
            UndoArg::Commit => UndoAction::Commit,
            UndoArg::Discard => UndoAction::Discard,
            UndoArg::Keep => UndoAction::Keep,
        }
    }
}

/// Options of `vine vm shutdown`.
#[derive(Debug, Args)]
pub struct ShutdownArgs {
    /// The VM.
    pub name: String,
    /// Seconds to wait for the guest (default: the VM's shutdown_timeout).
    #[arg(long)]
    pub timeout: Option<u32>,
    /// Undo disks: commit, discard or keep the session's writes (default keep).
    #[arg(long, value_enum)]
    pub undo: Option<UndoArg>,
}

/// Options of `vine vm off`.
#[derive(Debug, Args)]
pub struct OffArgs {
    /// The VM.
    pub name: String,
    /// Undo disks: commit, discard or keep the session's writes (default keep).
    #[arg(long, value_enum)]
    pub undo: Option<UndoArg>,
}

/// Options of `vine vm create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Name: letters, digits, '-', '_', '.'.
    pub name: String,
    /// vCPUs (default 1, or the template's).
    #[arg(long)]
    pub cpus: Option<u32>,
    /// Memory, e.g. 512M or 2G; a bare number is MiB (needed unless --template gives it).
    #[arg(long, value_parser = parse_memory, required_unless_present = "template")]
    pub memory: Option<u64>,
    /// Make it from this template: its settings, and a linked clone of each of its base disks
    /// (options given here replace the template's; --nic replaces its NICs, --disk adds disks).
    #[arg(long)]
    pub template: Option<String>,
    /// With --template: full copies of its base disks instead of linked clones.
    #[arg(long, requires = "template")]
    pub full: bool,
    /// Make COUNT VMs at once, named NAME-1 … NAME-COUNT (all of them or none).
    #[arg(long)]
    pub count: Option<u32>,
    /// Start the VM(s) once made.
    #[arg(long)]
    pub start: bool,
    /// First-boot configuration by cloud-init, with these options (a seed CD/DVD is attached).
    #[command(flatten)]
    pub cloud_init: Box<CloudInitArgs>,
    /// In a pool: the host to make it on (default: the host with the most memory free after it).
    #[arg(long)]
    pub host: Option<String>,
    /// Anti-affinity group: in a pool, no two VMs of one group are placed on the same host.
    #[arg(long)]
    pub group: Option<String>,
    /// A disk: PATH[,bus=virtio|ide|scsi][,shared][,ro] (repeatable; VHD images).
    #[arg(long = "disk")]
    pub disks: Vec<String>,
    /// A CD/DVD image (ISO), on IDE (repeatable).
    #[arg(long = "cdrom")]
    pub cdroms: Vec<PathBuf>,
    /// Boot this kernel directly.
    #[arg(long)]
    pub kernel: Option<PathBuf>,
    /// Its initial ramdisk.
    #[arg(long, requires = "kernel")]
    pub initrd: Option<PathBuf>,
    /// Its command line.
    #[arg(long, requires = "kernel", allow_hyphen_values = true)]
    pub append: Option<String>,
    /// The device of vine's console in the guest: uart (default; Linux ttyS0) or virtio
    /// (Linux hvc0: far faster, needs the guest's virtio_console driver).
    #[arg(long, value_parser = ["uart", "virtio"])]
    pub console: Option<String>,
    /// Write disk changes to undo disks (commit or discard them at the end of a session).
    #[arg(long)]
    pub undo_disks: bool,
    /// Relative CPU weight, 1–10000.
    #[arg(long)]
    pub cpu_weight: Option<u32>,
    /// CPU reservation, % of one host CPU.
    #[arg(long)]
    pub cpu_reserve: Option<u32>,
    /// CPU cap, % of one host CPU.
    #[arg(long)]
    pub cpu_max: Option<u32>,
    /// Seconds the guest gets to shut down.
    #[arg(long)]
    pub shutdown_timeout: Option<u32>,
    /// A NIC: NETWORK[,mac=MAC] (repeatable; vine allocates the MAC when none is given).
    #[arg(long = "nic")]
    pub nics: Vec<String>,
    /// Print the new VM as JSON.
    #[arg(long)]
    pub json: bool,
}

/// cloud-init options of `vine vm create` and `vine vm set`.
#[derive(Debug, Args, Default)]
pub struct CloudInitArgs {
    /// Give the guest a cloud-init seed (implied by the options below).
    #[arg(long)]
    pub cloud_init: bool,
    /// cloud-init: the guest's host name (default: the VM's name).
    #[arg(long)]
    pub hostname: Option<String>,
    /// cloud-init: an SSH public key for the image's default user, or a file holding one per
    /// line (repeatable).
    #[arg(long = "ssh-key")]
    pub ssh_keys: Vec<String>,
    /// cloud-init: a user-data file (`#cloud-config …` or a script), given verbatim.
    #[arg(long)]
    pub user_data: Option<PathBuf>,
    /// cloud-init: a network-config file (version 1 or 2; default: DHCP on each NIC).
    #[arg(long)]
    pub network_config: Option<PathBuf>,
}

impl CloudInitArgs {
    fn given(&self) -> bool {
        self.cloud_init
            || self.hostname.is_some()
            || !self.ssh_keys.is_empty()
            || self.user_data.is_some()
            || self.network_config.is_some()
    }

    /// These options over `base` (the VM's data, for `vm set`), or None when none is given.
    fn data(&self, base: Option<Value>) -> anyhow::Result<Option<Value>> {
        if !self.given() {
            return Ok(None);
        }
        let read =
            |p: &Path| std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()));
        let mut v = base.filter(Value::is_object).unwrap_or_else(|| json!({}));
        if let Some(h) = &self.hostname {
            v["hostname"] = json!(h);
        }
        if !self.ssh_keys.is_empty() {
            let mut keys = Vec::new();
            for k in &self.ssh_keys {
                let p = Path::new(k);
                if p.is_file() {
                    keys.extend(
                        read(p)?
                            .lines()
                            .map(str::trim)
                            .filter(|l| !l.is_empty() && !l.starts_with('#'))
                            .map(String::from),
                    );
                } else {
                    keys.push(k.trim().to_string());
                }
            }
            v["ssh_keys"] = json!(keys);
        }
        if let Some(p) = &self.user_data {
            v["user_data"] = json!(read(p)?);
        }
        if let Some(p) = &self.network_config {
            v["network_config"] = json!(read(p)?);
        }
        Ok(Some(v))
    }
}

/// Options of `vine vm set`.
#[derive(Debug, Args)]
pub struct SetArgs {
    /// The VM.
    pub name: String,
    /// Relative CPU weight, 1–10000.
    #[arg(long)]
    pub cpu_weight: Option<u32>,
    /// CPU reservation, % of one host CPU.
    #[arg(long)]
    pub cpu_reserve: Option<u32>,
    /// CPU cap, % of one host CPU, or `none`.
    #[arg(long)]
    pub cpu_max: Option<String>,
    /// Memory, e.g. 1G; a bare number is MiB (from the next start).
    #[arg(long, value_parser = parse_memory)]
    pub memory: Option<u64>,
    /// Memory the running guest keeps, e.g. 96M (its balloon; at most its memory, now).
    #[arg(long, value_parser = parse_memory)]
    pub balloon: Option<u64>,
    /// When the host stops: keep (running), save, shutdown or off.
    #[arg(long, value_parser = ["keep", "save", "shutdown", "off"])]
    pub on_host_stop: Option<String>,
    /// When the daemon starts: nothing or start (restore or boot).
    #[arg(long, value_parser = ["nothing", "start"])]
    pub on_host_start: Option<String>,
    /// High availability, on or off: in a pool, if its host dies, the pool starts it on another
    /// host (every disk must be a volume of a shared storage pool).
    #[arg(long, value_parser = ["on", "off"])]
    pub ha: Option<String>,
    /// cloud-init data to change (the rest is kept); the guest gets it at its next start.
    #[command(flatten)]
    pub cloud_init: Box<CloudInitArgs>,
    /// Remove the cloud-init seed.
    #[arg(long, conflicts_with = "cloud_init")]
    pub no_cloud_init: bool,
}

/// A path as the daemon takes it: `POOL/NAME` names a volume and stays as it is; any other
/// path is a host path, made absolute.
fn absolute(p: &Path) -> anyhow::Result<String> {
    if let Some(v) = p.to_str().filter(|s| vmconfig::volume_ref(s).is_some()) {
        return Ok(v.to_string());
    }
    let abs = if p.is_absolute() { p.to_path_buf() } else { std::env::current_dir()?.join(p) };
    Ok(abs.display().to_string())
}

/// Parses `PATH[,bus=…][,shared][,ro]`.
fn parse_disk(spec: &str) -> anyhow::Result<Disk> {
    let mut parts = spec.split(',');
    let path = parts.next().filter(|p| !p.is_empty()).context("--disk needs a path")?;
    let mut d = Disk {
        path: absolute(Path::new(path))?,
        bus: Bus::Virtio,
        cdrom: false,
        shared: false,
        read_only: false,
    };
    for opt in parts {
        match opt {
            "shared" => d.shared = true,
            "ro" | "read-only" => d.read_only = true,
            "bus=virtio" => d.bus = Bus::Virtio,
            "bus=ide" => d.bus = Bus::Ide,
            "bus=scsi" => d.bus = Bus::Scsi,
            other => {
                bail!("--disk {spec}: unknown option {other:?} (known: bus=virtio|ide|scsi, shared, ro)")
            }
        }
    }
    Ok(d)
}

/// Parses `NETWORK[,mac=MAC]`.
fn parse_nic(spec: &str) -> anyhow::Result<Nic> {
    let mut parts = spec.split(',');
    let network = parts.next().filter(|p| !p.is_empty()).context("--nic needs a network")?;
    let mut n = Nic { network: network.to_string(), mac: None };
    for opt in parts {
        match opt.split_once('=') {
            Some(("mac", m)) => n.mac = Some(m.to_ascii_lowercase()),
            _ => bail!("--nic {spec}: unknown option {opt:?} (known: mac=MAC)"),
        }
    }
    Ok(n)
}

/// The `POST /api/vms` body for these arguments.
fn new_vm(a: &CreateArgs) -> anyhow::Result<Value> {
    let mut disks = Vec::new();
    for spec in &a.disks {
        let d = parse_disk(spec)?;
        let bus = match d.bus {
            Bus::Virtio => "virtio",
            Bus::Ide => "ide",
            Bus::Scsi => "scsi",
        };
        disks.push(json!({ "path": d.path, "bus": bus, "shared": d.shared, "read_only": d.read_only }));
    }
    for iso in &a.cdroms {
        disks.push(json!({ "path": absolute(iso)?, "bus": "ide", "cdrom": true, "read_only": true }));
    }
    let mut v = json!({
        "name": a.name, "cpus": a.cpus, "memory": a.memory, "disks": disks, "undo_disks": a.undo_disks,
        "cpu_weight": a.cpu_weight, "cpu_reserve": a.cpu_reserve, "cpu_max": a.cpu_max,
        "shutdown_timeout": a.shutdown_timeout, "template": a.template, "full": a.full,
        "count": a.count, "start": a.start,
    });
    if let Some(h) = &a.host {
        v["host"] = json!(h);
    }
    if let Some(g) = &a.group {
        v["group"] = json!(g);
    }
    let mut nics = Vec::new();
    for spec in &a.nics {
        let n = parse_nic(spec)?;
        nics.push(json!({ "network": n.network, "mac": n.mac }));
    }
    v["nics"] = json!(nics);
    if let Some(ci) = a.cloud_init.data(None)? {
        v["cloud_init"] = ci;
    }
    if let Some(c) = &a.console {
        v["console"] = json!(c);
    }
    if let Some(k) = &a.kernel {
        v["kernel"] = json!(absolute(k)?);
        v["initrd"] = json!(a.initrd.as_deref().map(absolute).transpose()?);
        v["append"] = json!(a.append.clone().unwrap_or_default());
    }
    Ok(v)
}

static REMOTE: std::sync::OnceLock<super::remote::Remote> = std::sync::OnceLock::new();

/// Sends every later request to the stored remote `name`.
pub fn use_remote(name: &str) -> anyhow::Result<()> {
    let all = super::remote::load()?;
    let r = all.get(name).with_context(|| format!("no remote named '{name}' (see `vine remote list`)"))?;
    let _ = REMOTE.set(r.clone());
    Ok(())
}

/// A request to the daemon's REST API: the local socket, or the remote chosen with --remote.
pub fn rest(method: &str, target: &str, body: Option<&Value>) -> anyhow::Result<Value> {
    Ok(client().call(method, target, body)?)
}

/// The client of the daemon this command talks to (the local one, or `--remote`'s).
pub fn client() -> api::client::Client {
    match REMOTE.get() {
        Some(r) => api::client::Client::https(&r.addr, &r.fingerprint, Some(&r.token)),
        None => api::client::Client::new(&super::daemon::socket_path(None)),
    }
}

fn control(name: String, control: Control, options: ControlOptions) -> anyhow::Result<i32> {
    let v = match control {
        Control::Remove | Control::Delete => rest(
            "DELETE",
            &format!("/api/vms/{}?keep_files={}", encode(&name), control == Control::Remove),
            None,
        )?,
        c => {
            let action = serde_json::to_value(c)?;
            let target =
                format!("/api/vms/{}/actions/{}", encode(&name), action.as_str().unwrap_or_default());
            rest("POST", &target, Some(&serde_json::to_value(options)?))?
        }
    };
    println!("{}", v["message"].as_str().unwrap_or("done"));
    Ok(0)
}

/// The table of `vine vm list` and `vine ct list`.
pub(super) fn print_table(vms: &[VmInfo]) {
    // A HOST column only in a pool and a KIND column only beside containers, so a single host's
    // table of VMs stays what scripts expect.
    let pool = vms.iter().any(|v| v.host.is_some());
    let host = |h: &str| if pool { format!("{h:<12} ") } else { String::new() };
    let kinds = vms.iter().any(|v| v.kind != vmconfig::Kind::Vm);
    let kind = |k: &str| if kinds { format!("{k:<10} ") } else { String::new() };
    println!(
        "{:<20} {}{}{:<10} {:>8} {:>5} {:>10}  CPU (weight/reserve/max)",
        "NAME",
        kind("KIND"),
        host("HOST"),
        "STATE",
        "PID",
        "CPUS",
        "MEMORY"
    );
    for v in vms {
        println!(
            "{:<20} {}{}{:<10} {:>8} {:>5} {:>9}M  {}/{}%/{}",
            v.name,
            kind(v.kind.name()),
            host(v.host.as_deref().unwrap_or("-")),
            v.state.name(),
            v.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            v.cpus,
            v.memory >> 20,
            v.cpu.weight,
            v.cpu.reserve,
            v.cpu.max.map(|m| format!("{m}%")).unwrap_or_else(|| "none".into())
        );
    }
}

/// Runs a VM subcommand.
pub fn run(cmd: VmCommand) -> anyhow::Result<i32> {
    let none = ControlOptions::default();
    match cmd {
        VmCommand::Create(Lazy(a)) => {
            let v = rest("POST", "/api/vms", Some(&new_vm(&a)?))?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let made = match &v {
                    Value::Array(all) => all.clone(),
                    one => vec![one.clone()],
                };
                let verb = if a.start { "created and started" } else { "created" };
                for v in &made {
                    let name = v["name"].as_str().unwrap_or(&a.name);
                    match v["host"].as_str() {
                        Some(h) => println!("{verb} '{name}' on host '{h}'"),
                        None if a.start => println!("{verb} '{name}'"),
                        None => println!("{verb} '{name}' ({})", v["definition_file"].as_str().unwrap_or("")),
                    }
                }
            }
            Ok(0)
        }
        VmCommand::List { json } => {
            let v = rest("GET", "/api/vms", None)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print_table(&serde_json::from_value::<Vec<VmInfo>>(v)?);
            }
            Ok(0)
        }
        VmCommand::Show { name, json } => {
            let v = rest("GET", &format!("/api/vms/{}", encode(&name)), None)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(0);
            }
            let i: VmInfo = serde_json::from_value(v)?;
            println!("name:        {}", i.name);
            println!("kind:        {}", i.kind.name());
            if let Some(h) = &i.host {
                println!("host:        {h}");
            }
            println!("uuid:        {}", i.uuid);
            println!("state:       {}", i.state.name());
            if let Some(pid) = i.pid {
                println!("pid:         {pid}");
            }
            println!("cpus:        {}", i.cpus);
            println!("memory:      {} bytes", i.memory);
            println!(
                "cpu:         weight {}, reserve {}%, max {}{}",
                i.cpu.weight,
                i.cpu.reserve,
                i.cpu.max.map(|m| format!("{m}%")).unwrap_or_else(|| "none".into()),
                i.cpu
                    .allocated_max
                    .map(|m| format!(" (the pool's resizer caps it at {m}% now)"))
                    .unwrap_or_default()
            );
            for d in &i.disks {
                println!("disk:        {d}");
            }
            for (n, nic) in i.nics.iter().enumerate() {
                println!(
                    "nic {n}:       network {}, mac {}{}",
                    nic.network,
                    nic.mac.as_deref().unwrap_or("-"),
                    nic.tap.as_deref().map(|t| format!(", tap {t}")).unwrap_or_default()
                );
            }
            if let Some(c) = &i.container {
                println!("image:       {}", c.image);
                println!("root fs:     {}", c.rootfs);
                println!("ids:         0–65535 are host ids {}–{}", c.id_base, u64::from(c.id_base) + 65_535);
            } else {
                println!("undo disks:  {}", if i.undo_disks { "on" } else { "off" });
                println!("ha:          {}", if i.ha { "on" } else { "off" });
                if !i.console.is_uart() {
                    println!("console:     virtio (the guest's hvc0)");
                }
            }
            if let Some(c) = &i.cloud_init {
                println!(
                    "cloud-init:  host name {}, {} SSH key(s), {} user-data, instance {}",
                    c.hostname.as_deref().unwrap_or(&i.name),
                    c.ssh_keys.len(),
                    if c.user_data.is_some() { "own" } else { "empty" },
                    i.cloud_init_instance.as_deref().unwrap_or("-")
                );
            }
            println!("definition:  {}", i.definition_file);
            println!("console log: {}", i.console_log);
            if i.saved_state {
                println!("saved state: yes");
            }
            if let Some(ns) = i.cpu_time_ns {
                println!("cpu time:    {:.3} s", ns as f64 / 1e9);
            }
            if let Some(e) = i.last_error {
                println!("last error:  {e}");
            }
            Ok(0)
        }
        VmCommand::Start(t) => control(t.name, Control::Start, none),
        VmCommand::Pause(t) => control(t.name, Control::Pause, none),
        VmCommand::Resume(t) => control(t.name, Control::Resume, none),
        VmCommand::Save(t) => control(t.name, Control::Save, none),
        VmCommand::Restore(t) => control(t.name, Control::Restore, none),
        VmCommand::DiscardState(t) => control(t.name, Control::DiscardState, none),
        VmCommand::Reset(t) => control(t.name, Control::Reset, none),
        VmCommand::Remove(t) => control(t.name, Control::Remove, none),
        VmCommand::Delete(t) => control(t.name, Control::Delete, none),
        VmCommand::Move { name, to } => {
            eprintln!(
                "moving '{name}' to host '{to}' (its host-local volumes are copied; this can take a while)"
            );
            let v = rest("POST", &format!("/api/vms/{}/move", encode(&name)), Some(&json!({ "to": to })))?;
            println!("{}", v["message"].as_str().unwrap_or("moved"));
            Ok(0)
        }
        VmCommand::Migrate(a) => super::migrate::run(a),
        VmCommand::Import(a) => super::import::run(a),
        VmCommand::Export(a) => super::export::run(a),
        VmCommand::Shutdown(a) => control(
            a.name,
            Control::Shutdown,
            ControlOptions { undo: a.undo.map(Into::into), timeout_s: a.timeout },
        ),
        VmCommand::Off(a) => {
            control(a.name, Control::Off, ControlOptions { undo: a.undo.map(Into::into), timeout_s: None })
        }
        VmCommand::Set(a) => {
            let (cpu_max, no_cpu_max) = match a.cpu_max.as_deref() {
                None => (None, false),
                Some("none") => (None, true),
                Some(v) => (
                    Some(
                        v.trim_end_matches('%')
                            .parse::<u32>()
                            .with_context(|| format!("--cpu-max {v:?}: expected a percentage or `none`"))?,
                    ),
                    false,
                ),
            };
            let changes = Changes {
                cpu_weight: a.cpu_weight,
                cpu_reserve: a.cpu_reserve,
                cpu_max,
                no_cpu_max,
                memory: a.memory,
                allocated_cpu_max: None,
                no_allocated_cpu_max: false,
                balloon: a.balloon,
                on_host_stop: a.on_host_stop,
                on_host_start: a.on_host_start,
                ha: a.ha.as_deref().map(|h| h == "on"),
                cloud_init: None,
                no_cloud_init: a.no_cloud_init,
            };
            let mut changes = changes;
            if a.cloud_init.given() {
                let now = rest("GET", &format!("/api/vms/{}", encode(&a.name)), None)?;
                let data = a.cloud_init.data(Some(now["cloud_init"].clone()))?;
                changes.cloud_init = data.map(serde_json::from_value).transpose()?;
            }
            if changes == Changes::default() {
                bail!("vine vm set {}: nothing to change (give --cpu-weight, --cpu-reserve, --cpu-max, --memory, --balloon, --on-host-stop, --on-host-start, --ha or cloud-init options)", a.name);
            }
            let v = rest(
                "PATCH",
                &format!("/api/vms/{}", encode(&a.name)),
                Some(&serde_json::to_value(changes)?),
            )?;
            println!("{}", v["message"].as_str().unwrap_or("done"));
            Ok(0)
        }
        VmCommand::Console { name, log, all } => {
            if !log {
                bail!("the live console comes with the web console; use `vine vm console {name} --log` for what it wrote so far");
            }
            // The latest 64 KiB, or with --all everything kept, a page at a time.
            let base = format!("/api/vms/{}/console", encode(&name));
            if !all {
                let v = rest("GET", &base, None)?;
                print!("{}", v["log"].as_str().unwrap_or(""));
            } else {
                let mut offset = 0u64;
                loop {
                    let v = rest("GET", &format!("{base}?offset={offset}&limit=1048576"), None)?;
                    print!("{}", v["log"].as_str().unwrap_or(""));
                    let got = v["length"].as_u64().unwrap_or(0);
                    offset += got;
                    if got == 0 || offset >= v["total"].as_u64().unwrap_or(0) {
                        break;
                    }
                }
            }
            Ok(0)
        }
        VmCommand::Nic(NicCommand::Add { name, nic }) => {
            let n = parse_nic(&nic)?;
            let v = rest(
                "POST",
                &format!("/api/vms/{}/nics", encode(&name)),
                Some(&json!({ "network": n.network, "mac": n.mac })),
            )?;
            println!("{}", v["message"].as_str().unwrap_or("done"));
            Ok(0)
        }
        VmCommand::Nic(NicCommand::Remove { name, index }) => {
            let v = rest("DELETE", &format!("/api/vms/{}/nics/{index}", encode(&name)), None)?;
            println!("{}", v["message"].as_str().unwrap_or("done"));
            Ok(0)
        }
        VmCommand::Events { name, json } => {
            let target = match &name {
                Some(n) => format!("/api/events?vm={}", encode(n)),
                None => "/api/events".to_string(),
            };
            let v = rest("GET", &target, None)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(0);
            }
            for e in v.as_array().into_iter().flatten() {
                super::admin::print_event(e);
            }
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_specs_parse_and_bad_options_are_named() {
        let d = parse_disk("/x.vhd,bus=ide,shared,ro").unwrap();
        assert_eq!((d.bus, d.shared, d.read_only, d.path.as_str()), (Bus::Ide, true, true, "/x.vhd"));
        let e = parse_disk("/x.vhd,fast").unwrap_err().to_string();
        assert!(e.contains("unknown option \"fast\""), "{e}");
        assert!(parse_disk(",shared").is_err());
    }

    #[test]
    fn nic_specs_parse_and_bad_options_are_named() {
        let n = parse_nic("lan,mac=0A:56:4E:00:00:01").unwrap();
        assert_eq!((n.network.as_str(), n.mac.as_deref()), ("lan", Some("0a:56:4e:00:00:01")));
        assert_eq!(parse_nic("dmz").unwrap().mac, None);
        let e = parse_nic("lan,fast").unwrap_err().to_string();
        assert!(e.contains("unknown option \"fast\""), "{e}");
    }
}
