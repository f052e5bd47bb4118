//! Guests that flood their consoles: the daemon's and the console loggers' memory stays small,
//! the console log on disk stays within its bound (2 MiB files, four kept), and `vine vm console
//! --log`, the console API and the web console all show the latest output.
//!
//! Two guests flood at once. One writes 1 GiB to a virtio console (`console = "virtio"`, Linux's
//! hvc0), which hands QEMU a page at a time. The other writes to the serial port's 16550 UART,
//! which QEMU hands on a byte at a time: under 1 MiB/s under TCG (0.8 MiB/s into a plain file
//! with no vine at all, 0.4 MiB/s through vine's console logger), so 1 GiB through the UART would
//! take some 45 minutes here; it writes 32 MiB, four times the log's bound (2 MiB × 4 files). `VINE_SPEW_MIB` and
//! `VINE_SPEW_UART_MIB` change the amounts. QEMU drops what a virtio console writes while the
//! logger is behind, so the guest repeats its closing marker every 5 s after the flood.

mod vmhost;

use std::time::{Duration, Instant};

use serde_json::Value;
use vmhost::{eventually, VmHost, BOOT};

/// A process's resident memory, KiB (None once it has gone).
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn log_bytes(h: &VmHost, vm: &str) -> u64 {
    let run = h.data.join("vms").join(vm).join("run");
    std::fs::read_dir(&run)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("console.log"))
        // A file the logger rotates away between the listing and this look counts as empty.
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// A console logger's pid: the `vine console-log` process whose log is the VM's.
fn logger_pid(h: &VmHost, vm: &str) -> Option<u32> {
    let log = h.data.join("vms").join(vm).join("run").join("console.log");
    let log = log.to_string_lossy();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let args: Vec<String> =
            cmd.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        (args.iter().any(|a| a == "console-log") && args.iter().any(|a| *a == log)).then_some(pid)
    })
}

/// One flooding guest and what was seen of it.
struct Flood {
    vm: &'static str,
    mib: u64,
    /// How long it took to write everything, once seen.
    took: Option<Duration>,
    max_log: u64,
    max_logger_rss: u64,
    logger: Option<u32>,
}

#[test]
fn guests_flooding_their_consoles_are_bounded_and_the_latest_output_is_shown() {
    let env_mib = |var: &str, default: u64| -> u64 {
        std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
    };
    let h = VmHost::start();
    let mut floods = [
        Flood {
            vm: "spewv",
            mib: env_mib("VINE_SPEW_MIB", 1024),
            took: None,
            max_log: 0,
            max_logger_rss: 0,
            logger: None,
        },
        Flood {
            vm: "spewu",
            mib: env_mib("VINE_SPEW_UART_MIB", 32),
            took: None,
            max_log: 0,
            max_logger_rss: 0,
            logger: None,
        },
    ];
    let (virtio, uart) = (format!("vine.spew={}", floods[0].mib), format!("vine.spew={}", floods[1].mib));
    h.create_kit_vm("spewv", &["console=hvc0", &virtio], &["--console", "virtio"]);
    h.create_kit_vm("spewu", &[&uart], &[]);
    assert_eq!(h.show("spewv")["console"], "virtio", "{}", h.show("spewv"));
    for f in &floods {
        h.ok(&["vm", "start", f.vm]);
    }
    for f in &mut floods {
        h.console(f.vm).wait_for("VINE-BOOT-OK", BOOT).unwrap();
        f.logger = logger_pid(&h, f.vm);
        assert!(f.logger.is_some(), "no console logger for {}", f.vm);
    }
    let token = h.login("admin", &h.admin_password());
    let daemon = h.daemon_pid();
    let bound = conlog::MAX_FILE * (conlog::KEEP as u64 + 1);
    let mut max_rss = 0u64;
    // The UART takes 0.4 MiB/s or so through the logger under TCG: allow 0.1 MiB/s (at least
    // 30 min); the virtio console, at least 1 MiB/s.
    let limit = |f: &Flood| {
        if f.vm == "spewu" {
            Duration::from_secs((f.mib * 10).max(60 * 30))
        } else {
            Duration::from_secs(f.mib.max(60 * 5))
        }
    };
    let t0 = Instant::now();
    // While the guests write: readers page through the logs (API), the daemon's and the loggers'
    // memory and the logs' sizes are watched.
    while floods.iter().any(|f| f.took.is_none()) {
        for f in floods.iter_mut().filter(|f| f.took.is_none()) {
            let (code, body) = h.https("GET", &format!("/api/vms/{}/console", f.vm), Some(&token), None);
            assert_eq!(code, 200, "{body}");
            let page: Value = serde_json::from_str(&body).unwrap();
            assert!(
                page["length"].as_u64().unwrap() <= 64 << 10 && page["total"].as_u64().unwrap() <= bound,
                "{}: {}",
                f.vm,
                page["total"]
            );
            f.max_log = f.max_log.max(log_bytes(&h, f.vm));
            if let Some(kib) = f.logger.and_then(rss_kib) {
                f.max_logger_rss = f.max_logger_rss.max(kib);
            }
            if page["log"].as_str().unwrap().contains("VINE-SPEW-DONE") {
                f.took = Some(t0.elapsed());
            }
            assert!(
                t0.elapsed() < limit(f),
                "{} did not finish writing {} MiB within {:?}",
                f.vm,
                f.mib,
                limit(f)
            );
        }
        max_rss = max_rss.max(rss_kib(daemon).expect("the daemon is gone"));
        std::thread::sleep(Duration::from_millis(500));
    }
    for f in &floods {
        let took = f.took.unwrap();
        eprintln!(
            "{} wrote {} MiB in {took:?} ({:.1} MiB/s); its console logger's RSS at most {} KiB; its log at most {} bytes",
            f.vm,
            f.mib,
            f.mib as f64 / took.as_secs_f64(),
            f.max_logger_rss,
            f.max_log
        );
    }
    eprintln!("the daemon's RSS at most {max_rss} KiB");
    assert!(max_rss < 100 << 10, "the daemon's resident memory reached {max_rss} KiB");
    for f in &floods {
        assert!(f.max_logger_rss < 100 << 10, "{}'s console logger reached {} KiB", f.vm, f.max_logger_rss);
        assert!(f.max_log <= bound, "{}'s console log reached {} bytes (bound {bound})", f.vm, f.max_log);
        let all = h.ok(&["vm", "console", f.vm, "--log", "--all"]);
        assert!(
            all.len() as u64 <= bound && all.len() as u64 > bound / 2,
            "{}: {} bytes kept",
            f.vm,
            all.len()
        );

        // The latest output everywhere: the end of the flood shows in the CLI's log and in the
        // web console's first screen.
        eventually("the CLI shows the end of the flood", Duration::from_secs(10), || {
            h.ok(&["vm", "console", f.vm, "--log"]).contains("VINE-SPEW-DONE")
        });
        let ws = std::process::Command::new("python3")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/ws_console.py"))
            .args([&format!("127.0.0.1:{}", h.https_port()), f.vm, &token, "2"])
            .output()
            .unwrap();
        let first = String::from_utf8_lossy(&ws.stdout);
        assert!(ws.status.success(), "{}", vmhost::text(&ws));
        assert!(
            first.contains("VINE-SPEW-DONE"),
            "{}: the web console's first screen: {}",
            f.vm,
            &first[first.len().saturating_sub(300)..]
        );
        // The log's last 256 KiB, and the markers the guest printed while the script listened.
        assert!(
            first.len() <= (256 << 10) + 1024,
            "{}: the web console sent {} bytes first",
            f.vm,
            first.len()
        );
    }
    for f in &floods {
        h.ok(&["vm", "off", f.vm]);
        h.ok(&["vm", "delete", f.vm]);
    }
    assert!(!h.daemon_log().contains("panicked"));
}
