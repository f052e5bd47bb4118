//! `vine host …`: facts about this host.

use clap::Subcommand;

/// Host subcommands.
#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// CPUs, memory, the accelerator vine uses (and why) and the cgroup version.
    Info {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a host subcommand.
pub fn run(cmd: HostCommand) -> anyhow::Result<i32> {
    match cmd {
        HostCommand::Info { json } => {
            let info = host::host_info(&host::LiveHost)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&info)?);
                return Ok(0);
            }
            println!("hostname:     {}", info.hostname);
            println!("kernel:       {}", info.kernel);
            println!("cpus:         {}", info.cpus);
            println!(
                "memory:       {} bytes ({:.1} GiB)",
                info.memory_bytes,
                info.memory_bytes as f64 / (1u64 << 30) as f64
            );
            println!("accelerator:  {} ({})", info.accelerator.kind.qemu_name(), info.accelerator.reason);
            match &info.cgroup {
                host::CgroupLayout::V2 { mount, controllers } => {
                    println!("cgroup:       v2 at {mount} (controllers: {})", controllers.join(" "))
                }
                host::CgroupLayout::V1 { controllers } => {
                    let list: Vec<String> = controllers.iter().map(|(c, m)| format!("{c} at {m}")).collect();
                    println!("cgroup:       v1 ({})", list.join(", "))
                }
            }
            Ok(0)
        }
    }
}
