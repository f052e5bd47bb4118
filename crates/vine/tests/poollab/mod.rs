//! A pool of simulated hosts for a test, made by `scripts/pool-lab.sh` (network namespaces on a
//! bridge of the lab's own, a vine daemon in each, a three-member etcd): one lab per test
//! binary, removed when dropped, even when the test fails.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;
use test_infra::Kit;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A lab of hosts `h1` … `hN`.
pub struct Lab {
    prefix: String,
    net: String,
    tls: bool,
    env: BTreeMap<String, String>,
    /// Extra arguments of every host's `vine daemon`.
    daemon_args: String,
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

impl Lab {
    /// `n` hosts with the vine binary under test; `prefix` names the namespaces and cgroups
    /// (at most 8 characters), `net` the LAN's first three octets.
    pub fn up(n: usize, prefix: &str, net: &str) -> Lab {
        Lab::make(n, prefix, net, false)
    }

    /// [`Lab::up`], with an etcd that serves clients over TLS only and wants client certificates
    /// (`LAB_ETCD_CA`, `LAB_ETCD_CERT`, `LAB_ETCD_KEY`).
    pub fn up_tls(n: usize, prefix: &str, net: &str) -> Lab {
        Lab::make(n, prefix, net, true)
    }

    /// [`Lab::up`], every daemon started with `daemon_args` besides (`--sample-interval 2`).
    pub fn up_with(n: usize, prefix: &str, net: &str, daemon_args: &[&str]) -> Lab {
        Lab::make_with(n, prefix, net, false, daemon_args)
    }

    fn make(n: usize, prefix: &str, net: &str, tls: bool) -> Lab {
        Lab::make_with(n, prefix, net, tls, &[])
    }

    fn make_with(n: usize, prefix: &str, net: &str, tls: bool, daemon_args: &[&str]) -> Lab {
        let mut lab = Lab {
            prefix: prefix.into(),
            net: net.into(),
            tls,
            env: BTreeMap::new(),
            daemon_args: daemon_args.join(" "),
        };
        // A lab left over by a killed run of this test goes first.
        let _ = lab.script(&["down"]);
        let out = lab.script(&["up", &n.to_string()]);
        assert!(out.status.success(), "pool-lab.sh up {n} failed:\n{}", text(&out));
        let file = String::from_utf8_lossy(&out.stdout).trim().to_string();
        for line in std::fs::read_to_string(&file).unwrap().lines() {
            if let Some((k, v)) = line.split_once('=') {
                lab.env.insert(k.to_string(), v.trim_matches('"').to_string());
            }
        }
        lab
    }

    fn script(&self, args: &[&str]) -> Output {
        Command::new("bash")
            .arg(repo().join("scripts/pool-lab.sh"))
            .args(args)
            .env("VINE", env!("CARGO_BIN_EXE_vine"))
            .env("VINE_LAB", &self.prefix)
            .env("VINE_LAB_DIR", format!("/var/tmp/{}", self.prefix))
            .env("VINE_LAB_NET", &self.net)
            .env("VINE_LAB_TLS", if self.tls { "1" } else { "0" })
            .env("VINE_LAB_DAEMON_ARGS", &self.daemon_args)
            .output()
            .unwrap()
    }

    /// A value of the lab's environment file (`LAB_ETCD`, `LAB_h1_SOCKET`, …).
    pub fn get(&self, key: &str) -> &str {
        self.env.get(key).unwrap_or_else(|| panic!("no {key} in the lab's environment"))
    }

    /// The hosts' names.
    pub fn hosts(&self) -> Vec<String> {
        self.get("LAB_HOSTS").split_whitespace().map(str::to_string).collect()
    }

    /// `vine ARGS` against host `h`'s daemon (its socket).
    pub fn vine(&self, h: &str, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_vine"))
            .args(args)
            .env("VINE_SOCKET", self.get(&format!("LAB_{h}_SOCKET")))
            .env_remove("VINE_REMOTE")
            .output()
            .unwrap()
    }

    /// `vine ARGS` against host `h`'s daemon, running in the background (output captured).
    pub fn spawn_vine(&self, h: &str, args: &[&str]) -> std::process::Child {
        Command::new(env!("CARGO_BIN_EXE_vine"))
            .args(args)
            .env("VINE_SOCKET", self.get(&format!("LAB_{h}_SOCKET")))
            .env_remove("VINE_REMOTE")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// `vine ARGS` on `h`; panics unless it succeeds; returns stdout.
    pub fn ok(&self, h: &str, args: &[&str]) -> String {
        let out = self.vine(h, args);
        assert!(out.status.success(), "vine {args:?} on {h} failed:\n{}", text(&out));
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// `vine ARGS` on `h`; panics if it succeeds; returns stderr.
    pub fn fails(&self, h: &str, args: &[&str]) -> String {
        let out = self.vine(h, args);
        assert!(!out.status.success(), "vine {args:?} on {h} succeeded:\n{}", text(&out));
        String::from_utf8_lossy(&out.stderr).to_string()
    }

    /// `vine ARGS --json` on `h`, parsed.
    pub fn json(&self, h: &str, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        serde_json::from_str(&self.ok(h, &a)).unwrap()
    }

    /// Runs a command inside host `h`'s network namespace.
    pub fn inside(&self, h: &str, cmd: &[&str]) -> Output {
        Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{}", self.get(&format!("LAB_{h}_NS"))))
            .args(cmd)
            .output()
            .unwrap()
    }

    /// An HTTPS request to host `to`'s API, made from inside host `from`'s namespace (the lab's
    /// LAN), with a bearer token; returns the status and the body.
    pub fn https(
        &self,
        from: &str,
        to: &str,
        method: &str,
        path: &str,
        token: &str,
        body: Option<&str>,
    ) -> (u16, String) {
        let url = format!("{}{path}", self.get(&format!("LAB_{to}_URL")));
        let auth = format!("Authorization: Bearer {token}");
        let mut cmd = vec!["curl", "-sk", "-X", method, "-H", &auth, "-w", "\n%{http_code}", &url];
        if let Some(b) = body {
            cmd.extend(["-H", "Content-Type: application/json", "--data-binary", b]);
        }
        let out = self.inside(from, &cmd);
        let t = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = t.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    /// Logs in as `user` on host `to` (from inside `from`); returns the token.
    pub fn login(&self, from: &str, to: &str, user: &str, password: &str) -> String {
        let url = format!("{}/api/login", self.get(&format!("LAB_{to}_URL")));
        let body = serde_json::json!({"user": user, "password": password}).to_string();
        let out = self.inside(
            from,
            &["curl", "-sk", "-H", "Content-Type: application/json", "--data-binary", &body, &url],
        );
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("login of {user} on {to}: {}", text(&out)));
        v["token"].as_str().unwrap_or_else(|| panic!("login of {user} on {to}: {v}")).to_string()
    }

    /// Logs in as `user` on host `to` (from inside `from`); the token, or None if refused.
    pub fn try_login(&self, from: &str, to: &str, user: &str, password: &str) -> Option<String> {
        let url = format!("{}/api/login", self.get(&format!("LAB_{to}_URL")));
        let body = serde_json::json!({"user": user, "password": password}).to_string();
        let out = self.inside(
            from,
            &["curl", "-sk", "-H", "Content-Type: application/json", "--data-binary", &body, &url],
        );
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        v["token"].as_str().map(str::to_string)
    }

    /// Waits until `f` gives a value, polling every 200 ms; panics with `what` after `limit`.
    pub fn wait_value<T>(&self, limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let t = Instant::now();
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(t.elapsed() < limit, "{what}: not within {limit:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `vine vm create NAME` through host `via` of a guest-kit VM (direct kernel boot, off): the
    /// kit's kernel, initrd and command line with `options` (e.g. `vine.counter=1`), 128 MiB
    /// unless `args` says otherwise, then `args` (e.g. `--host h2`, `--disk POOL/VOLUME`).
    pub fn kit_vm(&self, kit: &Kit, via: &str, name: &str, options: &[&str], args: &[&str]) -> Output {
        let kernel = kit.vmlinuz.display().to_string();
        let initrd = kit.initrd.display().to_string();
        let append = kit.cmdline_with(options);
        let mut all =
            vec!["vm", "create", name, "--kernel", &kernel, "--initrd", &initrd, "--append", &append];
        if !args.contains(&"--memory") {
            all.extend(["--memory", "128"]);
        }
        all.extend(args);
        self.vine(via, &all)
    }

    /// [`Lab::kit_vm`]; panics unless it succeeds.
    pub fn kit_vm_ok(&self, kit: &Kit, via: &str, name: &str, options: &[&str], args: &[&str]) {
        let out = self.kit_vm(kit, via, name, options, args);
        assert!(out.status.success(), "creating {name} through {via}:\n{}", text(&out));
    }

    /// Host `host`'s state as `vine host list --json` on `on` gives it ("" if not listed).
    pub fn host_state(&self, on: &str, host: &str) -> String {
        self.listed(on, &["host", "list", "--json"], host)
    }

    /// VM `vm`'s state as `vine vm list --json` on `on` gives it ("" if not listed).
    pub fn vm_state(&self, on: &str, vm: &str) -> String {
        self.listed(on, &["vm", "list", "--json"], vm)
    }

    fn listed(&self, on: &str, args: &[&str], name: &str) -> String {
        let out = self.vine(on, args);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v.as_array()
            .and_then(|a| a.iter().find(|x| x["name"] == name))
            .and_then(|x| x["state"].as_str())
            .unwrap_or_default()
            .to_string()
    }

    /// Host `h`'s first administrator password.
    pub fn admin_password(&self, h: &str) -> String {
        let f = Path::new(self.get(&format!("LAB_{h}_DATA"))).join("initial-admin-password");
        std::fs::read_to_string(f).unwrap().trim().to_string()
    }

    /// The pid of host `h`'s daemon.
    pub fn daemon_pid(&self, h: &str) -> u32 {
        let f = Path::new(self.get("LAB_DIR")).join(h).join("daemon.pid");
        std::fs::read_to_string(f).unwrap().trim().parse().unwrap()
    }

    /// Kills host `h`'s daemon with SIGKILL.
    pub fn kill_daemon(&self, h: &str) {
        let ok = Command::new("kill").args(["-9", &self.daemon_pid(h).to_string()]).status().unwrap();
        assert!(ok.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Path::new(&format!("/proc/{}", self.daemon_pid(h))).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts host `h`'s daemon again.
    pub fn start_daemon(&self, h: &str) {
        let out = self.script(&["daemon", h]);
        assert!(out.status.success(), "pool-lab.sh daemon {h}: {}", text(&out));
    }

    /// The pid of host `h`'s etcd member.
    pub fn etcd_pid(&self, h: &str) -> u32 {
        let f = Path::new(self.get("LAB_DIR")).join(h).join("etcd.pid");
        std::fs::read_to_string(f).unwrap().trim().parse().unwrap()
    }

    /// Kills host `h`'s etcd member with SIGKILL and waits until it is gone.
    pub fn kill_etcd(&self, h: &str) {
        let pid = self.etcd_pid(h);
        let ok = Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
        assert!(ok.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts host `h`'s etcd member again.
    pub fn start_etcd(&self, h: &str) {
        let out = self.script(&["etcd", h]);
        assert!(out.status.success(), "pool-lab.sh etcd {h}: {}", text(&out));
    }

    /// Pulls host `h`'s cable: the switch's port goes down.
    pub fn cut(&self, h: &str) {
        let out = self.script(&["cut", h]);
        assert!(out.status.success(), "pool-lab.sh cut {h}: {}", text(&out));
    }

    /// Plugs host `h` back into the LAN.
    pub fn plug(&self, h: &str) {
        let out = self.script(&["plug", h]);
        assert!(out.status.success(), "pool-lab.sh plug {h}: {}", text(&out));
    }

    /// Makes a pool: `h1` initialises it, every other host joins with a token from `h1`.
    pub fn pool(&self) {
        let tls = self.tls_args();
        let mut init = vec!["cluster", "init", "--etcd", self.get("LAB_ETCD"), "--name", "h1"];
        init.extend(tls.iter().map(String::as_str));
        self.ok("h1", &init);
        for h in self.hosts().iter().skip(1) {
            let token = self.ok("h1", &["cluster", "token", h]);
            let mut join = vec!["cluster", "join", token.trim()];
            join.extend(tls.iter().map(String::as_str));
            self.ok(h, &join);
        }
    }

    /// Storage for the pool's tests: a shared pool `shr` made on h1 at `LAB_DIR/shared` (waiting
    /// until every other host has registered it) and a host-local pool `loc` on every host at
    /// `LAB_DIR/hI-loc`. Returns the shared directory and each host's local one, in host order.
    pub fn storage(&self) -> (PathBuf, Vec<PathBuf>) {
        let dir = Path::new(self.get("LAB_DIR")).to_path_buf();
        let shared = dir.join("shared");
        self.ok("h1", &["pool", "create", "shr", "--path", shared.to_str().unwrap(), "--shared"]);
        for h in self.hosts().iter().skip(1) {
            self.wait(Duration::from_secs(10), &format!("{h} registers the shared pool"), || {
                self.json(h, &["pool", "list"])
                    .as_array()
                    .is_some_and(|a| a.iter().any(|p| p["name"] == "shr" && p["shared"] == true))
            });
        }
        let mut local = Vec::new();
        for h in self.hosts() {
            let d = dir.join(format!("{h}-loc"));
            self.ok(&h, &["pool", "create", "loc", "--path", d.to_str().unwrap()]);
            local.push(d);
        }
        (shared, local)
    }

    /// `--etcd-ca … --etcd-cert … --etcd-key …` for a lab whose etcd wants TLS (else none).
    pub fn tls_args(&self) -> Vec<String> {
        if !self.tls {
            return Vec::new();
        }
        [("--etcd-ca", "LAB_ETCD_CA"), ("--etcd-cert", "LAB_ETCD_CERT"), ("--etcd-key", "LAB_ETCD_KEY")]
            .iter()
            .flat_map(|(flag, key)| [flag.to_string(), self.get(key).to_string()])
            .collect()
    }

    /// Waits until `f` holds, polling every 200 ms; panics with `what` after `limit`.
    pub fn wait(&self, limit: Duration, what: &str, mut f: impl FnMut() -> bool) -> Duration {
        let t = Instant::now();
        while !f() {
            assert!(t.elapsed() < limit, "{what}: not within {limit:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
        t.elapsed()
    }
}

/// Everything guest `vm` on host `h` wrote on its console (all of its log).
pub fn console(lab: &Lab, h: &str, vm: &str) -> String {
    String::from_utf8_lossy(&lab.vine(h, &["vm", "console", vm, "--log", "--all"]).stdout).to_string()
}

/// The guest's record checks: (records written, whether all read back intact).
pub fn checks(log: &str) -> Vec<(u64, bool)> {
    log.lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("VINE-RECCHECK ")?;
            let mut w = rest.split_whitespace();
            let n = w.next()?.parse().ok()?;
            Some((n, w.next() == Some("ok")))
        })
        .collect()
}

/// The pid of the QEMU of `vm` on host `h`.
pub fn qemu_of(lab: &Lab, h: &str, vm: &str) -> Option<u32> {
    let dir = Path::new(lab.get(&format!("LAB_{h}_DATA"))).join("vms").join(vm).display().to_string();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            let c = String::from_utf8_lossy(&c);
            if (c.starts_with("qemu-system") || c.contains("/qemu-system")) && c.contains(&dir) {
                return Some(pid);
            }
        }
    }
    None
}

/// Reads the records back from a disk image the guest wrote and checks, with `qemu-img
/// compare`, that the image holds exactly those records and nothing else. Returns how many.
pub fn compare_records(image: &Path, work: &Path) -> u64 {
    let raw = work.join("read.raw");
    let st =
        Command::new("qemu-img").args(["convert", "-f", "vpc", "-O", "raw"]).arg(image).arg(&raw).status();
    assert!(st.unwrap().success(), "qemu-img converts {}", image.display());
    let bytes = std::fs::read(&raw).unwrap();
    let record = |i: u64| {
        let mut s = format!("VINE-REC {i:010}").into_bytes();
        s.resize(512, 0);
        s
    };
    let mut n = 0u64;
    while bytes.get(((16 + n) * 512) as usize..((17 + n) * 512) as usize) == Some(&record(n)[..]) {
        n += 1;
    }
    let mut expected = vec![0u8; bytes.len()];
    for i in 0..n {
        let at = ((16 + i) * 512) as usize;
        expected[at..at + 512].copy_from_slice(&record(i));
    }
    let exp = work.join("expected.raw");
    std::fs::write(&exp, &expected).unwrap();
    let out = Command::new("qemu-img")
        .args(["compare", "-f", "raw", "-F", "vpc"])
        .arg(&exp)
        .arg(image)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} holds exactly the {n} records the guest wrote: {}{}",
        image.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(&raw).unwrap();
    std::fs::remove_file(&exp).unwrap();
    n
}

/// Processes whose command line mentions `what` (a VM's files, a volume).
pub fn processes_naming(what: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if !e.file_name().to_string_lossy().chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            if c.contains(what) {
                found.push(c);
            }
        }
    }
    found
}

impl Drop for Lab {
    fn drop(&mut self) {
        let out = self.script(&["down"]);
        if !out.status.success() {
            eprintln!("pool-lab.sh down: {}", text(&out));
        }
    }
}
