//! Issue 2, must-show 4: `vine disk serve` speaks fixed-newstyle NBD to real clients. `nbdinfo`
//! and `qemu-img` see the export (OPT_LIST, OPT_INFO, OPT_GO), `qemu-io` drives READ, WRITE (with
//! FUA), FLUSH, TRIM and WRITE_ZEROES, `nbdcopy` copies both ways over several connections, and
//! a QEMU guest boots from the export and writes to it. Dynamic, fixed and differencing images
//! are served; two writers to one image are refused unless the export is `--shared`.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;

const MIB: u64 = 1 << 20;
/// How long a client may take to answer one command before the test gives up on it.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the guest may take to boot and report (TCG on a busy two-core machine).
const GUEST_TIMEOUT: Duration = Duration::from_secs(60);

fn create(path: &Path, args: &[&str]) -> u64 {
    ok(vine().args(["disk", "create"]).arg(path).args(args));
    vine_info(path)["virtual_size"].as_u64().expect("virtual_size is a number")
}

/// The guest-visible bytes of an image (chain flattened by vine).
fn flat(image: &Path) -> Vec<u8> {
    let out = image.with_extension("flat.raw");
    let _ = fs::remove_file(&out);
    ok(vine().args(["disk", "convert"]).arg(image).arg(&out).args(["--to", "raw"]));
    let bytes = fs::read(&out).unwrap();
    fs::remove_file(&out).unwrap();
    bytes
}

fn random_bytes(len: u64, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed);
    let mut v: Vec<u8> = (0..len.div_ceil(8)).flat_map(|_| rng.next().to_le_bytes()).collect();
    v.truncate(len as usize);
    v
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(out)))
}

/// The URL that names the server rather than one export (for `nbdinfo --list`).
fn server_url(served: &Served) -> String {
    format!("nbd+unix://?socket={}", served.socket.display())
}

/// A child process that is killed (by its PID) when dropped, so a failing test leaves nothing.
struct Guard(Child);

impl Guard {
    /// Waits for the process to exit on its own.
    fn wait(&mut self, timeout: Duration, what: &str) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "{what} still running after {timeout:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Asks the process to stop with SIGTERM and waits for it.
    fn terminate(&mut self, what: &str) -> ExitStatus {
        // SAFETY: kill(2) on the PID of a child this test spawned and has not reaped yet.
        unsafe {
            libc::kill(self.0.id() as i32, libc::SIGTERM);
        }
        self.wait(CLIENT_TIMEOUT, what)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Runs `cmd` to its end (killing it after `CLIENT_TIMEOUT`); returns its output.
fn run_bounded(cmd: &mut Command) -> Output {
    let child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut guard = Guard(child);
    let (stdout, stderr) = (guard.0.stdout.take().unwrap(), guard.0.stderr.take().unwrap());
    let (out, err) = (drain(stdout), drain(stderr));
    let status = guard.wait(CLIENT_TIMEOUT, &format!("{cmd:?}"));
    Output { status, stdout: out.join().unwrap(), stderr: err.join().unwrap() }
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = pipe.read_to_end(&mut v);
        v
    })
}

/// `qemu-io` over NBD with its requests traced (`nbd_send_request`); returns stdout + stderr.
fn qemu_io_traced(url: &str, cmds: &[&str]) -> String {
    let mut c = Command::new("qemu-io");
    c.args(["--trace", "nbd_send_request", "--cache=writeback", "-f", "raw"]);
    for x in cmds {
        c.args(["-c", x]);
    }
    let t = text(&ok(c.arg(url)));
    assert!(!t.contains("failed"), "qemu-io on {url}: {t}");
    t
}

/// An interactive `qemu-io` that holds one NBD connection open until it quits or is dropped.
struct QemuIoSession {
    process: Guard,
    stdin: ChildStdin,
    output: mpsc::Receiver<String>,
    seen: String,
}

impl QemuIoSession {
    /// Connects; returns once the connection is in transmission.
    fn open(url: &str) -> Self {
        let mut child = Command::new("qemu-io")
            .args(["--cache=writeback", "-f", "raw", url])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn qemu-io");
        let (tx, output) = mpsc::channel();
        let pipes: [Box<dyn Read + Send>; 2] =
            [Box::new(child.stdout.take().unwrap()), Box::new(child.stderr.take().unwrap())];
        for mut pipe in pipes {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = pipe.read(&mut buf) {
                    if tx.send(String::from_utf8_lossy(&buf[..n]).into_owned()).is_err() {
                        break;
                    }
                }
            });
        }
        let stdin = child.stdin.take().unwrap();
        let mut session = QemuIoSession { process: Guard(child), stdin, output, seen: String::new() };
        // The first prompt comes once the image is open, i.e. the connection is in transmission.
        let opening = session.until_prompt("opening");
        assert!(opening.is_empty(), "qemu-io while opening {url}: {opening}");
        session
    }

    /// Sends one command and checks that its output contains `want`. qemu-io reads stdin with
    /// buffered `fgets`, so one command is sent only after the previous one's prompt came back.
    fn run(&mut self, cmd: &str, want: &str) -> String {
        writeln!(self.stdin, "{cmd}").and_then(|()| self.stdin.flush()).expect("qemu-io takes commands");
        let out = self.until_prompt(cmd);
        assert!(
            out.contains(want) && !out.contains("failed"),
            "qemu-io: {cmd:?} printed {out:?}, expected {want:?}"
        );
        out
    }

    /// Everything printed before the next `qemu-io> ` prompt.
    fn until_prompt(&mut self, what: &str) -> String {
        const PROMPT: &str = "qemu-io> ";
        let deadline = Instant::now() + CLIENT_TIMEOUT;
        loop {
            if let Some(at) = self.seen.find(PROMPT) {
                let out: String = self.seen.drain(..at + PROMPT.len()).collect();
                return out[..at].to_owned();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(chunk) => self.seen.push_str(&chunk),
                Err(_) => panic!("qemu-io gave no prompt after {what}; it printed {:?}", self.seen),
            }
        }
    }

    fn quit(mut self) {
        writeln!(self.stdin, "quit").expect("qemu-io takes commands");
        let status = self.process.wait(CLIENT_TIMEOUT, "qemu-io after quit");
        assert!(status.success(), "qemu-io exited with {status}: {}", self.seen);
    }
}

// --- 1. Negotiation: OPT_LIST, OPT_INFO, OPT_GO ---------------------------------------------------

#[test]
fn nbdinfo_and_qemu_img_see_the_export_name_and_vhd_size_of_dynamic_fixed_and_differencing_images() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.vhd");
    let fixed = dir.path().join("fixed.vhd");
    let child = dir.path().join("child.vhd");
    create(&base, &["--size", "10M", "--type", "dynamic"]);
    create(&fixed, &["--size", "3M", "--type", "fixed"]);
    create(&child, &["--parent", base.to_str().unwrap()]);
    for image in [&base, &fixed, &child] {
        let size = vine_info(image)["virtual_size"].as_u64().unwrap();
        let served = Served::start(image, dir.path(), &[]);

        let info = json(&ok(Command::new("nbdinfo").arg("--json").arg(served.url())));
        assert_eq!(info["protocol"], "newstyle-fixed", "{info:#}");
        let export = &info["exports"][0];
        assert_eq!(export["export-name"], "disk");
        assert_eq!(export["export-size"].as_u64(), Some(size), "{}: {export:#}", image.display());
        assert!(export["description"].as_str().unwrap().contains(&image.display().to_string()), "{export:#}");
        for flag in ["can_flush", "can_fua", "can_trim", "can_zero"] {
            assert_eq!(export[flag], true, "{flag} on a writable export: {export:#}");
        }
        assert_eq!(export["is_read_only"], false);
        assert_eq!(export["can_multi_conn"], false, "an unshared writable export must not claim multi-conn");
        served.stop();

        // Several clients one after the other: served `--shared`, because an unshared export
        // gives its writer slot back only once the server has seen the previous client leave,
        // which may be after the client process has exited.
        let served = Served::start(image, dir.path(), &["--shared"]);
        let list = json(&ok(Command::new("nbdinfo").args(["--list", "--json"]).arg(server_url(&served))));
        let names: Vec<&str> =
            list["exports"].as_array().unwrap().iter().map(|e| e["export-name"].as_str().unwrap()).collect();
        assert_eq!(names, ["disk"], "{list:#}");

        let qemu = json(&ok(Command::new("qemu-img").args(["info", "--output=json"]).arg(served.url())));
        assert_eq!(qemu["virtual-size"].as_u64(), Some(size), "{qemu:#}");

        let unknown = served.url().replace("///disk?", "///nope?");
        let t = text(&fails(Command::new("qemu-io").args(["-f", "raw", "-r", "-c", "read 0 512", &unknown])));
        assert!(t.contains("no export named \"nope\""), "{t}");
        served.stop();
    }
}

#[test]
fn read_only_and_shared_exports_advertise_multi_conn_and_read_only_refuses_writers() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("d.vhd");
    create(&image, &["--size", "4M"]);

    let served = Served::start(&image, dir.path(), &["--read-only"]);
    let export = json(&ok(Command::new("nbdinfo").arg("--json").arg(served.url())))["exports"][0].clone();
    assert_eq!(export["is_read_only"], true, "{export:#}");
    assert_eq!(export["can_multi_conn"], true, "{export:#}");
    for flag in ["can_fua", "can_trim", "can_zero"] {
        assert_eq!(export[flag], false, "{flag} on a read-only export: {export:#}");
    }
    let t = text(&fails(Command::new("qemu-io").args(["-f", "raw", "-c", "write 0 512"]).arg(served.url())));
    assert!(t.contains("Permission denied"), "{t}");
    qemu_io("raw", &served.url(), &["read -P 0 0 4M".into()]);
    served.stop();

    let served = Served::start(&image, dir.path(), &["--shared"]);
    let export = json(&ok(Command::new("nbdinfo").arg("--json").arg(served.url())))["exports"][0].clone();
    assert_eq!(
        (export["is_read_only"].clone(), export["can_multi_conn"].clone()),
        (false.into(), true.into())
    );
    served.stop();
    assert_eq!(vine_info(&image)["allocated_bytes"], 0, "nothing was written");
}

// --- 2. Transmission: every command, then the file itself --------------------------------------

/// What one `qemu-io` command does to the disk, so the expected bytes can be computed.
enum Effect {
    Fill(u8),
    Zero,
    /// Trim: the range may keep its data or read as zeros.
    Discard,
    None,
}

/// The command list of the transmission test: offsets cross a 2 MiB block boundary, zeroes are
/// sector-aligned and not, a FUA write and explicit flushes.
fn transmission_commands() -> Vec<(String, u64, u64, Effect)> {
    let cmd = |c: &str, off: u64, len: u64, e: Effect| (format!("{c} {off} {len}"), off, len, e);
    vec![
        cmd("write -P 0xa1", 0, MIB, Effect::Fill(0xa1)),
        cmd("write -f -P 0xa2", MIB, 64 << 10, Effect::Fill(0xa2)),
        ("flush".into(), 0, 0, Effect::None),
        cmd("write -P 0xa3", 3 * MIB, 2 * MIB, Effect::Fill(0xa3)),
        cmd("discard", 3 * MIB, 2 * MIB, Effect::Discard),
        cmd("write -P 0xa4", 2 * MIB - 4096, 8192, Effect::Fill(0xa4)),
        cmd("write -P 0xa5", 6 * MIB, MIB, Effect::Fill(0xa5)),
        cmd("write -z", 6 * MIB, MIB / 2, Effect::Zero),
        cmd("write -z", 7_000_000, 3000, Effect::Zero),
        cmd("write -P 0xa6", 8 * MIB, 4 * MIB, Effect::Fill(0xa6)),
        cmd("write -z -u", 8 * MIB, 4 * MIB, Effect::Zero),
        cmd("write -P 0xa7", 12 * MIB + 512, 512, Effect::Fill(0xa7)),
        ("flush".into(), 0, 0, Effect::None),
    ]
}

/// Checks `got` against the commands applied to `before`; discarded sectors may hold either.
fn assert_effects(got: &[u8], before: &[u8], what: &str) {
    let mut want = before.to_vec();
    let mut discarded = Vec::new();
    for (_, off, len, effect) in transmission_commands() {
        let range = off as usize..(off + len) as usize;
        match effect {
            Effect::Fill(p) => want[range].fill(p),
            Effect::Zero => want[range].fill(0),
            Effect::Discard => discarded.push(range),
            Effect::None => {}
        }
    }
    assert_eq!(got.len(), want.len(), "{what}: size");
    for (sector, (g, w)) in got.chunks(512).zip(want.chunks(512)).enumerate() {
        let at = sector * 512;
        let trimmed = discarded.iter().any(|r| r.contains(&at));
        let ok = g == w || (trimmed && g.iter().all(|&b| b == 0));
        assert!(
            ok,
            "{what}: sector {sector} (offset {at}) holds {:02x?}.., expected {:02x?}..",
            &g[..8],
            &w[..8]
        );
    }
}

#[test]
fn qemu_io_write_fua_flush_trim_and_write_zeroes_reach_dynamic_fixed_and_differencing_files() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.vhd");
    let size = create(&base, &["--size", "16M", "--block-size", "2M"]);
    let fixed = dir.path().join("fixed.vhd");
    create(&fixed, &["--size", "16M", "--type", "fixed"]);
    // The child's base holds data everywhere, so zeroes and trims must hide it.
    let served = Served::start(&base, dir.path(), &[]);
    qemu_io("raw", &served.url(), &[format!("write -P 0x5b 0 {size}")]);
    served.stop();
    let base_file = fs::read(&base).unwrap();
    let child = dir.path().join("child.vhd");
    create(&child, &["--parent", base.to_str().unwrap()]);

    let cmds = transmission_commands();
    let cmd_text: Vec<&str> = cmds.iter().map(|c| c.0.as_str()).collect();
    for (image, initial) in [(&fixed, 0u8), (&child, 0x5b)] {
        let served = Served::start(image, dir.path(), &[]);
        let trace = qemu_io_traced(&served.url(), &cmd_text);
        served.stop();
        // The requests really went over the wire with the expected types and flags.
        let requests: [&[&str]; 6] = [
            &[".len = 65536,", ".flags = 0x1, .type = 1 (write)"], // FUA
            &[".len = 1048576,", ".flags = 0x0, .type = 1 (write)"],
            &[".type = 3 (flush)"],
            &[".from = 3145728, .len = 2097152,", ".type = 4 (trim)"],
            &[".from = 7000000, .len = 3000,", ".flags = 0x2, .type = 6 (write zeroes)"], // NO_HOLE
            &[".len = 4194304,", ".flags = 0x0, .type = 6 (write zeroes)"],               // may punch
        ];
        for parts in requests {
            let sent = trace.lines().any(|l| parts.iter().all(|p| l.contains(p)));
            assert!(sent, "{}: no request {parts:?} in\n{trace}", image.display());
        }
        let before = vec![initial; size as usize];
        assert_effects(&flat(image), &before, &image.display().to_string());
        assert_clean(image);
    }
    assert!(fs::read(&base).unwrap() == base_file, "writes through the child changed the base file");

    // The dynamic image is also read back by QEMU's own VHD driver.
    let dynamic = dir.path().join("dynamic.vhd");
    create(&dynamic, &["--size", "16M"]);
    let served = Served::start(&dynamic, dir.path(), &[]);
    qemu_io_traced(&served.url(), &cmd_text);
    served.stop();
    assert_effects(&flat(&dynamic), &vec![0; size as usize], "dynamic");
    let reads: Vec<String> = [
        (0xa1, 0, MIB),
        (0xa2, MIB, 64 << 10),
        (0xa4, 2 * MIB - 4096, 8192),
        (0, 6 * MIB, MIB / 2),
        (0xa5, 6 * MIB + MIB / 2, 7_000_000 - (6 * MIB + MIB / 2)),
        (0, 7_000_000, 3000),
        (0xa5, 7_003_000, 7 * MIB - 7_003_000),
        (0, 8 * MIB, 4 * MIB),
        (0xa7, 12 * MIB + 512, 512),
    ]
    .iter()
    .map(|(p, off, len)| format!("read -P {p:#x} {off} {len}"))
    .collect();
    qemu_io("vpc", dynamic.to_str().unwrap(), &reads);
    assert_clean(&dynamic);
}

// --- 3. nbdcopy over several connections -------------------------------------------------------

/// `nbdcopy` with four connections requested; returns how many it actually used.
fn nbdcopy(src: &str, dst: &str) -> usize {
    let out = ok(Command::new("nbdcopy").args(["--connections=4", "--threads=4", "--verbose", src, dst]));
    let t = String::from_utf8_lossy(&out.stderr);
    let line = t.lines().find(|l| l.starts_with("nbdcopy: connections=")).unwrap_or_else(|| panic!("{t}"));
    let n: usize = line["nbdcopy: connections=".len()..].split(' ').next().unwrap().parse().unwrap();
    let opened = t.lines().filter(|l| l.contains(": nbd_connect_uri: enter:")).count();
    assert_eq!(opened, n, "nbdcopy says {line:?} but opened {opened}");
    n
}

#[test]
fn nbdcopy_copies_into_and_out_of_a_shared_dynamic_vhd_over_four_connections() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("d.vhd");
    let size = create(&image, &["--size", "24M", "--block-size", "512K"]);
    let src = dir.path().join("src.raw");
    let data = random_bytes(size, 41);
    fs::write(&src, &data).unwrap();

    let served = Served::start(&image, dir.path(), &["--shared"]);
    assert_eq!(nbdcopy(src.to_str().unwrap(), &served.url()), 4);
    let back = dir.path().join("back.raw");
    assert_eq!(nbdcopy(&served.url(), back.to_str().unwrap()), 4);
    served.stop();
    assert!(fs::read(&back).unwrap() == data, "nbdcopy read back different bytes");
    qemu_compare("vpc", &image, "raw", &src);
    assert_clean(&image);

    // Without --shared the server does not offer multi-conn and nbdcopy falls back to one.
    let served = Served::start(&image, dir.path(), &[]);
    let again = dir.path().join("again.raw");
    assert_eq!(nbdcopy(&served.url(), again.to_str().unwrap()), 1);
    served.stop();
    assert!(fs::read(&again).unwrap() == data, "single-connection copy differs");
}

#[test]
fn nbdcopy_into_a_differencing_child_shows_the_new_bytes_and_leaves_the_base_alone() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.vhd");
    let size = create(&base, &["--size", "16M", "--block-size", "2M"]);
    let first = dir.path().join("first.raw");
    let first_data = random_bytes(size, 7);
    fs::write(&first, &first_data).unwrap();
    let served = Served::start(&base, dir.path(), &["--shared"]);
    assert_eq!(nbdcopy(first.to_str().unwrap(), &served.url()), 4);
    served.stop();
    let base_file = fs::read(&base).unwrap();

    let child = dir.path().join("child.vhd");
    create(&child, &["--parent", base.to_str().unwrap()]);
    // A sparse source: data in a few extents (one straddling a block edge), holes elsewhere,
    // which the child must show as zeros over the base's data.
    let second = dir.path().join("second.raw");
    let mut second_data = vec![0u8; size as usize];
    let file = fs::File::create(&second).unwrap();
    file.set_len(size).unwrap();
    for (i, (off, len)) in
        [(0, MIB), (5 * MIB, 4096), (6 * MIB - 1536, 3 * MIB), (size - 512, 512)].into_iter().enumerate()
    {
        let chunk = random_bytes(len, 100 + i as u64);
        std::os::unix::fs::FileExt::write_all_at(&file, &chunk, off).unwrap();
        second_data[off as usize..(off + len) as usize].copy_from_slice(&chunk);
    }
    drop(file);

    let served = Served::start(&child, dir.path(), &["--shared"]);
    assert_eq!(nbdcopy(second.to_str().unwrap(), &served.url()), 4);
    let back = dir.path().join("back.raw");
    nbdcopy(&served.url(), back.to_str().unwrap());
    served.stop();
    assert!(fs::read(&back).unwrap() == second_data, "the child does not read back what was copied in");
    assert!(flat(&child) == second_data, "vine reads the child differently");
    assert!(fs::read(&base).unwrap() == base_file, "copying into the child changed the base file");
    assert!(flat(&base) == first_data, "the base no longer holds the first copy");
    assert_clean(&child);
    assert_clean(&base);
}

// --- 4. Writers ---------------------------------------------------------------------------------

#[test]
fn second_vine_serve_of_an_image_or_its_child_is_refused_by_the_file_lock() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.vhd");
    create(&base, &["--size", "4M"]);
    let served = Served::start(&base, dir.path(), &[]);
    qemu_io("raw", &served.url(), &["write -P 0x31 0 4096".into()]);
    served.stop();
    // From here on the base is only read, so the child's chain stays valid.
    let child = dir.path().join("child.vhd");
    create(&child, &["--parent", base.to_str().unwrap()]);
    let second = |image: &Path, extra: &[&str]| {
        let socket = dir.path().join("second.sock");
        let out =
            run_bounded(vine().args(["disk", "serve"]).arg(image).arg("--socket").arg(&socket).args(extra));
        assert!(!out.status.success(), "a second server of {} started: {}", image.display(), text(&out));
        assert!(!socket.exists(), "the refused server left a socket behind");
        text(&out)
    };

    let served = Served::start(&base, dir.path(), &[]);
    let lock_message = format!("{} is in use by another writer (lock held)", base.display());
    for (image, extra) in [(&base, &[][..]), (&base, &["--read-only"][..]), (&child, &[][..])] {
        let t = second(image, extra);
        assert!(
            t.contains(&lock_message),
            "serving {} {extra:?} while the base is served: {t}",
            image.display()
        );
    }
    // The first server is unaffected.
    qemu_io("raw", &served.url(), &["read -P 0x31 0 4096".into()]);
    served.stop();

    // A served child holds its base: no writer may open the base, readers may.
    let served = Served::start(&child, dir.path(), &[]);
    let t = second(&base, &[]);
    assert!(
        t.contains(&format!("{} is open for reading by another process (lock held)", base.display())),
        "serving the base read-write under a served child: {t}"
    );
    let reader = Served::start(&base, dir.path(), &["--read-only"]);
    qemu_io("raw", &reader.url(), &["read -P 0x31 0 4096".into()]);
    qemu_io("raw", &served.url(), &["read -P 0x31 0 4096".into(), "write -P 0x32 0 512".into()]);
    reader.stop();
    served.stop();
    assert_clean(&child);
    assert_clean(&base);
}

#[test]
fn qemu_and_vine_never_write_one_image_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("d.vhd");
    create(&img, &["--size", "4M"]);
    // vine serves it: QEMU's own vpc driver may neither write nor (without -U) read it.
    let served = Served::start(&img, dir.path(), &[]);
    let out = fails(Command::new("qemu-io").args(["-f", "vpc", "-c", "write -P 7 0 512"]).arg(&img));
    assert!(text(&out).contains("Failed to get") && text(&out).contains("lock"), "{}", text(&out));
    served.stop();
    // QEMU holds it for writing (qemu-nbd): vine refuses to serve or change it.
    let sock = dir.path().join("q.sock");
    let mut qemu = Command::new("qemu-nbd")
        .args(["-f", "vpc", "--persistent", "--socket"])
        .arg(&sock)
        .arg(&img)
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if sock.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let t =
        text(&fails(vine().args(["disk", "serve"]).arg(&img).arg("--socket").arg(dir.path().join("v.sock"))));
    assert!(t.contains("in use by another writer"), "{t}");
    let t = text(&fails(vine().args(["disk", "resize"]).arg(&img).args(["--size", "8M"])));
    assert!(t.contains("in use by another writer"), "{t}");
    let _ = qemu.kill();
    let _ = qemu.wait();
    ok(vine().args(["disk", "resize"]).arg(&img).args(["--size", "8M"]));
}

#[test]
fn second_connection_to_an_unshared_export_is_refused_while_the_first_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("d.vhd");
    create(&image, &["--size", "8M"]);
    let served = Served::start(&image, dir.path(), &[]);
    let url = served.url();

    let mut first = QemuIoSession::open(&url);
    first.run("write -P 0x11 0 65536", "wrote 65536/65536 bytes at offset 0");
    for args in [&["-c", "write -P 0x22 0 512"][..], &["-r", "-c", "read 0 512"][..]] {
        let t = text(&fails(Command::new("qemu-io").args(["-f", "raw"]).args(args).arg(&url)));
        assert!(
            t.contains("server reported: export 'disk' already has a writer; serve it with --shared"),
            "second client {args:?}: {t}"
        );
    }
    first.run("read -P 0x11 0 65536", "read 65536/65536 bytes at offset 0");
    first.quit();

    // The slot is free again once the server has seen the first client leave, which may be
    // a moment after qemu-io has exited.
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    let mut cmd = Command::new("qemu-io");
    cmd.args(["-f", "raw", "-c", "read -P 0x11 0 65536", "-c", "write -P 0x33 65536 512", &url]);
    loop {
        let out = cmd.output().unwrap();
        let t = text(&out);
        if out.status.success() {
            assert!(!t.contains("failed"), "{t}");
            break;
        }
        assert!(t.contains("already has a writer") && Instant::now() < deadline, "third client: {t}");
        std::thread::sleep(Duration::from_millis(20));
    }
    served.stop();
    qemu_io(
        "vpc",
        image.to_str().unwrap(),
        &["read -P 0x11 0 65536".into(), "read -P 0x33 65536 512".into()],
    );
    assert_clean(&image);
}

#[test]
fn shared_export_takes_concurrent_qemu_io_writers_and_keeps_all_their_data() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("d.vhd");
    create(&image, &["--size", "8M", "--block-size", "512K"]);
    let served = Served::start(&image, dir.path(), &["--shared"]);
    let url = served.url();

    let mut first = QemuIoSession::open(&url);
    first.run("write -P 0x21 0 1048576", "wrote 1048576/1048576 bytes at offset 0");
    let mut second = QemuIoSession::open(&url);
    second.run("write -P 0x22 1048576 1048576", "wrote 1048576/1048576 bytes at offset 1048576");
    // Interleaved while both are connected, each sees what the other wrote after a flush.
    first.run("write -P 0x23 2097152 1048576", "wrote 1048576/1048576 bytes at offset 2097152");
    second.run("flush", "");
    first.run("flush", "");
    first.run("read -P 0x22 1048576 1048576", "read 1048576/1048576 bytes at offset 1048576");
    second.run("read -P 0x23 2097152 1048576", "read 1048576/1048576 bytes at offset 2097152");
    // A third, one-shot writer while both are still open.
    qemu_io("raw", &url, &["write -P 0x24 3145728 512".into()]);
    first.quit();
    second.quit();
    served.stop();

    let got = flat(&image);
    let mut want = vec![0u8; got.len()];
    for (p, off, len) in [(0x21, 0, MIB), (0x22, MIB, MIB), (0x23, 2 * MIB, MIB), (0x24, 3 * MIB, 512)] {
        want[off as usize..(off + len) as usize].fill(p);
    }
    assert!(got == want, "the image does not hold all three writers' data");
    qemu_io("vpc", image.to_str().unwrap(), &["read -P 0x22 1048576 1048576".into()]);
    assert_clean(&image);
}

// --- 5. A QEMU guest drive ----------------------------------------------------------------------

/// Offsets of the boot sector's strings (the code below refers to them as 0x7c00 + offset).
const MSG_BOOTED: usize = 0x71;
const MSG_READ_FAIL: usize = 0x85;
const MSG_WRITE_OK: usize = 0x9c;
const MSG_WRITE_FAIL: usize = 0xb2;
const TAG: usize = 0xca;

/// A real-mode boot sector, hand-assembled (BIOS loads it at 0000:7C00, boot drive in DL). It
/// prints to COM1, reads LBA 2 with INT 13h AH=02h and prints it, fills a sector with `TAG`
/// and writes it to LBA 1 with INT 13h AH=03h, prints whether that worked, and halts.
#[rustfmt::skip]
const BOOT_CODE: [u8; MSG_BOOTED] = [
    0xfa,                   // 00 cli
    0x31, 0xc0,             // 01 xor ax, ax
    0x8e, 0xd8,             // 03 mov ds, ax
    0x8e, 0xc0,             // 05 mov es, ax
    0x8e, 0xd0,             // 07 mov ss, ax
    0xbc, 0x00, 0x7c,       // 09 mov sp, 0x7c00
    0xfb,                   // 0c sti
    0xfc,                   // 0d cld
    0x88, 0x16, 0x00, 0x05, // 0e mov [0x0500], dl      ; keep the boot drive (print clobbers dx)
    0xbe, 0x71, 0x7c,       // 12 mov si, MSG_BOOTED
    0xe8, 0x4d, 0x00,       // 15 call print (0x65)
    0xb8, 0x01, 0x02,       // 18 mov ax, 0x0201        ; AH=02h read, AL=1 sector
    0xb9, 0x03, 0x00,       // 1b mov cx, 0x0003        ; cylinder 0, sector 3 (= LBA 2)
    0xb6, 0x00,             // 1e mov dh, 0             ; head 0
    0x8a, 0x16, 0x00, 0x05, // 20 mov dl, [0x0500]
    0xbb, 0x00, 0x08,       // 24 mov bx, 0x0800        ; into 0000:0800
    0xcd, 0x13,             // 27 int 0x13
    0xbe, 0x85, 0x7c,       // 29 mov si, MSG_READ_FAIL ; (mov leaves CF alone)
    0x72, 0x03,             // 2c jc 0x31
    0xbe, 0x00, 0x08,       // 2e mov si, 0x0800        ; print what LBA 2 holds
    0xe8, 0x31, 0x00,       // 31 call print (0x65)
    0xbf, 0x00, 0x06,       // 34 mov di, 0x0600        ; fill 0000:0600 with 32 x TAG
    0xbb, 0x20, 0x00,       // 37 mov bx, 32
    0xbe, 0xca, 0x7c,       // 3a mov si, TAG
    0xb9, 0x10, 0x00,       // 3d mov cx, 16
    0xf3, 0xa4,             // 40 rep movsb
    0x4b,                   // 42 dec bx
    0x75, 0xf5,             // 43 jnz 0x3a
    0xb8, 0x01, 0x03,       // 45 mov ax, 0x0301        ; AH=03h write, AL=1 sector
    0xb9, 0x02, 0x00,       // 48 mov cx, 0x0002        ; cylinder 0, sector 2 (= LBA 1)
    0xb6, 0x00,             // 4b mov dh, 0             ; head 0
    0x8a, 0x16, 0x00, 0x05, // 4d mov dl, [0x0500]
    0xbb, 0x00, 0x06,       // 51 mov bx, 0x0600        ; from 0000:0600
    0xcd, 0x13,             // 54 int 0x13
    0xbe, 0x9c, 0x7c,       // 56 mov si, MSG_WRITE_OK
    0x73, 0x03,             // 59 jnc 0x5e
    0xbe, 0xb2, 0x7c,       // 5b mov si, MSG_WRITE_FAIL
    0xe8, 0x04, 0x00,       // 5e call print (0x65)
    0xfa,                   // 61 cli
    0xf4,                   // 62 hlt
    0xeb, 0xfc,             // 63 jmp 0x61
    0xba, 0xf8, 0x03,       // 65 print: mov dx, 0x3f8 ; COM1 transmit register
    0xac,                   // 68 lodsb
    0x84, 0xc0,             // 69 test al, al
    0x74, 0x03,             // 6b jz 0x70
    0xee,                   // 6d out dx, al
    0xeb, 0xf8,             // 6e jmp 0x68
    0xc3,                   // 70 ret
];

/// What the guest writes to LBA 1, sixteen bytes repeated over the sector.
const GUEST_TAG: &[u8; 16] = b"VINE-GUEST-WROTE";
/// What the test puts at LBA 2 for the guest to read and print.
const LBA2_TEXT: &[u8] = b"VINE-GUEST-READ-OK\r\n";

fn boot_sector() -> Vec<u8> {
    let mut s = BOOT_CODE.to_vec();
    let strings: [(usize, &[u8]); 5] = [
        (MSG_BOOTED, b"VINE-GUEST-BOOTED\r\n\0"),
        (MSG_READ_FAIL, b"VINE-GUEST-READ-FAIL\r\n\0"),
        (MSG_WRITE_OK, b"VINE-GUEST-WRITE-OK\r\n\0"),
        (MSG_WRITE_FAIL, b"VINE-GUEST-WRITE-FAIL\r\n\0"),
        (TAG, GUEST_TAG),
    ];
    for (at, bytes) in strings {
        assert_eq!(s.len(), at, "string offsets in BOOT_CODE are out of date");
        s.extend_from_slice(bytes);
    }
    s.resize(510, 0);
    s.extend_from_slice(&[0x55, 0xaa]); // boot signature
    s
}

/// A dynamic VHD holding the boot sector at LBA 0 and `LBA2_TEXT` at LBA 2, written through
/// vine's NBD export.
fn bootable_vhd(dir: &Path) -> PathBuf {
    let image = dir.join("boot.vhd");
    create(&image, &["--size", "8M"]);
    let mbr = dir.join("mbr.bin");
    fs::write(&mbr, boot_sector()).unwrap();
    let lba2 = dir.join("lba2.bin");
    let mut sector = LBA2_TEXT.to_vec();
    sector.resize(512, 0);
    fs::write(&lba2, &sector).unwrap();
    let served = Served::start(&image, dir, &[]);
    let cmds = [format!("write -s {} 0 512", mbr.display()), format!("write -s {} 1024 512", lba2.display())];
    qemu_io("raw", &served.url(), &cmds);
    served.stop();
    image
}

/// Boots QEMU (TCG, SeaBIOS) from the served export; returns the serial log once the guest has
/// reported its write, after stopping QEMU.
fn boot_guest(served: &Served, dir: &Path) -> String {
    let log = dir.join("serial.log");
    let _ = fs::remove_file(&log);
    let stderr = fs::File::create(dir.join("qemu.stderr")).unwrap();
    let child = Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            "tcg",
            "-m",
            "64",
            "-no-reboot",
            "-nodefaults",
            "-display",
            "none",
            "-monitor",
            "none",
        ])
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .arg("-drive")
        .arg(format!("file={},format=raw,if=ide", served.url()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn qemu-system-x86_64");
    let mut qemu = Guard(child);
    let qemu_stderr = || fs::read_to_string(dir.join("qemu.stderr")).unwrap_or_default();
    let deadline = Instant::now() + GUEST_TIMEOUT;
    let serial = loop {
        let serial = fs::read_to_string(&log).unwrap_or_default();
        if serial.contains("VINE-GUEST-WRITE-OK\r\n") || serial.contains("VINE-GUEST-WRITE-FAIL\r\n") {
            break serial;
        }
        if let Some(status) = qemu.0.try_wait().unwrap() {
            panic!(
                "QEMU exited ({status}) before the guest reported; serial: {serial:?}; stderr: {}",
                qemu_stderr()
            );
        }
        assert!(Instant::now() < deadline, "no guest report after {GUEST_TIMEOUT:?}; serial: {serial:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let status = qemu.terminate("qemu-system-x86_64");
    assert!(status.success() || status.code().is_none(), "QEMU exited with {status}: {}", qemu_stderr());
    serial
}

fn assert_guest_report(serial: &str) {
    let booted =
        serial.find("VINE-GUEST-BOOTED\r\n").unwrap_or_else(|| panic!("guest did not boot: {serial:?}"));
    let rest = &serial[booted..];
    assert!(
        rest.contains("VINE-GUEST-BOOTED\r\nVINE-GUEST-READ-OK\r\nVINE-GUEST-WRITE-OK\r\n"),
        "the guest's read of LBA 2 or write of LBA 1 failed: {serial:?}"
    );
}

fn guest_tag_sector() -> Vec<u8> {
    GUEST_TAG.repeat(32)
}

#[test]
fn qemu_guest_boots_from_a_served_dynamic_vhd_and_its_disk_write_lands_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let image = bootable_vhd(dir.path());
    let before = flat(&image);
    assert!(before[512..1024].iter().all(|&b| b == 0), "LBA 1 starts empty");

    let served = Served::start(&image, dir.path(), &[]);
    assert_guest_report(&boot_guest(&served, dir.path()));
    served.stop();

    let after = flat(&image);
    assert!(
        after[512..1024] == guest_tag_sector()[..],
        "LBA 1 holds {:?}",
        String::from_utf8_lossy(&after[512..576])
    );
    assert!(
        after[..512] == before[..512] && after[1024..] == before[1024..],
        "the guest changed more than LBA 1"
    );
    // QEMU's own VHD driver agrees.
    let by_qemu = dir.path().join("by-qemu.raw");
    ok(Command::new("qemu-img").args(["convert", "-f", "vpc", "-O", "raw"]).arg(&image).arg(&by_qemu));
    assert!(fs::read(&by_qemu).unwrap()[..after.len()] == after[..], "qemu-img reads the VHD differently");
    assert_clean(&image);
}

#[test]
fn qemu_guest_booted_from_a_differencing_child_writes_to_the_child_and_not_the_base() {
    let dir = tempfile::tempdir().unwrap();
    let base = bootable_vhd(dir.path());
    let base_file = fs::read(&base).unwrap();
    let base_flat = flat(&base);
    let child = dir.path().join("child.vhd");
    create(&child, &["--parent", base.to_str().unwrap()]);

    // The guest reads its boot sector and LBA 2 from the base through the child.
    let served = Served::start(&child, dir.path(), &[]);
    assert_guest_report(&boot_guest(&served, dir.path()));
    served.stop();

    let got = flat(&child);
    assert!(
        got[512..1024] == guest_tag_sector()[..],
        "LBA 1 of the child holds {:?}",
        String::from_utf8_lossy(&got[512..576])
    );
    assert!(
        got[..512] == base_flat[..512] && got[1024..] == base_flat[1024..],
        "the child differs beyond LBA 1"
    );
    assert!(fs::read(&base).unwrap() == base_file, "the guest's write changed the base file");
    assert_eq!(vine_info(&child)["allocated_bytes"].as_u64(), Some(2 << 20), "one block in the child");
    assert_clean(&child);
    assert_clean(&base);
}
