//! Host reboot simulation: the daemon is stopped as on a host shutdown (SIGTERM) and started
//! again; each VM follows its default actions (`[host] on_stop`, `on_start`): saved and restored
//! (its counter continues), shut down through ACPI, turned off and booted again, or left running
//! and found again.

mod vmhost;

use std::time::Duration;

use vmhost::{alive, eventually, VmHost, BOOT};

#[test]
fn each_vm_follows_its_default_actions_across_a_host_reboot() {
    let mut h = VmHost::start();
    let vms = [
        ("ha-save", "save", "start"),
        ("ha-shut", "shutdown", "nothing"),
        ("ha-off", "off", "start"),
        ("ha-keep", "keep", "nothing"),
    ];
    for (vm, stop, start) in vms {
        h.create_kit_vm(vm, &["vine.counter=1"], &[]);
        h.ok(&["vm", "set", vm, "--on-host-stop", stop, "--on-host-start", start]);
        let def = std::fs::read_to_string(h.data.join(format!("vms/{vm}/{vm}.vm.toml"))).unwrap();
        assert!(def.contains(&format!("on_stop = \"{stop}\"")), "{def}");
        h.ok(&["vm", "start", vm]);
    }
    for (vm, ..) in vms {
        h.console(vm).wait_for("VINE-COUNTER 2", BOOT).unwrap();
    }
    let pids: Vec<u32> = vms.iter().map(|(vm, ..)| h.pid(vm)).collect();
    let saved_counter = h.last_counter("ha-save");

    h.stop_daemon();
    assert!(h.data.join("vms/ha-save/run/state.bin").exists(), "ha-save was not saved");
    assert!(!alive(pids[0]) && !alive(pids[1]) && !alive(pids[2]), "stopped VMs still run");
    assert!(h.console("ha-shut").contents().unwrap().contains("VINE-POWEROFF"), "ha-shut did not get ACPI");
    assert!(alive(pids[3]), "ha-keep should keep running");

    h.start_daemon();
    eventually("ha-save is restored and ha-off booted", Duration::from_secs(120), || {
        h.state("ha-save") == "running" && h.state("ha-off") == "running"
    });
    assert_eq!(h.state("ha-shut"), "off");
    assert_eq!((h.state("ha-keep"), h.pid("ha-keep")), ("running".to_string(), pids[3]));
    // The restored guest continues its counter; the one turned off boots afresh.
    eventually("ha-save counts on", Duration::from_secs(60), || h.last_counter("ha-save") > saved_counter);
    let boots = |vm: &str| h.console(vm).contents().unwrap().matches("VINE-BOOT-OK").count();
    assert_eq!(boots("ha-save"), 1, "a restored guest must not boot again");
    h.console("ha-off").wait_for("VINE-BOOT-OK", BOOT).unwrap();
    eventually("ha-off booted again", BOOT, || boots("ha-off") == 2);
    let events = h.ok(&["events", "--json"]);
    for needle in [
        "host stop: saved 'ha-save'",
        "host stop: shut down 'ha-shut'",
        "host stop: turned off 'ha-off'",
        "host start: restored 'ha-save'",
        "host start: started 'ha-off'",
    ] {
        assert!(events.contains(needle), "no event {needle:?} in {events}");
    }
}
