//! `vine disk serve`: one image (with its chain) exported over NBD until SIGINT/SIGTERM, when
//! the image is flushed and the process exits.

use std::path::PathBuf;
use std::sync::Arc;

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
    #[arg(long, conflicts_with = "listen")]
    socket: Option<PathBuf>,
    /// Listen on this TCP address, e.g. 127.0.0.1:10809.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Refuse writes.
    #[arg(long)]
    read_only: bool,
    /// Export name (default: the image's file name).
    #[arg(long)]
    export: Option<String>,
    /// Allow several read-write connections at once (guest clustering, multi-conn clients).
    #[arg(long)]
    shared: bool,
    /// Once the image and the socket are open, become this user (the socket is made theirs, so
    /// their QEMU may connect) and deny the system calls a disk server never needs (seccomp).
    #[arg(long)]
    run_as: Option<String>,
}

/// Gives the socket to `user`, becomes them and installs the seccomp filter.
fn confine(user: &str, socket: Option<&std::path::Path>) -> anyhow::Result<()> {
    let u = sandbox::User::lookup(user)?;
    if let Some(s) = socket {
        std::os::unix::fs::chown(s, Some(u.uid), Some(u.gid))
            .with_context(|| format!("giving {} to {user}", s.display()))?;
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
    let disk = vhd::Disk::open(&args.path, OpenOptions { writable: !args.read_only, ..Default::default() })
        .with_context(|| format!("opening {}", args.path.display()))?;
    let disk = Arc::new(disk);
    let name = args.export.clone().unwrap_or_else(|| {
        args.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    });
    let mut export = nbd::Export::new(name.clone(), disk.clone());
    export.read_only = args.read_only;
    export.shared = args.shared;
    export.description = format!("vine VHD {}", args.path.display());
    let server = Arc::new(nbd::Server::new(vec![export]).context("configuring the NBD export")?);
    let mut signals =
        signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).context("installing signal handlers")?;
    let serving;
    let where_ = match (&args.socket, &args.listen) {
        (Some(s), _) => {
            remove_stale_socket(s)?;
            let listener = std::os::unix::net::UnixListener::bind(s)
                .with_context(|| format!("listening on {}", s.display()))?;
            if let Some(u) = &args.run_as {
                confine(u, Some(s))?;
            }
            let srv = server.clone();
            serving = std::thread::spawn(move || srv.serve(listener));
            format!("unix socket {}", s.display())
        }
        (None, Some(a)) => {
            let listener = std::net::TcpListener::bind(a).with_context(|| format!("listening on {a}"))?;
            if let Some(u) = &args.run_as {
                confine(u, None)?;
            }
            let srv = server.clone();
            serving = std::thread::spawn(move || srv.serve(listener));
            format!("tcp {a}")
        }
        (None, None) => unreachable!("checked above"),
    };
    println!("serving {} as export '{name}' on {where_}", args.path.display());
    use std::io::Write;
    std::io::stdout().flush().ok();
    let sig = signals.forever().next();
    tracing::info!(signal = ?sig, "stopping");
    // Stop accepting, let requests already received finish, then make everything durable.
    server.shutdown_handle().shutdown();
    match serving.join() {
        Ok(Err(e)) => tracing::warn!(error = %e, "NBD server stopped with an error"),
        Err(_) => tracing::error!("NBD server thread panicked"),
        Ok(Ok(())) => {}
    }
    disk.flush().context("flushing the image")?;
    if let Some(s) = &args.socket {
        let _ = std::fs::remove_file(s);
    }
    Ok(0)
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
