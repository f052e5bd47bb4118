//! `vine exec-as` (hidden): the launcher the daemon starts confined programs through (QEMU and
//! the console loggers; crate `sandbox`, module `launch`): it takes the files the daemon hands
//! over on standard input, puts them at the given numbers, drops to the user and execs the
//! program, so the daemon itself never has to fork.

use std::ffi::OsString;

use clap::Args;

/// Arguments of `vine exec-as`.
#[derive(Debug, Args)]
pub struct ExecAsArgs {
    /// The user id to run as.
    #[arg(long)]
    uid: u32,
    /// The primary group id.
    #[arg(long)]
    gid: u32,
    /// Supplementary group ids, comma-separated.
    #[arg(long, value_delimiter = ',')]
    groups: Vec<u32>,
    /// Where each file handed over on standard input goes, in order (3 or more).
    #[arg(long = "fd")]
    fds: Vec<i32>,
    /// The program and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<OsString>,
}

/// Runs the launcher; returns only if the program could not be started.
pub fn run(args: ExecAsArgs) -> anyhow::Result<i32> {
    let user = sandbox::User {
        name: format!("uid {}", args.uid),
        uid: args.uid,
        gid: args.gid,
        groups: args.groups,
    };
    let e = sandbox::exec_as(&user, &args.fds, &args.command[0], &args.command[1..]);
    Err(anyhow::Error::new(e).context("vine exec-as"))
}
