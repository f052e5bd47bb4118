//! The command line from a VM definition boots a real guest (the guest kit, TCG) whose disk is
//! a VHD served by `vine disk serve`: the guest reads the disk, QMP answers, and an ACPI
//! shutdown powers the guest off.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use host::Accelerator;
use test_infra::{Kit, QemuGuard, SerialLog};
use vmconfig::{Bus, Disk, KernelBoot, VmDefinition};
use vmm::qemu_args::{qemu_args, LaunchPlan, NbdEndpoint};

struct Server(std::process::Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The workspace's `vine` binary (scripts/test.sh builds the workspace before testing).
fn vine_bin() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/vine");
    assert!(p.exists(), "{} is missing: run `cargo build` first", p.display());
    p
}

#[test]
fn definition_boots_a_guest_from_a_vhd_served_over_nbd() {
    let kit = Kit::ensure().expect("guest kit");
    let dir = tempfile::tempdir().unwrap();
    let vhd = dir.path().join("data.vhd");
    let raw = dir.path().join("data.raw");
    let mut bytes = vec![0u8; 1 << 20];
    bytes[..16].copy_from_slice(b"vine-vhd-over-nb");
    std::fs::write(&raw, &bytes).unwrap();
    let status = Command::new(vine_bin())
        .args(["disk", "convert"])
        .arg(&raw)
        .arg(&vhd)
        .args(["--to", "dynamic"])
        .status();
    assert!(status.unwrap().success());
    let sock = dir.path().join("data.sock");
    let mut server = Server(
        Command::new(vine_bin())
            .args(["disk", "serve"])
            .arg(&vhd)
            .arg("--socket")
            .arg(&sock)
            .args(["--export", "data"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(server.0.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(line.starts_with("serving"), "{line}");

    let mut def = VmDefinition::new("boot-test", 1, 256 << 20);
    def.kernel = Some(KernelBoot {
        kernel: kit.vmlinuz.display().to_string(),
        initrd: Some(kit.initrd.display().to_string()),
        append: kit.cmdline_with(&["vine.disk=/dev/vda"]),
    });
    def.disks.push(Disk {
        path: vhd.display().to_string(),
        bus: Bus::Virtio,
        cdrom: false,
        shared: false,
        read_only: false,
    });
    def.validate().unwrap();
    let qmp_sock = dir.path().join("qmp.sock");
    let console = dir.path().join("console.log");
    let console_sock = dir.path().join("console.sock");
    let feed_sock = dir.path().join("console-feed.sock");
    // vine's console logger between the serial port and the log.
    let (feed, viewers) = (
        std::os::unix::net::UnixListener::bind(&feed_sock).unwrap(),
        std::os::unix::net::UnixListener::bind(&console_sock).unwrap(),
    );
    let log = conlog::RotatingLog::open(&console, conlog::MAX_FILE).unwrap();
    let logger = std::thread::spawn(move || conlog::serve(feed, viewers, log, Duration::from_secs(60)));
    let vnc_sock = dir.path().join("vnc.sock");
    let eps = [NbdEndpoint { socket: sock.clone(), export: "data".into() }];
    let plan = LaunchPlan {
        def: &def,
        accel: Accelerator::Tcg,
        qmp_socket: &qmp_sock,
        console_feed: &feed_sock,
        vnc_socket: &vnc_sock,
        disks: &eps,
        nics: &[],
        fdsets: &[],
        sandbox: true,
    };
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(qemu_args(&plan).unwrap());
    let mut qemu = QemuGuard::spawn(cmd).unwrap();
    let mut log = SerialLog::new(&console);
    log.wait_for("VINE-BOOT-OK", Duration::from_secs(120)).unwrap();
    let seen = log.wait_for("VINE-DISK ", Duration::from_secs(60)).unwrap();
    assert!(seen.contains("76696e652d7668642d6f7665722d6e62"), "guest read {seen}");

    let transport = qmp::UnixTransport::connect(&qmp_sock, Duration::from_secs(10)).unwrap();
    let mut c = qmp::Client::negotiate(transport).unwrap();
    assert_eq!(c.status().unwrap(), "running");
    c.execute("system_powerdown", None).unwrap();
    // -no-shutdown keeps QEMU alive after the guest powers off, so the daemon can see it.
    c.wait_event("SHUTDOWN").unwrap();
    assert_eq!(c.status().unwrap(), "shutdown");
    c.execute("quit", None).unwrap();
    assert!(qemu.wait_exit(Duration::from_secs(30)).unwrap().success());
    // The logger ends with its QEMU.
    logger.join().unwrap().unwrap();
}
