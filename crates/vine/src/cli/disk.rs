//! `vine disk …`: the storage engine's commands.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Subcommand, ValueEnum};
use serde_json::json;
use vhd::create::{NewImage, SizeRule};
use vhd::footer::uuid_text;
use vhd::ops::Target;
use vhd::{DiskType, OpenOptions};

use super::size::{parse_disk_size, parse_size};

mod serve;

/// Disk subcommands.
#[derive(Debug, Subcommand)]
pub enum DiskCommand {
    /// Create a fixed, dynamic, differencing (--parent) or linked (--linked) VHD.
    Create {
        /// The new image (never overwritten).
        path: PathBuf,
        /// Virtual size, e.g. 10G or 512M; a bare number is GiB (not with --parent).
        #[arg(long, value_parser = parse_disk_size)]
        size: Option<u64>,
        /// Image type for a base disk.
        #[arg(long = "type", value_enum, default_value_t = Kind::Dynamic)]
        kind: Kind,
        /// Data block size of a dynamic disk (power of two, 512 bytes to 256 MiB).
        #[arg(long, value_parser = parse_size, default_value = "2M")]
        block_size: u64,
        /// Make a differencing disk over this parent; the size is the parent's.
        #[arg(long, conflicts_with_all = ["size", "linked"])]
        parent: Option<PathBuf>,
        /// Make a VHD view of a whole physical disk or raw image.
        #[arg(long, conflicts_with_all = ["size", "parent"])]
        linked: Option<PathBuf>,
        /// Keep the size exact (Hyper-V style) instead of rounding up to the geometry.
        #[arg(long)]
        exact_size: bool,
    },
    /// Show type, sizes, geometry, allocation, creator, unique id and the parent chain.
    Info {
        /// The image.
        path: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check every structural rule; exit 1 when anything is wrong.
    Check {
        /// The image.
        path: PathBuf,
        /// Fix what can be fixed without guessing at guest data.
        #[arg(long)]
        repair: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Copy SRC (raw or VHD; chains are flattened) into a new image DST.
    Convert {
        /// Source image.
        src: PathBuf,
        /// Destination (must not exist).
        dst: PathBuf,
        /// Output type.
        #[arg(long, value_enum)]
        to: ConvertTo,
        /// Block size of a dynamic output.
        #[arg(long, value_parser = parse_size, default_value = "2M")]
        block_size: u64,
        /// Keep a raw source's size exact instead of rounding up to the geometry.
        #[arg(long)]
        exact_size: bool,
    },
    /// Merge a differencing (undo) child into its parent; the child is left empty.
    Commit {
        /// The child.
        child: PathBuf,
    },
    /// Throw away what a differencing (undo) child holds; the child is left empty.
    Discard {
        /// The child.
        child: PathBuf,
    },
    /// Give back blocks that hold nothing.
    Compact {
        /// The image.
        path: PathBuf,
    },
    /// Grow a fixed or dynamic disk.
    Resize {
        /// The image.
        path: PathBuf,
        /// New size, e.g. 40G; a bare number is GiB (not smaller than the current one).
        #[arg(long, value_parser = parse_disk_size)]
        size: u64,
    },
    /// Accept a parent whose file time changed (e.g. after a copy) but is the same disk.
    Relink {
        /// The child.
        child: PathBuf,
    },
    /// Serve the image (with its chain) over NBD until interrupted.
    Serve(serve::ServeArgs),
    /// Run a deterministic write workload and report each completed flush (crash tests).
    #[command(hide = true)]
    Exercise {
        /// The image.
        path: PathBuf,
        /// Workload seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Number of operations.
        #[arg(long, default_value_t = 200)]
        ops: usize,
    },
}

/// Base image types.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Kind {
    /// Raw data plus footer.
    Fixed,
    /// Sparse, grows as written.
    Dynamic,
}

/// Conversion targets.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ConvertTo {
    /// Fixed VHD.
    Fixed,
    /// Dynamic VHD.
    Dynamic,
    /// Raw image.
    Raw,
}

fn block_size(v: u64) -> anyhow::Result<u32> {
    let bs = u32::try_from(v).map_err(|_| anyhow::anyhow!("--block-size {v} is too large (at most 256M)"))?;
    vhd::create::validate_block_size(bs).map_err(|e| anyhow::anyhow!("--block-size: {e}"))?;
    Ok(bs)
}

/// A progress bar on a terminal, nothing otherwise.
pub(crate) fn progress(what: &str) -> (indicatif::ProgressBar, impl FnMut(u64, u64)) {
    let bar = if std::io::stderr().is_terminal() {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {percent}% {eta}")
                .expect("static template")
                .progress_chars("=> "),
        );
        b.set_message(what.to_string());
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let b2 = bar.clone();
    (bar, move |done, total| {
        b2.set_length(total);
        b2.set_position(done);
    })
}

/// Runs a disk subcommand.
pub fn run(cmd: DiskCommand) -> anyhow::Result<i32> {
    match cmd {
        DiskCommand::Create { path, size, kind, block_size: bs, parent, linked, exact_size } => {
            let footer = if let Some(parent) = parent {
                vhd::create::create_differencing(&path, &parent)?
            } else if let Some(target) = linked {
                vhd::create::create_linked(&path, &target)?
            } else {
                let Some(size) = size else {
                    bail!("--size is required for a new base disk (e.g. --size 10G)")
                };
                let disk_type = match kind {
                    Kind::Fixed => DiskType::Fixed,
                    Kind::Dynamic => DiskType::Dynamic,
                };
                let rule = if exact_size { SizeRule::Exact } else { SizeRule::Compatible };
                vhd::create::create(&path, NewImage { size, disk_type, block_size: block_size(bs)?, rule })?
            };
            println!(
                "created {} ({}, {} bytes, uuid {})",
                path.display(),
                footer.disk_type.name(),
                footer.current_size,
                uuid_text(&footer.uuid)
            );
            Ok(0)
        }
        DiskCommand::Info { path, json } => info(&path, json),
        DiskCommand::Check { path, repair, json } => check(&path, repair, json),
        DiskCommand::Convert { src, dst, to, block_size: bs, exact_size } => {
            let target = match to {
                ConvertTo::Fixed => Target::Fixed,
                ConvertTo::Dynamic => Target::Dynamic(block_size(bs)?),
                ConvertTo::Raw => Target::Raw,
            };
            let rule = if exact_size { SizeRule::Exact } else { SizeRule::Compatible };
            if dst.exists() {
                bail!("{} already exists; vine does not overwrite images", dst.display());
            }
            let (bar, mut cb) = progress("converting");
            vhd::ops::convert(&src, &dst, target, rule, &mut cb)
                .with_context(|| format!("converting {} to {}", src.display(), dst.display()))?;
            bar.finish_and_clear();
            println!("converted {} to {}", src.display(), dst.display());
            Ok(0)
        }
        DiskCommand::Commit { child } => {
            let (bar, mut cb) = progress("committing");
            let n = vhd::ops::commit(&child, &mut cb)
                .with_context(|| format!("committing {}", child.display()))?;
            bar.finish_and_clear();
            println!("committed {n} bytes from {} into its parent; the child is now empty", child.display());
            Ok(0)
        }
        DiskCommand::Discard { child } => {
            vhd::ops::discard(&child).with_context(|| format!("discarding {}", child.display()))?;
            println!("discarded the changes held in {}", child.display());
            Ok(0)
        }
        DiskCommand::Compact { path } => {
            let (bar, mut cb) = progress("compacting");
            let saved = vhd::ops::compact(&path, &mut cb)
                .with_context(|| format!("compacting {}", path.display()))?;
            bar.finish_and_clear();
            println!("compacted {}: {saved} bytes given back", path.display());
            Ok(0)
        }
        DiskCommand::Resize { path, size } => {
            let new =
                vhd::ops::resize(&path, size).with_context(|| format!("resizing {}", path.display()))?;
            println!("{} is now {new} bytes", path.display());
            Ok(0)
        }
        DiskCommand::Relink { child } => {
            let p = vhd::ops::relink(&child).with_context(|| format!("relinking {}", child.display()))?;
            println!("{} now accepts {} as its parent", child.display(), p.display());
            Ok(0)
        }
        DiskCommand::Serve(args) => serve::run(args),
        DiskCommand::Exercise { path, seed, ops } => exercise(&path, seed, ops),
    }
}

fn info(path: &Path, as_json: bool) -> anyhow::Result<i32> {
    let disk = vhd::Disk::open(path, OpenOptions { lock: false, ..Default::default() })?;
    let mut chain = Vec::new();
    for layer in disk.layers() {
        let f = layer.footer();
        let allocated = match layer.block_size() {
            Some(bs) => layer.allocated_blocks() * bs,
            None => f.current_size,
        };
        let file_size = std::fs::metadata(layer.path()).map(|m| m.len()).unwrap_or(0);
        let h = layer.header();
        chain.push(json!({
            "path": layer.path(),
            "type": f.disk_type.name(),
            "virtual_size": f.current_size,
            "original_size": f.original_size,
            "qemu_size": f.qemu_size(),
            "geometry": {"cylinders": f.geometry.cylinders, "heads": f.geometry.heads, "sectors": f.geometry.sectors},
            "block_size": h.map(|h| h.block_size),
            "allocated_bytes": allocated,
            "file_size": file_size,
            "creator": {"app": f.creator_app_text(), "version": format!("{}.{}", f.creator_version >> 16, f.creator_version & 0xffff), "os": String::from_utf8_lossy(&f.creator_os)},
            "uuid": uuid_text(&f.uuid),
            "created": vhd::chain::vhd_time_text(f.timestamp),
            "saved_state": f.saved_state,
            "parent_uuid": h.filter(|_| f.disk_type == DiskType::Differencing).map(|h| uuid_text(&h.parent_uuid)),
            "parent_name": h.filter(|_| f.disk_type == DiskType::Differencing).map(|h| h.parent_name.clone()),
            "notes": layer.notes(),
        }));
    }
    if as_json {
        let mut top = chain[0].clone();
        top["chain"] = json!(chain[1..]);
        println!("{}", serde_json::to_string_pretty(&top)?);
        return Ok(0);
    }
    for (depth, c) in chain.iter().enumerate() {
        let indent = "  ".repeat(depth);
        if depth > 0 {
            println!("{indent}parent:");
        }
        println!("{indent}image:          {}", c["path"].as_str().unwrap_or_default());
        println!("{indent}type:           {}", c["type"].as_str().unwrap_or_default());
        println!("{indent}virtual size:   {} bytes", c["virtual_size"]);
        if c["qemu_size"] != c["virtual_size"] {
            println!(
                "{indent}qemu size:      {} bytes (QEMU and Virtual PC size it by geometry)",
                c["qemu_size"]
            );
        }
        let g = &c["geometry"];
        println!("{indent}geometry:       {}/{}/{} (C/H/S)", g["cylinders"], g["heads"], g["sectors"]);
        if !c["block_size"].is_null() {
            println!("{indent}block size:     {} bytes", c["block_size"]);
        }
        println!("{indent}allocated:      {} bytes (file {} bytes)", c["allocated_bytes"], c["file_size"]);
        let cr = &c["creator"];
        println!(
            "{indent}creator:        {} {} on {}",
            cr["app"].as_str().unwrap_or_default(),
            cr["version"].as_str().unwrap_or_default(),
            cr["os"].as_str().unwrap_or_default()
        );
        println!("{indent}created:        {}", c["created"].as_str().unwrap_or_default());
        println!("{indent}uuid:           {}", c["uuid"].as_str().unwrap_or_default());
        if let Some(p) = c["parent_uuid"].as_str() {
            println!("{indent}parent uuid:    {p}");
            println!("{indent}parent name:    {}", c["parent_name"].as_str().unwrap_or_default());
        }
        for n in c["notes"].as_array().into_iter().flatten() {
            println!("{indent}note:           {}", n.as_str().unwrap_or_default());
        }
    }
    Ok(0)
}

fn check(path: &Path, repair: bool, as_json: bool) -> anyhow::Result<i32> {
    let report = vhd::check::check(path, repair)?;
    if as_json {
        let problems: Vec<_> = report
            .problems
            .iter()
            .map(|p| json!({"message": p.message, "offset": p.offset, "repairable": p.repairable}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "path": report.path, "clean": report.is_clean(), "problems": problems,
                "notes": report.notes, "repaired": report.repaired,
            }))?
        );
    } else {
        for r in &report.repaired {
            println!("repaired: {r}");
        }
        for p in &report.problems {
            match p.offset {
                Some(o) => println!(
                    "problem at {o:#x}: {}{}",
                    p.message,
                    if p.repairable { " (repairable)" } else { "" }
                ),
                None => println!("problem: {}", p.message),
            }
        }
        for n in &report.notes {
            println!("note: {n}");
        }
        if report.is_clean() {
            println!("{}: no problems found", path.display());
        } else {
            println!("{}: {} problem(s) found", path.display(), report.problems.len());
        }
    }
    Ok(if report.is_clean() { 0 } else { 1 })
}

/// Applies `vhd::workload::generate(seed, size, ops)` and prints `flushed N` after every
/// completed flush (N = operations made durable) and `done` at the end.
fn exercise(path: &Path, seed: u64, ops: usize) -> anyhow::Result<i32> {
    use std::io::Write;
    let disk = vhd::Disk::open(path, OpenOptions { writable: true, ..Default::default() })?;
    let mut out = std::io::stdout().lock();
    for (i, op) in vhd::workload::generate(seed, disk.size(), ops).into_iter().enumerate() {
        match op {
            vhd::workload::Op::Write { offset, len, value } => {
                disk.write(&vec![value; len as usize], offset)?
            }
            vhd::workload::Op::Flush => {
                disk.flush()?;
                writeln!(out, "flushed {i}")?;
                out.flush()?;
            }
        }
    }
    disk.flush()?;
    writeln!(out, "done")?;
    Ok(0)
}
