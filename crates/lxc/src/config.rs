//! A container's LXC configuration (`lxc.container.conf(5)`), written by vine before each start.
//! Pure: [`render`] turns [`ContainerConfig`] into the file's text.

use std::fmt::Write;
use std::path::PathBuf;

use crate::idmap::IDS_PER_CONTAINER;

/// One NIC: a veth pair whose host side (`host_name`, vine's name for the NIC's port) joins
/// its network's bridge through the `plug` hook (LXC's own bridge attachment reads `/sys/class/net`, which
/// shows another network namespace's links where the daemon runs in a namespace of its own
/// without its own sysfs); the container side is `eth{index}` with `mac`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Veth {
    /// The host side's name (at most 15 characters).
    pub host_name: String,
    /// The container side's MAC.
    pub mac: String,
    /// The command LXC runs once the pair exists (`script.up`; LXC appends the container's name,
    /// `net`, `up`, `veth` and the host side's name).
    pub plug: String,
}

/// What vine sets for one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerConfig {
    /// The container's name (LXC's name; vine's instance name).
    pub name: String,
    /// The host name it sees.
    pub hostname: String,
    /// Its root file system (a directory owned by its ids).
    pub rootfs: PathBuf,
    /// The host id its root maps to (its slot's first id).
    pub id_base: u32,
    /// Its init, with arguments.
    pub init: Vec<String>,
    /// The signal that asks its init to power off (`SIGPWR`, `SIGRTMIN+3` for systemd,
    /// `SIGUSR2` for busybox).
    pub halt_signal: String,
    /// The cgroup (relative to each hierarchy's root) that holds the container's processes;
    /// vine's resource controls are written on its parent.
    pub cgroup: String,
    /// The cgroup of LXC's monitor process.
    pub monitor_cgroup: String,
    /// Where the monitor goes when the container ends (so its cgroups can be removed).
    pub pivot_cgroup: String,
    /// NICs, in order.
    pub nics: Vec<Veth>,
    /// The console log (LXC writes what the container's `/dev/console` shows).
    pub console_log: PathBuf,
    /// The console log's bound in bytes; LXC rotates it once at that size.
    pub console_log_size: u64,
    /// LXC's own log.
    pub log: PathBuf,
}

/// The configuration file's text.
pub fn render(c: &ContainerConfig) -> String {
    let mut s = String::from("# Written by vine at each start; edits are lost.\n");
    let mut line = |k: &str, v: &str| {
        let _ = writeln!(s, "{k} = {v}");
    };
    line("lxc.uts.name", &c.hostname);
    line("lxc.rootfs.path", &format!("dir:{}", c.rootfs.display()));
    line("lxc.idmap", &format!("u 0 {} {IDS_PER_CONTAINER}", c.id_base));
    line("lxc.idmap", &format!("g 0 {} {IDS_PER_CONTAINER}", c.id_base));
    line("lxc.init.cmd", &c.init.join(" "));
    line("lxc.signal.halt", &c.halt_signal);
    line("lxc.mount.auto", "proc:mixed sys:ro cgroup:mixed");
    line("lxc.autodev", "1");
    line("lxc.pty.max", "64");
    line("lxc.tty.max", "0");
    line("lxc.cgroup.dir.container", &c.cgroup);
    line("lxc.cgroup.dir.monitor", &c.monitor_cgroup);
    line("lxc.cgroup.dir.monitor.pivot", &c.pivot_cgroup);
    line("lxc.console.logfile", &c.console_log.display().to_string());
    line("lxc.console.size", &c.console_log_size.to_string());
    line("lxc.console.rotate", "1");
    line("lxc.log.file", &c.log.display().to_string());
    line("lxc.log.level", "WARN");
    if c.nics.is_empty() {
        line("lxc.net.0.type", "empty");
    }
    for (i, n) in c.nics.iter().enumerate() {
        line(&format!("lxc.net.{i}.type"), "veth");
        line(&format!("lxc.net.{i}.script.up"), &n.plug);
        line(&format!("lxc.net.{i}.veth.pair"), &n.host_name);
        line(&format!("lxc.net.{i}.hwaddr"), &n.mac);
        line(&format!("lxc.net.{i}.name"), &format!("eth{i}"));
        line(&format!("lxc.net.{i}.flags"), "up");
    }
    s
}

/// The halt signal for an init, from what `/sbin/init` is in the root file system: systemd
/// powers off on `SIGRTMIN+3`, busybox's init on `SIGUSR2`, sysvinit on LXC's default `SIGPWR`.
pub fn halt_signal_for(init_target: Option<&str>) -> &'static str {
    match init_target {
        Some(t) if t.contains("systemd") => "SIGRTMIN+3",
        Some(t) if t.contains("busybox") => "SIGUSR2",
        _ => "SIGPWR",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ContainerConfig {
        ContainerConfig {
            name: "web1".into(),
            hostname: "web1".into(),
            rootfs: "/var/lib/vine/vms/web1/rootfs".into(),
            id_base: 2_000_065_536,
            init: vec!["/sbin/init".into()],
            halt_signal: "SIGUSR2".into(),
            cgroup: "vine/web1/ct".into(),
            monitor_cgroup: "vine/web1/monitor".into(),
            pivot_cgroup: "vine".into(),
            nics: vec![Veth {
                host_name: "vt0123abcd".into(),
                mac: "52:54:00:00:00:01".into(),
                plug: "/usr/bin/vine network plug-port vb99".into(),
            }],
            console_log: "/var/lib/vine/vms/web1/console.log".into(),
            console_log_size: 2 << 20,
            log: "/var/lib/vine/vms/web1/lxc.log".into(),
        }
    }

    #[test]
    fn the_configuration_maps_ids_places_cgroups_and_names_the_nic() {
        let t = render(&sample());
        assert!(t.starts_with("# Written by vine"), "{t}");
        for want in [
            "lxc.idmap = u 0 2000065536 65536\n",
            "lxc.idmap = g 0 2000065536 65536\n",
            "lxc.rootfs.path = dir:/var/lib/vine/vms/web1/rootfs\n",
            "lxc.cgroup.dir.container = vine/web1/ct\n",
            "lxc.net.0.veth.pair = vt0123abcd\n",
            "lxc.net.0.script.up = /usr/bin/vine network plug-port vb99\n",
            "lxc.net.0.hwaddr = 52:54:00:00:00:01\n",
            "lxc.signal.halt = SIGUSR2\n",
            "lxc.console.size = 2097152\n",
        ] {
            assert!(t.contains(want), "missing {want:?} in\n{t}");
        }
        assert!(!t.contains("lxc.net.0.type = empty"));
        let none = render(&ContainerConfig { nics: vec![], ..sample() });
        assert!(none.contains("lxc.net.0.type = empty\n"));
    }

    #[test]
    fn the_halt_signal_follows_the_init() {
        assert_eq!(halt_signal_for(Some("/lib/systemd/systemd")), "SIGRTMIN+3");
        assert_eq!(halt_signal_for(Some("/bin/busybox")), "SIGUSR2");
        assert_eq!(halt_signal_for(None), "SIGPWR");
    }
}
