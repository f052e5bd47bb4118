//! Command-line definitions and dispatch. Exit codes: 0 success, 1 a check found problems,
//! 2 the command failed (the message says why).

pub mod admin;
pub mod cluster;
pub mod console_log;
pub mod ct;
pub mod daemon;
pub mod disk;
pub mod docs;
pub mod exec_as;
pub mod export;
pub mod host;
pub mod import;
pub mod journal;
pub mod lazy;
pub mod migrate;
pub mod network;
pub mod policy;
pub mod pool;
pub mod remote;
pub mod size;
pub mod template;
pub mod vm;

use clap::{Parser, Subcommand};
use lazy::Lazy;

/// vine: a virtual infrastructure manager.
#[derive(Debug, Parser)]
#[command(name = "vine", version, about, propagate_version = true)]
pub struct Cli {
    /// Log more (repeat for more detail).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Send the command to this remote daemon (see `vine remote add`) instead of the local one.
    #[arg(long, global = true, env = "VINE_REMOTE")]
    pub remote: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Virtual disks (VHD): create, inspect, check, convert, serve over NBD.
    #[command(subcommand)]
    Disk(Lazy<disk::DiskCommand>),
    /// This host (CPUs, memory, accelerator, cgroups) and the hosts of its pool.
    #[command(subcommand)]
    Host(Lazy<host::HostCommand>),
    /// The pool of hosts this host belongs to (shared state in etcd).
    #[command(subcommand)]
    Cluster(Lazy<cluster::ClusterCommand>),
    /// Run the host daemon in the foreground.
    Daemon(Lazy<daemon::DaemonArgs>),
    /// Virtual machines (through the daemon).
    #[command(subcommand)]
    Vm(Lazy<vm::VmCommand>),
    /// System containers (LXC, unprivileged): controls as for VMs, made from images.
    #[command(subcommand)]
    Ct(Lazy<ct::CtCommand>),
    /// The event log: operator actions, state changes, warnings and errors.
    Events {
        /// Only this VM's events.
        #[arg(long)]
        vm: Option<String>,
        /// Only events of the last … (e.g. 10m, 2h, 1d).
        #[arg(long, value_parser = admin::parse_duration_s)]
        since: Option<u32>,
        /// Keep printing new events as they happen.
        #[arg(long)]
        follow: bool,
        /// One JSON object per event.
        #[arg(long)]
        json: bool,
    },
    /// Users of the management plane.
    #[command(subcommand)]
    User(Lazy<admin::UserCommand>),
    /// Storage pools: named directories of volumes.
    #[command(subcommand)]
    Pool(Lazy<pool::PoolCommand>),
    /// Volumes (`POOL/NAME`): disks, ISOs, kernels and initrds in storage pools.
    #[command(subcommand)]
    Volume(Lazy<pool::VolumeCommand>),
    /// VM templates: read-only base disks with settings; VMs made from them are linked clones.
    #[command(subcommand)]
    Template(Lazy<template::TemplateCommand>),
    /// Rights: configure or use a VM, use a storage pool, a network or a template.
    #[command(subcommand)]
    Acl(Lazy<admin::AclCommand>),
    /// Event scripts.
    #[command(subcommand)]
    Hook(Lazy<admin::HookCommand>),
    /// API tokens.
    #[command(subcommand)]
    Token(Lazy<admin::TokenCommand>),
    /// Remote daemons over HTTPS.
    #[command(subcommand)]
    Remote(Lazy<remote::RemoteCommand>),
    /// Virtual networks and their DHCP servers (through the daemon).
    #[command(subcommand)]
    Network(Lazy<network::NetworkCommand>),
    /// A VM's console logger (started by the daemon).
    #[command(hide = true)]
    ConsoleLog(Lazy<console_log::ConsoleLogArgs>),
    /// The launcher of confined programs (started by the daemon).
    #[command(hide = true)]
    ExecAs(Lazy<exec_as::ExecAsArgs>),
    /// Workload policies and the trace-driven simulator.
    #[command(subcommand)]
    Policy(Lazy<policy::PolicyCommand>),
    /// Prints the shell completion script for bash or zsh (packaged vine installs both).
    Completions {
        /// The shell.
        shell: docs::Shell,
    },
    /// Writes a man page for vine and for each of its commands into DIR (for packaging).
    #[command(hide = true)]
    Manpages {
        /// Where the pages go (`vine.1`, `vine-vm.1`, `vine-vm-create.1`, …).
        dir: std::path::PathBuf,
    },
}

impl Command {
    /// Whether the command is a long-running server (the daemon and the helpers it spawns),
    /// which must survive a peer that goes away mid-write; every other command ends quietly
    /// when its output does (`vine vm list | head -n 1`), as Unix tools do.
    pub fn serves(&self) -> bool {
        matches!(
            self,
            Command::Daemon(_)
                | Command::ConsoleLog(_)
                | Command::Disk(Lazy(disk::DiskCommand::Serve(_)))
                | Command::Network(Lazy(network::NetworkCommand::DhcpServe { .. }))
        )
    }
}

/// Sets up `tracing` on stderr; `RUST_LOG` overrides the level. Colours only on a terminal (a
/// log file gets plain text); under systemd, whose journal reads stderr, each line carries the
/// journal's priority prefix (`<3>` error … `<7>` debug, sd-daemon(3)) and no time stamp (the
/// journal keeps its own).
pub fn init_logging(verbose: u8) {
    use std::io::IsTerminal;
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if journal::stderr_is_journal() {
        builder.with_ansi(false).event_format(journal::JournalFormat).init();
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    }
}

/// Runs a parsed command line; returns the exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    if let Some(r) = &cli.remote {
        vm::use_remote(r)?;
    }
    match cli.command {
        Command::Disk(Lazy(cmd)) => disk::run(cmd),
        Command::Host(Lazy(cmd)) => host::run(cmd),
        Command::Cluster(Lazy(cmd)) => cluster::run(cmd),
        Command::Daemon(Lazy(args)) => daemon::run(args),
        Command::Vm(Lazy(cmd)) => vm::run(cmd),
        Command::Ct(Lazy(cmd)) => ct::run(cmd),
        Command::Network(Lazy(cmd)) => network::run(cmd),
        Command::Policy(Lazy(cmd)) => policy::run(cmd),
        Command::Events { vm, since, follow, json } => admin::events(vm, since, follow, json),
        Command::User(Lazy(cmd)) => admin::user(cmd),
        Command::Acl(Lazy(cmd)) => admin::acl(cmd),
        Command::Pool(Lazy(cmd)) => pool::pool(cmd),
        Command::Volume(Lazy(cmd)) => pool::volume(cmd),
        Command::Template(Lazy(cmd)) => template::run(cmd),
        Command::Hook(Lazy(cmd)) => admin::hook(cmd),
        Command::Token(Lazy(cmd)) => admin::token(cmd),
        Command::Remote(Lazy(cmd)) => remote::run(cmd),
        Command::ConsoleLog(Lazy(args)) => console_log::run(args),
        Command::ExecAs(Lazy(args)) => exec_as::run(args),
        Command::Completions { shell } => docs::completions(shell),
        Command::Manpages { dir } => docs::manpages(&dir),
    }
}
