//! `vine disk serve`: one image (with its chain) exported over NBD until SIGINT/SIGTERM, when
//! the image is flushed and the process exits. For a live migration's destination it can also
//! serve on a Unix socket and a TCP address at once (`--handover`: the source's mirror writes
//! through TCP until it leaves, then the destination's emulator through the socket) and wait to
//! open its image until the first request (`--standby`: the source's server still holds it).
//! An HA guest's server watches its host's fence (`--fence FILE`, see `cluster::fence`) and exits
//! at once, letting go of its image, when the deadline there passes: a host whose daemon cannot
//! renew its lease (frozen, cut off) never keeps writing a volume the pool may start elsewhere.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use block::{BlockDevice, BlockError, DeviceInfo};

use anyhow::{bail, Context};
use clap::Args;
use signal_hook::consts::{SIGINT, SIGTERM};
use vhd::OpenOptions;

/// Arguments of `vine disk serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The image.
    path: PathBuf,
    /// Listen on this Unix socket.
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Listen on this TCP address, e.g. 127.0.0.1:10809 (port 0: any free port, printed).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Refuse writes.
    #[arg(long)]
    read_only: bool,
    /// Export name (default: the image's file name).
    #[arg(long)]
    export: Option<String>,
    /// Allow several read-write connections at once (guest clustering, multi-conn clients).
    #[arg(long, conflicts_with = "handover")]
    shared: bool,
    /// Admit several connections but one writer: the first connection to write holds the disk
    /// until it leaves (a live migration's mirror, then the destination's emulator).
    #[arg(long)]
    handover: bool,
    /// Open the image read-write only at the first request, waiting up to 30 s for another
    /// process's lock on it to go (the source's server during a live migration on shared storage).
    #[arg(long, conflicts_with = "read_only")]
    standby: bool,
    /// Exit, letting go of the image, once the deadline in this file (written by the host's
    /// fence at each renewal of its lease, monotonic milliseconds) has passed.
    #[arg(long, conflicts_with = "read_only")]
    fence: Option<PathBuf>,
    /// Once the image and the socket are open, become this user (the socket is made theirs, so
    /// their QEMU may connect) and deny the system calls a disk server never needs (seccomp).
    #[arg(long)]
    run_as: Option<String>,
}

/// Gives the socket to `user`, becomes them and installs the seccomp filter (a standby server
/// does the last two once it has opened its image: `later`).
fn confine(user: &str, socket: Option<&std::path::Path>, later: Option<&Standby>) -> anyhow::Result<()> {
    let u = sandbox::User::lookup(user)?;
    if let Some(s) = socket {
        std::os::unix::fs::chown(s, Some(u.uid), Some(u.gid))
            .with_context(|| format!("giving {} to {user}", s.display()))?;
    }
    if let Some(standby) = later {
        let _ = standby.confine_as.set(u);
        return Ok(());
    }
    sandbox::become_user(&u)?;
    sandbox::deny_escape_syscalls()?;
    Ok(())
}

/// Runs the server in the foreground.
pub fn run(args: ServeArgs) -> anyhow::Result<i32> {
    if args.socket.is_none() && args.listen.is_none() {
        bail!("say where to listen: --socket PATH or --listen ADDR:PORT");
    }
    let standby = if args.standby { Some(Arc::new(Standby::new(&args.path)?)) } else { None };
    let disk: Arc<dyn Flushable> = if let Some(s) = &standby {
        s.clone()
    } else {
        Arc::new(
            vhd::Disk::open(&args.path, OpenOptions { writable: !args.read_only, ..Default::default() })
                .with_context(|| format!("opening {}", args.path.display()))?,
        )
    };
    let name = args.export.clone().unwrap_or_else(|| {
        args.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    });
    let mut export = nbd::Export::new(name.clone(), disk.clone().device());
    export.read_only = args.read_only;
    export.shared = args.shared;
    export.handover = args.handover;
    export.description = format!("vine VHD {}", args.path.display());
    let server = Arc::new(nbd::Server::new(vec![export]).context("configuring the NBD export")?);
    let mut signals =
        signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).context("installing signal handlers")?;
    let mut serving = Vec::new();
    let mut where_ = Vec::new();
    let mut tcp = None;
    if let Some(a) = &args.listen {
        let listener = std::net::TcpListener::bind(a).with_context(|| format!("listening on {a}"))?;
        let bound = listener.local_addr().context("reading the bound TCP address")?;
        where_.push(format!("tcp {bound}"));
        tcp = Some(listener);
    }
    let mut unix = None;
    if let Some(s) = &args.socket {
        remove_stale_socket(s)?;
        unix = Some(
            std::os::unix::net::UnixListener::bind(s)
                .with_context(|| format!("listening on {}", s.display()))?,
        );
        where_.insert(0, format!("unix socket {}", s.display()));
    }
    if let Some(u) = &args.run_as {
        confine(u, args.socket.as_deref(), standby.as_deref())?;
    }
    if let Some(l) = tcp {
        let srv = server.clone();
        serving.push(std::thread::spawn(move || srv.serve(l)));
    }
    if let Some(l) = unix {
        let srv = server.clone();
        serving.push(std::thread::spawn(move || srv.serve(l)));
    }
    if let Some(f) = &args.fence {
        watch_fence(f.clone(), args.path.clone());
    }
    let where_ = where_.join(" and ");
    println!("serving {} as export '{name}' on {where_}", args.path.display());
    use std::io::Write;
    std::io::stdout().flush().ok();
    let sig = signals.forever().next();
    tracing::info!(signal = ?sig, "stopping");
    // Stop accepting, let requests already received finish, then make everything durable.
    server.shutdown_handle().shutdown();
    for t in serving {
        match t.join() {
            Ok(Err(e)) => tracing::warn!(error = %e, "NBD server stopped with an error"),
            Err(_) => tracing::error!("NBD server thread panicked"),
            Ok(Ok(())) => {}
        }
    }
    disk.flush_all().context("flushing the image")?;
    if let Some(s) = &args.socket {
        let _ = std::fs::remove_file(s);
    }
    Ok(0)
}

/// Watches the host's fence deadline in `file`; once it has passed, the process exits at once
/// (no flush: the guest's writes since its last flush are lost exactly as in a power cut, which
/// its file systems survive), so the image is free for the host the pool restarts the guest on.
/// No file (the host is in no pool, or left it), no deadline.
fn watch_fence(file: PathBuf, image: PathBuf) {
    std::thread::spawn(move || loop {
        if let Some(deadline) = cluster::fence::read_deadline(&file) {
            let now = cluster::fence::monotonic_ms();
            if now >= deadline {
                tracing::error!(
                    image = %image.display(),
                    late_ms = now - deadline,
                    "fenced: this host's lease was not renewed in time; letting go of the image"
                );
                eprintln!(
                    "vine disk serve: fenced: the host's lease was not renewed in time ({}); letting go of {}",
                    file.display(),
                    image.display()
                );
                std::process::exit(75);
            }
        }
        std::thread::sleep(cluster::fence::CHECK_EVERY);
    });
}

/// The served disk, flushed once more before the server exits.
trait Flushable: Send + Sync {
    fn device(self: Arc<Self>) -> Arc<dyn BlockDevice>;
    fn flush_all(&self) -> Result<(), BlockError>;
}

impl Flushable for vhd::Disk {
    fn device(self: Arc<Self>) -> Arc<dyn BlockDevice> {
        self
    }
    fn flush_all(&self) -> Result<(), BlockError> {
        BlockDevice::flush(self)
    }
}

/// How long a standby server waits for another process's lock on its image at the first request.
const STANDBY_WAIT: Duration = Duration::from_secs(30);

/// An image opened read-write at its first request (`--standby`). Until then only its size and
/// geometry are known, read without a lock from a read-only look. The server stays root until
/// then (the image and its parents are root's), and becomes the emulator user, under the seccomp
/// filter, as soon as it has opened them.
struct Standby {
    path: PathBuf,
    info: DeviceInfo,
    disk: OnceLock<vhd::Disk>,
    /// Serialises the first open.
    opening: Mutex<()>,
    /// Whom to become once the image is open.
    confine_as: OnceLock<sandbox::User>,
}

impl Standby {
    fn new(path: &Path) -> anyhow::Result<Standby> {
        let look = vhd::Disk::open(path, OpenOptions { writable: false, lock: false, ..Default::default() })
            .with_context(|| format!("looking at {}", path.display()))?;
        let info = DeviceInfo { read_only: false, ..BlockDevice::info(&look) };
        Ok(Standby {
            path: path.to_path_buf(),
            info,
            disk: OnceLock::new(),
            opening: Mutex::new(()),
            confine_as: OnceLock::new(),
        })
    }

    /// The image, opened read-write with its lock: at once if it is free, else after waiting up
    /// to `wait` for the process holding it to let go.
    fn disk(&self, wait: Duration) -> Result<&vhd::Disk, BlockError> {
        if let Some(d) = self.disk.get() {
            return Ok(d);
        }
        let _one = self.opening.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = self.disk.get() {
            return Ok(d);
        }
        let deadline = Instant::now() + wait;
        loop {
            match vhd::Disk::open(&self.path, OpenOptions { writable: true, ..Default::default() }) {
                Ok(d) => {
                    if d.size() != self.info.size {
                        return Err(BlockError::Io(std::io::Error::other(format!(
                            "{} changed size while this server stood by ({} bytes, now {})",
                            self.path.display(),
                            self.info.size,
                            d.size()
                        ))));
                    }
                    tracing::info!(path = %self.path.display(), "image opened at the first request");
                    if let Some(u) = self.confine_as.get() {
                        let confined = sandbox::become_user(u).and_then(|()| sandbox::deny_escape_syscalls());
                        if let Err(e) = confined {
                            // Never serve as root: the image stays closed and every request fails.
                            return Err(BlockError::Io(std::io::Error::other(format!(
                                "cannot become {} after opening {}: {e}",
                                u.name,
                                self.path.display()
                            ))));
                        }
                    }
                    return Ok(self.disk.get_or_init(|| d));
                }
                Err(e) if Instant::now() >= deadline => {
                    return Err(BlockError::Io(std::io::Error::other(format!(
                        "cannot open {} within {wait:?}: {e}",
                        self.path.display()
                    ))))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// A read while another process may still write the image: from the image itself once its
    /// lock is free, otherwise from a fresh read-only look (an emulator waiting for a migration
    /// probes its disks; what it reads then is the source's, as good as it gets before switchover).
    fn read_early(&self, buf: &mut [u8], offset: u64) -> Result<(), BlockError> {
        if let Ok(d) = self.disk(Duration::ZERO) {
            return BlockDevice::read_at(d, buf, offset);
        }
        let look =
            vhd::Disk::open(&self.path, OpenOptions { writable: false, lock: false, ..Default::default() })
                .map_err(|e| BlockError::Io(std::io::Error::other(e.to_string())))?;
        BlockDevice::read_at(&look, buf, offset)
    }
}

impl BlockDevice for Standby {
    fn info(&self) -> DeviceInfo {
        self.info
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), BlockError> {
        match self.disk.get() {
            Some(d) => BlockDevice::read_at(d, buf, offset),
            None => self.read_early(buf, offset),
        }
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), BlockError> {
        BlockDevice::write_at(self.disk(STANDBY_WAIT)?, buf, offset)
    }
    fn flush(&self) -> Result<(), BlockError> {
        BlockDevice::flush(self.disk(STANDBY_WAIT)?)
    }
    fn trim(&self, offset: u64, len: u64) -> Result<(), BlockError> {
        BlockDevice::trim(self.disk(STANDBY_WAIT)?, offset, len)
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), BlockError> {
        BlockDevice::write_zeroes(self.disk(STANDBY_WAIT)?, offset, len)
    }
}

impl Flushable for Standby {
    fn device(self: Arc<Self>) -> Arc<dyn BlockDevice> {
        self
    }
    /// Nothing to flush when no request ever came (the image was never opened here).
    fn flush_all(&self) -> Result<(), BlockError> {
        self.disk.get().map_or(Ok(()), BlockDevice::flush)
    }
}

/// Removes a socket file nobody listens on; refuses to touch anything else.
fn remove_stale_socket(path: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else { return Ok(()) };
    if !meta.file_type().is_socket() {
        bail!("{} exists and is not a socket; refusing to replace it", path.display());
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        bail!("{} is in use by another server", path.display());
    }
    std::fs::remove_file(path).with_context(|| format!("removing stale socket {}", path.display()))
}
