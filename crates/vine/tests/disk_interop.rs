//! Issue 2, must-show 2 and 3: VHD interop with the real tools, both directions.
//! vine's images are read by `qemu-img`/`qemu-io` (format vpc, QEMU 10.0) and by `7zz`
//! (which follows differencing chains); QEMU's images are read by vine byte for byte.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

const GIB: u64 = 1 << 30;

fn qemu_version_is_10() {
    let out = ok(Command::new("qemu-img").arg("--version"));
    assert!(text(&out).contains("version 10.0"), "these tests assert QEMU 10.0's size rule: {}", text(&out));
}

/// Extracts a VHD with 7-Zip (which resolves parents itself) into raw bytes.
fn seven_zip(path: &Path) -> Vec<u8> {
    let out = ok(Command::new("7zz").args(["e", "-so"]).arg(path));
    out.stdout
}

#[test]
fn vine_images_open_in_qemu_img_with_the_size_vine_reports() {
    qemu_version_is_10();
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, u64, &str, &[&str])] = &[
        ("tiny-fixed", 1, "fixed", &[]),
        ("tiny-dyn", 1, "dynamic", &[]),
        ("odd-fixed", 1_000_000, "fixed", &[]),
        ("odd-dyn-4k", 1_000_000, "dynamic", &["--block-size", "4K"]),
        ("gib-dyn-512k", GIB, "dynamic", &["--block-size", "512K"]),
        ("gib-dyn-16m", GIB + 12345, "dynamic", &["--block-size", "16M"]),
        ("big-127g", 127 * GIB, "dynamic", &[]),
        ("huge-200g-dyn", 200 * GIB, "dynamic", &[]),
        ("huge-200g-fixed", 200 * GIB, "fixed", &[]),
        ("exact-gib", GIB, "dynamic", &["--exact-size"]),
        ("exact-odd-fixed", 1_000_000, "fixed", &["--exact-size"]),
    ];
    for (name, size, kind, extra) in cases {
        let p = dir.path().join(format!("{name}.vhd"));
        ok(vine()
            .args(["disk", "create"])
            .arg(&p)
            .args(["--size", &format!("{size}B"), "--type", kind])
            .args(*extra));
        let ours = vine_info(&p)["virtual_size"].as_u64().unwrap();
        assert!(ours >= *size, "{name}: {ours} < requested {size}");
        let theirs = qemu_info(&p, "vpc")["virtual-size"].as_u64().unwrap();
        assert_eq!(ours, theirs, "{name}: vine says {ours}, qemu-img says {theirs}");
        assert_clean(&p);
    }
}

#[test]
fn vine_written_images_equal_the_raw_reference_in_qemu_img_and_7zz() {
    let dir = tempfile::tempdir().unwrap();
    // 10_000_384 is not a CHS multiple; vine rounds up, so the raw reference is padded the same way.
    for (i, (size, to, bs)) in [
        (10_000_384u64, "fixed", "2M"),
        (10_000_384, "dynamic", "2M"),
        (10_000_384, "dynamic", "4K"),
        (33 << 20, "dynamic", "512K"),
        (33 << 20, "dynamic", "16M"),
    ]
    .into_iter()
    .enumerate()
    {
        let raw = dir.path().join(format!("ref{i}.raw"));
        raw_file(&raw, size);
        qemu_io("raw", raw.to_str().unwrap(), &pattern_commands(size, 100 + i as u64, 40));
        let vhd = dir.path().join(format!("out{i}.vhd"));
        ok(vine().args(["disk", "convert"]).arg(&raw).arg(&vhd).args(["--to", to, "--block-size", bs]));
        let vsize = vine_info(&vhd)["virtual_size"].as_u64().unwrap();
        assert!(vsize >= size);
        // The reference, padded with zeros to the VHD's size.
        let mut want = std::fs::read(&raw).unwrap();
        want.resize(vsize as usize, 0);
        let padded = dir.path().join(format!("ref{i}.padded"));
        std::fs::write(&padded, &want).unwrap();
        qemu_compare("vpc", &vhd, "raw", &padded);
        assert!(seven_zip(&vhd) == want, "7zz reads {to}/{bs} image {i} differently");
        assert_clean(&vhd);
    }
}

#[test]
fn qemu_made_images_read_identically_with_qemu_img_size() {
    qemu_version_is_10();
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str, &str)] = &[
        ("dyn", "1000000", "subformat=dynamic"),
        ("dyn-force", "1000000", "subformat=dynamic,force_size=on"),
        ("fixed", "5M", "subformat=fixed"),
        ("fixed-force", "5M", "subformat=fixed,force_size=on"),
        ("dyn-1g", "1G", "subformat=dynamic"),
        ("dyn-200g", "200G", "subformat=dynamic"),
    ];
    for (i, (name, size, opts)) in cases.iter().enumerate() {
        let p = dir.path().join(format!("{name}.vhd"));
        ok(Command::new("qemu-img").args(["create", "-q", "-f", "vpc", "-o", opts]).arg(&p).arg(size));
        let qsize = qemu_info(&p, "vpc")["virtual-size"].as_u64().unwrap();
        let limit = qsize.min(64 << 20);
        qemu_io("vpc", p.to_str().unwrap(), &pattern_commands(limit, 200 + i as u64, 30));
        assert_eq!(vine_info(&p)["virtual_size"].as_u64().unwrap(), qsize, "{name}: size");
        let ours = dir.path().join(format!("{name}.vine.raw"));
        let theirs = dir.path().join(format!("{name}.qemu.raw"));
        if qsize <= GIB {
            ok(vine().args(["disk", "convert"]).arg(&p).arg(&ours).args(["--to", "raw"]));
            ok(Command::new("qemu-img").args(["convert", "-f", "vpc", "-O", "raw"]).arg(&p).arg(&theirs));
        } else {
            // Reading 200 GiB of holes proves nothing more: compare the written head through
            // vine's NBD export against QEMU's own reading.
            let s = Served::start(&p, dir.path(), &["--read-only"]);
            let count = format!("count={}", limit >> 20);
            ok(Command::new("qemu-img")
                .args(["dd", "-f", "raw", "-O", "raw", "bs=1M", &count])
                .arg(format!("if={}", s.url()))
                .arg(format!("of={}", ours.display())));
            s.stop();
            ok(Command::new("qemu-img")
                .args(["dd", "-f", "vpc", "-O", "raw", "bs=1M", &count])
                .arg(format!("if={}", p.display()))
                .arg(format!("of={}", theirs.display())));
        }
        ok(Command::new("cmp").arg(&ours).arg(&theirs));
        assert_clean(&p);
    }
}

#[test]
fn qemu_allocated_blocks_match_vine_allocation() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.vhd");
    ok(Command::new("qemu-img").args(["create", "-q", "-f", "vpc"]).arg(&p).arg("64M"));
    qemu_io(
        "vpc",
        p.to_str().unwrap(),
        &["write -P 1 0 4k".into(), "write -P 2 10M 1M".into(), "write -P 3 40M 512".into()],
    );
    let out = ok(Command::new("qemu-img").args(["map", "-f", "vpc", "--output=json"]).arg(&p));
    let map: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let data: u64 = map
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["data"].as_bool() == Some(true))
        .map(|e| e["length"].as_u64().unwrap())
        .sum();
    assert_eq!(vine_info(&p)["allocated_bytes"].as_u64().unwrap(), data);
}

/// Builds base (dynamic) → mid → top, writing through `vine disk serve` at each level, and the
/// same writes into a raw oracle with qemu-io.
fn build_chain(
    dir: &Path,
    depth: usize,
    size: &str,
    block: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let base = dir.join("base.vhd");
    ok(vine().args(["disk", "create"]).arg(&base).args(["--size", size, "--block-size", block]));
    let vsize = vine_info(&base)["virtual_size"].as_u64().unwrap();
    let oracle = dir.join("oracle.raw");
    raw_file(&oracle, vsize);
    let mut top = base.clone();
    for level in 0..depth {
        if level > 0 {
            let child = dir.join(format!("level{level}.vhd"));
            ok(vine().args(["disk", "create"]).arg(&child).arg("--parent").arg(&top));
            top = child;
        }
        let cmds = pattern_commands(vsize, 300 + level as u64, 25);
        let served = Served::start(&top, dir, &[]);
        qemu_io("raw", &served.url(), &cmds);
        served.stop();
        qemu_io("raw", oracle.to_str().unwrap(), &cmds);
    }
    (top, oracle)
}

#[test]
fn chain_of_depth_four_reads_right_in_7zz_vine_and_qemu_img() {
    let dir = tempfile::tempdir().unwrap();
    let (top, oracle) = build_chain(dir.path(), 4, "24M", "512K");
    let want = std::fs::read(&oracle).unwrap();
    let info = vine_info(&top);
    assert_eq!(info["chain"].as_array().unwrap().len(), 3);
    // qemu-img opens a differencing child (as a standalone disk) with the size vine reports.
    assert_eq!(qemu_info(&top, "vpc")["virtual-size"], info["virtual_size"]);
    assert!(seven_zip(&top) == want, "7zz reads the chain differently from the oracle");
    let flat = dir.path().join("flat.vhd");
    ok(vine().args(["disk", "convert"]).arg(&top).arg(&flat).args(["--to", "dynamic"]));
    qemu_compare("vpc", &flat, "raw", &oracle);
    let served = Served::start(&top, dir.path(), &["--read-only"]);
    qemu_compare("raw", served.url(), "raw", &oracle);
    served.stop();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "vhd") {
            assert_clean(&p);
        }
    }
}

#[test]
fn chain_whose_parent_changed_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (top, _) = build_chain(dir.path(), 2, "8M", "2M");
    let base = dir.path().join("base.vhd");
    // A write to the parent after the child exists.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    qemu_io("vpc", base.to_str().unwrap(), &["write -P 9 0 512".into()]);
    let out = fails(vine().args(["disk", "info"]).arg(&top));
    let t = text(&out);
    assert!(t.contains("was modified after the child was made"), "{t}");
    let out = fails(vine().args(["disk", "check"]).arg(&top));
    assert_eq!(out.status.code(), Some(1));
    // A parent replaced by another disk of the same name.
    std::fs::remove_file(&base).unwrap();
    ok(vine().args(["disk", "create"]).arg(&base).args(["--size", "8M"]));
    let t = text(&fails(vine().args(["disk", "info"]).arg(&top)));
    assert!(t.contains("it is another disk"), "{t}");
}

#[test]
fn undo_disk_commit_and_discard_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.vhd");
    ok(vine().args(["disk", "create"]).arg(&base).args(["--size", "16M"]));
    let undo = dir.path().join("undo.vhd");
    ok(vine().args(["disk", "create"]).arg(&undo).arg("--parent").arg(&base));
    let served = Served::start(&undo, dir.path(), &[]);
    qemu_io("raw", &served.url(), &["write -P 0x11 0 1M".into()]);
    served.stop();
    ok(vine().args(["disk", "commit"]).arg(&undo));
    qemu_io("vpc", base.to_str().unwrap(), &["read -P 0x11 0 1M".into()]);
    let served = Served::start(&undo, dir.path(), &[]);
    qemu_io("raw", &served.url(), &["read -P 0x11 0 1M".into(), "write -P 0x22 0 1M".into()]);
    served.stop();
    ok(vine().args(["disk", "discard"]).arg(&undo));
    let served = Served::start(&undo, dir.path(), &["--read-only"]);
    qemu_io("raw", &served.url().to_string(), &["read -P 0x11 0 1M".into()]);
    served.stop();
    assert_clean(&undo);
    assert_clean(&base);
}

#[test]
fn differencing_partial_block_writes_keep_neighbours_from_the_parent_in_7zz() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.vhd");
    ok(vine().args(["disk", "create"]).arg(&base).args(["--size", "4M"]));
    let s = Served::start(&base, dir.path(), &[]);
    qemu_io("raw", &s.url(), &["write -P 0xaa 0 2M".into()]);
    s.stop();
    let child = dir.path().join("child.vhd");
    ok(vine().args(["disk", "create"]).arg(&child).arg("--parent").arg(&base));
    let s = Served::start(&child, dir.path(), &[]);
    qemu_io("raw", &s.url(), &["write -P 0xbb 4096 512".into(), "write -z 8192 1024".into()]);
    s.stop();
    let got = seven_zip(&child);
    let mut want = vec![0u8; got.len()];
    want[..2 << 20].fill(0xaa);
    want[4096..4608].fill(0xbb);
    want[8192..9216].fill(0);
    assert!(got == want, "7zz must see parent data around the child's sectors");
}

#[test]
fn compact_and_resize_keep_qemu_compare_equal() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.vhd");
    ok(vine().args(["disk", "create"]).arg(&p).args(["--size", "32M"]));
    let oracle = dir.path().join("o.raw");
    let vsize = vine_info(&p)["virtual_size"].as_u64().unwrap();
    raw_file(&oracle, vsize);
    let cmds = vec!["write -P 5 0 6M".to_string(), "write -P 6 20M 1M".into(), "write -z 0 4M".into()];
    let s = Served::start(&p, dir.path(), &[]);
    qemu_io("raw", &s.url(), &cmds);
    s.stop();
    qemu_io("raw", oracle.to_str().unwrap(), &cmds);
    let before = std::fs::metadata(&p).unwrap().len();
    ok(vine().args(["disk", "compact"]).arg(&p));
    assert!(std::fs::metadata(&p).unwrap().len() < before, "compaction gave nothing back");
    qemu_compare("vpc", &p, "raw", &oracle);
    ok(vine().args(["disk", "resize"]).arg(&p).args(["--size", "100M"]));
    let grown = vine_info(&p)["virtual_size"].as_u64().unwrap();
    assert_eq!(qemu_info(&p, "vpc")["virtual-size"].as_u64().unwrap(), grown);
    qemu_compare("vpc", &p, "raw", &oracle);
    assert_clean(&p);
}
