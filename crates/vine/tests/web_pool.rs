//! The web admin site on a pool of two simulated hosts (scripts/pool-lab.sh): Debian's Chromium
//! (headless, playwright-core from `web/`), run inside host h2's network namespace where the
//! lab's HTTPS addresses are, logs in to h2's UI as the pool's administrator and drives
//! `web/tests/pool.mjs`: the VM list shows the VMs of both hosts with their hosts, the hosts page
//! both hosts online with their CPUs, maintenance toggled on h1 from the page (checked here with
//! `vine host list --json`) and back; h1's daemon killed, the page shows h1 offline and its VM
//! unknown within 20 s; h1's daemon started again, online. The script prints `WAIT STEP` where
//! this side must check or do something, and goes on when it reads `GO`.
//!
//! `VINE_UPDATE_SCREENSHOTS=1` writes the hosts page's screenshot to docs/screenshots.

mod poollab;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use poollab::Lab;
use serde_json::{json, Value};
use test_infra::Kit;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// The browser's node process: killed (by its pid) if the test ends before it does.
struct Browser(Child);

impl Drop for Browser {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn the_web_ui_of_one_host_shows_and_controls_the_whole_pool() {
    let t0 = Instant::now();
    let web = repo().join("web");
    for need in ["dist/index.html", "dist/vendor/vendor.js", "node_modules/playwright-core/package.json"] {
        assert!(web.join(need).is_file(), "{} is missing: run scripts/setup.sh (or scripts/web.sh)", need);
    }
    assert!(Path::new("/usr/bin/chromium").is_file(), "Debian's chromium is missing: run scripts/setup.sh");
    let shots_dir = tempfile::tempdir().unwrap();
    let shots = match std::env::var_os("VINE_UPDATE_SCREENSHOTS") {
        Some(_) => repo().join("docs/screenshots"),
        None => shots_dir.path().to_path_buf(),
    };

    let lab = Lab::up(2, "vtweb", "10.245.0");
    lab.pool();
    let kit = Kit::ensure().expect("guest kit");
    // Each made through the other host: the pins are the pool's, not where the request came in.
    lab.kit_vm_ok(&kit, "h2", "w1", &[], &["--host", "h1"]);
    lab.kit_vm_ok(&kit, "h1", "w2", &[], &["--host", "h2"]);
    let hosts: serde_json::Map<String, Value> = lab
        .json("h2", &["host", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["name"].as_str().unwrap().to_string(), h["cpus"].clone()))
        .collect();
    assert_eq!(hosts.len(), 2, "{hosts:?}");
    eprintln!("[{:.1}s] the pool is up", t0.elapsed().as_secs_f64());

    // node inside h2's namespace (nsenter execs it: the pid is node's).
    let mut child = Command::new("nsenter")
        .arg(format!("--net=/var/run/netns/{}", lab.get("LAB_h2_NS")))
        .arg("node")
        .arg(web.join("tests/pool.mjs"))
        .current_dir(&web)
        .env("VINE_URL", format!("{}/", lab.get("LAB_h2_URL")))
        .env("VINE_USER", "admin")
        .env("VINE_PASSWORD", lab.admin_password("h1"))
        .env("VINE_HOSTS", Value::Object(hosts).to_string())
        .env("VINE_VMS", json!({"w1": "h1", "w2": "h2"}).to_string())
        .env("VINE_SCREENSHOTS", &shots)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs (scripts/setup.sh installs nodejs)");
    let mut stdin = child.stdin.take().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let mut browser = Browser(child);

    let mut transcript = String::new();
    let mut steps = Vec::new();
    for line in stdout.lines() {
        let line = line.unwrap();
        println!("{line}");
        transcript.push_str(&line);
        transcript.push('\n');
        let Some(step) = line.strip_prefix("WAIT ") else { continue };
        match step {
            "h1-in-maintenance" => {
                assert_eq!(lab.host_state("h1", "h1"), "maintenance", "after the page's toggle")
            }
            "h1-out-of-maintenance" => {
                assert_eq!(lab.host_state("h1", "h1"), "online", "after the page's toggle")
            }
            "policy-advise" => {
                let s = lab.json("h1", &["policy", "status"]);
                assert_eq!(s["mode"], "advise", "after the page's form: {s}");
                assert!(s["last_round"]["round"].as_u64().is_some_and(|r| r >= 1), "{s}");
            }
            "kill-h1" => lab.kill_daemon("h1"),
            "start-h1" => lab.start_daemon("h1"),
            other => panic!("the browser test waits for a step this test does not know: {other}"),
        }
        steps.push(step.to_string());
        writeln!(stdin, "GO").unwrap();
    }
    let status = browser.0.wait().unwrap();
    let errors = errors.join().unwrap();
    assert!(
        status.success() && transcript.contains("POOL-E2E-OK"),
        "the browser test failed ({status}):\n{transcript}\n{errors}"
    );
    assert_eq!(
        steps,
        ["h1-in-maintenance", "h1-out-of-maintenance", "policy-advise", "kill-h1", "start-h1"],
        "{transcript}"
    );

    // Seen from the CLI: the pool is whole again and h1 is out of maintenance.
    assert_eq!(lab.host_state("h2", "h1"), "online");
    let png = std::fs::read(shots.join("hosts.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 5000, "hosts.png is no screenshot");
    eprintln!("[{:.1}s] done", t0.elapsed().as_secs_f64());
}
