//! `vine console-log` (hidden): one VM's console logger, started by the daemon before the VM's
//! QEMU and ending with it (crate `conlog`). It runs as the emulator user, under the seccomp
//! filter of the disk servers.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

/// Arguments of `vine console-log`.
#[derive(Debug, Args)]
pub struct ConsoleLogArgs {
    /// The socket QEMU's serial ports connect to.
    #[arg(long)]
    feed: PathBuf,
    /// The socket viewers send keystrokes to.
    #[arg(long)]
    socket: PathBuf,
    /// The log.
    #[arg(long)]
    log: PathBuf,
    /// Rotate the log at this many bytes.
    #[arg(long, default_value_t = conlog::MAX_FILE)]
    max_file: u64,
}

/// Runs the logger until its QEMU is gone.
pub fn run(args: ConsoleLogArgs) -> anyhow::Result<i32> {
    for s in [&args.feed, &args.socket] {
        let _ = std::fs::remove_file(s);
    }
    let feed = std::os::unix::net::UnixListener::bind(&args.feed)
        .with_context(|| format!("listening on {}", args.feed.display()))?;
    let console = std::os::unix::net::UnixListener::bind(&args.socket)
        .with_context(|| format!("listening on {}", args.socket.display()))?;
    let log = conlog::RotatingLog::open(&args.log, args.max_file)
        .with_context(|| format!("opening {}", args.log.display()))?;
    sandbox::deny_escape_syscalls()?;
    println!("logging the console to {}", args.log.display());
    use std::io::Write;
    std::io::stdout().flush().ok();
    conlog::serve(feed, console, log, std::time::Duration::from_secs(60)).context("serving the console")?;
    Ok(0)
}
