//! vine's Redfish service driven by OpenStack's `sushy` (PyPI, installed by scripts/setup.sh) on
//! a pool of two simulated hosts: from either host a session lists both hosts' VMs with their
//! power state, memory and processors, and the hosts as managers and chassis; `ComputerSystem.Reset`
//! powers a VM of the other host on and off (its QEMU starts and ends, and vine's CLI agrees),
//! restarts a booted guest and shuts it down through ACPI; a reset type outside the allowable
//! values is a Redfish error; a user without rights sees no system and cannot reset one (404),
//! one who may only configure a VM sees it but cannot reset it (403); without credentials only
//! the service root answers.

mod poollab;

use std::path::Path;
use std::time::Duration;

use poollab::Lab;
use serde_json::Value;
use test_infra::Kit;

const PYTHON: &str = "/var/lib/vine/sushy-venv/bin/python";

/// Runs tests/redfish/client.py inside host `from`'s namespace against host `to`'s Redfish
/// service as `user`; returns what it printed.
fn client(lab: &Lab, from: &str, to: &str, user: &str, password: &str, args: &[&str]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/redfish/client.py");
    let script = script.display().to_string();
    let url = lab.get(&format!("LAB_{to}_URL")).to_string();
    let mut cmd = vec![PYTHON, &script, &url, user, password];
    cmd.extend(args);
    let out = lab.inside(from, &cmd);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "client.py {args:?} on {to} as {user} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("client.py {args:?}: {e}: {stdout}"))
}

/// VM `vm` as its owner `host` shows it.
fn show(lab: &Lab, host: &str, vm: &str) -> Value {
    lab.json(host, &["vm", "show", vm])
}

fn alive(pid: u64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn boots(lab: &Lab, vm: &str) -> usize {
    let out = lab.vine("h1", &["vm", "console", vm, "--log"]);
    String::from_utf8_lossy(&out.stdout).matches("VINE-BOOT-OK").count()
}

#[test]
fn sushy_lists_reads_and_powers_the_pools_vms_behind_vines_rights() {
    assert!(Path::new(PYTHON).exists(), "{PYTHON} is missing: run scripts/setup.sh");
    let lab = Lab::up(2, "vtrf", "10.243.0");
    lab.pool();
    let kit = Kit::ensure().expect("guest kit");
    lab.kit_vm_ok(&kit, "h1", "rf1", &[], &["--memory", "1024", "--cpus", "1", "--host", "h1"]);
    lab.kit_vm_ok(&kit, "h2", "rf2", &[], &["--memory", "2048", "--cpus", "2", "--host", "h2"]);
    for h in lab.hosts() {
        lab.wait(Duration::from_secs(10), &format!("both VMs listed on {h}"), || {
            lab.json(&h, &["vm", "list"]).as_array().is_some_and(|a| a.len() == 2)
        });
    }
    // One user for the pool, made on h1, known to h2 once its copy has it.
    lab.ok("h1", &["user", "add", "nobody", "--password", "nobody-password"]);
    lab.wait_value(Duration::from_secs(5), "h2 knows 'nobody'", || {
        lab.try_login("h1", "h2", "nobody", "nobody-password")
    });

    // Either host's service lists the whole pool, through a session it logs out of after.
    for (from, to) in [("h2", "h1"), ("h1", "h2")] {
        let v = client(&lab, from, to, "admin", &lab.admin_password("h1"), &["systems"]);
        assert_eq!(v["session"], true, "sushy made a session: {v}");
        assert_eq!(v["after_logout"], 401, "the session ended with the DELETE: {v}");
        assert_eq!(v["redfish_version"], "1.15.0");
        assert_eq!(v["managers"], serde_json::json!(["h1", "h2"]), "{v}");
        assert_eq!(v["chassis"], serde_json::json!(["h1", "h2"]), "{v}");
        let systems = v["systems"].as_array().unwrap_or_else(|| panic!("no systems: {v}"));
        let ids: Vec<&str> = systems.iter().filter_map(|s| s["id"].as_str()).collect();
        assert_eq!(ids, ["rf1", "rf2"], "from {to}: {v}");
        for (s, host, gib, cpus) in [(&systems[0], "h1", 1, 1), (&systems[1], "h2", 2, 2)] {
            let vm = s["id"].as_str().unwrap_or_default();
            assert_eq!(s["power_state"], "Off", "{s}");
            assert_eq!(s["memory_gib"], gib, "{s}");
            assert_eq!(s["processor_count"], cpus, "sushy's count of the Processors: {s}");
            assert_eq!(s["summary_count"], cpus, "{s}");
            assert_eq!(s["uuid"], show(&lab, host, vm)["uuid"], "{s}");
            assert_eq!(s["managers"], serde_json::json!([host]), "{s}");
            assert_eq!(s["chassis"], serde_json::json!([host]), "{s}");
            for r in
                ["On", "ForceOff", "GracefulShutdown", "GracefulRestart", "ForceRestart", "Pause", "Resume"]
            {
                assert!(s["resets"].as_array().is_some_and(|a| a.iter().any(|x| x == r)), "{r} in {s}");
            }
        }
    }

    // Power on and off rf2 (owned by h2) through h1's service: QEMU starts and ends.
    let pw1 = lab.admin_password("h1");
    let v = client(&lab, "h2", "h1", "admin", &pw1, &["reset", "rf2", "On"]);
    assert_eq!(v["power_state"], "On", "{v}");
    let on = show(&lab, "h2", "rf2");
    assert_eq!(on["state"], "running", "{on}");
    let pid = on["pid"].as_u64().unwrap_or_else(|| panic!("no QEMU pid: {on}"));
    assert!(alive(pid), "QEMU {pid} of rf2 runs");
    lab.wait(Duration::from_secs(10), "h1's CLI sees rf2 running", || {
        show(&lab, "h1", "rf2")["state"] == "running"
    });
    // On again changes nothing: the same QEMU.
    let v = client(&lab, "h2", "h1", "admin", &pw1, &["reset", "rf2", "On"]);
    assert_eq!(v["power_state"], "On", "{v}");
    assert_eq!(show(&lab, "h2", "rf2")["pid"], pid, "a repeated On keeps the same QEMU");
    let v = client(&lab, "h2", "h1", "admin", &pw1, &["reset", "rf2", "ForceOff"]);
    assert_eq!(v["power_state"], "Off", "{v}");
    let off = show(&lab, "h2", "rf2");
    assert_eq!(off["state"], "off", "{off}");
    assert!(off["pid"].is_null(), "{off}");
    lab.wait(Duration::from_secs(10), "rf2's QEMU ends", || !alive(pid));
    lab.wait(Duration::from_secs(10), "h1's CLI sees rf2 off", || show(&lab, "h1", "rf2")["state"] == "off");

    // rf1 through h2's service: a booted guest restarts (same QEMU, a second boot) and shuts
    // down through ACPI.
    let pw2 = lab.admin_password("h1"); // the pool's administrator, on every host
    let v = client(&lab, "h1", "h2", "admin", &pw2, &["reset", "rf1", "On"]);
    assert_eq!(v["power_state"], "On", "{v}");
    let pid = show(&lab, "h1", "rf1")["pid"].as_u64().unwrap_or_else(|| panic!("no QEMU pid for rf1"));
    lab.wait(Duration::from_secs(120), "rf1's guest booted", || boots(&lab, "rf1") >= 1);
    let v = client(&lab, "h1", "h2", "admin", &pw2, &["reset", "rf1", "ForceRestart"]);
    assert_eq!(v["power_state"], "On", "{v}");
    lab.wait(Duration::from_secs(120), "rf1's guest booted again", || boots(&lab, "rf1") >= 2);
    assert_eq!(show(&lab, "h1", "rf1")["pid"], pid, "a reset keeps the QEMU");
    let v = client(&lab, "h1", "h2", "admin", &pw2, &["reset", "rf1", "GracefulShutdown"]);
    assert_eq!(v["power_state"], "Off", "{v}");
    assert_eq!(show(&lab, "h1", "rf1")["state"], "off");
    lab.wait(Duration::from_secs(10), "rf1's QEMU ends", || !alive(pid));

    // A reset type outside the allowable values: a Redfish error, and nothing happens.
    let v = client(&lab, "h2", "h1", "admin", &pw1, &["invalid", "rf1"]);
    assert_eq!(v["status"], 400, "{v}");
    assert_eq!(v["code"], "Base.1.16.0.ActionParameterValueNotInList", "{v}");
    assert!(v["message"].as_str().is_some_and(|m| m.contains("Explode")), "{v}");
    assert_eq!(show(&lab, "h1", "rf1")["state"], "off");

    // A user without rights sees no system, and a VM's URI and reset answer as for no VM.
    for to in lab.hosts() {
        let v = client(&lab, "h1", &to, "nobody", "nobody-password", &["denied", "rf1"]);
        assert_eq!(v["members"], serde_json::json!([]), "{v}");
        assert_eq!(v["get"]["status"], 404, "{v}");
        assert_eq!(v["reset"]["status"], 404, "{v}");
        assert_eq!(v["reset"]["code"], "Base.1.16.0.ResourceNotFound", "{v}");
        assert_eq!(v["manager_servers"], serde_json::json!([]), "the hosts list no VM to them: {v}");
    }
    assert_eq!(show(&lab, "h1", "rf1")["state"], "off", "the refused reset did nothing");
    // With the configure right only: seen, but not powered (403).
    lab.ok("h1", &["acl", "grant", "nobody", "configure", "rf1"]);
    let v = client(&lab, "h2", "h1", "nobody", "nobody-password", &["denied", "rf1"]);
    assert_eq!(v["members"], serde_json::json!(["/redfish/v1/Systems/rf1"]), "{v}");
    assert_eq!(v["get"]["status"], 200, "{v}");
    assert_eq!(v["reset"]["status"], 403, "{v}");
    assert_eq!(v["reset"]["code"], "Base.1.16.0.InsufficientPrivilege", "{v}");
    assert_eq!(show(&lab, "h1", "rf1")["state"], "off");

    // Without credentials: the service root and version document only.
    let v = client(&lab, "h2", "h1", "admin", &pw1, &["anonymous"]);
    assert_eq!(v["root"]["status"], 200, "{v}");
    assert_eq!(v["root"]["version"], "1.15.0", "{v}");
    assert_eq!(v["root"]["odata_version"], "4.0", "{v}");
    assert_eq!(v["versions"]["v1"], "/redfish/v1/", "{v}");
    assert_eq!(v["systems"]["status"], 401, "{v}");
    assert_eq!(v["systems"]["code"], "Base.1.16.0.NoValidSession", "{v}");
    assert_eq!(v["wrong_basic"]["status"], 401, "{v}");
    assert_eq!(v["basic"]["status"], 200, "HTTP Basic: {v}");
    assert_eq!(v["basic"]["count"], 2, "{v}");
    assert_eq!(v["missing"]["status"], 404, "{v}");
    assert_eq!(v["missing"]["code"], "Base.1.16.0.ResourceMissingAtURI", "{v}");
}
