//! What the daemon writes to its log: plain text in a file (no terminal colour codes), and under
//! systemd (stderr is the journal's stream, named by `$JOURNAL_STREAM`) one line per event with
//! the journal's priority prefix and no time stamp of its own.

use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `vine -v daemon` (stdout and stderr to files) until it has announced its HTTPS address,
/// then stops it (its "stopping" line is logged); returns what it logged on stderr.
fn daemon_log(journal: bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("daemon.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let meta = log.metadata().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vine"));
    cmd.args(["-v", "daemon", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--socket")
        .arg(dir.path().join("vine.sock"))
        .args([
            "--cgroup-parent",
            &format!("vine-test-log-{}", std::process::id()),
            "--listen",
            "127.0.0.1:0",
        ])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.path().join("daemon.out")).unwrap())
        .stderr(log);
    if journal {
        cmd.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()));
    } else {
        cmd.env_remove("JOURNAL_STREAM");
    }
    let mut child = Reaped(cmd.spawn().unwrap());
    let child = &mut child.0;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(dir.path().join("daemon.out")).unwrap();
        if text.contains("https://") {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the daemon exited ({status}):\n{text}");
        }
        assert!(Instant::now() < deadline, "no HTTPS address announced in 60 s:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
    // The daemon's own CPU group, empty now (the other test's daemon may still be in it).
    for top in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let _ = std::fs::remove_dir(top.path().join(format!("vine-test-log-{}-daemon", std::process::id())));
    }
    std::fs::read_to_string(&log_path).unwrap()
}

/// The daemon, killed if the test fails before it is stopped.
struct Reaped(std::process::Child);
impl Drop for Reaped {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn a_log_file_has_no_colour_codes() {
    let text = daemon_log(false);
    assert!(!text.contains('\x1b'), "terminal escapes in the log file:\n{text:?}");
    assert!(text.contains("the daemon runs in a CPU group of its own"), "no CPU group:\n{text}");
    let stop =
        text.lines().find(|l| l.contains("stopping")).unwrap_or_else(|| panic!("no stop line:\n{text}"));
    assert!(stop.contains(" INFO "), "an info line with its level: {stop}");
    assert!(stop.starts_with(|c: char| c.is_ascii_digit()), "a file's line starts with its time: {stop}");
}

#[test]
fn under_systemd_each_line_carries_the_journal_priority() {
    let text = daemon_log(true);
    assert!(!text.contains('\x1b'), "terminal escapes in the journal:\n{text:?}");
    let lines: Vec<&str> = text.lines().collect();
    assert!(!lines.is_empty());
    for l in &lines {
        let p = l.strip_prefix('<').and_then(|r| r.split_once('>')).map(|(p, _)| p);
        assert!(matches!(p, Some("3" | "4" | "6" | "7")), "a line without a journal priority: {l:?}\n{text}");
    }
    let stop =
        lines.iter().find(|l| l.contains("stopping")).unwrap_or_else(|| panic!("no stop line:\n{text}"));
    assert!(stop.starts_with("<6>vine::cli::daemon: "), "the stop line is an info line: {stop}");
    // No time stamp of its own (a file's lines begin with one): the journal keeps its own.
    assert!(!stop[3..].starts_with(|c: char| c.is_ascii_digit()), "a time stamp after the priority: {stop}");
}
