//! Issue 2, must-show 5 (injected I/O failures): the disk dies after a random number of
//! writes, in the middle of allocations, bitmap updates and flushes. After every trial the
//! image opens, checks clean, and every write flushed before the failure reads back intact.

use std::path::Path;

use vhd::backing::FailingBacking;
use vhd::create::{create, create_differencing, NewImage};
use vhd::image::VhdFile;
use vhd::workload::{allowed_values, generate, Op};
use vhd::{Disk, OpenOptions};

const SIZE: u64 = 8 << 20;

fn run_until_failure(path: &Path, writes_allowed: i64, seed: u64) -> (Vec<Op>, usize) {
    let file = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let failing = FailingBacking::new(file, writes_allowed);
    let top = VhdFile::open_backing(path, Box::new(failing), true).unwrap();
    let ops = generate(seed, SIZE, 120);
    // Reads go through the chain; a bare top is enough for dynamic images and for
    // differencing ones whose written sectors are all we check here besides the parent.
    let mut flushed = 0;
    for (i, op) in ops.iter().enumerate() {
        let r = match *op {
            Op::Write { offset, len, value } => top.write_aligned(&vec![value; len as usize], offset),
            Op::Flush => top.flush(),
        };
        match r {
            Ok(()) if *op == Op::Flush => flushed = i,
            Ok(()) => {}
            Err(_) => break,
        }
    }
    std::mem::forget(top); // a dead process does not run its destructors
    (ops, flushed)
}

fn verify(path: &Path, ops: &[Op], flushed: usize, initial: impl Fn(u64) -> u8, trial: u64) {
    let report = vhd::check::check(path, false).unwrap();
    assert!(report.is_clean(), "trial {trial}: {:?}", report.problems);
    let disk = Disk::open(path, OpenOptions::default()).unwrap();
    let mut buf = vec![0u8; SIZE as usize];
    disk.read(&mut buf, 0).unwrap();
    for s in 0..SIZE / 512 {
        let sector = &buf[(s * 512) as usize..((s + 1) * 512) as usize];
        let allowed = allowed_values(ops, flushed, s, initial(s));
        assert!(
            sector.iter().all(|&b| b == sector[0]) && allowed.contains(&sector[0]),
            "trial {trial}: sector {s} holds {:?}.., allowed {allowed:?} (flushed through op {flushed})",
            &sector[..4]
        );
    }
}

#[test]
fn dynamic_images_survive_io_failure_at_every_point() {
    let dir = tempfile::tempdir().unwrap();
    for trial in 0..120u64 {
        let bs = [4096u32, 64 << 10, 512 << 10, 2 << 20][(trial % 4) as usize];
        let p = dir.path().join(format!("d{trial}.vhd"));
        create(&p, NewImage { size: SIZE, block_size: bs, ..Default::default() }).unwrap();
        let (ops, flushed) = run_until_failure(&p, 1 + (trial * 7919 % 400) as i64, trial);
        verify(&p, &ops, flushed, |_| 0, trial);
        // And the image is writable again afterwards.
        let d = Disk::open(&p, OpenOptions { writable: true, ..Default::default() }).unwrap();
        d.write(&[1u8; 4096], 0).unwrap();
        d.flush().unwrap();
    }
}

#[test]
fn differencing_images_survive_io_failure_at_every_point() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.vhd");
    create(&base, NewImage { size: SIZE, block_size: 512 << 10, ..Default::default() }).unwrap();
    {
        let d = Disk::open(&base, OpenOptions { writable: true, ..Default::default() }).unwrap();
        d.write(&vec![0xEE; (SIZE / 2) as usize], 0).unwrap();
    }
    let initial = |s: u64| if s * 512 < SIZE / 2 { 0xEE } else { 0 };
    for trial in 0..100u64 {
        let p = dir.path().join(format!("c{trial}.vhd"));
        create_differencing(&p, &base).unwrap();
        let (ops, flushed) = run_until_failure(&p, 1 + (trial * 104_729 % 300) as i64, 1000 + trial);
        verify(&p, &ops, flushed, initial, trial);
    }
}
