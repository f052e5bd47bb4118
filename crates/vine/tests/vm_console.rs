//! A guest that floods its serial console: the daemon's memory stays small, the console log on
//! disk stays within its bound (2 MiB files, four kept), and `vine vm console --log`, the
//! console API and the web console all show the latest output.
//!
//! `VINE_SPEW_MIB` sets how much the guest writes: by default 64 MiB, eight times the log's bound.
//! The 16550 UART QEMU emulates takes under 1 MiB/s under TCG (0.8 MiB/s into a plain file with
//! no vine at all, 0.4 MiB/s through vine's console logger: QEMU writes a byte per message), so
//! the 1 GiB flood, `VINE_SPEW_MIB=1024`, takes some 45 minutes here and is run by hand, not in
//! the suite.

mod vmhost;

use std::time::{Duration, Instant};

use serde_json::Value;
use vmhost::{eventually, VmHost, BOOT};

/// The daemon's resident memory, KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn log_bytes(h: &VmHost, vm: &str) -> u64 {
    let run = h.data.join("vms").join(vm).join("run");
    std::fs::read_dir(&run)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("console.log"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

#[test]
fn a_guest_flooding_its_console_is_bounded_and_the_latest_output_is_shown() {
    let mib: u64 = std::env::var("VINE_SPEW_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(64);
    let h = VmHost::start();
    let vm = "spew";
    let spew = format!("vine.spew={mib}");
    h.create_kit_vm(vm, &[&spew], &[]);
    h.ok(&["vm", "start", vm]);
    h.console(vm).wait_for("VINE-BOOT-OK", BOOT).unwrap();
    let token = h.login("admin", &h.admin_password());
    let daemon = h.daemon_pid();
    let bound = conlog::MAX_FILE * (conlog::KEEP as u64 + 1);
    let (mut max_rss, mut max_log) = (0u64, 0u64);
    // The UART takes 0.4 MiB/s or so through the logger under TCG: allow 0.1 MiB/s, at least 30 min.
    let limit = Duration::from_secs((mib * 10).max(60 * 30));
    let t0 = Instant::now();
    // While the guest writes: readers page through the log (API and CLI), the daemon's memory and
    // the log's size are watched.
    let done = loop {
        let (code, body) = h.https("GET", &format!("/api/vms/{vm}/console"), Some(&token), None);
        assert_eq!(code, 200, "{body}");
        let page: Value = serde_json::from_str(&body).unwrap();
        assert!(
            page["length"].as_u64().unwrap() <= 64 << 10 && page["total"].as_u64().unwrap() <= bound,
            "{}",
            page["total"]
        );
        max_rss = max_rss.max(rss_kib(daemon));
        max_log = max_log.max(log_bytes(&h, vm));
        if page["log"].as_str().unwrap().contains("VINE-SPEW-DONE") {
            break true;
        }
        if t0.elapsed() > limit {
            break false;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let took = t0.elapsed();
    eprintln!(
        "the guest wrote {mib} MiB in {took:?} ({:.1} MiB/s); daemon RSS at most {} KiB; log at most {max_log} bytes",
        mib as f64 / took.as_secs_f64(),
        max_rss
    );
    assert!(done, "the guest did not finish writing {mib} MiB within {limit:?}");
    assert!(max_rss < 100 << 10, "the daemon's resident memory reached {max_rss} KiB");
    assert!(max_log <= bound, "the console log reached {max_log} bytes (bound {bound})");
    let all = h.ok(&["vm", "console", vm, "--log", "--all"]);
    assert!(all.len() as u64 <= bound && all.len() as u64 > bound / 2, "{} bytes kept", all.len());

    // The latest output everywhere: a line typed into the guest shows in the CLI's log and in
    // the web console's first screen.
    eventually("the CLI shows the end of the flood", Duration::from_secs(10), || {
        h.ok(&["vm", "console", vm, "--log"]).contains("VINE-SPEW-DONE")
    });
    let ws = std::process::Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/ws_console.py"))
        .args([&format!("127.0.0.1:{}", h.https_port()), vm, &token, "2"])
        .output()
        .unwrap();
    let first = String::from_utf8_lossy(&ws.stdout);
    assert!(ws.status.success(), "{}", vmhost::text(&ws));
    assert!(
        first.contains("VINE-SPEW-DONE"),
        "the web console's first screen: {}",
        &first[first.len().saturating_sub(300)..]
    );
    assert!(first.len() <= 256 << 10, "the web console sent {} bytes first", first.len());
    h.ok(&["vm", "off", vm]);
    h.ok(&["vm", "delete", vm]);
    assert!(!h.daemon_log().contains("panicked"));
}
