//! Templates and linked clones, through the CLI and the REST API:
//!
//! - a template made from a VM that is off holds a read-only copy of its boot disk (the base)
//!   and its settings; one `vine vm create --template --count 50` makes 50 VMs, each with a
//!   linked clone (a differencing VHD whose parent is the base, shown by `vine disk info`);
//! - every clone boots (SeaBIOS → syslinux → the guest kit, all read through vine's NBD from the
//!   clone and the base under it) and writes to its disk; the base's checksum never changes;
//! - a VM cannot attach the base read-write, the base cannot be deleted as a volume, and the
//!   template cannot be deleted while clones stand on it (the refusal names them); once they are
//!   gone it can, and its base goes with it;
//! - `--full` makes a standalone copy; a user may make VMs from a template only with the `use`
//!   right on it, and then needs no right on the pool the clone goes to.

mod vmhost;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use serde_json::{json, Value};
use vmhost::{VmHost, BOOT};

const CLONES: usize = 50;
/// Guests booting at once (2 cores under TCG: more only queue).
const WINDOW: usize = 4;

fn sha256(file: &Path) -> String {
    let out = Command::new("sha256sum").arg(file).output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string()
}

#[test]
fn fifty_linked_clones_boot_and_never_write_the_base() {
    let h = VmHost::start();
    let pool = h.dir.path().join("p1");
    h.ok(&["pool", "create", "p1", "--path", pool.to_str().unwrap()]);
    // A boot disk: the guest prints its disk's sector 1, writes "CLONE" there and says so.
    let raw = h.dir.path().join("boot.img");
    h.kit.boot_disk(&raw, &["vine.disk=/dev/vda", "vine.diskwrite=CLONE"]).unwrap();
    let out = h
        .vine()
        .args(["disk", "convert"])
        .arg(&raw)
        .arg(pool.join("golden.vhd"))
        .args(["--to", "dynamic"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", vmhost::text(&out));
    std::fs::remove_file(&raw).unwrap();
    h.ok(&["vm", "create", "gold", "--memory", "128M", "--disk", "p1/golden.vhd"]);

    // The template: a copy of gold's disk, read-only, with gold's settings.
    let t: Value =
        serde_json::from_str(&h.ok(&["template", "create", "kit", "--from-vm", "gold", "--json"])).unwrap();
    assert_eq!(t["bases"][0]["volume"], "p1/kit.base.vhd", "{t}");
    assert_eq!(t["memory"].as_u64(), Some(128 << 20));
    assert_eq!(t["source"], "VM 'gold'");
    let base = pool.join("kit.base.vhd");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&base).unwrap().permissions().mode() & 0o222, 0, "the base is writable");
    let before = sha256(&base);
    assert!(h.ok(&["template", "list"]).contains("kit"));

    // 50 clones in one call.
    let started = Instant::now();
    let made = h.ok(&["vm", "create", "c", "--template", "kit", "--count", &CLONES.to_string()]);
    println!("{CLONES} linked clones made in {:.2} s", started.elapsed().as_secs_f64());
    assert_eq!(made.lines().count(), CLONES, "{made}");
    let vms: Vec<Value> = serde_json::from_str(&h.ok(&["vm", "list", "--json"])).unwrap();
    let names: Vec<String> = (1..=CLONES).map(|i| format!("c-{i}")).collect();
    for n in &names {
        assert!(vms.iter().any(|v| v["name"] == n.as_str()), "{n} missing");
        let show = h.show(n);
        assert_eq!(show["drives"][0]["path"], format!("p1/{n}.vhd").as_str(), "{show}");
        assert_eq!(show["memory"].as_u64(), Some(128 << 20));
    }
    // Each clone's chain, as `vine disk info` shows it: itself, differencing, over the base.
    for n in &names {
        let file = pool.join(format!("{n}.vhd"));
        let info: Value =
            serde_json::from_str(&h.ok(&["disk", "info", file.to_str().unwrap(), "--json"])).unwrap();
        let chain = info.to_string();
        assert!(chain.contains("differencing") && chain.contains("kit.base.vhd"), "{n}: {info:#}");
    }
    let vol: Value = serde_json::from_str(&h.ok(&["volume", "show", "p1/c-7.vhd", "--json"])).unwrap();
    assert_eq!(vol["parent"], "p1/kit.base.vhd");
    assert_eq!(vol["format"], "vhd-differencing");
    let shown: Value = serde_json::from_str(&h.ok(&["template", "show", "kit", "--json"])).unwrap();
    assert_eq!(shown["clones"].as_array().unwrap().len(), CLONES, "{shown}");

    // The base is protected.
    let e = h.fails(&["template", "delete", "kit"]);
    assert!(e.contains("has linked clones") && e.contains("c-1") && e.contains("c-50"), "{e}");
    let e = h.fails(&["vm", "create", "bad", "--memory", "128M", "--disk", "p1/kit.base.vhd"]);
    assert!(e.contains("is the base of template 'kit'"), "{e}");
    let e = h.fails(&["volume", "delete", "p1/kit.base.vhd"]);
    assert!(e.contains("is the base of template 'kit'"), "{e}");
    let e = h.fails(&["vm", "create", "c-3", "--template", "kit"]);
    assert!(e.contains("already exists"), "{e}");

    // Every clone boots from its chain and writes its own disk: a rolling window of WINDOW
    // guests (a new one starts as soon as one is done, so the cores never wait for a straggler).
    let started = Instant::now();
    let mut pending = names.iter();
    let mut running: Vec<(String, test_infra::SerialLog, Instant)> = Vec::new();
    let mut in_controls = std::time::Duration::ZERO;
    loop {
        while running.len() < WINDOW {
            let Some(n) = pending.next() else { break };
            let t = Instant::now();
            h.ok(&["vm", "start", n]);
            in_controls += t.elapsed();
            running.push((n.clone(), h.console(n), Instant::now()));
        }
        if running.is_empty() {
            break;
        }
        let mut i = 0;
        while i < running.len() {
            let (n, log, since) = &running[i];
            let text = log.contents().unwrap_or_default();
            if text.contains("VINE-DISK-WROTE") {
                assert!(text.contains("VINE-BOOT-OK"), "{n}: {text}");
                let t = Instant::now();
                h.ok(&["vm", "off", n]);
                in_controls += t.elapsed();
                running.swap_remove(i);
            } else {
                assert!(
                    since.elapsed() < BOOT,
                    "{n} did not boot within {BOOT:?}:\n{text}\n{}",
                    h.daemon_log()
                );
                i += 1;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    println!(
        "{CLONES} clones booted in {:.1} s ({WINDOW} at a time; {:.1} s of it in start and off)",
        started.elapsed().as_secs_f64(),
        in_controls.as_secs_f64()
    );
    assert_eq!(sha256(&base), before, "the template's base changed");
    // Booted again, a clone sees what it wrote (its own disk), the base still unchanged.
    h.ok(&["vm", "start", "c-1"]);
    let mut log = h.console("c-1");
    log.wait_for("VINE-DISK1 434c4f4e45", BOOT)
        .unwrap_or_else(|e| panic!("{e}\n{}", log.contents().unwrap()));
    h.ok(&["vm", "off", "c-1"]);
    assert_eq!(sha256(&base), before);

    // A full copy stands alone.
    h.ok(&["vm", "create", "whole", "--template", "kit", "--full", "--memory", "96M"]);
    let vol: Value = serde_json::from_str(&h.ok(&["volume", "show", "p1/whole.vhd", "--json"])).unwrap();
    assert_eq!(vol["format"], "vhd-dynamic", "{vol}");
    assert!(vol["parent"].is_null());
    assert_eq!(h.show("whole")["memory"].as_u64(), Some(96 << 20));

    // Rights: ann may create VMs but uses no pool; the template's use right is what she needs.
    let admin = h.login("admin", &h.admin_password());
    let body = json!({"name": "ann", "password": "ann-password", "can_create": true}).to_string();
    assert_eq!(h.https("POST", "/api/users", Some(&admin), Some(&body)).0, 201);
    let ann = h.login("ann", "ann-password");
    let mine = json!({"name": "anns", "template": "kit"}).to_string();
    let (code, text) = h.https("POST", "/api/vms", Some(&ann), Some(&mine));
    assert_eq!(code, 403, "{text}");
    assert!(text.contains("may not use template 'kit'"), "{text}");
    let (code, _) = h.https("GET", "/api/templates/kit", Some(&ann), None);
    assert_eq!(code, 403);
    h.ok(&["acl", "grant", "ann", "use", "--template", "kit"]);
    let (code, text) = h.https("POST", "/api/vms", Some(&ann), Some(&mine));
    assert_eq!(code, 201, "{text}");
    let (_, list) = h.https("GET", "/api/templates", Some(&ann), None);
    assert!(list.contains("\"kit\""), "{list}");
    // She may not delete it (that is configure), nor attach its base herself.
    let (code, _) = h.https("DELETE", "/api/templates/kit", Some(&ann), None);
    assert_eq!(code, 403);
    let direct = json!({"name": "anns2", "memory": 67108864, "disks": [{"path": "p1/kit.base.vhd", "read_only": true}]});
    let (code, text) = h.https("POST", "/api/vms", Some(&ann), Some(&direct.to_string()));
    assert_eq!(code, 403, "{text}");

    // All clones gone, the template goes, with its base; what it was made from stays.
    for n in names.iter().map(String::as_str).chain(["anns"]) {
        h.ok(&["vm", "delete", n]);
    }
    assert!(!pool.join("c-1.vhd").exists(), "a deleted VM's clone stayed");
    h.ok(&["template", "delete", "kit"]);
    assert!(!base.exists(), "the base outlived its template");
    assert!(pool.join("golden.vhd").exists() && pool.join("whole.vhd").exists());
    assert_eq!(h.ok(&["template", "list", "--json"]).trim(), "[]");
}
