//! Helpers for vine's end-to-end tests: running the `vine` binary and the real peer tools
//! (qemu-img, qemu-io, 7zz, nbdinfo, nbdcopy), and a `vine disk serve` process that is killed
//! when dropped.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// The `vine` binary under test.
pub fn vine() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vine"))
}

/// Runs `cmd`; panics with its output unless it succeeds.
pub fn ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `cmd`, expecting failure; returns its output.
pub fn fails(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        !out.status.success(),
        "{cmd:?} unexpectedly succeeded:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    out
}

/// stdout + stderr as text.
pub fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// `qemu-img info --output=json` of a file in format `fmt`.
pub fn qemu_info(path: &Path, fmt: &str) -> serde_json::Value {
    let out = ok(Command::new("qemu-img").args(["info", "--output=json", "-f", fmt]).arg(path));
    serde_json::from_slice(&out.stdout).expect("qemu-img prints JSON")
}

/// `vine disk info --json`.
pub fn vine_info(path: &Path) -> serde_json::Value {
    let out = ok(vine().args(["disk", "info", "--json"]).arg(path));
    serde_json::from_slice(&out.stdout).expect("vine prints JSON")
}

/// Asserts `vine disk check` finds nothing wrong.
pub fn assert_clean(path: &Path) {
    let out = vine().args(["disk", "check", "--json"]).arg(path).output().unwrap();
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(&out)));
    assert!(v["clean"].as_bool().unwrap() && out.status.success(), "{} is not clean: {v:#}", path.display());
}

/// Deterministic pseudo-random generator (xorshift).
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Writes `n` random patterned extents into a raw file with `qemu-io`-style commands and
/// returns those commands, so the same writes can be applied elsewhere.
pub fn pattern_commands(size: u64, seed: u64, n: usize) -> Vec<String> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|_| {
            let len = (1 + rng.below(256)) * 512;
            let len = len.min(size / 512 * 512);
            let off = rng.below((size - len) / 512 + 1) * 512;
            let pat = 1 + rng.below(254);
            if rng.below(6) == 0 {
                format!("write -z {off} {len}")
            } else {
                format!("write -P {pat} {off} {len}")
            }
        })
        .collect()
}

/// `qemu-img compare` of two images; content must be identical (a zero tail past the shorter
/// image is allowed, as qemu-img allows it).
pub fn qemu_compare(
    fmt_a: &str,
    a: impl AsRef<std::ffi::OsStr>,
    fmt_b: &str,
    b: impl AsRef<std::ffi::OsStr>,
) {
    let out = ok(Command::new("qemu-img").args(["compare", "-f", fmt_a, "-F", fmt_b]).arg(a).arg(b));
    assert!(text(&out).contains("Images are identical"), "{}", text(&out));
}

/// Runs `qemu-io` with the commands on an image or URL (read-only when every command reads).
pub fn qemu_io(fmt: &str, target: &str, cmds: &[String]) {
    let mut c = Command::new("qemu-io");
    c.args(["-f", fmt]);
    if cmds.iter().all(|x| x.starts_with("read")) {
        c.arg("-r");
    }
    for x in cmds {
        c.args(["-c", x]);
    }
    c.arg(target);
    let out = ok(&mut c);
    let t = text(&out);
    assert!(!t.contains("Pattern verification failed") && !t.contains("error"), "qemu-io on {target}: {t}");
}

/// A raw file of `size` bytes.
pub fn raw_file(path: &Path, size: u64) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(size).unwrap();
}

/// A running `vine disk serve`, killed on drop.
pub struct Served {
    child: Child,
    pub socket: PathBuf,
    pub export: String,
}

impl Served {
    /// Serves `image` on a socket in `dir` with extra arguments; waits until it listens.
    pub fn start(image: &Path, dir: &Path, extra: &[&str]) -> Served {
        let socket = dir.join(format!("{}.sock", image.file_name().unwrap().to_string_lossy()));
        let export = "disk".to_string();
        let mut child = vine()
            .args(["disk", "serve"])
            .arg(image)
            .arg("--socket")
            .arg(&socket)
            .args(["--export", &export])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn vine disk serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert!(line.starts_with("serving"), "vine disk serve did not start: {line:?}");
        Served { child, socket, export }
    }

    /// The NBD URL of the export.
    pub fn url(&self) -> String {
        format!("nbd+unix:///{}?socket={}", self.export, self.socket.display())
    }

    /// Stops the server with SIGTERM (it flushes) and waits for it.
    pub fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        let pid = self.child.id() as i32;
        // SAFETY: kill(2) on the PID of a child this test spawned and has not reaped yet.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let status = self.child.wait().unwrap();
        assert!(status.success() || status.code().is_none(), "vine disk serve exited with {status}");
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
