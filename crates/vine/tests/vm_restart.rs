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
    let dir = h.data.join("vms/rs-gone");
    std::fs::rename(dir.join("state.bin"), dir.join("state.bin.restored")).unwrap();
    h.start_daemon();
    assert_eq!(h.state("rs-gone"), "off");
    assert!(!dir.join("state.bin.restored").exists(), "the taken state was not deleted");
    let events = h.ok(&["vm", "events", "rs-gone", "--json"]);
    assert!(events.contains("\"vm.state-gone\""), "{events}");
    let refused = h.fails(&["vm", "restore", "rs-gone"]);
    assert!(refused.contains("cannot restore 'rs-gone': it is off"), "{refused}");
}
