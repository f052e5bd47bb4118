//! The guest kit boots under plain QEMU (TCG) and each `vine.*` behaviour later tests rely on
//! works: the boot marker, the running counter, ACPI power-off through QMP, disk read and write.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;
use test_infra::{tcg_command, Kit, QemuGuard, SerialLog};

/// Longest wait for one serial marker: a TCG boot takes ~10 s alone, several times that on a
/// loaded two-core machine.
const MARKER_TIMEOUT: Duration = Duration::from_secs(90);

/// Longest wait for the guest to power off after `system_powerdown`.
const POWEROFF_TIMEOUT: Duration = Duration::from_secs(60);

struct Guest {
    qemu: QemuGuard,
    serial: SerialLog,
    started: Instant,
}

/// Boots the kit with `options` on the kernel command line and `args` added to QEMU's.
fn boot(dir: &TempDir, options: &[&str], args: &[&str]) -> Guest {
    let kit = Kit::ensure().expect("guest kit (scripts/guest-kit.sh)");
    let log = dir.path().join("serial.log");
    let mut cmd = tcg_command(&kit, &log, options);
    cmd.args(args);
    let started = Instant::now();
    let qemu = QemuGuard::spawn(cmd).expect("start QEMU");
    Guest { qemu, serial: SerialLog::new(log), started }
}

impl Guest {
    fn wait_for(&mut self, marker: &str) -> String {
        match self.serial.wait_for_running(marker, MARKER_TIMEOUT, &mut self.qemu) {
            Ok(line) => line,
            Err(e) => panic!("{e}"),
        }
    }
}

/// Sends one QMP command and returns its `return` value, skipping the events that come first.
fn qmp(reader: &mut BufReader<UnixStream>, command: &str) -> Value {
    let mut stream = reader.get_ref();
    writeln!(stream, "{{\"execute\":\"{command}\"}}").expect("send QMP command");
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).expect("read QMP reply");
        assert_ne!(n, 0, "QMP closed before replying to {command}");
        let reply: Value = serde_json::from_str(&line).expect("QMP reply is JSON");
        if let Some(ret) = reply.get("return") {
            return ret.clone();
        }
        assert!(reply.get("event").is_some(), "{command} failed: {line}");
    }
}

fn qmp_connect(socket: &Path) -> BufReader<UnixStream> {
    let stream = UnixStream::connect(socket).expect("connect to QMP");
    stream.set_read_timeout(Some(MARKER_TIMEOUT)).expect("set QMP read timeout");
    let mut reader = BufReader::new(stream);
    let mut greeting = String::new();
    reader.read_line(&mut greeting).expect("read QMP greeting");
    assert!(greeting.contains("\"QMP\""), "not a QMP greeting: {greeting}");
    qmp(&mut reader, "qmp_capabilities");
    reader
}

#[test]
fn kit_boots_to_userspace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut guest = boot(&dir, &[], &[]);
    assert_eq!(guest.wait_for("VINE-BOOT-OK"), "VINE-BOOT-OK");
    eprintln!("kit booted to VINE-BOOT-OK in {:?}", guest.started.elapsed());
}

#[test]
fn counter_keeps_counting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut guest = boot(&dir, &["vine.counter=1"], &[]);
    assert_eq!(guest.wait_for("VINE-COUNTER "), "VINE-COUNTER 1");
    assert_eq!(guest.wait_for("VINE-COUNTER 3"), "VINE-COUNTER 3");
}

#[test]
fn system_powerdown_powers_the_guest_off_through_acpi() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("qmp.sock");
    let qmp_arg = format!("unix:{},server=on,wait=off", socket.display());
    let mut guest = boot(&dir, &[], &["-qmp", &qmp_arg]);
    // VINE-BOOT-OK comes after acpid is watching the power button.
    guest.wait_for("VINE-BOOT-OK");
    let mut reader = qmp_connect(&socket);
    qmp(&mut reader, "system_powerdown");
    let asked = Instant::now();
    let status = guest.qemu.wait_exit(POWEROFF_TIMEOUT).expect("guest powers off after system_powerdown");
    assert!(status.success(), "QEMU exited with {status}; stderr: {}", guest.qemu.stderr());
    eprintln!("guest powered off {:?} after system_powerdown", asked.elapsed());
    assert!(guest.serial.contents().expect("read log").contains("VINE-POWEROFF"));
}

#[test]
fn guest_reads_and_writes_a_raw_virtio_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = dir.path().join("disk.raw");
    let mut image = vec![0u8; 1 << 20];
    image[..16].copy_from_slice(b"vine-disk-header");
    std::fs::write(&disk, &image).expect("write disk image");
    let drive = format!("file={},format=raw,if=virtio", disk.display());
    let mut guest = boot(&dir, &["vine.disk=/dev/vda", "vine.diskwrite=HELLO"], &["-drive", &drive]);

    let expected: String = b"vine-disk-header".iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(guest.wait_for("VINE-DISK "), format!("VINE-DISK {expected}"));
    guest.wait_for("VINE-DISK-WROTE");
    // The guest synced before printing, so the write has reached the file; stop QEMU anyway so
    // nothing is still in flight when we read.
    guest.qemu.kill().expect("stop QEMU");

    let after = std::fs::read(&disk).expect("read disk image");
    assert_eq!(&after[512..517], b"HELLO");
    assert!(after[517..1024].iter().all(|&b| b == 0), "sector 1 is NUL-padded after the marker");
    assert_eq!(&after[..16], b"vine-disk-header", "sector 0 untouched");
}
