//! One VHD file, on its own: opening and validating its metadata, mapping guest offsets to file
//! offsets, writing with crash-consistent block allocation, and flushing metadata.
//!
//! Ordering rules (see docs/disk.md, "Crash safety"):
//! * a new block goes where the EOF footer was; the footer is first rewritten at the new end of
//!   file, so the file always ends in a valid footer;
//! * a BAT entry reaches the disk only in [`VhdFile::flush`], after the block's data and bitmap
//!   are durable; until then the block is leaked space that reopening reclaims;
//! * a dynamic disk's bitmap bits are written before the sectors' data (a set bit over zeros is
//!   valid); a differencing disk's bits are written only in `flush`, after the data is durable,
//!   because a set bit hides the parent.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use crate::backing::Backing;
use crate::error::{FormatError, Result, VhdError};
use crate::footer::{DiskType, Footer};
use crate::header::DynamicHeader;
use crate::spec::{self, BAT_UNALLOCATED, FOOTER_LEN, HEADER_LEN, SECTOR};

/// Where a range of guest bytes lives in one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtentKind {
    /// In this file at the given offset.
    Data(u64),
    /// Never written: zeros.
    Zero,
    /// Not in this file: ask the parent.
    Below,
}

/// A run of guest bytes with one [`ExtentKind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Length in bytes.
    pub len: u64,
    /// Where the bytes are.
    pub kind: ExtentKind,
}

/// How to open a file.
#[derive(Debug, Clone, Copy)]
pub struct FileOptions {
    /// Open for writing (takes an exclusive lock when `lock` is set).
    pub writable: bool,
    /// Take an advisory lock: exclusive for writers, shared for readers.
    pub lock: bool,
}

/// A VHD file of any type.
#[derive(Debug)]
pub struct VhdFile {
    path: PathBuf,
    io: Box<dyn Backing>,
    footer: Footer,
    notes: Vec<String>,
    sparse: Option<Sparse>,
    writable: bool,
}

#[derive(Debug)]
struct Sparse {
    header: DynamicHeader,
    header_offset: u64,
    block_size: u64,
    bitmap_len: u64,
    /// End of the metadata (header, BAT, locator data): no block may start before it.
    meta_end: u64,
    state: Mutex<SparseState>,
    flush_lock: Mutex<()>,
}

#[derive(Debug)]
struct SparseState {
    bat: Vec<u32>,
    on_disk_bat: Vec<u32>,
    bitmaps: HashMap<u32, Vec<u8>>,
    /// Offset of the EOF footer = where the next block goes.
    next_free: u64,
    dirty_bat: BTreeSet<u32>,
    dirty_bitmaps: BTreeSet<u32>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl VhdFile {
    /// Opens the file at `path`.
    pub fn open(path: &Path, opts: FileOptions) -> Result<VhdFile> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(opts.writable)
            .open(path)
            .map_err(|e| VhdError::io("open", path, e))?;
        if opts.lock {
            if let Err(holder) =
                crate::lock::lock(&file, opts.writable).map_err(|e| VhdError::io("lock", path, e))?
            {
                return Err(VhdError::Locked { path: path.to_path_buf(), holder });
            }
        }
        Self::open_backing(path, Box::new(file), opts.writable)
    }

    /// Opens an image on an arbitrary backing (tests use a failing one).
    pub fn open_backing(path: &Path, io: Box<dyn Backing>, writable: bool) -> Result<VhdFile> {
        let path = path.to_path_buf();
        let len = io.len().map_err(|e| VhdError::io("stat", &path, e))?;
        let fmt = |e: FormatError| VhdError::format(&path, e);
        if len < FOOTER_LEN as u64 {
            return Err(fmt(FormatError::Truncated {
                structure: "footer",
                offset: 0,
                len: FOOTER_LEN as u64,
                file_len: len,
            }));
        }
        let mut notes = Vec::new();
        let eof_at = if len % SECTOR == 511 { len - 511 } else { len - FOOTER_LEN as u64 };
        let mut buf = [0u8; FOOTER_LEN];
        read(&*io, &path, &mut buf[..(len - eof_at) as usize], eof_at)?;
        let eof = Footer::decode(&buf, eof_at);
        let mut copy_buf = [0u8; FOOTER_LEN];
        read(&*io, &path, &mut copy_buf, 0)?;
        let copy = Footer::decode(&copy_buf, 0);
        let footer = match (eof, copy) {
            (Ok(f), Ok(c)) => {
                if f.disk_type.is_sparse() && f != c {
                    notes.push(
                        "the footer copy at offset 0 differs from the footer at the end of the file".into(),
                    );
                }
                f
            }
            (Ok(f), Err(_)) => {
                if f.disk_type.is_sparse() {
                    notes.push("the footer copy at offset 0 is damaged".into());
                }
                f
            }
            (Err(_), Ok(c)) if c.disk_type.is_sparse() => {
                notes.push(format!("the footer at the end of the file (offset {eof_at:#x}) is damaged; using the copy at offset 0"));
                c
            }
            (Err(e), _) => return Err(fmt(e)),
        };
        if len % SECTOR == 511 {
            notes.push("old 511-byte footer (Virtual PC 2004 and earlier)".into());
        }
        if footer.disk_type == DiskType::Fixed {
            let expected = footer.current_size + FOOTER_LEN as u64;
            if len != expected && len % SECTOR != 511 {
                return Err(fmt(FormatError::BadField {
                    structure: "footer",
                    field: "Current Size",
                    offset: eof_at + spec::footer_off::CURRENT_SIZE as u64,
                    value: footer.current_size,
                    reason: format!("a fixed disk of this size must be a {expected}-byte file, but the file is {len} bytes"),
                }));
            }
            return Ok(VhdFile { path, io, footer, notes, sparse: None, writable });
        }
        let eof_ok = Footer::decode(&buf, eof_at).is_ok();
        let sparse = Self::open_sparse(&path, &*io, &footer, len, eof_at, eof_ok)?;
        let file = VhdFile { path, io, footer, notes, sparse: Some(sparse), writable };
        if writable {
            file.reclaim_tail(len, eof_ok)?;
        }
        Ok(file)
    }

    fn open_sparse(
        path: &Path,
        io: &dyn Backing,
        footer: &Footer,
        len: u64,
        eof_at: u64,
        eof_ok: bool,
    ) -> Result<Sparse> {
        let fmt = |e: FormatError| VhdError::format(path, e);
        let header_offset = footer.data_offset;
        if header_offset.checked_add(HEADER_LEN as u64).is_none_or(|end| end > len) {
            return Err(fmt(FormatError::Truncated {
                structure: "dynamic header",
                offset: header_offset,
                len: HEADER_LEN as u64,
                file_len: len,
            }));
        }
        let mut hb = [0u8; HEADER_LEN];
        read(io, path, &mut hb, header_offset)?;
        let header = DynamicHeader::decode(&hb, header_offset).map_err(fmt)?;
        let block_size = u64::from(header.block_size);
        let needed = footer.current_size.div_ceil(block_size);
        let field = |name: &'static str, o: usize, value: u64, reason: String| {
            fmt(FormatError::BadField {
                structure: "dynamic header",
                field: name,
                offset: header_offset + o as u64,
                value,
                reason,
            })
        };
        if u64::from(header.max_table_entries) < needed {
            return Err(field(
                "Max Table Entries",
                spec::header_off::MAX_TABLE_ENTRIES,
                header.max_table_entries.into(),
                format!("{} bytes in {}-byte blocks need {needed} entries", footer.current_size, block_size),
            ));
        }
        let bat_bytes = header.bat_bytes();
        let bat_end = header.table_offset + bat_bytes;
        if bat_end > len {
            return Err(fmt(FormatError::Truncated {
                structure: "block allocation table",
                offset: header.table_offset,
                len: bat_bytes,
                file_len: len,
            }));
        }
        if ranges_overlap(header.table_offset, bat_end, header_offset, header_offset + HEADER_LEN as u64)
            || header.table_offset < FOOTER_LEN as u64
        {
            return Err(fmt(FormatError::Overlap {
                first: "block allocation table".into(),
                first_start: header.table_offset,
                first_end: bat_end,
                second: "dynamic header or footer copy".into(),
                second_start: header_offset,
                second_end: header_offset + HEADER_LEN as u64,
            }));
        }
        let mut raw = vec![0u8; bat_bytes as usize];
        read(io, path, &mut raw, header.table_offset)?;
        let entries = usize::try_from(needed).expect("at most 2^32 entries");
        let bat: Vec<u32> =
            raw.chunks_exact(4).take(entries).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]])).collect();
        let mut meta_end = bat_end.max(header_offset + HEADER_LEN as u64);
        if footer.disk_type == DiskType::Differencing {
            for (slot, l) in header.used_locators() {
                let space = l.space_bytes().ok_or_else(|| {
                    field(
                        "Parent Locator Data Space",
                        spec::header_off::LOCATORS + slot * 24 + 4,
                        l.data_space.into(),
                        "neither a sector count nor a multiple of 512 bytes".into(),
                    )
                })?;
                let end = l.data_offset.checked_add(space.max(u64::from(l.data_len)));
                if l.data_offset % SECTOR != 0
                    || end.is_none_or(|e| e > eof_at)
                    || l.data_offset < FOOTER_LEN as u64
                {
                    return Err(field(
                        "Parent Locator Data Offset",
                        spec::header_off::LOCATORS + slot * 24 + 16,
                        l.data_offset,
                        format!("locator data ({} bytes) must be sector aligned and inside the file ({len} bytes)", l.data_len),
                    ));
                }
                meta_end = meta_end.max(end.expect("checked above"));
            }
        }
        let bitmap_len = spec::bitmap_len(header.block_size);
        let limit = if eof_ok { eof_at } else { len };
        let mut next_free = meta_end;
        for (i, &e) in bat.iter().enumerate() {
            if e == BAT_UNALLOCATED {
                continue;
            }
            let start = u64::from(e) * SECTOR;
            let end = start + bitmap_len + block_size;
            let at = header.table_offset + 4 * i as u64;
            if end > limit {
                return Err(fmt(FormatError::BadField {
                    structure: "block allocation table",
                    field: "entry",
                    offset: at,
                    value: e.into(),
                    reason: format!("block {i} at {start:#x}..{end:#x} ends past the data area (which ends at {limit:#x}); the image is truncated"),
                }));
            }
            if start < FOOTER_LEN as u64
                || ranges_overlap(start, end, header_offset, header_offset + HEADER_LEN as u64)
                || ranges_overlap(start, end, header.table_offset, bat_end)
            {
                return Err(fmt(FormatError::BadField {
                    structure: "block allocation table",
                    field: "entry",
                    offset: at,
                    value: e.into(),
                    reason: format!("block {i} at {start:#x}..{end:#x} overlaps the image's metadata"),
                }));
            }
            next_free = next_free.max(end);
        }
        Ok(Sparse {
            header,
            header_offset,
            block_size,
            bitmap_len,
            meta_end,
            state: Mutex::new(SparseState {
                on_disk_bat: bat.clone(),
                bat,
                bitmaps: HashMap::new(),
                next_free,
                dirty_bat: BTreeSet::new(),
                dirty_bitmaps: BTreeSet::new(),
            }),
            flush_lock: Mutex::new(()),
        })
    }

    /// On a writable open, puts the footer right after the last block and drops any leaked
    /// tail (blocks an interrupted writer allocated but never recorded).
    fn reclaim_tail(&self, len: u64, eof_ok: bool) -> Result<()> {
        let sparse = self.sparse.as_ref().expect("sparse image");
        let st = lock(&sparse.state);
        let end = st.next_free;
        if eof_ok && end + FOOTER_LEN as u64 == len {
            return Ok(());
        }
        let footer = self.footer.encode();
        self.write_raw(&footer, end)?;
        self.io.sync().map_err(|e| VhdError::io("sync", &self.path, e))?;
        self.io.set_len(end + FOOTER_LEN as u64).map_err(|e| VhdError::io("truncate", &self.path, e))?;
        tracing::info!(image = %self.path.display(), leaked = len.saturating_sub(end + FOOTER_LEN as u64), "reclaimed the tail of an image");
        Ok(())
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The footer in force.
    pub fn footer(&self) -> &Footer {
        &self.footer
    }
    /// The dynamic header of a dynamic or differencing disk.
    pub fn header(&self) -> Option<&DynamicHeader> {
        self.sparse.as_ref().map(|s| &s.header)
    }
    /// Where the dynamic header lives.
    pub fn header_offset(&self) -> Option<u64> {
        self.sparse.as_ref().map(|s| s.header_offset)
    }
    /// Recoverable oddities noticed while opening.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }
    /// Guest-visible size.
    pub fn size(&self) -> u64 {
        self.footer.current_size
    }
    /// The disk type.
    pub fn disk_type(&self) -> DiskType {
        self.footer.disk_type
    }
    /// Whether writes are allowed.
    pub fn writable(&self) -> bool {
        self.writable
    }
    /// The backing file.
    pub fn backing(&self) -> &dyn Backing {
        &*self.io
    }
    /// Data bytes per block (sparse disks).
    pub fn block_size(&self) -> Option<u64> {
        self.sparse.as_ref().map(|s| s.block_size)
    }
    /// A copy of the in-memory BAT (sparse disks).
    pub fn bat(&self) -> Vec<u32> {
        self.sparse.as_ref().map(|s| lock(&s.state).bat.clone()).unwrap_or_default()
    }
    /// Offset of the EOF footer (= end of the data area).
    pub fn data_end(&self) -> Result<u64> {
        match &self.sparse {
            Some(s) => Ok(lock(&s.state).next_free),
            None => Ok(self.footer.current_size),
        }
    }
    /// End of the header, BAT and locator data.
    pub fn meta_end(&self) -> u64 {
        self.sparse.as_ref().map(|s| s.meta_end).unwrap_or(0)
    }
    /// Bytes of the bitmap in front of each block.
    pub fn bitmap_len(&self) -> u64 {
        self.sparse.as_ref().map(|s| s.bitmap_len).unwrap_or(0)
    }
    /// Number of allocated blocks.
    pub fn allocated_blocks(&self) -> u64 {
        self.sparse
            .as_ref()
            .map(|s| lock(&s.state).bat.iter().filter(|&&e| e != BAT_UNALLOCATED).count() as u64)
            .unwrap_or(0)
    }

    /// The sector bitmap of block `b` (which must be allocated).
    pub fn bitmap(&self, b: u32) -> Result<Vec<u8>> {
        let sparse = self.sparse.as_ref().expect("sparse image");
        let mut st = lock(&sparse.state);
        self.load_bitmap(sparse, &mut st, b)?;
        Ok(st.bitmaps[&b].clone())
    }

    fn load_bitmap(&self, sparse: &Sparse, st: &mut SparseState, b: u32) -> Result<()> {
        if st.bitmaps.contains_key(&b) {
            return Ok(());
        }
        let e = st.bat[b as usize];
        debug_assert_ne!(e, BAT_UNALLOCATED);
        let mut bm = vec![0u8; sparse.bitmap_len as usize];
        read(&*self.io, &self.path, &mut bm, u64::from(e) * SECTOR)?;
        st.bitmaps.insert(b, bm);
        Ok(())
    }

    /// Maps `len` guest bytes at `offset` (inside the disk) onto extents, appended to `out`.
    pub fn map(&self, offset: u64, len: u64, out: &mut Vec<Extent>) -> Result<()> {
        let Some(sparse) = &self.sparse else {
            push(out, len, ExtentKind::Data(offset));
            return Ok(());
        };
        let diff = self.footer.disk_type == DiskType::Differencing;
        let bs = sparse.block_size;
        let mut pos = offset;
        let end = offset + len;
        let mut st = lock(&sparse.state);
        while pos < end {
            let b = pos / bs;
            let in_block = pos % bs;
            let n = (bs - in_block).min(end - pos);
            let e = st.bat[b as usize];
            if e == BAT_UNALLOCATED {
                push(out, n, if diff { ExtentKind::Below } else { ExtentKind::Zero });
            } else {
                let data = u64::from(e) * SECTOR + sparse.bitmap_len;
                if !diff {
                    push(out, n, ExtentKind::Data(data + in_block));
                } else {
                    self.load_bitmap(sparse, &mut st, b as u32)?;
                    let bm = &st.bitmaps[&(b as u32)];
                    let mut p = in_block;
                    let stop = in_block + n;
                    while p < stop {
                        let s = p / SECTOR;
                        let next = ((s + 1) * SECTOR).min(stop);
                        let kind = if bit(bm, s) { ExtentKind::Data(data + p) } else { ExtentKind::Below };
                        push(out, next - p, kind);
                        p = next;
                    }
                }
            }
            pos += n;
        }
        Ok(())
    }

    /// Reads file bytes (data found through [`VhdFile::map`]).
    pub fn read_data(&self, buf: &mut [u8], file_offset: u64) -> Result<()> {
        read(&*self.io, &self.path, buf, file_offset)
    }

    fn write_raw(&self, buf: &[u8], at: u64) -> Result<()> {
        self.io.write_at(buf, at).map_err(|e| VhdError::io("write", &self.path, e))
    }

    /// Writes sector-aligned `buf` at sector-aligned `offset` into this file.
    pub fn write_aligned(&self, buf: &[u8], offset: u64) -> Result<()> {
        debug_assert!(offset.is_multiple_of(SECTOR) && (buf.len() as u64).is_multiple_of(SECTOR));
        if !self.writable {
            return Err(block::BlockError::ReadOnly.into());
        }
        block::check_range(offset, buf.len() as u64, self.size())?;
        let Some(sparse) = &self.sparse else {
            return self.write_raw(buf, offset);
        };
        let bs = sparse.block_size;
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let b = (pos / bs) as u32;
            let in_block = pos % bs;
            let n = (bs - in_block).min((buf.len() - done) as u64) as usize;
            self.write_in_block(sparse, b, in_block, &buf[done..done + n])?;
            done += n;
        }
        Ok(())
    }

    fn write_in_block(&self, sparse: &Sparse, b: u32, in_block: u64, data: &[u8]) -> Result<()> {
        let diff = self.footer.disk_type == DiskType::Differencing;
        let first = in_block / SECTOR;
        let count = data.len() as u64 / SECTOR;
        let mut st = lock(&sparse.state);
        let e = match st.bat[b as usize] {
            BAT_UNALLOCATED => self.allocate(sparse, &mut st, b)?,
            e => e,
        };
        let block_at = u64::from(e) * SECTOR;
        let data_at = block_at + sparse.bitmap_len + in_block;
        if diff {
            drop(st);
            self.write_raw(data, data_at)?;
            let mut st = lock(&sparse.state);
            self.load_bitmap(sparse, &mut st, b)?;
            let bm = st.bitmaps.get_mut(&b).expect("just loaded");
            if set_bits(bm, first, count) {
                st.dirty_bitmaps.insert(b);
            }
        } else {
            self.load_bitmap(sparse, &mut st, b)?;
            let bm = st.bitmaps.get_mut(&b).expect("just loaded");
            if set_bits(bm, first, count) {
                // Bits before data: a set bit over zeros is a valid dynamic sector.
                let lo = (first / 8) / SECTOR * SECTOR;
                let hi = spec::round_up_sector((first + count).div_ceil(8)).expect("small");
                let bytes = bm[lo as usize..hi as usize].to_vec();
                self.write_raw(&bytes, block_at + lo)?;
            }
            drop(st);
            self.write_raw(data, data_at)?;
        }
        Ok(())
    }

    /// Allocates block `b` at the end of the data area; returns its BAT entry (in memory only
    /// until the next flush).
    fn allocate(&self, sparse: &Sparse, st: &mut SparseState, b: u32) -> Result<u32> {
        let at = st.next_free;
        let end = at + sparse.bitmap_len + sparse.block_size;
        if at / SECTOR > spec::MAX_BAT_SECTOR {
            return Err(VhdError::NoSpace {
                path: self.path.clone(),
                reason: format!(
                    "a block at offset {at:#x} cannot be addressed by a 32-bit BAT entry (2 TiB file limit)"
                ),
            });
        }
        // Footer first: the file ends in a valid footer at every instant.
        self.write_raw(&self.footer.encode(), end)?;
        st.next_free = end;
        let entry = (at / SECTOR) as u32;
        st.bat[b as usize] = entry;
        st.dirty_bat.insert(b);
        st.bitmaps.insert(b, vec![0u8; sparse.bitmap_len as usize]);
        if self.footer.disk_type == DiskType::Differencing {
            st.dirty_bitmaps.insert(b);
        } else {
            // The old footer lies where the bitmap goes: overwrite it with an empty bitmap now.
            self.write_raw(&vec![0u8; sparse.bitmap_len as usize], at)?;
        }
        Ok(entry)
    }

    /// Writes zeros over a sector-aligned range, without allocating where a dynamic disk
    /// already reads zeros.
    pub fn write_zeroes_aligned(&self, offset: u64, len: u64) -> Result<()> {
        if !self.writable {
            return Err(block::BlockError::ReadOnly.into());
        }
        block::check_range(offset, len, self.size())?;
        let skip_unallocated = self.footer.disk_type == DiskType::Dynamic;
        let bs = self.sparse.as_ref().map(|s| s.block_size).unwrap_or(1 << 20);
        let zeros = vec![0u8; bs.min(1 << 20) as usize];
        let mut pos = offset;
        let end = offset + len;
        while pos < end {
            let n = (bs - pos % bs).min(end - pos).min(zeros.len() as u64);
            let unallocated = match &self.sparse {
                Some(s) => lock(&s.state).bat[(pos / s.block_size) as usize] == BAT_UNALLOCATED,
                None => false,
            };
            if !(skip_unallocated && unallocated) {
                self.write_aligned(&zeros[..n as usize], pos)?;
            }
            pos += n;
        }
        Ok(())
    }

    /// Makes every completed write durable, then records new blocks and bitmap bits.
    pub fn flush(&self) -> Result<()> {
        let sync = || self.io.sync().map_err(|e| VhdError::io("sync", &self.path, e));
        let Some(sparse) = &self.sparse else {
            return sync();
        };
        let _one_flush_at_a_time = lock(&sparse.flush_lock);
        let (bats, bitmaps) = {
            let mut st = lock(&sparse.state);
            (std::mem::take(&mut st.dirty_bat), std::mem::take(&mut st.dirty_bitmaps))
        };
        let restore = |bats: &BTreeSet<u32>, bitmaps: &BTreeSet<u32>| {
            let mut st = lock(&sparse.state);
            st.dirty_bat.extend(bats);
            st.dirty_bitmaps.extend(bitmaps);
        };
        let result = (|| {
            sync()?;
            if bitmaps.is_empty() && bats.is_empty() {
                return Ok(());
            }
            for &b in &bitmaps {
                let (bytes, at) = {
                    let st = lock(&sparse.state);
                    (st.bitmaps[&b].clone(), u64::from(st.bat[b as usize]) * SECTOR)
                };
                self.write_raw(&bytes, at)?;
            }
            if !bats.is_empty() {
                sync()?;
                let per_sector = (SECTOR / 4) as u32;
                let sectors: BTreeSet<u32> = bats.iter().map(|b| b / per_sector).collect();
                for s in sectors {
                    let bytes = {
                        let mut st = lock(&sparse.state);
                        let lo = (s * per_sector) as usize;
                        let hi = (lo + per_sector as usize).min(st.bat.len());
                        for b in lo..hi {
                            if bats.contains(&(b as u32)) {
                                st.on_disk_bat[b] = st.bat[b];
                            }
                        }
                        let mut bytes = vec![0xFFu8; SECTOR as usize];
                        for (i, e) in st.on_disk_bat[lo..hi].iter().enumerate() {
                            bytes[i * 4..i * 4 + 4].copy_from_slice(&e.to_be_bytes());
                        }
                        bytes
                    };
                    let at = sparse.header.table_offset + u64::from(s) * SECTOR;
                    // The BAT's padding past max_table_entries must not be clobbered.
                    let keep = self.table_sector_len(sparse, s);
                    self.write_raw(&bytes[..keep], at)?;
                }
            }
            sync()
        })();
        if result.is_err() {
            restore(&bats, &bitmaps);
        }
        result
    }

    fn table_sector_len(&self, sparse: &Sparse, s: u32) -> usize {
        let total = u64::from(sparse.header.max_table_entries) * 4;
        let start = u64::from(s) * SECTOR;
        (total - start).min(SECTOR) as usize
    }

    /// Rewrites the footer (EOF first, then the copy at 0) after `update` changes it.
    pub(crate) fn rewrite_footer(&mut self, update: impl FnOnce(&mut Footer)) -> Result<()> {
        update(&mut self.footer);
        let bytes = self.footer.encode();
        let end = self.data_end()?;
        self.write_raw(&bytes, end)?;
        self.io.sync().map_err(|e| VhdError::io("sync", &self.path, e))?;
        if self.sparse.is_some() {
            self.write_raw(&bytes, 0)?;
            self.io.sync().map_err(|e| VhdError::io("sync", &self.path, e))?;
        }
        Ok(())
    }

    /// Rewrites the dynamic header in place after `update` changes it.
    pub(crate) fn rewrite_header(&mut self, update: impl FnOnce(&mut DynamicHeader)) -> Result<()> {
        let sparse = self.sparse.as_mut().expect("sparse image");
        update(&mut sparse.header);
        let bytes = sparse.header.encode();
        let at = sparse.header_offset;
        self.write_raw(&bytes, at)?;
        self.io.sync().map_err(|e| VhdError::io("sync", &self.path, e))
    }
}

impl Drop for VhdFile {
    fn drop(&mut self) {
        if self.writable {
            if let Err(e) = self.flush() {
                tracing::error!(image = %self.path.display(), error = %e, "flush on close failed");
            }
        }
    }
}

pub(crate) fn read(io: &dyn Backing, path: &Path, buf: &mut [u8], at: u64) -> Result<()> {
    io.read_at(buf, at).map_err(|e| VhdError::io("read", path, e))
}

fn push(out: &mut Vec<Extent>, len: u64, kind: ExtentKind) {
    if let Some(last) = out.last_mut() {
        let merged = match (last.kind, kind) {
            (ExtentKind::Zero, ExtentKind::Zero) | (ExtentKind::Below, ExtentKind::Below) => true,
            (ExtentKind::Data(a), ExtentKind::Data(b)) => a + last.len == b,
            _ => false,
        };
        if merged {
            last.len += len;
            return;
        }
    }
    out.push(Extent { len, kind });
}

/// Whether sector `s`'s bit is set (MSB first, spec "Block Allocation Table and Data Blocks").
pub fn bit(bm: &[u8], s: u64) -> bool {
    bm[(s / 8) as usize] & (0x80 >> (s % 8)) != 0
}

/// Sets `count` bits from sector `first`; returns whether any bit changed.
pub fn set_bits(bm: &mut [u8], first: u64, count: u64) -> bool {
    let mut changed = false;
    for s in first..first + count {
        let m = 0x80u8 >> (s % 8);
        let byte = &mut bm[(s / 8) as usize];
        if *byte & m == 0 {
            *byte |= m;
            changed = true;
        }
    }
    changed
}

fn ranges_overlap(a0: u64, a1: u64, b0: u64, b1: u64) -> bool {
    a0 < b1 && b0 < a1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_are_msb_first() {
        let mut bm = vec![0u8; 2];
        assert!(set_bits(&mut bm, 0, 1));
        assert_eq!(bm[0], 0x80);
        assert!(set_bits(&mut bm, 9, 2));
        assert_eq!(bm[1], 0x60);
        assert!(!set_bits(&mut bm, 9, 1));
        assert!(bit(&bm, 10) && !bit(&bm, 11));
    }

    #[test]
    fn adjacent_extents_merge() {
        let mut v = Vec::new();
        push(&mut v, 512, ExtentKind::Data(1024));
        push(&mut v, 512, ExtentKind::Data(1536));
        push(&mut v, 512, ExtentKind::Below);
        push(&mut v, 512, ExtentKind::Below);
        push(&mut v, 512, ExtentKind::Data(9999));
        assert_eq!(v.len(), 3);
        assert_eq!(v[0], Extent { len: 1024, kind: ExtentKind::Data(1024) });
    }
}
