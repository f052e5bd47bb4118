//! Whole-image operations: convert (and flatten), commit and discard of differencing/undo
//! children, compact, grow, relink. Each says how it stays safe if interrupted.

use std::fs::File;
use std::path::{Path, PathBuf};

use block::raw::RawFile;
use block::BlockDevice;

use crate::backing::Backing;
use crate::chain::{self, file_vhd_time, Disk, OpenOptions};
use crate::create::{self, base_footer, empty_header, write_sparse_layout, NewImage, SizeRule};
use crate::error::{Result, VhdError};
use crate::footer::{DiskType, Footer};
use crate::geometry::Geometry;
use crate::image::{FileOptions, VhdFile};
use crate::spec::{self, BAT_UNALLOCATED, FOOTER_COOKIE, FOOTER_LEN, SECTOR};

/// Progress callback: (bytes done, bytes total).
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

/// What `convert` produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A fixed VHD.
    Fixed,
    /// A dynamic VHD with this block size.
    Dynamic(u32),
    /// A raw image (sparse where the source reads zeros).
    Raw,
}

/// Whether the file at `path` is a VHD (a footer cookie at its end, or at 0 for sparse types).
pub fn is_vhd(path: &Path) -> Result<bool> {
    let f = File::open(path).map_err(|e| VhdError::io("open", path, e))?;
    let len = block::raw::file_len(&f).map_err(|e| VhdError::io("stat", path, e))?;
    let mut cookie = [0u8; 8];
    if len >= FOOTER_LEN as u64 {
        let at = if len % SECTOR == 511 { len - 511 } else { len - FOOTER_LEN as u64 };
        Backing::read_at(&f, &mut cookie, at).map_err(|e| VhdError::io("read", path, e))?;
        if &cookie == FOOTER_COOKIE {
            return Ok(true);
        }
        Backing::read_at(&f, &mut cookie, 0).map_err(|e| VhdError::io("read", path, e))?;
        return Ok(&cookie == FOOTER_COOKIE);
    }
    Ok(false)
}

/// Opens a source for reading: a VHD with its chain, or a raw file.
pub fn open_source(path: &Path) -> Result<(Box<dyn BlockDevice>, Option<Footer>)> {
    if is_vhd(path)? {
        let d = Disk::open(path, OpenOptions::default())?;
        let f = d.top().footer().clone();
        Ok((Box::new(d), Some(f)))
    } else {
        let r = RawFile::open(path, true).map_err(|e| VhdError::io("open", path, e))?;
        Ok((Box::new(r), None))
    }
}

/// Copies `src` (raw or VHD, chains flattened) into a new image `dst`. A VHD source keeps its
/// size and geometry; a raw source is sized by `rule`. The new image gets a new unique id.
pub fn convert(src: &Path, dst: &Path, to: Target, rule: SizeRule, progress: Progress) -> Result<()> {
    let (source, footer) = open_source(src)?;
    let size = source.info().size;
    let (geometry, vsize) = match &footer {
        Some(f) => (f.geometry, f.current_size),
        None => create::plan_size(size, rule)?,
    };
    let result = (|| {
        let sink: Box<dyn BlockDevice> = match to {
            Target::Raw => {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(dst)
                    .map_err(|e| VhdError::io("create", dst, e))?;
                f.set_len(vsize).map_err(|e| VhdError::io("truncate", dst, e))?;
                drop(f);
                Box::new(RawFile::open(dst, false).map_err(|e| VhdError::io("open", dst, e))?)
            }
            Target::Fixed => {
                create_exact(dst, DiskType::Fixed, vsize, geometry, spec::DEFAULT_BLOCK_SIZE)?;
                Box::new(Disk::open(dst, OpenOptions { writable: true, ..Default::default() })?)
            }
            Target::Dynamic(bs) => {
                create::validate_block_size(bs)?;
                create_exact(dst, DiskType::Dynamic, vsize, geometry, bs)?;
                Box::new(Disk::open(dst, OpenOptions { writable: true, ..Default::default() })?)
            }
        };
        let skip_zeros = to != Target::Fixed;
        copy(&*source, &*sink, size.min(vsize), skip_zeros, progress)?;
        sink.flush()?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(dst);
    }
    result
}

fn copy(
    src: &dyn BlockDevice,
    dst: &dyn BlockDevice,
    len: u64,
    skip_zeros: bool,
    progress: Progress,
) -> Result<()> {
    const CHUNK: u64 = 2 << 20;
    let mut buf = vec![0u8; CHUNK as usize];
    let mut pos = 0;
    while pos < len {
        let n = CHUNK.min(len - pos) as usize;
        src.read_at(&mut buf[..n], pos)?;
        if !(skip_zeros && buf[..n].iter().all(|&b| b == 0)) {
            dst.write_at(&buf[..n], pos)?;
        }
        pos += n as u64;
        progress(pos, len);
    }
    Ok(())
}

/// Creates a fixed or dynamic image with exactly this size and geometry.
pub(crate) fn create_exact(
    path: &Path,
    t: DiskType,
    size: u64,
    geometry: Geometry,
    bs: u32,
) -> Result<Footer> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| VhdError::io("create", path, e))?;
    let footer = base_footer(t, size, geometry);
    match t {
        DiskType::Fixed => {
            Backing::write_at(&f, &footer.encode(), size).map_err(|e| VhdError::io("write", path, e))?;
            f.sync_all().map_err(|e| VhdError::io("sync", path, e))?;
        }
        _ => {
            write_sparse_layout(&f, path, &footer, &empty_header(size, bs), &[])?;
        }
    }
    Ok(footer)
}

/// Finds the parent file of a differencing disk (unique id checked, file time not).
pub fn parent_path(child: &VhdFile) -> Result<PathBuf> {
    let header = child.header().ok_or_else(|| VhdError::Unsupported {
        path: child.path().to_path_buf(),
        reason: "not a differencing disk".into(),
    })?;
    let tried = chain::parent_candidates(child);
    for p in &tried {
        if let Ok(f) = VhdFile::open(p, FileOptions { writable: false, lock: false }) {
            if f.footer().uuid == header.parent_uuid {
                return Ok(p.clone());
            }
        }
    }
    Err(VhdError::ParentNotFound { child: child.path().to_path_buf(), tried })
}

fn open_child_rw(path: &Path) -> Result<VhdFile> {
    let child = VhdFile::open(path, FileOptions { writable: true, lock: true })?;
    if child.disk_type() != DiskType::Differencing {
        return Err(VhdError::Unsupported {
            path: path.to_path_buf(),
            reason: format!(
                "is a {} disk; only differencing (undo) disks can be committed or discarded",
                child.disk_type().name()
            ),
        });
    }
    Ok(child)
}

/// Merges every sector a differencing child holds into its parent, then empties the child so
/// it is again a valid, empty child of the updated parent. Interrupted, it can simply be run
/// again: the child is emptied only after the parent is durable.
pub fn commit(path: &Path, progress: Progress) -> Result<u64> {
    let child = open_child_rw(path)?;
    let ppath = parent_path(&child)?;
    let parent = Disk::open(&ppath, OpenOptions { writable: true, check_parent_time: true, lock: true })?;
    let bat = child.bat();
    let bs = child.block_size().expect("sparse");
    let total = bat.iter().filter(|&&e| e != BAT_UNALLOCATED).count() as u64;
    let mut done = 0;
    let mut copied = 0u64;
    let mut buf = Vec::new();
    for (b, &e) in bat.iter().enumerate() {
        if e == BAT_UNALLOCATED {
            continue;
        }
        let bm = child.bitmap(b as u32)?;
        let data_at = u64::from(e) * SECTOR + child.bitmap_len();
        let sectors = bs / SECTOR;
        let mut s = 0;
        while s < sectors {
            if !crate::image::bit(&bm, s) {
                s += 1;
                continue;
            }
            let first = s;
            while s < sectors && crate::image::bit(&bm, s) {
                s += 1;
            }
            let guest = b as u64 * bs + first * SECTOR;
            let len = ((s - first) * SECTOR).min(child.size().saturating_sub(guest));
            if len == 0 {
                continue;
            }
            buf.resize(len as usize, 0);
            child.read_data(&mut buf, data_at + first * SECTOR)?;
            parent.write(&buf, guest)?;
            copied += len;
        }
        done += 1;
        progress(done, total);
    }
    parent.flush()?;
    drop(parent);
    reset_child(child, &ppath)?;
    Ok(copied)
}

/// Throws away everything a differencing (undo) child holds.
pub fn discard(path: &Path) -> Result<()> {
    let child = open_child_rw(path)?;
    let ppath = parent_path(&child)?;
    reset_child(child, &ppath)
}

/// Empties a child: unallocates every block, moves the footer back to the end of the metadata,
/// records the parent's current file time.
fn reset_child(child: VhdFile, parent: &Path) -> Result<()> {
    let path = child.path().to_path_buf();
    let header = child.header().expect("differencing").clone();
    let header_at = child.header_offset().expect("differencing");
    let footer = child.footer().clone();
    let meta_end = child.meta_end();
    let io = child.backing();
    let w = |buf: &[u8], at: u64| io.write_at(buf, at).map_err(|e| VhdError::io("write", &path, e));
    let sync = || io.sync().map_err(|e| VhdError::io("sync", &path, e));
    let bat_len = (u64::from(header.max_table_entries) * 4) as usize;
    w(&vec![0xFF; bat_len], header.table_offset)?;
    sync()?;
    w(&footer.encode(), meta_end)?;
    sync()?;
    io.set_len(meta_end + FOOTER_LEN as u64).map_err(|e| VhdError::io("truncate", &path, e))?;
    let mut h = header;
    h.parent_timestamp = file_vhd_time(parent)?;
    w(&h.encode(), header_at)?;
    sync()?;
    // Nothing was written through `child`, so closing it flushes nothing stale.
    drop(child);
    Ok(())
}

/// Gives back blocks that hold nothing: all-zero blocks of a dynamic disk, blocks with no
/// sector bits of a differencing disk. The image is rebuilt beside itself and renamed over
/// the original, so an interruption leaves the original untouched. Returns bytes saved.
pub fn compact(path: &Path, progress: Progress) -> Result<u64> {
    let src = VhdFile::open(path, FileOptions { writable: true, lock: true })?;
    if src.disk_type() == DiskType::Fixed {
        return Err(VhdError::Unsupported {
            path: path.to_path_buf(),
            reason: "a fixed disk has no blocks to give back; convert it to dynamic with `vine disk convert --to dynamic`".into(),
        });
    }
    if src.footer().saved_state {
        return Err(VhdError::Unsupported {
            path: path.to_path_buf(),
            reason:
                "the disk's saved-state flag is set (spec: no compaction while a saved state depends on it)"
                    .into(),
        });
    }
    let before = std::fs::metadata(path).map_err(|e| VhdError::io("stat", path, e))?.len();
    let tmp = sibling(path, ".compact-tmp");
    let _ = std::fs::remove_file(&tmp);
    let result: Result<()> = (|| {
        let out = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| VhdError::io("create", &tmp, e))?;
        let header = src.header().expect("sparse").clone();
        let mut locators = Vec::new();
        for (_, l) in header.used_locators() {
            let mut payload = vec![0u8; l.data_len as usize];
            src.read_data(&mut payload, l.data_offset)?;
            locators.push((l.platform, payload));
        }
        let mut fresh = header.clone();
        fresh.table_offset = spec::DEFAULT_TABLE_OFFSET;
        fresh.locators = Default::default();
        let footer = src.footer().clone();
        let mut end = write_sparse_layout(&out, &tmp, &footer, &fresh, &locators)?;
        let bat = src.bat();
        let bs = src.block_size().expect("sparse");
        let blen = src.bitmap_len();
        let mut new_bat = vec![BAT_UNALLOCATED; bat.len()];
        let mut buf = vec![0u8; (blen + bs) as usize];
        let total = bat.len() as u64;
        for (b, &e) in bat.iter().enumerate() {
            progress(b as u64 + 1, total);
            if e == BAT_UNALLOCATED {
                continue;
            }
            src.read_data(&mut buf, u64::from(e) * SECTOR)?;
            let (bm, data) = buf.split_at(blen as usize);
            let empty = match src.disk_type() {
                DiskType::Differencing => bm.iter().all(|&x| x == 0),
                _ => data.iter().all(|&x| x == 0),
            };
            if empty {
                continue;
            }
            out.write_at_all(&buf, end, &tmp)?;
            new_bat[b] = (end / SECTOR) as u32;
            end += blen + bs;
        }
        out.write_at_all(&footer.encode(), end, &tmp)?;
        let mut raw = vec![0xFFu8; fresh.bat_bytes() as usize];
        for (i, e) in new_bat.iter().enumerate() {
            raw[i * 4..i * 4 + 4].copy_from_slice(&e.to_be_bytes());
        }
        out.write_at_all(&raw, fresh.table_offset, &tmp)?;
        out.set_len(end + FOOTER_LEN as u64).map_err(|e| VhdError::io("truncate", &tmp, e))?;
        out.sync_all().map_err(|e| VhdError::io("sync", &tmp, e))?;
        // Keep the file time: children of this disk record it.
        let mtime =
            std::fs::metadata(path).and_then(|m| m.modified()).map_err(|e| VhdError::io("stat", path, e))?;
        out.set_modified(mtime).map_err(|e| VhdError::io("set time of", &tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| VhdError::io("rename", &tmp, e))?;
        sync_dir(path)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    drop(src);
    let after = std::fs::metadata(path).map_err(|e| VhdError::io("stat", path, e))?.len();
    Ok(before.saturating_sub(after))
}

trait WriteAll {
    fn write_at_all(&self, buf: &[u8], at: u64, path: &Path) -> Result<()>;
}
impl WriteAll for File {
    fn write_at_all(&self, buf: &[u8], at: u64, path: &Path) -> Result<()> {
        Backing::write_at(self, buf, at).map_err(|e| VhdError::io("write", path, e))
    }
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

fn sync_dir(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| VhdError::io("sync", dir, e))
}

/// Grows a fixed or dynamic disk to at least `new_size` bytes (rounded like `create`).
pub fn resize(path: &Path, new_size: u64) -> Result<u64> {
    let mut disk = Disk::open(path, OpenOptions { writable: true, ..Default::default() })?;
    let top = disk.top_mut();
    let old = top.size();
    let (geometry, size) = create::plan_size(new_size, SizeRule::Compatible)?;
    if size < old {
        return Err(VhdError::Invalid(format!(
            "{}: shrinking from {old} to {size} bytes is not supported (it would cut off guest data)",
            path.display()
        )));
    }
    if size == old {
        return Ok(old);
    }
    match top.disk_type() {
        DiskType::Differencing => {
            return Err(VhdError::Unsupported {
                path: path.to_path_buf(),
                reason: "a differencing disk has its parent's size; resize the parent chain's base and make a new child".into(),
            })
        }
        DiskType::Fixed => {
            let io = top.backing();
            let w = |buf: &[u8], at: u64| io.write_at(buf, at).map_err(|e| VhdError::io("write", path, e));
            let mut f = top.footer().clone();
            f.current_size = size;
            f.geometry = geometry;
            w(&f.encode(), size)?;
            io.sync().map_err(|e| VhdError::io("sync", path, e))?;
            w(&[0u8; FOOTER_LEN], old)?;
            io.sync().map_err(|e| VhdError::io("sync", path, e))?;
            drop(disk);
            return Ok(size);
        }
        DiskType::Dynamic => {}
    }
    top.flush()?;
    let header = top.header().expect("dynamic").clone();
    let bs = u64::from(header.block_size);
    let entries = size.div_ceil(bs);
    let new_entries = u32::try_from(entries).map_err(|_| VhdError::Invalid("too many blocks".into()))?;
    let room_end = room_after_table(top, &header);
    let io_path = path.to_path_buf();
    if header.table_offset + entries * 4 <= room_end {
        // The BAT's padding already holds (or can hold) the new entries: mark them unallocated.
        let start = header.table_offset + u64::from(header.max_table_entries) * 4;
        let pad = vec![0xFFu8; (header.table_offset + entries * 4 - start) as usize];
        top.backing().write_at(&pad, start).map_err(|e| VhdError::io("write", &io_path, e))?;
        top.backing().sync().map_err(|e| VhdError::io("sync", &io_path, e))?;
        top.rewrite_header(|h| h.max_table_entries = new_entries)?;
    } else {
        // Move the BAT to the end of the data area, then point the header at it.
        let at = top.data_end()?;
        let mut raw = vec![0xFFu8; spec::round_up_sector(entries * 4).expect("small") as usize];
        for (i, e) in top.bat().iter().enumerate() {
            raw[i * 4..i * 4 + 4].copy_from_slice(&e.to_be_bytes());
        }
        let footer_at = at + raw.len() as u64;
        let io = top.backing();
        io.write_at(&top.footer().encode(), footer_at).map_err(|e| VhdError::io("write", &io_path, e))?;
        io.write_at(&raw, at).map_err(|e| VhdError::io("write", &io_path, e))?;
        io.sync().map_err(|e| VhdError::io("sync", &io_path, e))?;
        top.rewrite_header(|h| {
            h.table_offset = at;
            h.max_table_entries = new_entries;
        })?;
    }
    drop(disk);
    let mut file = VhdFile::open(path, FileOptions { writable: true, lock: true })?;
    file.rewrite_footer(|f| {
        f.current_size = size;
        f.geometry = geometry;
    })?;
    Ok(size)
}

/// Where the space after the BAT ends: the first locator, block or the EOF footer after it.
fn room_after_table(top: &VhdFile, header: &crate::header::DynamicHeader) -> u64 {
    let mut end = top.data_end().unwrap_or(0);
    for (_, l) in header.used_locators() {
        if l.data_offset >= header.table_offset {
            end = end.min(l.data_offset);
        }
    }
    for &e in &top.bat() {
        if e != BAT_UNALLOCATED {
            let at = u64::from(e) * SECTOR;
            if at >= header.table_offset {
                end = end.min(at);
            }
        }
    }
    end.min(header.table_offset + header.bat_bytes())
}

/// Records the parent's current file time in a child whose parent is the same disk (same
/// unique id) but whose file time changed, e.g. after a copy.
pub fn relink(path: &Path) -> Result<PathBuf> {
    let mut child = open_child_rw(path)?;
    let ppath = parent_path(&child)?;
    let t = file_vhd_time(&ppath)?;
    child.rewrite_header(|h| h.parent_timestamp = t)?;
    Ok(ppath)
}

/// Creates a new image of `img` (re-exported for callers that build one from options).
pub fn create(path: &Path, img: NewImage) -> Result<Footer> {
    create::create(path, img)
}
