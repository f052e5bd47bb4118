//! Checking an image against every structural rule, and repairing what can be repaired
//! without guessing at guest data.
//!
//! Rules: footer(s) valid and identical; fixed file length; header valid; BAT inside the file,
//! no block overlapping metadata, locators or another block; locator entries sane; dynamic
//! sectors whose bit is clear hold zeros; a differencing disk's parent found, the same disk
//! (unique id) and unchanged (file time).

use std::path::{Path, PathBuf};

use crate::backing::Backing;
use crate::chain::{self, file_vhd_time, vhd_time_text};
use crate::error::{Result, VhdError};
use crate::footer::{uuid_text, DiskType, Footer};
use crate::header::DynamicHeader;
use crate::image::{bit, FileOptions, VhdFile};
use crate::spec::{self, BAT_UNALLOCATED, FOOTER_LEN, HEADER_LEN, SECTOR};

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What is wrong, naming the structure and the value.
    pub message: String,
    /// File offset of the faulty bytes, when there is one.
    pub offset: Option<u64>,
    /// Whether `--repair` can fix it.
    pub repairable: bool,
}

/// The result of a check.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The image.
    pub path: PathBuf,
    /// Rules broken.
    pub problems: Vec<Problem>,
    /// Harmless observations (leaked space, unusual creators).
    pub notes: Vec<String>,
    /// What repair changed.
    pub repaired: Vec<String>,
}

impl Report {
    /// True when no rule is broken.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
    fn problem(&mut self, message: String, offset: Option<u64>, repairable: bool) {
        self.problems.push(Problem { message, offset, repairable });
    }
}

/// Checks the image at `path`; with `repair`, fixes what can be fixed and checks again.
pub fn check(path: &Path, repair: bool) -> Result<Report> {
    let report = check_once(path)?;
    if !repair || report.is_clean() || !report.problems.iter().any(|p| p.repairable) {
        return Ok(report);
    }
    let repaired = repair_image(path, &report)?;
    let mut after = check_once(path)?;
    after.repaired = repaired;
    Ok(after)
}

fn check_once(path: &Path) -> Result<Report> {
    let file = std::fs::File::open(path).map_err(|e| VhdError::io("open", path, e))?;
    check_backing(path, &file)
}

/// Checks the image held by `io` (named `path` in messages); no repair.
pub fn check_backing(path: &Path, io: &dyn Backing) -> Result<Report> {
    let len = io.len().map_err(|e| VhdError::io("stat", path, e))?;
    let mut r = Report { path: path.to_path_buf(), ..Default::default() };
    if len < FOOTER_LEN as u64 {
        r.problem(format!("file is {len} bytes, too short to hold a 512-byte footer"), Some(0), false);
        return Ok(r);
    }
    let read = |buf: &mut [u8], at: u64| io.read_at(buf, at).map_err(|e| VhdError::io("read", path, e));
    let eof_at = if len % SECTOR == 511 { len - 511 } else { len - FOOTER_LEN as u64 };
    let mut b = [0u8; FOOTER_LEN];
    read(&mut b[..(len - eof_at) as usize], eof_at)?;
    let eof = Footer::decode(&b, eof_at);
    let mut c = [0u8; FOOTER_LEN];
    read(&mut c, 0)?;
    let copy = Footer::decode(&c, 0);
    let footer = match (&eof, &copy) {
        (Ok(f), _) => f.clone(),
        (Err(e), Ok(f)) if f.disk_type.is_sparse() => {
            r.problem(format!("footer at end of file: {e}"), Some(eof_at), true);
            f.clone()
        }
        (Err(e), _) => {
            r.problem(format!("no valid footer: {e}"), Some(eof_at), false);
            return Ok(r);
        }
    };
    if footer.features & spec::FEATURE_RESERVED == 0 {
        r.notes.push("footer Features lacks the reserved bit 0x2 that the spec requires".into());
    }
    if !matches!(
        &footer.creator_app,
        b"vine"
            | b"qemu"
            | b"qem2"
            | b"win "
            | b"vpc "
            | b"vs  "
            | b"vbox"
            | b"tap\0"
            | b"d2v\0"
            | b"d2v "
            | b"CTXS"
            | b"wa\0\0"
    ) {
        r.notes.push(format!("unusual creator application {:?}", footer.creator_app_text()));
    }
    if (&footer.creator_app == b"vpc " || &footer.creator_app == b"qemu")
        && footer.qemu_size() != footer.current_size
    {
        r.notes.push(format!(
            "QEMU and Virtual PC size this disk by its geometry ({} bytes), others by its current size ({} bytes)",
            footer.qemu_size(),
            footer.current_size
        ));
    }
    if footer.disk_type == DiskType::Fixed {
        let want = footer.current_size + FOOTER_LEN as u64;
        if len != want && len % SECTOR != 511 {
            r.problem(
                format!(
                    "fixed disk of {} bytes must be a {want}-byte file, but the file is {len} bytes",
                    footer.current_size
                ),
                Some(eof_at),
                false,
            );
        }
        return Ok(r);
    }
    match &copy {
        Ok(cf) if eof.is_ok() && *cf != footer => r.problem(
            "footer copy at offset 0 differs from the footer at the end of the file".into(),
            Some(0),
            true,
        ),
        Err(e) => r.problem(format!("footer copy at offset 0: {e}"), Some(0), true),
        _ => {}
    }
    let hoff = footer.data_offset;
    if hoff.checked_add(HEADER_LEN as u64).is_none_or(|e| e > len) {
        r.problem(
            format!("dynamic header offset {hoff:#x} lies outside the {len}-byte file"),
            Some(16),
            false,
        );
        return Ok(r);
    }
    let mut hb = [0u8; HEADER_LEN];
    read(&mut hb, hoff)?;
    let header = match DynamicHeader::decode(&hb, hoff) {
        Ok(h) => h,
        Err(crate::FormatError::BadChecksum { offset, stored, computed, .. }) => {
            r.problem(format!("dynamic header checksum at offset {offset:#x} is {stored:#010x}, computed {computed:#010x}"), Some(offset), true);
            let sum = spec::checksum(&hb, spec::header_off::CHECKSUM);
            spec::put_u32(&mut hb, spec::header_off::CHECKSUM, sum);
            match DynamicHeader::decode(&hb, hoff) {
                Ok(h) => h,
                Err(e) => {
                    r.problem(e.to_string(), Some(hoff), false);
                    return Ok(r);
                }
            }
        }
        Err(e) => {
            r.problem(e.to_string(), Some(hoff), false);
            return Ok(r);
        }
    };
    let bs = u64::from(header.block_size);
    let needed = footer.current_size.div_ceil(bs);
    if u64::from(header.max_table_entries) < needed {
        r.problem(
            format!("BAT has {} entries, the disk needs {needed}", header.max_table_entries),
            Some(hoff + 28),
            false,
        );
        return Ok(r);
    }
    if u64::from(header.max_table_entries) > needed {
        r.notes.push(format!(
            "BAT has {} entries, {} more than the disk needs (Azure refuses this)",
            header.max_table_entries,
            u64::from(header.max_table_entries) - needed
        ));
    }
    let bat_end = header.table_offset + header.bat_bytes();
    if bat_end > len {
        r.problem(
            format!(
                "BAT at {:#x} ({} bytes) runs past the end of the file",
                header.table_offset,
                header.bat_bytes()
            ),
            Some(hoff + 16),
            false,
        );
        return Ok(r);
    }
    let data_limit = if eof.is_ok() { eof_at } else { len };
    // Regions that must not overlap: (start, end, name).
    let mut regions: Vec<(u64, u64, String)> = vec![
        (0, FOOTER_LEN as u64, "footer copy".into()),
        (hoff, hoff + HEADER_LEN as u64, "dynamic header".into()),
        (header.table_offset, bat_end, "BAT".into()),
    ];
    if footer.disk_type == DiskType::Differencing {
        for (slot, l) in header.used_locators() {
            let at = hoff + (spec::header_off::LOCATORS + slot * 24) as u64;
            let Some(space) = l.space_bytes() else {
                r.problem(format!("parent locator {slot} ({}) data space {} is neither sectors nor a multiple of 512 bytes", l.platform_text(), l.data_space), Some(at + 4), false);
                continue;
            };
            if u64::from(l.data_len) > space {
                r.problem(
                    format!(
                        "parent locator {slot} ({}) holds {} bytes in {space} bytes of space",
                        l.platform_text(),
                        l.data_len
                    ),
                    Some(at + 8),
                    false,
                );
            }
            if l.data_offset % SECTOR != 0 || l.data_offset.saturating_add(space) > data_limit {
                r.problem(
                    format!(
                        "parent locator {slot} ({}) data at {:#x} is unaligned or outside the data area",
                        l.platform_text(),
                        l.data_offset
                    ),
                    Some(at + 16),
                    false,
                );
                continue;
            }
            regions.push((l.data_offset, l.data_offset + space, format!("parent locator {slot} data")));
        }
    }
    let bat_bytes = header.bat_bytes() as usize;
    let mut raw = vec![0u8; bat_bytes];
    read(&mut raw, header.table_offset)?;
    let blen = spec::bitmap_len(header.block_size);
    let mut bad_entries = Vec::new();
    let mut blocks = Vec::new();
    for i in 0..needed as usize {
        let e = u32::from_be_bytes([raw[i * 4], raw[i * 4 + 1], raw[i * 4 + 2], raw[i * 4 + 3]]);
        if e == BAT_UNALLOCATED {
            continue;
        }
        let start = u64::from(e) * SECTOR;
        let end = start + blen + bs;
        let at = header.table_offset + 4 * i as u64;
        if end > data_limit {
            r.problem(format!("BAT entry {i} points at {start:#x}..{end:#x}, past the end of the data area ({data_limit:#x})"), Some(at), true);
            bad_entries.push(i);
            continue;
        }
        if let Some((_, _, name)) = regions.iter().find(|(s, t, _)| start < *t && *s < end) {
            r.problem(
                format!("BAT entry {i}: block at {start:#x}..{end:#x} overlaps the {name}"),
                Some(at),
                true,
            );
            bad_entries.push(i);
            continue;
        }
        blocks.push((start, end, i));
    }
    blocks.sort();
    for w in blocks.windows(2) {
        if w[0].1 > w[1].0 {
            r.problem(
                format!("blocks {} and {} overlap at {:#x}", w[0].2, w[1].2, w[1].0),
                Some(header.table_offset + 4 * w[1].2 as u64),
                true,
            );
        }
    }
    let used_end = blocks.iter().map(|b| b.1).chain(regions.iter().map(|x| x.1)).max().unwrap_or(0);
    if eof.is_ok() && eof_at > used_end {
        r.notes.push(format!("{} bytes before the final footer belong to no block (left by an interrupted write; reclaimed when next opened for writing)", eof_at - used_end));
    }
    if footer.disk_type == DiskType::Dynamic {
        let mut buf = vec![0u8; (blen + bs) as usize];
        for &(start, _, i) in &blocks {
            read(&mut buf, start)?;
            let (bm, data) = buf.split_at(blen as usize);
            let sectors = bs / SECTOR;
            if let Some(s) = (0..sectors).find(|&s| {
                !bit(bm, s)
                    && data[(s * SECTOR) as usize..((s + 1) * SECTOR) as usize].iter().any(|&x| x != 0)
            }) {
                r.problem(format!("block {i}: sector {s} holds data but its bitmap bit is clear (spec: unwritten sectors are zero)"), Some(start), true);
            }
        }
    }
    if footer.disk_type == DiskType::Differencing {
        check_parent(path, &header, &mut r);
    }
    let _ = bad_entries;
    Ok(r)
}

fn check_parent(path: &Path, header: &DynamicHeader, r: &mut Report) {
    let child = match VhdFile::open(path, FileOptions { writable: false, lock: false }) {
        Ok(c) => c,
        Err(e) => {
            r.problem(format!("cannot open to follow the parent: {e}"), None, false);
            return;
        }
    };
    match chain::linked_target(&child) {
        Ok(Some(target)) => {
            let size = std::fs::File::open(&target).and_then(|f| block::raw::file_len(&f));
            match size {
                Ok(n) if n >= child.size() => {}
                Ok(n) => r.problem(
                    format!(
                        "linked target {} is {n} bytes, smaller than the disk ({} bytes)",
                        target.display(),
                        child.size()
                    ),
                    None,
                    false,
                ),
                Err(e) => r.problem(format!("linked target {}: {e}", target.display()), None, false),
            }
            return;
        }
        Ok(None) => {}
        Err(e) => {
            r.problem(format!("cannot read the linked target locator: {e}"), None, false);
            return;
        }
    }
    let tried = chain::parent_candidates(&child);
    for p in &tried {
        let Ok(f) = VhdFile::open(p, FileOptions { writable: false, lock: false }) else { continue };
        if f.footer().uuid != header.parent_uuid {
            r.problem(
                format!(
                    "parent candidate {} has unique id {}, the child expects {}",
                    p.display(),
                    uuid_text(&f.footer().uuid),
                    uuid_text(&header.parent_uuid)
                ),
                None,
                false,
            );
            continue;
        }
        match file_vhd_time(p) {
            Ok(t) if t != header.parent_timestamp => r.problem(
                format!("parent {} was modified after the child was made (recorded {}, now {}); `vine disk relink` accepts it", p.display(), vhd_time_text(header.parent_timestamp), vhd_time_text(t)),
                Some(child.header_offset().unwrap_or(0) + spec::header_off::PARENT_TIMESTAMP as u64),
                false,
            ),
            _ => {}
        }
        return;
    }
    r.problem(
        format!(
            "parent disk not found (tried {})",
            tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        ),
        None,
        false,
    );
}

/// Applies the repairs a report marked repairable; returns what was done.
fn repair_image(path: &Path, report: &Report) -> Result<Vec<String>> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| VhdError::io("open", path, e))?;
    if let Err(holder) = crate::lock::lock(&file, true).map_err(|e| VhdError::io("lock", path, e))? {
        return Err(VhdError::Locked { path: path.to_path_buf(), holder });
    }
    let io: &dyn Backing = &file;
    let w = |buf: &[u8], at: u64| io.write_at(buf, at).map_err(|e| VhdError::io("write", path, e));
    let sync = || io.sync().map_err(|e| VhdError::io("sync", path, e));
    let len = io.len().map_err(|e| VhdError::io("stat", path, e))?;
    let mut done = Vec::new();
    let mut c = [0u8; FOOTER_LEN];
    io.read_at(&mut c, 0).map_err(|e| VhdError::io("read", path, e))?;
    let eof_at = len.saturating_sub(FOOTER_LEN as u64);
    let mut e = [0u8; FOOTER_LEN];
    io.read_at(&mut e, eof_at).map_err(|e| VhdError::io("read", path, e))?;
    let footer = match Footer::decode(&e, eof_at) {
        Ok(f) => f,
        Err(_) => Footer::decode(&c, 0).map_err(|err| VhdError::format(path, err))?,
    };
    let hoff = footer.data_offset;
    let mut hb = [0u8; HEADER_LEN];
    io.read_at(&mut hb, hoff).map_err(|e| VhdError::io("read", path, e))?;
    if DynamicHeader::decode(&hb, hoff).is_err() {
        let sum = spec::checksum(&hb, spec::header_off::CHECKSUM);
        spec::put_u32(&mut hb, spec::header_off::CHECKSUM, sum);
        let header = DynamicHeader::decode(&hb, hoff).map_err(|err| VhdError::format(path, err))?;
        w(&header.encode(), hoff)?;
        sync()?;
        done.push("rewrote the dynamic header checksum".into());
    }
    let header = DynamicHeader::decode(&hb, hoff).map_err(|err| VhdError::format(path, err))?;
    // Unhook BAT entries the check condemned (they point outside the file or into metadata).
    for p in report
        .problems
        .iter()
        .filter(|p| p.repairable && (p.message.starts_with("BAT entry") || p.message.starts_with("blocks ")))
    {
        if let Some(at) = p.offset {
            w(&BAT_UNALLOCATED.to_be_bytes(), at)?;
            done.push(format!("unallocated the BAT entry at {at:#x} ({})", p.message));
        }
    }
    sync()?;
    // Set bitmap bits over sectors that hold data.
    for p in report.problems.iter().filter(|p| p.message.contains("bitmap bit is clear")) {
        if let Some(start) = p.offset {
            let blen = spec::bitmap_len(header.block_size);
            w(&vec![0xFFu8; blen as usize], start)?;
            done.push(format!("marked every sector of the block at {start:#x} as written"));
        }
    }
    sync()?;
    drop(file);
    // Reopening for writing rewrites a missing EOF footer and drops a leaked tail.
    let f = VhdFile::open(path, FileOptions { writable: true, lock: true })?;
    let bytes = f.footer().encode();
    let end = f.data_end()?;
    drop(f);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| VhdError::io("open", path, e))?;
    let io: &dyn Backing = &file;
    io.write_at(&bytes, end).map_err(|e| VhdError::io("write", path, e))?;
    io.sync().map_err(|e| VhdError::io("sync", path, e))?;
    io.write_at(&bytes, 0).map_err(|e| VhdError::io("write", path, e))?;
    io.set_len(end + FOOTER_LEN as u64).map_err(|e| VhdError::io("truncate", path, e))?;
    io.sync().map_err(|e| VhdError::io("sync", path, e))?;
    done.push(format!("wrote the footer at {end:#x} and at offset 0"));
    Ok(done)
}
