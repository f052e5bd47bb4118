//! Issue 2, must-show 5 (killed writer): `vine disk exercise` writes a deterministic workload
//! into dynamic and differencing images and is killed with SIGKILL at a random moment, often
//! in the middle of block allocations and flushes. After every trial the image opens, `vine
//! disk check` is clean, `qemu-img info`/`qemu-img compare` and `7zz` read it, and every write
//! flushed before the kill reads back intact.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use vhd::workload::{allowed_values, generate};

const SIZE: u64 = 8 << 20;
const OPS: usize = 400;

/// Runs the writer and kills it after `flushes` flush reports (plus a random extra delay);
/// returns how many operations were reported durable and whether the writer had finished.
fn run_and_kill(image: &Path, seed: u64, flushes: usize, extra_micros: u64) -> (usize, bool) {
    let mut child = vine()
        .args(["disk", "exercise", "--seed", &seed.to_string(), "--ops", &OPS.to_string()])
        .arg(image)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut durable = 0;
    let mut seen = 0;
    while seen < flushes {
        match lines.next() {
            Some(Ok(l)) if l.starts_with("flushed ") => {
                durable = l[8..].parse().unwrap();
                seen += 1;
            }
            _ => break,
        }
    }
    std::thread::sleep(Duration::from_micros(extra_micros));
    let _ = child.kill();
    // Lines the writer managed to print before dying still count.
    let mut finished = false;
    for l in lines.map_while(Result::ok) {
        if let Some(n) = l.strip_prefix("flushed ") {
            durable = n.parse().unwrap();
        }
        finished |= l == "done";
    }
    let _ = child.wait();
    (durable, finished)
}

fn read_through_vine(image: &Path, dir: &Path) -> Vec<u8> {
    let out = dir.join("flat.raw");
    let _ = std::fs::remove_file(&out);
    ok(vine().args(["disk", "convert"]).arg(image).arg(&out).args(["--to", "raw"]));
    std::fs::read(&out).unwrap()
}

fn verify(
    image: &Path,
    dir: &Path,
    seed: u64,
    durable: usize,
    initial: impl Fn(u64) -> u8,
    qemu_reads_it: bool,
) {
    assert_clean(image);
    let size = vine_info(image)["virtual_size"].as_u64().unwrap();
    let ops = generate(seed, size, OPS);
    let data = read_through_vine(image, dir);
    for s in 0..size / 512 {
        let sector = &data[(s * 512) as usize..((s + 1) * 512) as usize];
        let allowed = allowed_values(&ops, durable, s, initial(s));
        assert!(
            sector.iter().all(|&b| b == sector[0]) && allowed.contains(&sector[0]),
            "{}: sector {s} holds {:#x}, allowed {allowed:?} ({durable} ops durable)",
            image.display(),
            sector[0]
        );
    }
    let seven = ok(Command::new("7zz").args(["e", "-so"]).arg(image)).stdout;
    assert!(seven == data, "{}: 7zz reads it differently from vine", image.display());
    let raw = dir.join("flat.raw");
    qemu_info(image, "vpc");
    if qemu_reads_it {
        qemu_compare("vpc", image, "raw", &raw);
    }
}

#[test]
fn killed_writer_leaves_dynamic_images_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x5eed);
    let mut interrupted = 0;
    for trial in 0..110u64 {
        let p = dir.path().join(format!("d{trial}.vhd"));
        let bs = ["4K", "64K", "512K", "2M"][(trial % 4) as usize];
        ok(vine().args(["disk", "create"]).arg(&p).args(["--size", &format!("{SIZE}B"), "--block-size", bs]));
        let (durable, finished) = run_and_kill(&p, trial, rng.below(12) as usize, rng.below(3000));
        interrupted += usize::from(!finished);
        verify(&p, dir.path(), trial, durable, |_| 0, true);
    }
    assert!(interrupted >= 100, "only {interrupted} of 110 writers were killed mid-run");
}

#[test]
fn killed_writer_leaves_differencing_images_whole() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.vhd");
    ok(vine().args(["disk", "create"]).arg(&base).args([
        "--size",
        &format!("{SIZE}B"),
        "--block-size",
        "512K",
    ]));
    let s = Served::start(&base, dir.path(), &[]);
    qemu_io("raw", &s.url(), &[format!("write -P 0xee 0 {}", SIZE / 2)]);
    s.stop();
    let initial = |s: u64| if s * 512 < SIZE / 2 { 0xee } else { 0 };
    let mut rng = Rng(0xd1ff);
    let mut interrupted = 0;
    for trial in 0..100u64 {
        let p = dir.path().join(format!("c{trial}.vhd"));
        ok(vine().args(["disk", "create"]).arg(&p).arg("--parent").arg(&base));
        let (durable, finished) = run_and_kill(&p, 500 + trial, rng.below(12) as usize, rng.below(3000));
        interrupted += usize::from(!finished);
        // QEMU cannot follow parents, so it only has to open the child; 7zz checks content.
        verify(&p, dir.path(), 500 + trial, durable, initial, false);
    }
    assert!(interrupted >= 90, "only {interrupted} of 100 writers were killed mid-run");
}
