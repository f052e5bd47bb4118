//! Event scripts and metrics with a real guest: a script attached to `vm.crashed` runs when the
//! VM's QEMU is killed, with the VM's name in its environment; a script that hangs is killed at
//! its timeout and that is logged; `/metrics` scraped while the guest runs shows its CPU counter
//! rising.

mod vmhost;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use vmhost::{alive, eventually, VmHost, BOOT};

fn script(path: &std::path::Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn cpu_seconds(text: &str, vm: &str) -> f64 {
    let key = format!("vine_vm_cpu_seconds_total{{vm=\"{vm}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .unwrap_or_else(|| panic!("no {key} in {text}"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn crash_scripts_run_hanging_ones_are_killed_and_metrics_rise() {
    let h = VmHost::start();
    let out = h.dir.path().join("crashed.txt");
    let pidfile = h.dir.path().join("hang.pid");
    let ok = h.dir.path().join("on-crash.sh");
    let hang = h.dir.path().join("hang.sh");
    script(
        &ok,
        &format!("echo \"$VINE_EVENT $VINE_VM $VINE_LEVEL\" >> {}\necho ran for $VINE_VM", out.display()),
    );
    script(&hang, &format!("echo $$ > {}\nexec sleep 300", pidfile.display()));
    h.ok(&["hook", "add", "vm.crashed", ok.to_str().unwrap()]);
    h.ok(&["hook", "add", "vm.crashed", hang.to_str().unwrap(), "--timeout", "2s", "--vm", "hk1"]);
    let hooks: serde_json::Value = serde_json::from_str(&h.ok(&["hook", "list", "--json"])).unwrap();
    assert_eq!(hooks.as_array().unwrap().len(), 2);

    h.create_kit_vm("hk1", &["vine.cpuburn=1"], &[]);
    h.ok(&["vm", "start", "hk1"]);
    h.console("hk1").wait_for("VINE-CPUBURN", BOOT).unwrap();

    // Metrics over HTTPS with an administrator's token: the CPU counter rises.
    let admin = h.login("admin", &h.admin_password());
    let (code, first) = h.https("GET", "/metrics", Some(&admin), None);
    assert_eq!(code, 200, "{first}");
    std::thread::sleep(Duration::from_secs(3));
    let (_, second) = h.https("GET", "/metrics", Some(&admin), None);
    let (a, b) = (cpu_seconds(&first, "hk1"), cpu_seconds(&second, "hk1"));
    assert!(b > a + 1.0, "a busy guest's CPU counter went from {a} to {b} in 3 s");
    assert!(second.contains("vine_vm_state{vm=\"hk1\",state=\"running\"} 1"), "{second}");

    // Kill QEMU from outside: the crash scripts run.
    let pid = h.pid("hk1");
    // SAFETY: SIGKILL to the QEMU this test's daemon started.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
    }
    eventually("the crash script wrote its file", Duration::from_secs(30), || {
        std::fs::read_to_string(&out).is_ok_and(|t| t.contains("vm.crashed hk1 error"))
    });
    eventually("the hanging script is killed and that is logged", Duration::from_secs(30), || {
        h.ok(&["events", "--json"]).contains("\"hook.timeout\"")
    });
    let events = h.ok(&["events", "--vm", "hk1", "--json"]);
    assert!(events.contains("was killed at its timeout of 2 s"), "{events}");
    assert!(events.contains("\"hook.ran\"") && events.contains("ran for hk1"), "{events}");
    let hang_pid: u32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    assert!(!alive(hang_pid), "the hanging script still runs");
}
