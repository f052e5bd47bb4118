//! Disks from the storage engine in guests, through the daemon: a VM boots from a VHD root disk
//! served by vine (SeaBIOS → syslinux → kernel, all read over vine's NBD); with undo disks on,
//! a session's writes are discarded or committed at its end and the guest sees that on its next
//! boot; a disk marked shared is attached to two running VMs at once and what one writes the
//! other reads.

mod vmhost;

use std::path::Path;
use std::process::Command;

use vmhost::{VmHost, BOOT};

/// "SESSION1" NUL-padded to 16 bytes, as the guest prints it.
const SESSION1: &str = "53455353494f4e310000000000000000";
const ZEROS: &str = "00000000000000000000000000000000";

fn convert_to_vhd(h: &VmHost, raw: &Path, vhd: &Path) {
    let out =
        h.vine().args(["disk", "convert"]).arg(raw).arg(vhd).args(["--to", "dynamic"]).output().unwrap();
    assert!(out.status.success(), "{}", vmhost::text(&out));
}

/// Sector 1 of a VHD, read by QEMU's own vpc driver (not vine's).
fn sector1(vhd: &Path, dir: &Path) -> Vec<u8> {
    let raw = dir.join("check.raw");
    let out = Command::new("qemu-img")
        .args(["convert", "-f", "vpc", "-O", "raw"])
        .arg(vhd)
        .arg(&raw)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", vmhost::text(&out));
    let bytes = std::fs::read(&raw).unwrap();
    bytes[512..528].to_vec()
}

fn disk1(h: &VmHost, log: &mut test_infra::SerialLog) -> String {
    let line = log.wait_for("VINE-DISK1 ", BOOT).unwrap_or_else(|e| panic!("{e}\n{}", h.daemon_log()));
    line["VINE-DISK1 ".len()..].trim().to_string()
}

#[test]
fn boots_from_a_vhd_root_disk_and_undo_disks_commit_or_discard_a_session() {
    let h = VmHost::start();
    let raw = h.dir.path().join("boot.img");
    h.kit.boot_disk(&raw, &["vine.disk=/dev/vda", "vine.diskwrite=SESSION1"]).unwrap();
    let root = h.dir.path().join("root.vhd");
    convert_to_vhd(&h, &raw, &root);
    std::fs::remove_file(&raw).unwrap();
    let vm = "dk-root";
    h.ok(&["vm", "create", vm, "--memory", "256M", "--disk", root.to_str().unwrap(), "--undo-disks"]);
    let mut log = h.console(vm);

    // Session 1: boots from the disk (no -kernel), writes sector 1 into the undo disk only.
    h.ok(&["vm", "start", vm]);
    // QEMU, its disk server and its console logger, each as the emulator user in a seccomp
    // filter.
    let pids = h.cgroup_pids();
    assert_eq!(pids.len(), 3, "QEMU, one disk server and the console logger: {pids:?}");
    for pid in pids {
        let what = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap().replace('\0', " ");
        h.assert_confined(pid, &what);
    }
    assert_eq!(disk1(&h, &mut log), ZEROS);
    log.wait_for("VINE-DISK-WROTE", BOOT).unwrap();
    assert!(log.contents().unwrap().contains("VINE-BOOT-OK"));
    h.ok(&["vm", "off", vm, "--undo", "discard"]);
    assert_eq!(sector1(&root, h.dir.path()), vec![0u8; 16], "the base disk changed under an undo disk");
    assert!(!h.data.join("vms/dk-root/undo/disk0.vhd").exists());

    // Session 2: the discarded write is gone; this session's write is committed.
    h.ok(&["vm", "start", vm]);
    assert_eq!(disk1(&h, &mut log), ZEROS, "a discarded session's write came back");
    log.wait_for("VINE-DISK-WROTE", BOOT).unwrap();
    assert!(h.data.join("vms/dk-root/undo/disk0.vhd").exists());
    h.ok(&["vm", "shutdown", vm, "--undo", "commit"]);
    assert_eq!(sector1(&root, h.dir.path()), b"SESSION1\0\0\0\0\0\0\0\0".to_vec());

    // Session 3: the guest sees the committed data.
    h.ok(&["vm", "start", vm]);
    assert_eq!(disk1(&h, &mut log), SESSION1);
    h.ok(&["vm", "off", vm, "--undo", "discard"]);
    let events = h.ok(&["vm", "events", vm]);
    assert!(
        events.contains("discarded the undo disks") && events.contains("committed the undo disks"),
        "{events}"
    );
    // Each line begins with its time, as `vine events` shows it (2026-12-05T19:57:58Z).
    for l in events.lines() {
        let t = l.split(' ').next().unwrap_or_default();
        assert!(t.len() == 20 && t.as_bytes()[4] == b'-' && t.ends_with('Z'), "no time on {l:?}");
    }
}

#[test]
fn a_shared_disk_is_attached_to_two_running_vms() {
    let h = VmHost::start();
    let data = h.dir.path().join("cluster.vhd");
    let out = h.vine().args(["disk", "create"]).arg(&data).args(["--size", "16M"]).output().unwrap();
    assert!(out.status.success(), "{}", vmhost::text(&out));
    let spec = format!("{},shared", data.display());
    h.create_kit_vm("sh-a", &["vine.disk=/dev/vda", "vine.diskwrite=FROM-A"], &["--disk", &spec]);
    h.create_kit_vm("sh-b", &["vine.disk=/dev/vda", "vine.counter=1"], &["--disk", &spec]);
    h.create_kit_vm("sh-c", &["vine.disk=/dev/vda"], &["--disk", data.to_str().unwrap()]);

    h.ok(&["vm", "start", "sh-a"]);
    h.console("sh-a").wait_for("VINE-DISK-WROTE", BOOT).unwrap();
    h.ok(&["vm", "start", "sh-b"]);
    let mut log = h.console("sh-b");
    // "FROM-A" as sh-a wrote it, read by sh-b while sh-a still runs.
    assert_eq!(disk1(&h, &mut log), "46524f4d2d4100000000000000000000");
    log.wait_for("VINE-COUNTER 1", BOOT).unwrap();
    assert_eq!((h.state("sh-a").as_str(), h.state("sh-b").as_str()), ("running", "running"));

    // One server serves both; a VM that does not mark the disk shared is refused.
    // (cgroup v1 here; on v2 the directory is under the unified mount.)
    let procs = ["/sys/fs/cgroup/cpu", "/sys/fs/cgroup"]
        .iter()
        .map(|m| format!("{m}/{}/_shared-disks/cgroup.procs", h.cgroup_parent))
        .find_map(|p| std::fs::read_to_string(p).ok())
        .expect("the shared disk server's cgroup");
    assert_eq!(procs.lines().count(), 1, "one disk server for the shared disk: {procs}");
    let e = h.fails(&["vm", "start", "sh-c"]);
    assert!(e.contains("is in use by VM(s) 'sh-a', 'sh-b'") && e.contains("it is now off"), "{e}");

    // The server outlives the first VM to stop, and stops with the last.
    h.ok(&["vm", "off", "sh-a"]);
    let b0 = h.last_counter("sh-b");
    vmhost::eventually("sh-b keeps running on the shared disk", std::time::Duration::from_secs(30), || {
        h.last_counter("sh-b") > b0
    });
    h.ok(&["vm", "off", "sh-b"]);
    h.ok(&["vm", "start", "sh-c"]);
    h.console("sh-c").wait_for("VINE-DISK1 46524f4d2d41", BOOT).unwrap();
}
