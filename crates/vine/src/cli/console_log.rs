//! `vine console-log` (hidden): one VM's console logger, started by the daemon before the VM's
//! QEMU and ending with it (crate `conlog`). It runs as the emulator user, under the seccomp
//! filter of the disk servers.
//!
//! With `--lxc NAME`, a container's keystroke relay: LXC itself writes what the container's
//! `/dev/console` shows to the log; viewers' keystrokes reach the console through LXC's own
//! `lxc-console`, run on a terminal made by util-linux's `script`. It ends when the container
//! stops (an `lxc-console` that ends while the container runs is started again).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

/// Arguments of `vine console-log`.
#[derive(Debug, Args)]
pub struct ConsoleLogArgs {
    /// The socket QEMU's serial ports connect to.
    #[arg(long, required_unless_present = "lxc")]
    feed: Option<PathBuf>,
    /// A container's keystroke relay instead: the container's name.
    #[arg(long, requires = "lxc_path", conflicts_with_all = ["feed", "log"])]
    lxc: Option<String>,
    /// With --lxc: LXC's directory of containers (`-P`).
    #[arg(long)]
    lxc_path: Option<PathBuf>,
    /// With --lxc: the container's init as PID:START_TICKS; the relay ends with it.
    #[arg(long, requires = "lxc")]
    init: Option<String>,
    /// The socket viewers send keystrokes to.
    #[arg(long)]
    socket: PathBuf,
    /// The log.
    #[arg(long, required_unless_present = "lxc")]
    log: Option<PathBuf>,
    /// Rotate the log at this many bytes.
    #[arg(long, default_value_t = conlog::MAX_FILE)]
    max_file: u64,
}

/// Runs the logger until its QEMU is gone.
pub fn run(args: ConsoleLogArgs) -> anyhow::Result<i32> {
    if let (Some(name), Some(path)) = (&args.lxc, &args.lxc_path) {
        let init = args
            .init
            .as_deref()
            .and_then(|s| s.split_once(':'))
            .and_then(|(p, t)| {
                Some(vmm::process::Identity { pid: p.parse().ok()?, start_ticks: t.parse().ok()? })
            })
            .context("--lxc needs --init PID:START_TICKS")?;
        return relay(name, path, &args.socket, init);
    }
    let (Some(feed_path), Some(log_path)) = (&args.feed, &args.log) else {
        anyhow::bail!("--feed and --log are needed without --lxc");
    };
    for s in [feed_path, &args.socket] {
        let _ = std::fs::remove_file(s);
    }
    let feed = std::os::unix::net::UnixListener::bind(feed_path)
        .with_context(|| format!("listening on {}", feed_path.display()))?;
    let console = std::os::unix::net::UnixListener::bind(&args.socket)
        .with_context(|| format!("listening on {}", args.socket.display()))?;
    let log = conlog::RotatingLog::open(log_path, args.max_file)
        .with_context(|| format!("opening {}", log_path.display()))?;
    sandbox::deny_escape_syscalls()?;
    println!("logging the console to {}", log_path.display());
    use std::io::Write;
    std::io::stdout().flush().ok();
    conlog::serve(feed, console, log, std::time::Duration::from_secs(60)).context("serving the console")?;
    Ok(0)
}

/// `s` quoted for `sh -c`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// A container's keystroke relay (see the module's comment).
fn relay(
    name: &str,
    lxc_path: &std::path::Path,
    socket: &std::path::Path,
    init: vmm::process::Identity,
) -> anyhow::Result<i32> {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    use std::sync::{Arc, Mutex};
    let _ = std::fs::remove_file(socket);
    let listener = std::os::unix::net::UnixListener::bind(socket)
        .with_context(|| format!("listening on {}", socket.display()))?;
    // The socket is removed at the end only while it is this relay's (a later start's relay
    // may have bound the path again).
    let inode =
        |p: &std::path::Path| std::fs::metadata(p).map(|m| std::os::unix::fs::MetadataExt::ino(&m)).ok();
    let mine = inode(socket);
    let sink: Arc<Mutex<Option<std::process::ChildStdin>>> = Arc::new(Mutex::new(None));
    {
        let sink = sink.clone();
        std::thread::Builder::new().name("viewers".into()).spawn(move || {
            let viewers = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            for v in listener.incoming() {
                let Ok(mut v) = v else { continue };
                if viewers.load(std::sync::atomic::Ordering::SeqCst) >= conlog::MAX_VIEWERS {
                    continue;
                }
                viewers.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let (sink, viewers) = (sink.clone(), viewers.clone());
                let _ = std::thread::Builder::new().name("viewer".into()).spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = v.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        if let Some(s) = sink.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
                            let _ = s.write_all(&buf[..n]).and_then(|()| s.flush());
                        }
                    }
                    viewers.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                });
            }
        })?;
    }
    println!("relaying keystrokes to container {name}'s console");
    std::io::stdout().flush().ok();
    let console_cmd = format!(
        "exec lxc-console -P {} -n {} -t 0 -e '^]'",
        sh_quote(&lxc_path.display().to_string()),
        sh_quote(name)
    );
    loop {
        let mut child = Command::new("script")
            .args(["-q", "-f", "-c", &console_cmd, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot run script(1) for lxc-console")?;
        *sink.lock().unwrap_or_else(|p| p.into_inner()) = child.stdin.take();
        let _ = child.wait();
        *sink.lock().unwrap_or_else(|p| p.into_inner()) = None;
        // Ended with its container, or by a viewer's escape: the container's init decides.
        std::thread::sleep(std::time::Duration::from_millis(500));
        if !vmm::process::is_alive(init) {
            if inode(socket) == mine {
                let _ = std::fs::remove_file(socket);
            }
            return Ok(0);
        }
    }
}
