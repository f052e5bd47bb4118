//! The engine against an in-memory model: every image type, chains, commit/discard, compact,
//! resize, convert, and the refusal cases.

use std::path::{Path, PathBuf};

use vhd::create::{create, create_differencing, NewImage, SizeRule};
use vhd::ops::{self, Target};
use vhd::{Disk, DiskType, OpenOptions, VhdError};

fn rw() -> OpenOptions {
    OpenOptions { writable: true, ..Default::default() }
}

fn ro() -> OpenOptions {
    OpenOptions::default()
}

/// Deterministic pseudo-random bytes.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf.iter_mut() {
            *b = self.next() as u8;
        }
    }
}

fn read_all(d: &Disk) -> Vec<u8> {
    let mut v = vec![0u8; d.size() as usize];
    d.read(&mut v, 0).unwrap();
    v
}

fn random_writes(d: &Disk, model: &mut [u8], rng: &mut Rng, n: usize, align: u64) {
    let size = model.len() as u64;
    for _ in 0..n {
        let len = (1 + rng.below(64 * 1024 / align)) * align;
        let len = len.min(size);
        let off = rng.below((size - len) / align + 1) * align;
        let mut buf = vec![0u8; len as usize];
        if rng.below(5) == 0 {
            // zero writes matter for differencing disks
        } else {
            rng.fill(&mut buf);
        }
        d.write(&buf, off).unwrap();
        model[off as usize..(off + len) as usize].copy_from_slice(&buf);
    }
}

fn new_dynamic(dir: &Path, name: &str, size: u64, bs: u32) -> PathBuf {
    let p = dir.join(name);
    create(&p, NewImage { size, block_size: bs, ..Default::default() }).unwrap();
    p
}

#[test]
fn dynamic_random_writes_read_back_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    for bs in [512u32, 4096, 512 << 10, 2 << 20] {
        let p = new_dynamic(dir.path(), &format!("d{bs}.vhd"), 3 << 20, bs);
        let d = Disk::open(&p, rw()).unwrap();
        let mut model = vec![0u8; d.size() as usize];
        random_writes(&d, &mut model, &mut Rng(bs as u64), 60, 512);
        assert!(read_all(&d) == model, "before reopen, block size {bs}");
        drop(d);
        let d = Disk::open(&p, ro()).unwrap();
        assert!(read_all(&d) == model, "after reopen, block size {bs}");
        assert!(
            vhd::check::check(&p, false).unwrap().is_clean(),
            "{:?}",
            vhd::check::check(&p, false).unwrap().problems
        );
    }
}

#[test]
fn unaligned_writes_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let p = new_dynamic(dir.path(), "u.vhd", 1 << 20, 4096);
    let d = Disk::open(&p, rw()).unwrap();
    let mut model = vec![0u8; d.size() as usize];
    random_writes(&d, &mut model, &mut Rng(7), 40, 1);
    assert!(read_all(&d) == model);
}

#[test]
fn fixed_disk_reads_what_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f.vhd");
    create(&p, NewImage { size: 1_000_000, disk_type: DiskType::Fixed, ..Default::default() }).unwrap();
    let d = Disk::open(&p, rw()).unwrap();
    assert_eq!(d.size(), 1_009_664);
    let mut model = vec![0u8; d.size() as usize];
    random_writes(&d, &mut model, &mut Rng(3), 30, 512);
    drop(d);
    let d = Disk::open(&p, ro()).unwrap();
    assert!(read_all(&d) == model);
    assert_eq!(std::fs::metadata(&p).unwrap().len(), 1_009_664 + 512);
}

#[test]
fn three_deep_chain_reads_and_writes_through() {
    let dir = tempfile::tempdir().unwrap();
    let base = new_dynamic(dir.path(), "base.vhd", 4 << 20, 512 << 10);
    let mut model;
    {
        let d = Disk::open(&base, rw()).unwrap();
        model = vec![0u8; d.size() as usize];
        random_writes(&d, &mut model, &mut Rng(11), 30, 512);
    }
    let mut paths = vec![base];
    for (i, seed) in [(1, 12u64), (2, 13), (3, 14)] {
        let child = dir.path().join(format!("c{i}.vhd"));
        create_differencing(&child, paths.last().unwrap()).unwrap();
        let d = Disk::open(&child, rw()).unwrap();
        assert_eq!(d.layers().len(), i + 1);
        assert!(read_all(&d) == model, "child {i} starts as its parent");
        random_writes(&d, &mut model, &mut Rng(seed), 30, 512);
        assert!(read_all(&d) == model, "child {i} after writes");
        drop(d);
        paths.push(child);
    }
    let d = Disk::open(paths.last().unwrap(), ro()).unwrap();
    assert!(read_all(&d) == model);
    for p in &paths {
        let r = vhd::check::check(p, false).unwrap();
        assert!(r.is_clean(), "{}: {:?}", p.display(), r.problems);
    }
}

#[test]
fn zeros_written_into_a_child_hide_parent_data() {
    let dir = tempfile::tempdir().unwrap();
    let base = new_dynamic(dir.path(), "base.vhd", 1 << 20, 2 << 20);
    Disk::open(&base, rw()).unwrap().write(&[0xAB; 8192], 0).unwrap();
    let child = dir.path().join("child.vhd");
    create_differencing(&child, &base).unwrap();
    let d = Disk::open(&child, rw()).unwrap();
    d.write(&[0u8; 512], 1024).unwrap();
    d.write_zeroes(4096, 1024).unwrap();
    let mut got = vec![0u8; 8192];
    d.read(&mut got, 0).unwrap();
    let mut want = vec![0xABu8; 8192];
    want[1024..1536].fill(0);
    want[4096..5120].fill(0);
    assert!(got == want);
}

#[test]
fn replaced_parent_is_refused_naming_both_ids() {
    let dir = tempfile::tempdir().unwrap();
    let base = new_dynamic(dir.path(), "base.vhd", 1 << 20, 2 << 20);
    let child = dir.path().join("child.vhd");
    create_differencing(&child, &base).unwrap();
    std::fs::remove_file(&base).unwrap();
    new_dynamic(dir.path(), "base.vhd", 1 << 20, 2 << 20);
    let err = Disk::open(&child, ro()).unwrap_err();
    assert!(matches!(err, VhdError::ParentMismatch { .. }), "{err}");
    assert!(err.to_string().contains("another disk"), "{err}");
}

#[test]
fn modified_parent_is_refused_until_relinked() {
    let dir = tempfile::tempdir().unwrap();
    let base = new_dynamic(dir.path(), "base.vhd", 1 << 20, 2 << 20);
    let child = dir.path().join("child.vhd");
    create_differencing(&child, &base).unwrap();
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
    std::fs::File::options().write(true).open(&base).unwrap().set_modified(later).unwrap();
    let err = Disk::open(&child, ro()).unwrap_err();
    assert!(matches!(err, VhdError::ParentModified { .. }), "{err}");
    ops::relink(&child).unwrap();
    Disk::open(&child, ro()).unwrap();
}

#[test]
fn missing_parent_lists_where_it_looked() {
    let dir = tempfile::tempdir().unwrap();
    let base = new_dynamic(dir.path(), "base.vhd", 1 << 20, 2 << 20);
    let child = dir.path().join("child.vhd");
    create_differencing(&child, &base).unwrap();
    std::fs::remove_file(&base).unwrap();
    let err = Disk::open(&child, ro()).unwrap_err();
    assert!(matches!(err, VhdError::ParentNotFound { ref tried, .. } if !tried.is_empty()), "{err}");
}

#[test]
fn parent_moved_with_child_is_found_by_relative_locator() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    std::fs::create_dir(&a).unwrap();
    let base = new_dynamic(&a, "base.vhd", 1 << 20, 2 << 20);
    let child = a.join("child.vhd");
    create_differencing(&child, &base).unwrap();
    let b = dir.path().join("b");
    std::fs::rename(&a, &b).unwrap();
    let d = Disk::open(&b.join("child.vhd"), ro()).unwrap();
    assert_eq!(d.layers()[1].path(), b.join("./base.vhd").as_path());
}

#[test]
fn undo_child_commit_and_discard() {
    let dir = tempfile::tempdir().unwrap();
    let base = new_dynamic(dir.path(), "base.vhd", 2 << 20, 512 << 10);
    let undo = dir.path().join("undo.vhd");
    create_differencing(&undo, &base).unwrap();
    let mut model = vec![0u8; Disk::open(&base, ro()).unwrap().size() as usize];
    {
        let d = Disk::open(&undo, rw()).unwrap();
        random_writes(&d, &mut model, &mut Rng(21), 20, 512);
    }
    ops::commit(&undo, &mut |_, _| {}).unwrap();
    assert!(read_all(&Disk::open(&base, ro()).unwrap()) == model, "parent holds the session's writes");
    assert!(read_all(&Disk::open(&undo, ro()).unwrap()) == model, "emptied child still valid");
    assert_eq!(Disk::open(&undo, ro()).unwrap().top().allocated_blocks(), 0);
    let before = model.clone();
    {
        let d = Disk::open(&undo, rw()).unwrap();
        random_writes(&d, &mut model, &mut Rng(22), 20, 512);
    }
    ops::discard(&undo).unwrap();
    assert!(read_all(&Disk::open(&undo, ro()).unwrap()) == before, "discard forgets the session");
    assert!(read_all(&Disk::open(&base, ro()).unwrap()) == before);
}

#[test]
fn compact_gives_back_zero_blocks_and_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let p = new_dynamic(dir.path(), "c.vhd", 8 << 20, 512 << 10);
    let mut model;
    {
        let d = Disk::open(&p, rw()).unwrap();
        model = vec![0u8; d.size() as usize];
        random_writes(&d, &mut model, &mut Rng(31), 10, 512);
        d.write(&vec![0u8; 3 << 20], 0).unwrap();
        model[..3 << 20].fill(0);
    }
    let saved = ops::compact(&p, &mut |_, _| {}).unwrap();
    assert!(saved > 0);
    let d = Disk::open(&p, ro()).unwrap();
    assert!(read_all(&d) == model);
    assert!(vhd::check::check(&p, false).unwrap().is_clean());
}

#[test]
fn resize_grows_dynamic_and_fixed_and_refuses_shrinking() {
    let dir = tempfile::tempdir().unwrap();
    let p = new_dynamic(dir.path(), "r.vhd", 1 << 20, 4096);
    Disk::open(&p, rw()).unwrap().write(&[7u8; 4096], 8192).unwrap();
    let new = ops::resize(&p, 64 << 20).unwrap();
    assert!(new >= 64 << 20);
    let d = Disk::open(&p, rw()).unwrap();
    assert_eq!(d.size(), new);
    d.write(&[9u8; 4096], new - 4096).unwrap();
    let mut b = [0u8; 4096];
    d.read(&mut b, 8192).unwrap();
    assert_eq!(b, [7u8; 4096]);
    drop(d);
    assert!(
        vhd::check::check(&p, false).unwrap().is_clean(),
        "{:?}",
        vhd::check::check(&p, false).unwrap().problems
    );
    let err = ops::resize(&p, 1 << 20).unwrap_err();
    assert!(matches!(err, VhdError::Invalid(ref m) if m.contains("shrinking")), "{err}");

    let f = dir.path().join("f.vhd");
    create(&f, NewImage { size: 1 << 20, disk_type: DiskType::Fixed, ..Default::default() }).unwrap();
    Disk::open(&f, rw()).unwrap().write(&[5u8; 512], 0).unwrap();
    let new = ops::resize(&f, 3 << 20).unwrap();
    let d = Disk::open(&f, ro()).unwrap();
    assert_eq!(d.size(), new);
    let all = read_all(&d);
    assert!(all[..512].iter().all(|&x| x == 5) && all[512..].iter().all(|&x| x == 0));
}

#[test]
fn convert_flattens_chain_into_every_type() {
    let dir = tempfile::tempdir().unwrap();
    let base = new_dynamic(dir.path(), "base.vhd", 3 << 20, 2 << 20);
    let mut model;
    {
        let d = Disk::open(&base, rw()).unwrap();
        model = vec![0u8; d.size() as usize];
        random_writes(&d, &mut model, &mut Rng(41), 10, 512);
    }
    let child = dir.path().join("child.vhd");
    create_differencing(&child, &base).unwrap();
    {
        let d = Disk::open(&child, rw()).unwrap();
        random_writes(&d, &mut model, &mut Rng(42), 10, 512);
    }
    for (name, t) in
        [("o.fixed.vhd", Target::Fixed), ("o.dyn.vhd", Target::Dynamic(512 << 10)), ("o.raw", Target::Raw)]
    {
        let out = dir.path().join(name);
        ops::convert(&child, &out, t, SizeRule::Compatible, &mut |_, _| {}).unwrap();
        let data = if t == Target::Raw {
            std::fs::read(&out).unwrap()
        } else {
            read_all(&Disk::open(&out, ro()).unwrap())
        };
        assert!(data == model, "{name}");
    }
    // And back from raw.
    let back = dir.path().join("back.vhd");
    ops::convert(
        &dir.path().join("o.raw"),
        &back,
        Target::Dynamic(2 << 20),
        SizeRule::Compatible,
        &mut |_, _| {},
    )
    .unwrap();
    assert!(read_all(&Disk::open(&back, ro()).unwrap()) == model);
}

#[test]
fn second_writer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = new_dynamic(dir.path(), "w.vhd", 1 << 20, 2 << 20);
    let _first = Disk::open(&p, rw()).unwrap();
    let err = Disk::open(&p, rw()).unwrap_err();
    assert!(matches!(err, VhdError::Locked { .. }), "{err}");
}

#[test]
fn linked_disk_reads_and_writes_its_target() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.raw");
    let mut data = vec![0u8; 1 << 20];
    Rng(5).fill(&mut data);
    std::fs::write(&raw, &data).unwrap();
    let l = dir.path().join("linked.vhd");
    vhd::create::create_linked(&l, &raw).unwrap();
    let d = Disk::open(&l, rw()).unwrap();
    assert_eq!(d.size(), 1 << 20);
    assert!(read_all(&d) == data);
    d.write(&[1u8; 512], 512).unwrap();
    d.flush().unwrap();
    assert_eq!(&std::fs::read(&raw).unwrap()[512..1024], &[1u8; 512]);
}
