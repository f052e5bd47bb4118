//! `kill -9` of the daemon while two VMs run: both keep running (their counters go on), a new
//! daemon reattaches and reports the right states and can control them; a VM whose QEMU is
//! killed from outside is recorded as crashed and the other VM does not notice.

mod vmhost;

use std::time::Duration;

use vmhost::{alive, eventually, VmHost, BOOT};

#[test]
fn daemon_killed_while_two_vms_run_then_one_qemu_killed() {
    let mut h = VmHost::start();
    for vm in ["rs-a", "rs-b"] {
        h.create_kit_vm(vm, &["vine.counter=1"], &[]);
        h.ok(&["vm", "start", vm]);
    }
    for vm in ["rs-a", "rs-b"] {
        h.console(vm).wait_for("VINE-COUNTER 2", BOOT).unwrap();
    }
    h.ok(&["vm", "pause", "rs-b"]);
    let (pa, pb) = (h.pid("rs-a"), h.pid("rs-b"));
    let servers_before = h.cgroup_pids();

    h.kill_daemon();
    // Guests live on without the daemon: a's counter advances, b stays paused.
    let a0 = h.last_counter("rs-a");
    eventually("rs-a counts without the daemon", Duration::from_secs(30), || h.last_counter("rs-a") > a0 + 1);
    assert!(alive(pa) && alive(pb));
    assert!(h.vine().args(["vm", "list"]).output().unwrap().status.code() == Some(2));

    h.start_daemon();
    let list: serde_json::Value = serde_json::from_str(&h.ok(&["vm", "list", "--json"])).unwrap();
    let states: Vec<(String, String, u64)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["name"].as_str().unwrap().into(),
                v["state"].as_str().unwrap().into(),
                v["pid"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        states,
        vec![
            ("rs-a".into(), "running".into(), u64::from(pa)),
            ("rs-b".into(), "paused".into(), u64::from(pb))
        ]
    );
    assert_eq!(h.cgroup_pids(), servers_before, "processes changed across the daemon restart");
    for pid in [pa, pb] {
        h.assert_confined(pid, "QEMU after kill -9 of the daemon");
    }
    assert!(h.ok(&["vm", "events", "--json"]).contains("found 'rs-a' running"));

    // The new daemon controls them: resume b, pause a.
    h.ok(&["vm", "resume", "rs-b"]);
    let b0 = h.last_counter("rs-b");
    eventually("rs-b counts after resume", Duration::from_secs(30), || h.last_counter("rs-b") > b0);
    h.ok(&["vm", "pause", "rs-a"]);
    h.ok(&["vm", "resume", "rs-a"]);

    // QEMU of a killed from outside: a is crashed, b runs on untouched.
    // SAFETY: SIGKILL to the QEMU this test's daemon started for rs-a.
    unsafe {
        libc::kill(pa as libc::pid_t, libc::SIGKILL);
    }
    eventually("rs-a is recorded as crashed", Duration::from_secs(10), || h.state("rs-a") == "crashed");
    let a = h.show("rs-a");
    assert!(a["pid"].is_null());
    assert!(a["last_error"].as_str().unwrap().contains("crashed"), "{a}");
    assert!(h.ok(&["vm", "events", "rs-a", "--json"]).contains("\"vm.crashed\""));
    assert_eq!(h.state("rs-b"), "running");
    assert_eq!(h.pid("rs-b"), pb);
    let b1 = h.last_counter("rs-b");
    eventually("rs-b keeps counting", Duration::from_secs(30), || h.last_counter("rs-b") > b1 + 1);
    assert!(!h.ok(&["vm", "events", "rs-b", "--json"]).contains("crash"));

    // A crashed VM can be started again.
    h.ok(&["vm", "start", "rs-a"]);
    assert_eq!(h.state("rs-a"), "running");
}

/// A restore records its VM's new state without waiting for the disk (a host crash ends the
/// guest too). So after a power loss the store can still say "saved" while the restore had
/// already taken the state file (renamed it `state.bin.restored`, and the guest ran on): the new
/// daemon must then say "off", not offer a restore of a state that no longer matches the disks.
#[test]
fn a_saved_vm_whose_state_was_taken_is_off_after_a_restart() {
    let mut h = VmHost::start();
    h.create_kit_vm("rs-gone", &[], &[]);
    h.ok(&["vm", "start", "rs-gone"]);
    h.ok(&["vm", "save", "rs-gone"]);
    assert_eq!(h.state("rs-gone"), "saved");
    h.kill_daemon();
    let dir = h.data.join("vms/rs-gone/run");
    std::fs::rename(dir.join("state.bin"), dir.join("state.bin.restored")).unwrap();
    h.start_daemon();
    assert_eq!(h.state("rs-gone"), "off");
    assert!(!dir.join("state.bin.restored").exists(), "the taken state was not deleted");
    let events = h.ok(&["vm", "events", "rs-gone", "--json"]);
    assert!(events.contains("\"vm.state-gone\""), "{events}");
    let refused = h.fails(&["vm", "restore", "rs-gone"]);
    assert!(refused.contains("cannot restore 'rs-gone': it is off"), "{refused}");
}

/// An actor that fails (a fault injected through the test-only `fault-injection` feature) is
/// rebuilt from the store by the supervisor within a second, an event says so, the guest never
/// notices, and every control works afterwards. Then the two inputs that used to kill an actor
/// or a request's task (a memory size past what the definition file holds, through `PATCH` and
/// `POST`) are refused with 400 and leave the VM fully controllable.
#[test]
fn a_failed_actor_is_restarted_from_the_store_and_hostile_sizes_are_refused() {
    let h = VmHost::start();
    let vm = "sup1";
    h.create_kit_vm(vm, &["vine.counter=1"], &[]);
    h.ok(&["vm", "start", vm]);
    h.console(vm).wait_for("VINE-COUNTER 2", BOOT).unwrap();
    let pid = h.pid(vm);

    let t0 = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    std::fs::write(h.data.join("vms").join(vm).join("inject-panic"), b"").unwrap();
    let mut restarted = None;
    eventually("the supervisor restarts the actor", Duration::from_secs(10), || {
        let ev: serde_json::Value = serde_json::from_str(&h.ok(&["vm", "events", vm, "--json"])).unwrap();
        restarted = ev.as_array().unwrap().iter().find(|e| e["kind"] == "vm.actor-restarted").cloned();
        restarted.is_some()
    });
    let e = restarted.unwrap();
    let took = e["time_ms"].as_i64().unwrap() - t0;
    eprintln!("the actor was restarted {took} ms after the fault was injected");
    assert!(took < 1000, "the actor was restarted {took} ms after the fault was injected: {e}");
    assert!(e["message"].as_str().unwrap().contains("fault injected into the actor of 'sup1'"), "{e}");
    assert_eq!(e["level"], "error");
    assert_eq!((h.state(vm), h.pid(vm)), ("running".to_string(), pid), "the restart touched the guest");

    // Controllable: pause holds the counter, resume lets it go on.
    h.ok(&["vm", "pause", vm]);
    let at = h.last_counter(vm);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(h.last_counter(vm), at, "a paused guest kept counting");
    h.ok(&["vm", "resume", vm]);
    eventually("the guest counts again", Duration::from_secs(30), || h.last_counter(vm) > at);

    // The memory size that used to panic the actor (PATCH) and a request's task (POST).
    let token = h.login("admin", &h.admin_password());
    let huge = "18446744073708503040";
    let (code, body) =
        h.https("PATCH", &format!("/api/vms/{vm}"), Some(&token), Some(&format!(r#"{{"memory": {huge}}}"#)));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("memory: must be a whole number of MiB from 16 MiB to 4096 GiB"), "{body}");
    let new = format!(r#"{{"name": "huge1", "memory": {huge}, "kernel": "{}"}}"#, h.kit.vmlinuz.display());
    let (code, body) = h.https("POST", "/api/vms", Some(&token), Some(&new));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("field `memory`"), "{body}");
    assert!(h.fails(&["vm", "show", "huge1"]).contains("no VM named 'huge1'"));
    let log = h.daemon_log();
    assert_eq!(log.matches("panicked at").count(), 1, "only the injected fault may panic: {log}");

    h.ok(&["vm", "set", vm, "--cpu-weight", "200"]);
    h.ok(&["vm", "off", vm]);
    assert!(!alive(pid));
    h.ok(&["vm", "delete", vm]);
    assert!(h.fails(&["vm", "show", vm]).contains("no VM named"));
}
