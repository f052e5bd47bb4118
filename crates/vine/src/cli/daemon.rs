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
    /// Address of the HTTPS API and web UI (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: String,
    /// Seconds between samples of the VMs' CPU use (the policy engine's interval).
    #[arg(long, default_value_t = 10.0)]
    pub sample_interval: f64,
    /// The web UI's files [env VINE_WEB_DIR; default: this source tree's web/dist (built by
    /// scripts/web.sh) when present, else /usr/share/vine/web].
    #[arg(long)]
    pub web_dir: Option<PathBuf>,
    /// The unprivileged user QEMU and the disk servers run as (made by scripts/setup.sh and by
    /// the Debian package); `root` runs them unconfined (not recommended).
    #[arg(long, default_value = sandbox::DEFAULT_USER)]
    pub emulator_user: String,
    /// Percent of one core that password checks (Argon2, tens of milliseconds of CPU each) may
    /// use over time: a flood of logins waits its turn instead of taking CPU from the VMs and
    /// the API (1–100).
    #[arg(long, default_value_t = api::hasher::DEFAULT_CPU_SHARE * 100.0, value_parser = login_cpu)]
    pub login_cpu: f64,
    /// CPU weight of the daemon's own cgroup (PARENT-daemon, beside the VMs'), on the VMs' scale
    /// (100 is the default weight; 1–10000): requests are answered at once on cores the guests
    /// keep busy, while a ceiling of a quarter of the host's CPUs (at least one) keeps a flood
    /// of requests from taking the guests' CPU. 0 leaves the daemon in the cgroup it was started in.
    #[arg(long, default_value_t = cgroups::daemon::DEFAULT_WEIGHT,
          value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub cpu_weight: u32,
}

/// `--login-cpu`: a percentage from 1 to 100.
fn login_cpu(s: &str) -> Result<f64, String> {
    match s.trim().trim_end_matches('%').parse::<f64>() {
        Ok(p) if (1.0..=100.0).contains(&p) => Ok(p),
        _ => Err(format!("'{s}': expected a percentage of one core from 1 to 100")),
    }
}

/// The socket the CLI uses: `--socket`, else VINE_SOCKET, else the default.
pub fn socket_path(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os("VINE_SOCKET").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
}

/// Runs the daemon.
pub fn run(args: DaemonArgs) -> anyhow::Result<i32> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    // Large blocks (a password check's 19 MiB of Argon2 memory) are mapped for each use and
    // given back when freed. glibc would otherwise raise its mapping threshold after the first
    // such free and keep every later block in a thread's heap for good: six logins made the
    // daemon 115 MiB larger.
    // SAFETY: mallopt(3) only sets a parameter of glibc's allocator; it is called before the
    // daemon starts any thread and takes the allocator's own lock.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
    let data_dir = args
        .data_dir
        .or_else(|| std::env::var_os("VINE_DATA_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let socket = socket_path(args.socket);
    let cgroup_parent = args.cgroup_parent;
    let cfg = daemon::Config {
        data_dir: data_dir.clone(),
        socket: socket.clone(),
        qemu: args.qemu,
        vine_exe: std::env::current_exe().context("finding the vine binary")?,
        cgroup_parent: cgroup_parent.clone(),
        sample_interval: std::time::Duration::try_from_secs_f64(args.sample_interval)
            .ok()
            .filter(|d| !d.is_zero())
            .with_context(|| {
                format!("--sample-interval {}: expected a positive number of seconds", args.sample_interval)
            })?,
        emulator_user: args.emulator_user,
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
    let store = d.ctx().store.clone();
    if let Some(password) = api::auth::ensure_admin(store.as_ref()).context("creating the admin account")? {
        let file = data_dir.join("initial-admin-password");
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&file)
            .with_context(|| format!("writing {}", file.display()))?;
        use std::io::Write as _;
        writeln!(f, "{password}").with_context(|| format!("writing {}", file.display()))?;
        println!("first start: user 'admin' has password {password} (also in {}, mode 0600)", file.display());
    }
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let v2_line = own.lines().find(|l| l.starts_with("0::"));
    let ceiling = cgroups::daemon::ceiling_pct(h.cpus);
    match cgroups::daemon::place(
        &h.cgroup,
        &cgroup_parent,
        args.cpu_weight,
        ceiling,
        std::process::id(),
        v2_line,
    ) {
        Ok(cgroups::daemon::Placement::Moved { group, weight, max_pct }) => {
            tracing::info!(group, weight, max_pct, "the daemon runs in a CPU group of its own")
        }
        Ok(cgroups::daemon::Placement::Stayed(why)) => tracing::info!("the daemon's CPU group: {why}"),
        Err(e) => tracing::warn!("the daemon stays in the CPU group it was started in: {e}"),
    }
    let tls = api::tls::load_or_create(&data_dir.join("tls"), &h.hostname).context("TLS certificate")?;
    api::hooks::start(d.clone());
    d.host_start();
    let web_dir = api::web::resolve(args.web_dir);
    if !web_dir.join("index.html").is_file() {
        println!(
            "web UI files missing in {} (run scripts/web.sh): / explains, the API works",
            web_dir.display()
        );
    }
    let app =
        api::web::with_ui(api::router(api::AppState::new(d.clone(), store, args.login_cpu / 100.0)), web_dir);
    // Request threads (workers and the blocking pool) ask for short scheduler slices, so they
    // are not kept waiting behind busy guests (host::sched).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .on_thread_start(host::sched::latency_critical)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let served: anyhow::Result<()> = rt.block_on(async {
        if socket.exists() {
            if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
                anyhow::bail!("another vine daemon is already listening on {}", socket.display());
            }
            std::fs::remove_file(&socket)
                .with_context(|| format!("removing stale socket {}", socket.display()))?;
        }
        if let Some(dir) = socket.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let std_listener = std::os::unix::net::UnixListener::bind(&socket)
            .with_context(|| format!("listening on {}", socket.display()))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {}", socket.display()))?;
        std_listener.set_nonblocking(true)?;
        let unix = tokio::net::UnixListener::from_std(std_listener)?;
        let tcp = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        println!(
            "REST API and web UI on https://{} (certificate SHA-256 {}{}) and on {}",
            tcp.local_addr()?,
            tls.fingerprint,
            if tls.created { ", made now" } else { "" },
            socket.display()
        );
        use std::io::Write as _;
        std::io::stdout().flush().ok();
        // Back into the pool named in the data directory, if any (the etcd client has its own
        // runtime, so this runs off the async workers); etcd out of reach only delays it.
        let url = format!("https://{}", tcp.local_addr()?);
        let member = d.clone();
        let fingerprint = tls.fingerprint.clone();
        tokio::task::spawn_blocking(move || member.rejoin_pool(&url, &fingerprint))
            .await?
            .map_err(|e| anyhow::anyhow!("rejoining the pool: {e}"))?;
        let unix_task = tokio::spawn(api::serve::unix(unix, app.clone()));
        let tls_task = tokio::spawn(api::serve::tls(tcp, tls.config.clone(), app));
        loop {
            if let Some(sig) = signals.pending().next() {
                tracing::info!(signal = sig, "stopping; VMs keep running");
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        unix_task.abort();
        tls_task.abort();
        Ok(())
    });
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    let _ = std::fs::remove_file(&socket);
    d.leave_quietly();
    d.host_stop();
    d.stop();
    served?;
    println!("vine daemon stopped; each VM followed its on_host_stop action (default: keep running)");
    Ok(0)
}
