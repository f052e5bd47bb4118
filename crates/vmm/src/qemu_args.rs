//! The QEMU command line for a VM definition: pure, so every device mapping is unit-tested.
//! Disks reach QEMU only as NBD exports served by vine's storage engine (QEMU never opens a
//! VHD); CD/DVD images are plain ISO files opened read-only. The first `console` serial port (a
//! UART, or a virtio console) is a socket the web console attaches to, logging everything to
//! vine's console log; the display is
//! a VGA card served over VNC on a Unix socket (the web UI's graphical console), nothing else.

use std::path::{Path, PathBuf};

use host::Accelerator;
use vmconfig::{BootDevice, Bus, ConsoleDevice, SerialPort, VmDefinition};

/// Where a VM's disk is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NbdEndpoint {
    /// vine's NBD Unix socket.
    pub socket: PathBuf,
    /// The export name.
    pub export: String,
}

/// Where a VM's NIC is plugged: a tap vine created on the network's bridge, and the NIC's MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicEndpoint {
    /// The persistent tap (QEMU opens it by name).
    pub tap: String,
    /// The MAC address vine allocated.
    pub mac: String,
}

/// Everything besides the definition that the command line needs.
#[derive(Debug, Clone)]
pub struct LaunchPlan<'a> {
    /// The definition.
    pub def: &'a VmDefinition,
    /// The accelerator chosen for this host.
    pub accel: Accelerator,
    /// QMP socket path.
    pub qmp_socket: &'a Path,
    /// The console logger's socket that serial ports set to `console` connect to.
    pub console_feed: &'a Path,
    /// The VNC server's Unix socket (graphical console).
    pub vnc_socket: &'a Path,
    /// One endpoint per non-CD/DVD disk, in definition order.
    pub disks: &'a [NbdEndpoint],
    /// One tap per NIC, in definition order.
    pub nics: &'a [NicEndpoint],
    /// File descriptors QEMU inherits, each in an fd set of its own (`-add-fd fd=F,set=S`), so
    /// a CD/DVD named `/dev/fdset/S` is opened by vine, never by QEMU.
    pub fdsets: &'a [(i32, u32)],
    /// QEMU's seccomp sandbox ([`SANDBOX`]).
    pub sandbox: bool,
}

/// QEMU's seccomp sandbox: obsolete system calls, gaining privileges, starting processes and
/// changing scheduling or resource limits are all denied.
pub const SANDBOX: &str = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";

/// The id of a VM's memory balloon device.
pub const BALLOON: &str = "balloon0";

/// Why a definition cannot be launched (yet).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LaunchError {
    /// Disks and endpoints do not line up.
    #[error("{disks} disk(s) need NBD endpoints, {endpoints} were given")]
    Endpoints {
        /// Disks needing an endpoint.
        disks: usize,
        /// Endpoints given.
        endpoints: usize,
    },
    /// NICs and taps do not line up.
    #[error("{nics} NIC(s) need taps, {taps} were given")]
    Taps {
        /// NICs in the definition.
        nics: usize,
        /// Taps given.
        taps: usize,
    },
}

/// The arguments after `qemu-system-x86_64`.
pub fn qemu_args(plan: &LaunchPlan) -> Result<Vec<String>, LaunchError> {
    let d = plan.def;
    let mut a: Vec<String> = Vec::new();
    let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
    push(&["-name", &format!("guest={},debug-threads=on", d.name)]);
    push(&["-uuid", &d.uuid]);
    push(&["-machine", "pc", "-accel", plan.accel.qemu_name()]);
    push(&["-cpu", if plan.accel == Accelerator::Kvm { "host" } else { "max" }]);
    push(&["-smp", &d.cpus.to_string(), "-m", &format!("{}M", d.memory >> 20)]);
    push(&["-nodefaults", "-no-user-config", "-display", "none", "-no-shutdown"]);
    push(&["-vga", "std", "-vnc", &format!("unix:{}", plan.vnc_socket.display())]);
    push(&["-qmp", &format!("unix:{},server=on,wait=off", plan.qmp_socket.display())]);
    if d.balloon {
        push(&["-device", &format!("virtio-balloon-pci,id={BALLOON}")]);
    }
    if plan.sandbox {
        push(&["-sandbox", SANDBOX]);
    }
    for (fd, set) in plan.fdsets {
        push(&["-add-fd", &format!("fd={fd},set={set}")]);
    }
    for (i, port) in d.serial.iter().enumerate() {
        match port {
            SerialPort::None => push(&["-serial", "null"]),
            SerialPort::Console => {
                // To vine's console logger (crate conlog), which bounds and rotates the log; it
                // is reconnected if the logger comes back after a failure.
                let feed = |id: &str| {
                    format!(
                        "socket,id={id},path={},server=off,reconnect-ms=1000",
                        plan.console_feed.display()
                    )
                };
                match d.console {
                    ConsoleDevice::Uart => {
                        push(&["-chardev", &feed(&format!("serial{i}"))]);
                        push(&["-serial", &format!("chardev:serial{i}")]);
                    }
                    ConsoleDevice::Virtio => {
                        // The UART stays (so the other port keeps its number), unconnected; the
                        // logger's feed is a virtio console on a bus of its own.
                        push(&["-serial", "null"]);
                        push(&["-chardev", &feed(&format!("vconsole{i}"))]);
                        push(&["-device", &format!("virtio-serial-pci,id=vcon{i}")]);
                        push(&["-device", &format!("virtconsole,bus=vcon{i}.0,chardev=vconsole{i}")]);
                    }
                }
            }
            SerialPort::File { path } => {
                push(&["-chardev", &format!("file,id=serial{i},path={path},append=on")]);
                push(&["-serial", &format!("chardev:serial{i}")]);
            }
            SerialPort::Socket { path } => {
                push(&["-chardev", &format!("socket,id=serial{i},path={path},server=on,wait=off")]);
                push(&["-serial", &format!("chardev:serial{i}")]);
            }
        }
    }
    let wanted = d.disks.iter().filter(|x| !x.cdrom).count();
    if wanted != plan.disks.len() {
        return Err(LaunchError::Endpoints { disks: wanted, endpoints: plan.disks.len() });
    }
    if d.nics.len() != plan.nics.len() {
        return Err(LaunchError::Taps { nics: d.nics.len(), taps: plan.nics.len() });
    }
    for (i, n) in plan.nics.iter().enumerate() {
        push(&["-netdev", &format!("tap,id=net{i},ifname={},script=no,downscript=no", n.tap)]);
        push(&["-device", &format!("virtio-net-pci,netdev=net{i},mac={}", n.mac)]);
    }
    let mut endpoints = plan.disks.iter();
    let mut ide_slot = 0;
    let mut scsi = false;
    for (i, disk) in d.disks.iter().enumerate() {
        let node = format!("disk{i}");
        if disk.cdrom {
            push(&[
                "-blockdev",
                &format!("driver=file,filename={},node-name={node}-file,read-only=on", disk.path),
            ]);
            push(&["-blockdev", &format!("driver=raw,file={node}-file,node-name={node},read-only=on")]);
        } else {
            let e = endpoints.next().expect("counted above");
            let ro = if disk.read_only { ",read-only=on" } else { "" };
            push(&[
                "-blockdev",
                &format!(
                    "driver=nbd,server.type=unix,server.path={},export={},node-name={node}-nbd{ro}",
                    e.socket.display(),
                    e.export
                ),
            ]);
            push(&["-blockdev", &format!("driver=raw,file={node}-nbd,node-name={node}{ro}")]);
        }
        let device = match (disk.bus, disk.cdrom) {
            (Bus::Ide, cd) => {
                let bus = format!("ide.{}", ide_slot / 2);
                let unit = ide_slot % 2;
                ide_slot += 1;
                format!("{},drive={node},bus={bus},unit={unit}", if cd { "ide-cd" } else { "ide-hd" })
            }
            (Bus::Virtio, _) => format!("virtio-blk-pci,drive={node}"),
            (Bus::Scsi, cd) => {
                if !scsi {
                    scsi = true;
                    push(&["-device", "virtio-scsi-pci,id=scsi0"]);
                }
                format!("{},drive={node},bus=scsi0.0", if cd { "scsi-cd" } else { "scsi-hd" })
            }
        };
        let shared = if disk.shared { ",share-rw=on" } else { "" };
        push(&["-device", &format!("{device}{shared}")]);
    }
    if let Some(k) = &d.kernel {
        push(&["-kernel", &k.kernel]);
        if let Some(initrd) = &k.initrd {
            push(&["-initrd", initrd]);
        }
        push(&["-append", &k.append]);
    }
    let order: String = d
        .boot
        .iter()
        .map(|b| match b {
            BootDevice::Disk => 'c',
            BootDevice::Cdrom => 'd',
            BootDevice::Network => 'n',
        })
        .collect();
    if !order.is_empty() {
        push(&["-boot", &format!("order={order}")]);
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmconfig::{Disk, KernelBoot};

    fn def() -> VmDefinition {
        let mut d = VmDefinition::new("web1", 2, 512 << 20);
        d.kernel = Some(KernelBoot {
            kernel: "/k".into(),
            initrd: Some("/i".into()),
            append: "console=ttyS0".into(),
        });
        d
    }

    fn plan<'a>(d: &'a VmDefinition, disks: &'a [NbdEndpoint]) -> LaunchPlan<'a> {
        LaunchPlan {
            def: d,
            accel: Accelerator::Tcg,
            qmp_socket: Path::new("/run/q.sock"),
            console_feed: Path::new("/var/c.sock"),
            vnc_socket: Path::new("/var/v.sock"),
            disks,
            nics: &[],
            fdsets: &[],
            sandbox: false,
        }
    }

    fn joined(a: &[String]) -> String {
        a.join(" ")
    }

    #[test]
    fn the_sandbox_and_inherited_descriptors_are_on_the_command_line() {
        let d = def();
        let mut p = plan(&d, &[]);
        p.sandbox = true;
        p.fdsets = &[(12, 1), (13, 2)];
        let a = joined(&qemu_args(&p).unwrap());
        assert!(a.contains(&format!("-sandbox {SANDBOX}")), "{a}");
        assert!(a.contains("-add-fd fd=12,set=1 -add-fd fd=13,set=2"), "{a}");
        assert!(!joined(&qemu_args(&plan(&d, &[])).unwrap()).contains("-sandbox"));
    }

    #[test]
    fn diskless_kernel_boot_under_tcg() {
        let d = def();
        let a = joined(&qemu_args(&plan(&d, &[])).unwrap());
        assert!(a.contains("-accel tcg -cpu max -smp 2 -m 512M"), "{a}");
        assert!(a.contains("-kernel /k -initrd /i -append console=ttyS0"), "{a}");
        assert!(
            a.contains(
                "-chardev socket,id=serial0,path=/var/c.sock,server=off,reconnect-ms=1000 \
                 -serial chardev:serial0 -serial null"
            ),
            "{a}"
        );
        assert!(a.contains("-qmp unix:/run/q.sock,server=on,wait=off"), "{a}");
        assert!(a.contains("-display none -no-shutdown -vga std -vnc unix:/var/v.sock"), "{a}");
    }

    #[test]
    fn a_virtio_console_feeds_the_logger_and_leaves_the_uart_unconnected() {
        let mut d = def();
        d.console = ConsoleDevice::Virtio;
        let a = joined(&qemu_args(&plan(&d, &[])).unwrap());
        assert!(
            a.contains(
                "-serial null -chardev socket,id=vconsole0,path=/var/c.sock,server=off,reconnect-ms=1000 \
                 -device virtio-serial-pci,id=vcon0 \
                 -device virtconsole,bus=vcon0.0,chardev=vconsole0 -serial null"
            ),
            "{a}"
        );
        assert!(!a.contains("chardev:"), "{a}");
    }

    #[test]
    fn disks_go_through_nbd_and_cdroms_through_files() {
        let mut d = def();
        let disk =
            |path: &str, bus, cdrom, shared| Disk { path: path.into(), bus, cdrom, shared, read_only: false };
        d.disks = vec![
            disk("/a.vhd", Bus::Ide, false, false),
            disk("/b.iso", Bus::Ide, true, false),
            disk("/c.vhd", Bus::Virtio, false, true),
            disk("/d.vhd", Bus::Scsi, false, false),
            disk("/e.vhd", Bus::Ide, false, false),
        ];
        let eps: Vec<NbdEndpoint> = ["a", "c", "d", "e"]
            .iter()
            .map(|n| NbdEndpoint { socket: format!("/run/{n}.sock").into(), export: n.to_string() })
            .collect();
        let a = joined(&qemu_args(&plan(&d, &eps)).unwrap());
        assert!(
            a.contains("driver=nbd,server.type=unix,server.path=/run/a.sock,export=a,node-name=disk0-nbd"),
            "{a}"
        );
        assert!(a.contains("ide-hd,drive=disk0,bus=ide.0,unit=0"), "{a}");
        assert!(a.contains("driver=file,filename=/b.iso,node-name=disk1-file,read-only=on"), "{a}");
        assert!(a.contains("ide-cd,drive=disk1,bus=ide.0,unit=1"), "{a}");
        assert!(a.contains("virtio-blk-pci,drive=disk2,share-rw=on"), "{a}");
        assert!(
            a.contains("virtio-scsi-pci,id=scsi0") && a.contains("scsi-hd,drive=disk3,bus=scsi0.0"),
            "{a}"
        );
        assert!(a.contains("ide-hd,drive=disk4,bus=ide.1,unit=0"), "{a}");
        assert!(!a.contains(".vhd"), "QEMU must never open a VHD itself: {a}");
    }

    #[test]
    fn nics_are_virtio_net_on_vines_taps_with_vines_macs() {
        let mut d = def();
        for n in ["lan", "dmz"] {
            d.nics.push(vmconfig::Nic { network: n.into(), mac: None });
        }
        let nics = [
            NicEndpoint { tap: "vt0".into(), mac: "0a:56:4e:00:00:01".into() },
            NicEndpoint { tap: "vt1".into(), mac: "0a:56:4e:00:00:02".into() },
        ];
        let mut p = plan(&d, &[]);
        p.nics = &nics;
        let a = joined(&qemu_args(&p).unwrap());
        assert!(a.contains("-netdev tap,id=net0,ifname=vt0,script=no,downscript=no -device virtio-net-pci,netdev=net0,mac=0a:56:4e:00:00:01"), "{a}");
        assert!(a.contains("-netdev tap,id=net1,ifname=vt1,script=no,downscript=no -device virtio-net-pci,netdev=net1,mac=0a:56:4e:00:00:02"), "{a}");
    }

    #[test]
    fn missing_endpoints_and_nics_are_refused() {
        let mut d = def();
        d.disks.push(Disk {
            path: "/a.vhd".into(),
            bus: Bus::Virtio,
            cdrom: false,
            shared: false,
            read_only: false,
        });
        assert_eq!(qemu_args(&plan(&d, &[])).unwrap_err(), LaunchError::Endpoints { disks: 1, endpoints: 0 });
        let mut d = def();
        d.nics.push(vmconfig::Nic { network: "lan".into(), mac: None });
        assert_eq!(qemu_args(&plan(&d, &[])).unwrap_err(), LaunchError::Taps { nics: 1, taps: 0 });
    }

    #[test]
    fn kvm_uses_the_host_cpu_and_boot_order_follows_the_definition() {
        let mut d = def();
        d.boot = vec![BootDevice::Cdrom, BootDevice::Disk, BootDevice::Network];
        let mut p = plan(&d, &[]);
        p.accel = Accelerator::Kvm;
        let a = joined(&qemu_args(&p).unwrap());
        assert!(a.contains("-accel kvm -cpu host") && a.contains("-boot order=dcn"), "{a}");
    }
}
