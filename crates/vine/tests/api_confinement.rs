//! Confinement through the API, as three users: the administrator; ann, who may create VMs and
//! use storage pool p1 and network n1; bob, who may only create VMs. Ann makes a VM from volumes
//! of p1 (a disk she makes, a kernel and an initrd the administrator uploaded) on n1 and boots
//! it. Every attempt by ann or bob to name a host path, a volume of a pool they may not use,
//! another user's VM's disk, a volume standing on a host file, or a network they may not use is
//! refused with 403 and a sentence, and nothing is created.

mod vmhost;

use serde_json::{json, Value};
use vmhost::{VmHost, BOOT};

fn vm_names(h: &VmHost, admin: &str) -> Vec<String> {
    let (code, body) = h.https("GET", "/api/vms", Some(admin), None);
    assert_eq!(code, 200, "{body}");
    serde_json::from_str::<Vec<Value>>(&body)
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_string())
        .collect()
}

fn volume_names(h: &VmHost, pool: &str) -> Vec<String> {
    let list: Vec<Value> = serde_json::from_str(&h.ok(&["volume", "list", pool, "--json"])).unwrap();
    list.iter().map(|v| v["volume"].as_str().unwrap().to_string()).collect()
}

#[test]
fn users_name_only_volumes_and_networks_they_may_use() {
    let h = VmHost::start();
    let admin = h.login("admin", &h.admin_password());
    let (p1, p2) = (h.dir.path().join("p1"), h.dir.path().join("p2"));
    h.ok(&["pool", "create", "p1", "--path", p1.to_str().unwrap()]);
    h.ok(&["pool", "create", "p2", "--path", p2.to_str().unwrap()]);
    // QEMU, running as the emulator user, cannot reach the pool's files by path: it boots from
    // the descriptors vine opens for it.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&p1).unwrap().permissions().mode() & 0o777, 0o700);
    h.ok(&["network", "create", "n1", "--kind", "internal", "--subnet", "10.233.80.0/24"]);
    h.ok(&["network", "create", "n2", "--kind", "internal", "--subnet", "10.233.81.0/24"]);
    h.ok(&["user", "add", "ann", "--password", "ann-password", "--can-create"]);
    h.ok(&["user", "add", "bob", "--password", "bob-password", "--can-create"]);
    h.ok(&["acl", "grant", "ann", "use", "--pool", "p1"]);
    h.ok(&["acl", "grant", "ann", "use", "--network", "n1"]);
    // The administrator uploads the guest's kernel and initrd as volumes (streamed).
    h.ok(&["volume", "upload", "p1/vmlinuz", h.kit.vmlinuz.to_str().unwrap()]);
    h.ok(&["volume", "upload", "p1/initrd.img", h.kit.initrd.to_str().unwrap()]);
    assert_eq!(std::fs::read(p1.join("initrd.img")).unwrap(), std::fs::read(&h.kit.initrd).unwrap());
    // The administrator's own VM on a disk in p1, and a disk in p1 that stands on a host file.
    h.ok(&["volume", "create", "p1/adm.vhd", "--size", "16M"]);
    h.ok(&["volume", "create", "p2/other.vhd", "--size", "16M"]);
    h.ok(&["vm", "create", "adm1", "--memory", "64M", "--disk", "p1/adm.vhd", "--kernel", "p1/vmlinuz"]);
    let outside = h.dir.path().join("outside.vhd");
    h.ok(&["disk", "create", outside.to_str().unwrap(), "--size", "16M"]);
    h.ok(&["disk", "create", p1.join("sneaky.vhd").to_str().unwrap(), "--parent", outside.to_str().unwrap()]);

    let ann = h.login("ann", "ann-password");
    let bob = h.login("bob", "bob-password");
    // Ann makes her disk in p1 and sees only the pool she may use, without its host directory.
    let (code, body) = h.https(
        "POST",
        "/api/pools/p1/volumes",
        Some(&ann),
        Some(&json!({"name": "ann.vhd", "size": 32 << 20}).to_string()),
    );
    assert_eq!(code, 201, "{body}");
    let (code, body) = h.https("GET", "/api/pools", Some(&ann), None);
    assert_eq!(code, 200);
    let pools: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(pools.len(), 1, "{body}");
    assert!(pools[0]["name"] == "p1" && pools[0].get("path").is_none(), "{body}");
    let (code, body) = h.https("GET", "/api/pools/p1/volumes/sneaky.vhd", Some(&ann), None);
    assert_eq!(code, 200, "{body}");
    assert!(!body.contains(outside.to_str().unwrap()), "a host path shown to a user: {body}");

    let vms_before = vm_names(&h, &admin);
    let (p1_before, p2_before) = (volume_names(&h, "p1"), volume_names(&h, "p2"));
    let good = || {
        json!({
            "name": "ann1", "memory": 256 << 20, "disks": [{"path": "p1/ann.vhd"}],
            "kernel": "p1/vmlinuz", "initrd": "p1/initrd.img",
            "append": h.kit.cmdline_with(&["vine.counter=1"]), "nics": [{"network": "n1"}],
        })
    };
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = good();
        f(&mut v);
        v.to_string()
    };
    let refusals: Vec<(&str, &str, String, &str)> = vec![
        (
            "ann",
            "a host disk",
            with(&|v| v["disks"][0]["path"] = json!("/etc/shadow")),
            "may not name host paths (disks[0]: /etc/shadow)",
        ),
        (
            "ann",
            "a host CD/DVD",
            with(&|v| {
                v["disks"] =
                    json!([{"path": "p1/ann.vhd"}, {"path": "/etc/shadow", "bus": "ide", "cdrom": true}])
            }),
            "may not name host paths (disks[1]: /etc/shadow)",
        ),
        (
            "ann",
            "a host kernel",
            with(&|v| v["kernel"] = json!("/etc/shadow")),
            "may not name host paths (kernel: /etc/shadow)",
        ),
        (
            "ann",
            "a host initrd",
            with(&|v| v["initrd"] = json!("/etc/passwd")),
            "may not name host paths (initrd: /etc/passwd)",
        ),
        (
            "ann",
            "a pool she may not use",
            with(&|v| v["disks"][0]["path"] = json!("p2/other.vhd")),
            "may not use storage pool 'p2'",
        ),
        (
            "ann",
            "another user's VM's disk",
            with(&|v| v["disks"][0]["path"] = json!("p1/adm.vhd")),
            "volume p1/adm.vhd is a disk of VM 'adm1', which user 'ann' may not configure",
        ),
        (
            "ann",
            "another user's VM's disk, read-only",
            with(&|v| v["disks"][0] = json!({"path": "p1/adm.vhd", "read_only": true})),
            "is a disk of VM 'adm1'",
        ),
        (
            "ann",
            "a volume standing on a host file",
            with(&|v| v["disks"][0]["path"] = json!("p1/sneaky.vhd")),
            "stands on a file outside every storage pool",
        ),
        (
            "ann",
            "a network she may not use",
            with(&|v| v["nics"] = json!([{"network": "n2"}])),
            "may not use network 'n2' (nics[0])",
        ),
        (
            "bob",
            "a volume of a pool he may not use",
            good().to_string(),
            "user 'bob' may not use storage pool 'p1'",
        ),
        (
            "bob",
            "a host kernel",
            with(&|v| {
                v["disks"] = json!([]);
                v["kernel"] = json!(h.kit.vmlinuz);
                v["initrd"] = Value::Null;
            }),
            "user 'bob' may not name host paths (kernel:",
        ),
    ];
    for (who, what, body, says) in &refusals {
        let token = if *who == "ann" { &ann } else { &bob };
        let (code, text) = h.https("POST", "/api/vms", Some(token), Some(body));
        assert_eq!(code, 403, "{who}, {what}: {text}");
        assert!(text.contains(says), "{who}, {what}: {text}");
    }
    assert_eq!(vm_names(&h, &admin), vms_before, "a refused request created a VM");
    assert_eq!((volume_names(&h, "p1"), volume_names(&h, "p2")), (p1_before, p2_before));
    // Nor may they reach another user's disk through the volume endpoints.
    for (token, path, says) in [
        (&ann, "/api/pools/p1/volumes/adm.vhd/content", "is a disk of VM 'adm1'"),
        (&bob, "/api/pools/p1/volumes/ann.vhd/content", "may not use storage pool 'p1'"),
        (&ann, "/api/pools/p2/volumes/other.vhd", "may not use storage pool 'p2'"),
    ] {
        let (code, text) = h.https("GET", path, Some(token), None);
        assert_eq!(code, 403, "{path}: {text}");
        assert!(text.contains(says), "{text}");
    }
    let (code, text) = h.https("DELETE", "/api/pools/p1/volumes/adm.vhd", Some(&ann), None);
    assert_eq!(code, 403, "{text}");
    let (code, text) = h.https(
        "POST",
        "/api/pools/p1/volumes",
        Some(&ann),
        Some(&json!({"name": "child.vhd", "parent": "p2/other.vhd"}).to_string()),
    );
    assert_eq!(code, 403, "a child of a volume she may not use: {text}");

    // Ann's own VM: made from p1's volumes on n1, it boots.
    let (code, text) = h.https("POST", "/api/vms", Some(&ann), Some(&good().to_string()));
    assert_eq!(code, 201, "{text}");
    let (code, text) =
        h.https("POST", "/api/vms/ann1/nics", Some(&ann), Some(&json!({"network": "n2"}).to_string()));
    assert_eq!(code, 403, "{text}");
    assert!(text.contains("may not use network 'n2'"), "{text}");
    let (code, text) = h.https("POST", "/api/vms/ann1/actions/start", Some(&ann), None);
    assert_eq!(code, 200, "{text}");
    h.console("ann1").wait_for("VINE-COUNTER 2", BOOT).unwrap();
    let show: Value = serde_json::from_str(&h.https("GET", "/api/vms/ann1", Some(&ann), None).1).unwrap();
    assert_eq!(show["disks"], json!(["p1/ann.vhd"]), "{show}");
    let (_, vols) = h.https("GET", "/api/pools/p1/volumes/ann.vhd", Some(&ann), None);
    assert!(vols.contains("ann1 (rw)"), "{vols}");
    // Bob cannot reach her running VM's disk either, nor attach it as the administrator would.
    let (code, text) = h.https("POST", "/api/vms", Some(&admin), Some(&with(&|v| v["name"] = json!("adm2"))));
    assert_eq!(code, 409, "a disk ann1 writes attached to another VM: {text}");
    assert!(text.contains("p1/ann.vhd is attached read-write to VM 'ann1'"), "{text}");
    h.ok(&["vm", "off", "ann1"]);
    h.ok(&["vm", "delete", "ann1"]);
    assert!(!p1.join("ann.vhd").exists(), "deleting the VM deleted its own disk");
    assert!(p1.join("vmlinuz").exists() && p1.join("initrd.img").exists(), "and not the kernel or initrd");
}
