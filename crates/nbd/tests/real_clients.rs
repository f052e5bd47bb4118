//! The server against real clients: qemu-img and qemu-io (qemu-utils) and nbdinfo and nbdcopy
//! (libnbd-bin), on a unix socket, backed by a raw file. `scripts/setup.sh` installs the tools.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use block::raw::RawFile;
use nbd::Export;
use support::{path_str, RawClient, RunningServer};

const SIZE: u64 = 4 << 20;

/// A raw image of [`SIZE`] bytes in `dir`, filled with zeros.
fn raw_image(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::File::create(&path).unwrap().set_len(SIZE).unwrap();
    path
}

fn raw_export(name: &str, image: &Path, read_only: bool, shared: bool) -> Export {
    let device = RawFile::open(image, read_only).unwrap();
    let mut export = Export::new(name, Arc::new(device));
    export.description = format!("raw image {name}");
    export.read_only = read_only;
    export.shared = shared;
    export
}

/// One server with a read-write export "disk", a shared one "shared" and a read-only one "ro".
struct Fixture {
    images: tempfile::TempDir,
    server: RunningServer,
}

impl Fixture {
    fn new() -> Self {
        let images = tempfile::tempdir().unwrap();
        let exports = vec![
            raw_export("disk", &raw_image(images.path(), "disk.img"), false, false),
            raw_export("shared", &raw_image(images.path(), "shared.img"), false, true),
            raw_export("ro", &raw_image(images.path(), "ro.img"), true, false),
        ];
        Self { images, server: RunningServer::start(exports) }
    }

    fn image(&self, name: &str) -> PathBuf {
        self.images.path().join(format!("{name}.img"))
    }

    fn uri(&self, export: &str) -> String {
        self.server.uri(export)
    }
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program).args(args).output().unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

/// Runs a tool that must succeed; returns its stdout.
fn ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    stdout
}

/// Runs a tool that must fail; returns its stderr.
fn fails(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(!out.status.success(), "{program} {args:?} unexpectedly succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn qemu_io(uri: &str, commands: &[&str]) -> String {
    let mut args = vec!["-f", "raw"];
    for command in commands {
        args.extend(["-c", command]);
    }
    args.push(uri);
    ok("qemu-io", &args)
}

#[test]
fn qemu_img_info_reports_the_export_size() {
    let fx = Fixture::new();
    let info = ok("qemu-img", &["info", "--output=json", &fx.uri("disk")]);
    assert!(info.contains(&format!("\"virtual-size\": {SIZE}")), "{info}");
    assert!(info.contains("\"format\": \"raw\""), "{info}");
}

#[test]
fn qemu_io_pattern_written_reads_back_and_lands_in_the_image() {
    let fx = Fixture::new();
    let out = qemu_io(&fx.uri("disk"), &["write -P 0xab 0 64k"]);
    assert!(out.contains("wrote 65536/65536 bytes at offset 0"), "{out}");

    let out = qemu_io(&fx.uri("disk"), &["read -P 0xab 0 64k", "read -P 0 64k 64k"]);
    assert!(out.contains("read 65536/65536 bytes at offset 0"), "{out}");
    assert!(out.contains("read 65536/65536 bytes at offset 65536"), "{out}");
    let image = std::fs::read(fx.image("disk")).unwrap();
    assert!(image[..65536].iter().all(|&b| b == 0xab));
    assert!(image[65536..].iter().all(|&b| b == 0));

    let out = run("qemu-io", &["-f", "raw", "-c", "read -P 0xcd 0 512", &fx.uri("disk")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Pattern verification failed at offset 0"));
}

#[test]
fn qemu_img_compare_finds_the_export_identical_to_its_image() {
    let fx = Fixture::new();
    qemu_io(&fx.uri("disk"), &["write -P 0x5a 1M 256k"]);
    let out =
        ok("qemu-img", &["compare", "-f", "raw", "-F", "raw", path_str(&fx.image("disk")), &fx.uri("disk")]);
    assert!(out.contains("Images are identical."), "{out}");

    let other = raw_image(fx.images.path(), "blank.img");
    let out = run("qemu-img", &["compare", "-f", "raw", "-F", "raw", path_str(&other), &fx.uri("disk")]);
    assert_eq!(out.status.code(), Some(1), "images differ: {}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn qemu_io_discard_and_write_zeroes_succeed_and_read_back_as_zeroes() {
    let fx = Fixture::new();
    qemu_io(&fx.uri("disk"), &["write -P 0xab 0 256k"]);
    let out = qemu_io(
        &fx.uri("disk"),
        &[
            "discard 0 64k",
            "write -z 64k 64k",
            "write -z -u 128k 64k",
            "read -P 0 64k 128k",
            "read -P 0xab 192k 64k",
        ],
    );
    assert!(out.contains("discard 65536/65536 bytes at offset 0"), "{out}");
    assert!(out.contains("wrote 65536/65536 bytes at offset 65536"), "{out}");
    assert!(out.contains("wrote 65536/65536 bytes at offset 131072"), "{out}");
    assert!(out.contains("read 131072/131072 bytes at offset 65536"), "{out}");
    assert!(out.contains("read 65536/65536 bytes at offset 196608"), "{out}");
    assert!(!out.contains("Pattern verification failed"), "{out}");
}

#[test]
fn qemu_io_flush_and_fua_writes_succeed() {
    let fx = Fixture::new();
    let out = qemu_io(&fx.uri("disk"), &["write -f -P 0x11 0 4k", "flush", "read -P 0x11 0 4k"]);
    assert!(out.contains("wrote 4096/4096 bytes at offset 0"), "{out}");
    assert!(out.contains("read 4096/4096 bytes at offset 0"), "{out}");
}

#[test]
fn read_only_export_refuses_writes() {
    let fx = Fixture::new();
    let stderr = fails("qemu-io", &["-f", "raw", "-c", "write 0 512", &fx.uri("ro")]);
    // qemu refuses to open a read-only export for writing (EACCES).
    assert!(stderr.contains("Could not open image: Permission denied"), "{stderr}");
    let out = ok("qemu-io", &["-r", "-f", "raw", "-c", "read -P 0 0 4k", &fx.uri("ro")]);
    assert!(out.contains("read 4096/4096 bytes at offset 0"), "{out}");
}

#[test]
fn nbdinfo_json_describes_the_export() {
    let fx = Fixture::new();
    let json = ok("nbdinfo", &["--json", &fx.uri("disk")]);
    for expected in [
        "\"export-name\": \"disk\"",
        "\"description\": \"raw image disk\"",
        &format!("\"export-size\": {SIZE}"),
        "\"is_read_only\": false",
        "\"can_flush\": true",
        "\"can_fua\": true",
        "\"can_trim\": true",
        "\"can_zero\": true",
        "\"can_multi_conn\": false",
        "\"block_size_maximum\": 33554432",
        "\"base:allocation\"",
    ] {
        assert!(json.contains(expected), "missing {expected} in {json}");
    }
    let json = ok("nbdinfo", &["--json", &fx.uri("ro")]);
    assert!(json.contains("\"is_read_only\": true") && json.contains("\"can_multi_conn\": true"), "{json}");
    let json = ok("nbdinfo", &["--json", &fx.uri("shared")]);
    assert!(json.contains("\"is_read_only\": false") && json.contains("\"can_multi_conn\": true"), "{json}");
}

#[test]
fn nbdinfo_list_names_every_export() {
    let fx = Fixture::new();
    let out = ok("nbdinfo", &["--list", &fx.uri("")]);
    for name in ["disk", "shared", "ro"] {
        assert!(out.contains(&format!("export=\"{name}\"")), "{name} missing from {out}");
        assert!(out.contains(&format!("description: raw image {name}")), "{name} missing from {out}");
    }
}

#[test]
fn nbdcopy_round_trips_through_a_shared_export_with_several_connections() {
    let fx = Fixture::new();
    let source = fx.images.path().join("source.img");
    let pattern: Vec<u8> = (0..SIZE).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(&source, &pattern).unwrap();

    ok("nbdcopy", &["--connections=4", "--requests=16", "--flush", path_str(&source), &fx.uri("shared")]);
    assert!(
        std::fs::read(fx.image("shared")).unwrap() == pattern,
        "the export's image differs from the source"
    );

    let copy = fx.images.path().join("copy.img");
    ok("nbdcopy", &["--connections=4", "--requests=16", &fx.uri("shared"), path_str(&copy)]);
    assert!(std::fs::read(&copy).unwrap() == pattern, "the copy differs from the source");

    ok("nbdcopy", &[path_str(&source), &fx.uri("disk")]);
    assert!(std::fs::read(fx.image("disk")).unwrap() == pattern, "single-connection copy differs");
}

#[test]
fn second_writer_is_refused_while_the_first_is_connected() {
    let fx = Fixture::new();
    let mut holder = RawClient::connect(fx.server.connect());
    holder.go("disk").expect("first writer");

    let stderr = fails("qemu-io", &["-f", "raw", "-c", "read 0 512", &fx.uri("disk")]);
    assert!(
        stderr.contains("export 'disk' already has a writer; serve it with --shared to allow several"),
        "{stderr}"
    );
    // nbdinfo prints only the errno; libnbd's debug log carries the server's message.
    let out = Command::new("nbdinfo").arg(fx.uri("disk")).env("LIBNBD_DEBUG", "1").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("server error message: export 'disk' already has a writer"), "{stderr}");

    drop(holder);
    support::wait_for(
        || run("qemu-io", &["-f", "raw", "-c", "read 0 512", &fx.uri("disk")]).status.success(),
        "the writer slot to be released",
    );
}

#[test]
fn qemu_img_bench_at_queue_depth_16_reads_and_writes() {
    let fx = Fixture::new();
    let uri = fx.uri("disk");
    for mode in [&["-w"][..], &[]] {
        let mut args = vec!["bench", "-f", "raw", "-d", "16", "-c", "2000", "-s", "4k", "-S", "8k"];
        args.extend(mode);
        args.push(&uri);
        let out = ok("qemu-img", &args);
        assert!(out.contains("Sending 2000 ") && out.contains("16 in parallel"), "{out}");
        assert!(out.contains("Run completed in"), "{out}");
    }
}
