//! `vine daemon`: runs the host daemon in the foreground until SIGINT or SIGTERM. Stopping it
//! leaves the VMs running; the next daemon reattaches to them.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/vine";
/// Default socket.
pub const DEFAULT_SOCKET: &str = "/run/vine/vine.sock";

/// Options of `vine daemon`.
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Data directory [env VINE_DATA_DIR; default /var/lib/vine].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Local socket the CLI talks to [env VINE_SOCKET; default /run/vine/vine.sock].
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// QEMU binary.
    #[arg(long, default_value = "qemu-system-x86_64")]
    pub qemu: PathBuf,
    /// Parent cgroup of the VMs' cgroups.
    #[arg(long, default_value = "vine")]
    pub cgroup_parent: String,
    /// Seconds between samples of the VMs' CPU use (the policy engine's interval).
    #[arg(long, default_value_t = 10.0)]
    pub sample_interval: f64,
}

/// The socket the CLI uses: `--socket`, else VINE_SOCKET, else the default.
pub fn socket_path(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os("VINE_SOCKET").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
}

/// Runs the daemon.
pub fn run(args: DaemonArgs) -> anyhow::Result<i32> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let data_dir = args
        .data_dir
        .or_else(|| std::env::var_os("VINE_DATA_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let socket = socket_path(args.socket);
    let cfg = daemon::Config {
        data_dir: data_dir.clone(),
        socket: socket.clone(),
        qemu: args.qemu,
        vine_exe: std::env::current_exe().context("finding the vine binary")?,
        cgroup_parent: args.cgroup_parent,
        sample_interval: std::time::Duration::try_from_secs_f64(args.sample_interval)
            .ok()
            .filter(|d| !d.is_zero())
            .with_context(|| {
                format!("--sample-interval {}: expected a positive number of seconds", args.sample_interval)
            })?,
    };
    let mut signals =
        signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).context("installing signal handlers")?;
    let d = daemon::Daemon::open(cfg).context("starting the daemon")?;
    let h = &d.ctx().host;
    println!(
        "vine daemon {}: data {}, socket {}, accelerator {} ({}), cgroup {}",
        env!("CARGO_PKG_VERSION"),
        data_dir.display(),
        socket.display(),
        h.accelerator.kind.qemu_name(),
        h.accelerator.reason,
        match h.cgroup {
            host::CgroupLayout::V1 { .. } => "v1",
            host::CgroupLayout::V2 { .. } => "v2",
        }
    );
    use std::io::Write;
    std::io::stdout().flush().ok();
    let server = {
        let d = d.clone();
        std::thread::spawn(move || d.serve())
    };
    loop {
        if server.is_finished() {
            // It ended by itself: an error (e.g. another daemon holds the socket).
            return match server.join() {
                Ok(Err(e)) => Err(e).context("serving"),
                _ => Ok(0),
            };
        }
        if let Some(sig) = signals.pending().next() {
            tracing::info!(signal = sig, "stopping; VMs keep running");
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    d.stop();
    match server.join() {
        Ok(r) => r.context("serving")?,
        Err(_) => anyhow::bail!("the server thread panicked"),
    }
    println!("vine daemon stopped; running VMs were left running");
    Ok(0)
}
