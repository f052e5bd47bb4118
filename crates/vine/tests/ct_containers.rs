//! System containers for real (LXC, unprivileged), made from the busybox image
//! (`scripts/ct-image.sh busybox`) imported with `vine ct image import`:
//!
//! - each container has its own host name, sees only its own processes (PID 1 is its init),
//!   its own root and users; its root is an unprivileged host uid (read from /proc on the host)
//!   and two containers have disjoint id ranges;
//! - vine's DHCP server gives each an address on a vine network; two on one network reach each
//!   other, one on another network does not;
//! - every control, checked from inside: pause/resume (a counter stops and continues), reset
//!   (init starts again: the boot count), shutdown (the image's shutdown script runs), save
//!   (CRIU, or refused with CRIU's reason), off, delete (root file system and cgroups gone);
//! - a 25 % CPU cap holds; weights 100 and 300 on one core share it 1:3; a process exceeding
//!   the memory limit is killed inside, an event says so, and the container and its neighbour
//!   run on;
//! - a container reaches a VM (the guest kit) on its network;
//! - keystrokes sent through vine's console relay reach the container's shell;
//! - a user with the use right on one container controls it and reads its console, and sees
//!   nothing of the others;
//! - a Debian container (systemd, from `scripts/ct-image.sh debian`) boots with its own host
//!   name, users and address, and shuts down through systemd.

mod vmhost;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use vmhost::VmHost;

const BOOT: Duration = Duration::from_secs(60);

fn image(kind: &str) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/ct-image.sh");
    let out = Command::new("bash").arg(&script).arg(kind).output().unwrap();
    assert!(out.status.success(), "{}", vmhost::text(&out));
    let path = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().trim().to_string();
    PathBuf::from(path)
}

/// Runs `sh -c SCRIPT` inside container `name` with LXC's own `lxc-attach`.
fn inside(h: &VmHost, name: &str, script: &str) -> (bool, String) {
    let out = Command::new("lxc-attach")
        .arg("-P")
        .arg(h.data.join("lxc"))
        .args(["-n", name, "--clear-env", "--", "/bin/sh", "-c", script])
        .output()
        .unwrap();
    (out.status.success(), vmhost::text(&out))
}

fn inside_ok(h: &VmHost, name: &str, script: &str) -> String {
    let (ok, text) = inside(h, name, script);
    assert!(ok, "in {name}: {script}: {text}");
    text
}

fn console(h: &VmHost, name: &str) -> String {
    std::fs::read_to_string(h.data.join("vms").join(name).join("run/console.log")).unwrap_or_default()
}

fn wait_console(h: &VmHost, name: &str, what: &str, n: usize) -> String {
    let t0 = Instant::now();
    loop {
        let c = console(h, name);
        if c.matches(what).count() >= n {
            return c;
        }
        assert!(
            t0.elapsed() < BOOT,
            "{name}: no {n}x {what:?} on the console:\n{c}\n--- daemon ---\n{}",
            h.daemon_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The address the console says the container's eth0 got.
fn address(h: &VmHost, name: &str) -> String {
    let c = wait_console(h, name, "vine-ct: address ", 1);
    let line = c.lines().rev().find(|l| l.contains("vine-ct: address ")).unwrap();
    line.split_whitespace().nth(2).unwrap().to_string()
}

fn rootfs(h: &VmHost, name: &str) -> PathBuf {
    h.data.join("vms").join(name).join("rootfs")
}

fn counter(h: &VmHost, name: &str) -> u64 {
    std::fs::read_to_string(rootfs(h, name).join("tmp/counter"))
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

fn status_ids(pid: u32) -> (u32, u32) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let first = |k: &str| {
        s.lines().find_map(|l| l.strip_prefix(k)).unwrap().split_whitespace().next().unwrap().parse().unwrap()
    };
    (first("Uid:"), first("Gid:"))
}

fn cpu_ns(h: &VmHost, name: &str) -> u64 {
    let p = Path::new("/sys/fs/cgroup/cpuacct").join(&h.cgroup_parent).join(name).join("cpuacct.usage");
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).trim().parse().unwrap()
}

#[test]
fn busybox_containers_are_isolated_networked_controlled_and_limited() {
    let t0 = Instant::now();
    let img = image("busybox");
    let h = VmHost::start();
    let pool = h.dir.path().join("p1");
    h.ok(&["pool", "create", "p1", "--path", pool.to_str().unwrap()]);
    // A file that is not a tarball is refused before anything is uploaded.
    let junk = h.dir.path().join("junk.tar");
    std::fs::write(&junk, b"not a tarball").unwrap();
    let e = h.fails(&["ct", "image", "import", "p1/junk", junk.to_str().unwrap()]);
    assert!(e.contains("not a tarball"), "{e}");
    h.ok(&["ct", "image", "import", "p1/busybox", img.to_str().unwrap()]);
    h.ok(&["network", "create", "n1", "--kind", "internal", "--subnet", "10.233.95.0/24"]);
    h.ok(&["network", "create", "n2", "--kind", "internal", "--subnet", "10.233.96.0/24"]);
    for (name, net) in [("c1", "n1"), ("c2", "n1"), ("c3", "n2")] {
        h.ok(&["ct", "create", name, "--image", "p1/busybox", "--memory", "64M", "--nic", net, "--start"]);
    }
    // A VM of the guest kit on n1, booting while the containers are checked.
    h.create_kit_vm("v1", &["vine.net=1"], &["--nic", "n1"]);
    h.ok(&["vm", "start", "v1"]);
    // A VM-only option is refused by name; so is a missing image.
    let e = h.fails(&["ct", "create", "bad", "--image", "p1/nothing", "--memory", "64M"]);
    assert!(e.contains("container.image"), "{e}");

    // --- isolation ---
    let list: Value = serde_json::from_str(&h.ok(&["ct", "list", "--json"])).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 3, "{list}");
    let mut bases = Vec::new();
    for name in ["c1", "c2", "c3"] {
        let v = h.show(name);
        assert_eq!(v["kind"], "container", "{v}");
        assert_eq!(v["state"], "running", "{v}");
        wait_console(&h, name, &format!("vine-ct: up {name} boot 1"), 1);
        assert_eq!(inside_ok(&h, name, "hostname").trim(), name);
        // PID 1 is its init, and it sees only its own few processes.
        let ps = inside_ok(&h, name, "cat /proc/1/cmdline | tr '\\0' ' '; echo; ls -d /proc/[0-9]* | wc -l");
        let mut lines = ps.lines();
        assert_eq!(lines.next().unwrap().trim(), "init", "{ps}");
        let n: usize = lines.next().unwrap().trim().parse().unwrap();
        assert!(n < 10, "{name} sees {n} processes: {ps}");
        assert!(inside_ok(&h, name, "cat /etc/passwd").contains("app:x:1000:1000"));
        assert!(
            !inside(&h, name, &format!("test -e {}", h.data.display())).0,
            "{name} sees the host's files"
        );
        // Root inside is an unprivileged host uid: the container's id base.
        let base = v["container"]["id_base"].as_u64().unwrap() as u32;
        let init = v["pid"].as_u64().unwrap() as u32;
        assert_eq!(status_ids(init), (base, base), "{name}'s init on the host");
        assert!(base >= 65_536);
        bases.push(base);
    }
    let ports: Vec<String> = ["c1", "c2", "c3"]
        .iter()
        .map(|n| h.show(n)["nics"][0]["tap"].as_str().unwrap().to_string())
        .collect();
    bases.sort();
    assert!(bases.windows(2).all(|w| w[1] - w[0] >= 65_536), "overlapping id ranges: {bases:?}");

    // --- networks ---
    let (a1, a2, a3) = (address(&h, "c1"), address(&h, "c2"), address(&h, "c3"));
    assert!(a1.starts_with("10.233.95.") && a2.starts_with("10.233.95.") && a3.starts_with("10.233.96."));
    inside_ok(&h, "c1", &format!("ping -c 2 -W 2 {a2}"));
    let (ok, out) = inside(&h, "c3", &format!("ping -c 2 -W 2 {a1}"));
    assert!(!ok, "c3 on n2 reached c1 on n1: {out}");
    let vm_line = h.console("v1").wait_for("VINE-IP ", vmhost::BOOT).unwrap();
    let vm_ip = vm_line.split_whitespace().nth(1).unwrap().to_string();
    assert!(vm_ip.starts_with("10.233.95."), "{vm_line}");
    inside_ok(&h, "c1", &format!("ping -c 2 -W 2 {vm_ip}"));
    let (ok, out) = inside(&h, "c3", &format!("ping -c 2 -W 2 {vm_ip}"));
    assert!(!ok, "c3 on n2 reached the VM on n1: {out}");
    h.ok(&["vm", "off", "v1"]);

    // --- the console: keystrokes through vine's relay reach the container's shell ---
    {
        use std::io::Write;
        let sock = h.data.join("vms/c1/run/console.sock");
        let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        s.write_all(b"echo typed-$((6*7))\n").unwrap();
        wait_console(&h, "c1", "typed-42", 1);
        let log = h.ok(&["ct", "console", "c1", "--log"]);
        assert!(log.contains("typed-42") && log.contains("vine-ct: up c1"), "{log}");
    }

    // --- rights: ann may use c1 only ---
    h.ok(&["user", "add", "ann", "--password", "ann-password"]);
    h.ok(&["acl", "grant", "ann", "use", "c1"]);
    let ann = h.login("ann", "ann-password");
    let (st, body) = h.https("GET", "/api/vms", Some(&ann), None);
    assert_eq!(st, 200, "{body}");
    let seen: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(seen.len(), 1, "{body}");
    assert_eq!((seen[0]["name"].as_str(), seen[0]["kind"].as_str()), (Some("c1"), Some("container")));
    let (st, body) = h.https("GET", "/api/vms/c1/console", Some(&ann), None);
    assert_eq!(st, 200, "{body}");
    assert!(body.contains("vine-ct: up c1"), "{body}");
    for action in ["pause", "resume"] {
        let (st, body) = h.https("POST", &format!("/api/vms/c1/actions/{action}"), Some(&ann), Some("{}"));
        assert_eq!(st, 200, "ann {action} c1: {body}");
    }
    for (method, path) in
        [("GET", "/api/vms/c2"), ("GET", "/api/vms/c2/console"), ("POST", "/api/vms/c2/actions/pause")]
    {
        let (st, body) = h.https(method, path, Some(&ann), Some("{}"));
        assert!(st == 403 || st == 404, "ann {method} {path}: {st} {body}");
    }
    assert_eq!(h.state("c2"), "running");

    // --- CPU cap and memory limit ---
    h.ok(&["ct", "set", "c2", "--cpu-max", "25"]);
    inside_ok(&h, "c2", "(while :; do :; done) >/dev/null 2>&1 </dev/null & echo $! > /tmp/busy.pid");
    std::thread::sleep(Duration::from_millis(500));
    let (c0, w0) = (cpu_ns(&h, "c2"), Instant::now());
    std::thread::sleep(Duration::from_secs(3));
    let pct = (cpu_ns(&h, "c2") - c0) as f64 / w0.elapsed().as_nanos() as f64 * 100.0;
    assert!((20.0..=30.0).contains(&pct), "a 25% cap gave {pct:.1}%");
    inside_ok(&h, "c2", "kill $(cat /tmp/busy.pid)");

    // Weights 100 and 300, both on one core: 1:3 within 15 %.
    h.ok(&["ct", "set", "c2", "--cpu-max", "none", "--cpu-weight", "300"]);
    h.ok(&["ct", "set", "c1", "--cpu-weight", "100"]);
    for name in ["c1", "c2"] {
        let cpuset =
            Path::new("/sys/fs/cgroup/cpuset").join(&h.cgroup_parent).join(name).join("ct/cpuset.cpus");
        std::fs::write(&cpuset, "0").unwrap_or_else(|e| panic!("{}: {e}", cpuset.display()));
        inside_ok(&h, name, "(while :; do :; done) >/dev/null 2>&1 </dev/null & echo $! > /tmp/busy.pid");
    }
    std::thread::sleep(Duration::from_millis(500));
    let (a0, b0) = (cpu_ns(&h, "c1"), cpu_ns(&h, "c2"));
    std::thread::sleep(Duration::from_secs(4));
    let (a, b) = ((cpu_ns(&h, "c1") - a0) as f64, (cpu_ns(&h, "c2") - b0) as f64);
    let ratio = b / a;
    assert!((2.55..=3.45).contains(&ratio), "weights 300:100 gave {ratio:.2} ({b:.0} ns : {a:.0} ns)");
    for name in ["c1", "c2"] {
        inside_ok(&h, name, "kill $(cat /tmp/busy.pid)");
    }
    // A running container's memory limit changes at once.
    h.ok(&["ct", "set", "c2", "--memory", "80M"]);
    let limit = Path::new("/sys/fs/cgroup/memory").join(&h.cgroup_parent).join("c2/memory.limit_in_bytes");
    assert_eq!(std::fs::read_to_string(&limit).unwrap().trim(), (80u64 << 20).to_string());
    h.ok(&["ct", "set", "c2", "--memory", "64M"]);
    let (ok, out) = inside(&h, "c2", "dd if=/dev/zero of=/dev/null bs=96M count=1");
    assert!(!ok, "a 96 MiB buffer fit in a 64 MiB container: {out}");
    let t = Instant::now();
    loop {
        let ev = h.ok(&["events", "--vm", "c2", "--json"]);
        if ev.contains("vm.oom-kill") {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "no OOM event: {ev}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(h.state("c2"), "running");
    assert_eq!(inside_ok(&h, "c2", "hostname").trim(), "c2");
    assert_eq!(h.state("c1"), "running");

    // --- controls, checked from inside ---
    inside_ok(
        &h,
        "c1",
        "(i=0; while :; do i=$((i+1)); echo $i > /tmp/counter; sleep 0.1; done) >/dev/null 2>&1 </dev/null &",
    );
    std::thread::sleep(Duration::from_millis(500));
    h.ok(&["ct", "pause", "c1"]);
    assert_eq!(h.state("c1"), "paused");
    let frozen = counter(&h, "c1");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(counter(&h, "c1"), frozen, "the counter moved while paused");
    h.ok(&["ct", "resume", "c1"]);
    std::thread::sleep(Duration::from_millis(700));
    assert!(counter(&h, "c1") > frozen, "the counter did not continue");

    // Save: CRIU checkpoints it, or the refusal carries CRIU's reason and it runs on.
    let out = h.vine().args(["ct", "save", "c1"]).output().unwrap();
    eprintln!("save: {}", vmhost::text(&out).trim());
    if out.status.success() {
        assert_eq!(h.state("c1"), "saved");
        let saved = counter(&h, "c1");
        h.ok(&["ct", "restore", "c1"]);
        std::thread::sleep(Duration::from_millis(700));
        assert!(counter(&h, "c1") > saved, "the counter did not continue after restore");
    } else {
        let e = vmhost::text(&out);
        assert!(e.contains("CRIU"), "{e}");
        assert_eq!(h.state("c1"), "running", "a refused save stopped it: {e}");
        let before = counter(&h, "c1");
        std::thread::sleep(Duration::from_millis(500));
        assert!(counter(&h, "c1") > before, "it does not run on after the refused save");
    }

    let pid = h.pid("c1");
    h.ok(&["ct", "reset", "c1"]);
    wait_console(&h, "c1", "vine-ct: up c1 boot 2", 1);
    assert_ne!(h.pid("c1"), pid, "reset kept the old init");
    assert_eq!(h.state("c1"), "running");

    h.ok(&["ct", "shutdown", "c1", "--timeout", "20"]);
    assert_eq!(h.state("c1"), "off");
    wait_console(&h, "c1", "vine-ct: shutting down", 1);
    assert!(rootfs(&h, "c1").join("var/lib/vine-ct/shutdown").exists(), "the shutdown script did not run");
    let e = h.fails(&["ct", "pause", "c1"]);
    assert!(e.contains("off"), "{e}");

    h.ok(&["ct", "off", "c3"]);
    assert_eq!(h.state("c3"), "off");
    let e = h.fails(&["ct", "delete", "c2"]);
    assert!(e.contains("running"), "{e}");
    h.ok(&["ct", "off", "c2"]);
    let t = h.ok(&["ct", "list"]);
    assert!(t.contains("KIND") && t.contains("container"), "{t}");

    for name in ["c1", "c2", "c3"] {
        h.ok(&["ct", "delete", name]);
        assert!(!rootfs(&h, name).exists(), "{name}'s root file system is left");
        for ctl in ["cpu", "memory", "pids", "freezer"] {
            let d = Path::new("/sys/fs/cgroup").join(ctl).join(&h.cgroup_parent).join(name);
            assert!(!d.exists(), "{} is left", d.display());
        }
    }
    // Their ports' port security rules went with them.
    let tables =
        String::from_utf8_lossy(&Command::new("nft").args(["list", "tables"]).output().unwrap().stdout)
            .to_string();
    for p in &ports {
        assert!(!tables.contains(p.as_str()), "the rules of {p} outlived its container:\n{tables}");
    }
    eprintln!("containers test took {:.1} s", t0.elapsed().as_secs_f64());
}

#[test]
fn a_debian_container_boots_systemd_with_its_own_name_users_and_address() {
    let t0 = Instant::now();
    let img = image("debian");
    let h = VmHost::start();
    let pool = h.dir.path().join("p1");
    h.ok(&["pool", "create", "p1", "--path", pool.to_str().unwrap()]);
    h.ok(&["ct", "image", "import", "p1/debian", img.to_str().unwrap()]);
    h.ok(&["network", "create", "n1", "--kind", "internal", "--subnet", "10.233.97.0/24"]);
    h.ok(&["ct", "create", "deb1", "--image", "p1/debian", "--memory", "256M", "--nic", "n1", "--start"]);
    h.create_kit_vm("v2", &["vine.net=1"], &["--nic", "n1"]);
    h.ok(&["vm", "start", "v2"]);
    let v = h.show("deb1");
    assert_eq!(v["container"]["halt_signal"], "SIGRTMIN+3", "{v}");
    wait_console(&h, "deb1", "vine-ct: up deb1 boot 1", 1);
    let a = address(&h, "deb1");
    assert!(a.starts_with("10.233.97."), "{a}");
    assert_eq!(inside_ok(&h, "deb1", "hostname").trim(), "deb1");
    assert_eq!(inside_ok(&h, "deb1", "cat /proc/1/comm").trim(), "systemd");
    // Its own processes only: a few systemd services, none of the host's.
    let n: usize = inside_ok(&h, "deb1", "ls -d /proc/[0-9]* | wc -l").trim().parse().unwrap();
    assert!(n < 40, "deb1 sees {n} processes");
    let daemon = h.daemon_pid();
    assert!(!inside(&h, "deb1", &format!("grep -q vine /proc/{daemon}/cmdline")).0, "deb1 sees the daemon");
    // It reaches a VM on its network.
    let vm_line = h.console("v2").wait_for("VINE-IP ", vmhost::BOOT).unwrap();
    let vm_ip = vm_line.split_whitespace().nth(1).unwrap().to_string();
    inside_ok(&h, "deb1", &format!("ping -c 2 -W 2 {vm_ip}"));
    // As an ordinary user too: ping's file capability (cap_net_raw) came with the image, made
    // the container root's (revision 3, its root id the container's id base).
    inside_ok(
        &h,
        "deb1",
        &format!("setpriv --reuid=1000 --regid=1000 --clear-groups ping -c 1 -W 2 {vm_ip}"),
    );
    let ping = rootfs(&h, "deb1").join("usr/bin/ping");
    let caps = Command::new("getcap").arg("-n").arg(&ping).output().unwrap();
    let caps = String::from_utf8_lossy(&caps.stdout).to_string();
    let base = v["container"]["id_base"].as_u64().unwrap();
    assert!(caps.contains("cap_net_raw=ep") && caps.contains(&format!("rootid={base}")), "{caps}");
    h.ok(&["vm", "off", "v2"]);
    assert!(inside_ok(&h, "deb1", "getent passwd app").starts_with("app:x:1000:1000"));
    assert!(inside_ok(&h, "deb1", "cat /etc/os-release").contains("bookworm"));
    let base = v["container"]["id_base"].as_u64().unwrap() as u32;
    assert_eq!(status_ids(v["pid"].as_u64().unwrap() as u32), (base, base));
    h.ok(&["ct", "shutdown", "deb1", "--timeout", "60"]);
    assert_eq!(h.state("deb1"), "off");
    wait_console(&h, "deb1", "vine-ct: shutting down", 1);
    h.ok(&["ct", "delete", "deb1"]);
    eprintln!("debian container test took {:.1} s", t0.elapsed().as_secs_f64());
}
