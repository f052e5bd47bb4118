//! Every control on a real guest (guest kit under TCG, through `vine daemon` and `vine vm`),
//! checked by what the guest prints on its serial console: a paused guest makes no progress, a
//! restored guest continues its counter, reset boots again, shutdown goes through ACPI, off is
//! immediate, remove keeps the files and delete removes them; refused and failed controls say
//! why and leave a well-defined state.

mod vmhost;

use std::time::{Duration, Instant};

use vmhost::{alive, eventually, VmHost, BOOT};

#[test]
fn every_control_on_a_running_guest() {
    let h = VmHost::start();
    let vm = "ctl1";
    h.create_kit_vm(vm, &["vine.counter=1"], &[]);
    assert_eq!(h.state(vm), "off");
    // Refused while off, with the reason.
    assert!(h.fails(&["vm", "pause", vm]).contains("cannot pause 'ctl1': it is off"));
    assert!(h.fails(&["vm", "save", vm]).contains("cannot save 'ctl1': it is off"));

    h.ok(&["vm", "start", vm]);
    assert_eq!(h.state(vm), "running");
    h.assert_confined(h.pid(vm), "QEMU");
    let mut log = h.console(vm);
    log.wait_for("VINE-BOOT-OK", BOOT).unwrap();
    let first = h.next_counter(&mut log);
    h.next_counter(&mut log);
    assert!(h.fails(&["vm", "start", vm]).contains("cannot start 'ctl1': it is already running"));

    // Pause: no progress for 3 s.
    h.ok(&["vm", "pause", vm]);
    assert_eq!(h.state(vm), "paused");
    let at_pause = h.last_counter(vm);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(h.last_counter(vm), at_pause, "a paused guest kept counting");
    assert!(h.fails(&["vm", "pause", vm]).contains("it is already paused"));
    assert!(h.fails(&["vm", "shutdown", vm]).contains("it is paused"));
    h.ok(&["vm", "resume", vm]);
    assert_eq!(h.state(vm), "running");
    eventually("the resumed guest counts again", Duration::from_secs(30), || h.last_counter(vm) > at_pause);

    // Save + restore: the counter continues instead of restarting.
    let before_save = h.last_counter(vm);
    h.ok(&["vm", "save", vm]);
    let s = h.show(vm);
    assert_eq!(s["state"], "saved");
    assert!(s["pid"].is_null() && s["saved_state"] == true, "{s}");
    let saved_at = h.last_counter(vm);
    assert!(saved_at >= before_save);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(h.last_counter(vm), saved_at, "a saved guest kept counting");
    assert!(h.fails(&["vm", "start", vm]).contains("it has a saved state"));
    assert!(h.fails(&["vm", "delete", vm]).contains("it has a saved state: discard it first"));
    h.ok(&["vm", "restore", vm]);
    assert_eq!(h.state(vm), "running");
    assert_eq!(h.show(vm)["saved_state"], false, "a restored state is used once");
    let after = h.next_counter(&mut log);
    assert!(after > first, "counter restarted: {after} after {first}");
    eventually("the restored guest counts on", Duration::from_secs(30), || h.last_counter(vm) > saved_at);
    let boots = |h: &VmHost| h.console(vm).contents().unwrap().matches("VINE-BOOT-OK").count();
    assert_eq!(boots(&h), 1, "restore must not reboot the guest");

    // Save and discard the state: off, and a start boots afresh.
    h.ok(&["vm", "save", vm]);
    h.ok(&["vm", "discard-state", vm]);
    assert_eq!(h.state(vm), "off");
    assert!(h.fails(&["vm", "restore", vm]).contains("it is off and has no saved state"));
    h.ok(&["vm", "start", vm]);
    log.wait_for("VINE-BOOT-OK", BOOT).unwrap();
    assert_eq!(boots(&h), 2);

    // Reset: the boot marker appears again.
    h.ok(&["vm", "reset", vm]);
    assert_eq!(h.state(vm), "running");
    log.wait_for("VINE-BOOT-OK", BOOT).unwrap();
    assert_eq!(boots(&h), 3);

    // Shutdown: the guest powers off through ACPI within its timeout.
    let pid = h.pid(vm);
    let t = Instant::now();
    h.ok(&["vm", "shutdown", vm, "--timeout", "60"]);
    assert!(t.elapsed() < Duration::from_secs(60));
    assert!(
        h.console(vm).contents().unwrap().contains("VINE-POWEROFF"),
        "the guest did not see the power button"
    );
    assert_eq!(h.state(vm), "off");
    assert!(!alive(pid), "QEMU still runs after shutdown");

    // Off: immediate, whatever the guest is doing.
    h.ok(&["vm", "start", vm]);
    let pid = h.pid(vm);
    let t = Instant::now();
    h.ok(&["vm", "off", vm]);
    assert!(t.elapsed() < Duration::from_secs(10), "off took {:?}", t.elapsed());
    assert!(!alive(pid));
    assert_eq!(h.state(vm), "off");
    assert!(h.fails(&["vm", "off", vm]).contains("cannot turn off 'ctl1': it is off"));

    // Remove keeps the files.
    let def = h.data.join("vms").join(vm).join("ctl1.vm.toml");
    h.ok(&["vm", "remove", vm]);
    assert!(h.fails(&["vm", "show", vm]).contains("no VM named 'ctl1'"));
    assert!(def.exists() && h.data.join("vms/ctl1/run/console.log").exists());

    // The event log has every step.
    let events = h.ok(&["vm", "events", vm, "--json"]);
    for kind in
        ["vm.start", "vm.pause", "vm.resume", "vm.save", "vm.restore", "vm.reset", "vm.shutdown", "vm.off"]
    {
        assert!(events.contains(&format!("\"{kind}\"")), "no {kind} event: {events}");
    }
}

/// A saved state damaged on disk: the restore fails with QEMU's reason, and the VM is saved again
/// with its state file kept (it can be discarded, or mended and restored).
#[test]
fn a_damaged_saved_state_fails_its_restore_and_is_kept() {
    let h = VmHost::start();
    let vm = "ctl3";
    h.create_kit_vm(vm, &["vine.counter=1"], &[]);
    h.ok(&["vm", "start", vm]);
    let mut log = h.console(vm);
    log.wait_for("VINE-BOOT-OK", BOOT).unwrap();
    let before = h.next_counter(&mut log);
    h.ok(&["vm", "save", vm]);
    let state = h.data.join("vms").join(vm).join("run").join("state.bin");
    let good = std::fs::read(&state).unwrap();
    // Cut short in the middle of the guest's memory.
    std::fs::write(&state, &good[..good.len() / 2]).unwrap();
    let e = h.fails(&["vm", "restore", vm]);
    assert!(
        e.contains("cannot restore 'ctl3': QEMU's migration failed") && e.contains("(it is now saved)"),
        "{e}"
    );
    assert_eq!(h.state(vm), "saved");
    assert!(h.show(vm)["pid"].is_null(), "the failed restore's QEMU was left running");
    assert_eq!(std::fs::read(&state).unwrap().len(), good.len() / 2, "the state file was changed");
    // Mended, it restores: the guest continues where it was saved.
    std::fs::write(&state, &good).unwrap();
    h.ok(&["vm", "restore", vm]);
    assert_eq!(h.state(vm), "running");
    assert!(h.next_counter(&mut log) > before);
    assert_eq!(h.console(vm).contents().unwrap().matches("VINE-BOOT-OK").count(), 1, "the restore rebooted");
    h.ok(&["vm", "off", vm]);
}

#[test]
fn failed_controls_leave_a_defined_state_and_delete_removes_files() {
    let h = VmHost::start();
    let vm = "ctl2";
    let disk = h.dir.path().join("ctl2-data.vhd");
    let out = h.vine().args(["disk", "create"]).arg(&disk).args(["--size", "8M"]).output().unwrap();
    assert!(out.status.success(), "{}", vmhost::text(&out));
    h.create_kit_vm(vm, &["vine.disk=/dev/vda"], &["--disk", disk.to_str().unwrap()]);
    let kernel = h.kit.vmlinuz.display().to_string();
    let e = h.fails(&["vm", "create", vm, "--memory", "64M", "--kernel", &kernel]);
    assert!(e.contains("a VM named 'ctl2' already exists"), "{e}");
    assert!(h.fails(&["vm", "create", "x", "--memory", "64M"]).contains("field `disk`: a VM needs a disk"));
    assert!(h
        .fails(&["vm", "create", "bad/name", "--memory", "64M", "--kernel", &kernel])
        .contains("field `name`"));

    // A hand-broken definition: the start is refused naming the field, the VM stays off.
    let def_path = h.data.join("vms").join(vm).join("ctl2.vm.toml");
    let good = std::fs::read_to_string(&def_path).unwrap();
    std::fs::write(&def_path, good.replace("cpus = 1", "cpus = 0")).unwrap();
    let e = h.fails(&["vm", "start", vm]);
    assert!(e.contains("field `cpus`") && e.contains("ctl2.vm.toml"), "{e}");
    assert_eq!(h.state(vm), "off");
    std::fs::write(&def_path, good.replace("cpus = 1", "cpuz = 1")).unwrap();
    let e = h.fails(&["vm", "start", vm]);
    assert!(e.contains("cpuz"), "{e}");
    std::fs::write(&def_path, &good).unwrap();

    // Memory past the bound is refused when set; memory beyond the host when started, with
    // the numbers, and the VM is still off.
    let e = h.fails(&["vm", "set", vm, "--memory", "100000G"]);
    assert!(e.contains("memory: must be a whole number of MiB from 16 MiB to 4096 GiB"), "{e}");
    h.ok(&["vm", "set", vm, "--memory", "4096G"]);
    let e = h.fails(&["vm", "start", vm]);
    assert!(
        e.contains("cannot give 'ctl2' 4398046511104 bytes of memory") && e.contains("bytes are free"),
        "{e}"
    );
    assert_eq!(h.state(vm), "off");
    h.ok(&["vm", "set", vm, "--memory", "256M"]);

    // A shutdown the guest cannot answer yet (no ACPI handler before its userspace): it fails
    // at its timeout and the VM is still running.
    h.ok(&["vm", "start", vm]);
    let e = h.fails(&["vm", "shutdown", vm, "--timeout", "1"]);
    assert!(e.contains("did not power off within 1 s") && e.contains("it is now running"), "{e}");
    assert_eq!(h.state(vm), "running");
    h.console(vm).wait_for("VINE-DISK ", BOOT).unwrap();
    assert!(h.fails(&["vm", "delete", vm]).contains("it is running: turn it off first"));
    h.ok(&["vm", "off", vm]);

    // Delete removes the VM's directory and its own disk.
    h.ok(&["vm", "delete", vm]);
    assert!(!h.data.join("vms").join(vm).exists());
    assert!(!disk.exists(), "delete kept the VM's disk");
    assert!(h.ok(&["vm", "list", "--json"]).trim() == "[]");
}

#[test]
fn malformed_requests_get_errors_and_the_daemon_keeps_serving() {
    use std::io::{Read, Write};
    let h = VmHost::start();
    let raw = |bytes: &[u8]| {
        let mut s = std::os::unix::net::UnixStream::connect(&h.socket).unwrap();
        s.write_all(bytes).unwrap();
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    };
    let post = |path: &str, body: &[u8]| {
        let mut req = format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).into_bytes();
        req.extend_from_slice(body);
        raw(&req)
    };
    for (answer, status, says) in [
        (post("/api/vms", b"not json"), "400", "expected ident"),
        (post("/api/vms", b"{\"name\":\"x\"}"), "400", "memory: missing (it is needed without a template)"),
        (post("/api/vms", b"{\"name\":\"x\",\"memory\":1,\"color\":1}"), "422", "unknown field `color`"),
        (post("/api/vms", b"{\"name\":\"x\",\"memory\":67108864}"), "400", "field `disk`"),
        (post("/api/vms/x/actions/explode", b""), "400", "explode"),
        (post("/api/vms/x/actions/start", b""), "404", "no VM named 'x'"),
        (post("/api/vms", b"\xff\xfe"), "400", ""),
        (raw(b"GARBAGE\r\n\r\n"), "400", ""),
        (raw(b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), "404", "no such endpoint"),
    ] {
        let first = answer.lines().next().unwrap_or_default().to_string();
        assert!(first.contains(status), "wanted {status}, got {first:?} in {answer}");
        assert!(answer.contains(says), "{answer}");
    }
    // A body over the limit is refused; the daemon lives on.
    let big = vec![b'x'; (1 << 20) + 10];
    let answer = post("/api/vms", &big);
    assert!(answer.starts_with("HTTP/1.1 413"), "{}", answer.lines().next().unwrap_or_default());
    assert!(h.ok(&["vm", "list", "--json"]).trim() == "[]");
    // Without a login, HTTPS answers 401.
    let (code, body) = h.https("GET", "/api/vms", None, None);
    assert_eq!(code, 401, "{body}");
}
