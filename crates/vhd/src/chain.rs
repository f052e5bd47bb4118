//! [`Disk`]: an image with its whole differencing chain, as one [`BlockDevice`]. Finds parents
//! through the locators, refuses parents that are another disk or were changed, reads through
//! the chain and writes into the top file.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use block::{BlockDevice, BlockError, DeviceInfo};

use crate::error::{Result, VhdError};
use crate::footer::{uuid_text, DiskType};
use crate::image::{ExtentKind, FileOptions, VhdFile};
use crate::locator;
use crate::spec::{self, SECTOR};

/// How to open a disk.
#[derive(Debug, Clone, Copy)]
pub struct OpenOptions {
    /// Open the top file for writing (parents are always read-only).
    pub writable: bool,
    /// Refuse a parent whose file time differs from the one the child recorded.
    pub check_parent_time: bool,
    /// Take advisory locks (exclusive on a written top, shared on everything read).
    pub lock: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self { writable: false, check_parent_time: true, lock: true }
    }
}

/// A VHD and the chain of parents under it.
#[derive(Debug)]
pub struct Disk {
    layers: Vec<VhdFile>,
    /// The raw file or device under a linked disk; guest writes go straight to it.
    linked: Option<block::raw::RawFile>,
}

impl Disk {
    /// Opens `path` and every parent it needs.
    pub fn open(path: &Path, opts: OpenOptions) -> Result<Disk> {
        let top = VhdFile::open(path, FileOptions { writable: opts.writable, lock: opts.lock })?;
        let mut layers = vec![top];
        if let Some(target) = linked_target(&layers[0])? {
            let raw = block::raw::RawFile::open(&target, !opts.writable)
                .map_err(|e| VhdError::io("open linked target", &target, e))?;
            return Ok(Disk { layers, linked: Some(raw) });
        }
        let mut seen = HashSet::new();
        seen.insert(layers[0].footer().uuid);
        while layers.last().expect("non-empty").disk_type() == DiskType::Differencing {
            if layers.len() >= spec::MAX_CHAIN_DEPTH {
                return Err(VhdError::BadChain {
                    path: path.to_path_buf(),
                    reason: format!("is deeper than {} disks", spec::MAX_CHAIN_DEPTH),
                });
            }
            let child = layers.last().expect("non-empty");
            let parent = open_parent(child, opts)?;
            if !seen.insert(parent.footer().uuid) {
                return Err(VhdError::BadChain {
                    path: child.path().to_path_buf(),
                    reason: format!("loops back to {}", parent.path().display()),
                });
            }
            layers.push(parent);
        }
        Ok(Disk { layers, linked: None })
    }

    /// The raw target of a linked disk.
    pub fn linked_target(&self) -> Option<&block::raw::RawFile> {
        self.linked.as_ref()
    }

    /// The files of the chain, the opened image first.
    pub fn layers(&self) -> &[VhdFile] {
        &self.layers
    }

    /// The opened image.
    pub fn top(&self) -> &VhdFile {
        &self.layers[0]
    }

    /// Mutable access to the opened image (resize, relink).
    pub(crate) fn top_mut(&mut self) -> &mut VhdFile {
        &mut self.layers[0]
    }

    /// Guest-visible size.
    pub fn size(&self) -> u64 {
        self.layers[0].size()
    }

    fn read_layer(&self, i: usize, buf: &mut [u8], offset: u64) -> Result<()> {
        let Some(layer) = self.layers.get(i) else {
            match &self.linked {
                Some(raw) => {
                    let size = raw.info().size;
                    let inside = size.saturating_sub(offset).min(buf.len() as u64) as usize;
                    buf[inside..].fill(0);
                    raw.read_at(&mut buf[..inside], offset)?;
                }
                None => buf.fill(0),
            }
            return Ok(());
        };
        let size = layer.size();
        let inside = size.saturating_sub(offset).min(buf.len() as u64) as usize;
        buf[inside..].fill(0);
        if inside == 0 {
            return Ok(());
        }
        let mut extents = Vec::new();
        layer.map(offset, inside as u64, &mut extents)?;
        let mut pos = 0usize;
        for e in extents {
            let part = &mut buf[pos..pos + e.len as usize];
            match e.kind {
                ExtentKind::Data(at) => layer.read_data(part, at)?,
                ExtentKind::Zero => part.fill(0),
                ExtentKind::Below => self.read_layer(i + 1, part, offset + pos as u64)?,
            }
            pos += e.len as usize;
        }
        Ok(())
    }

    /// Reads through the chain.
    pub fn read(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        block::check_range(offset, buf.len() as u64, self.size())?;
        self.read_layer(0, buf, offset)
    }

    /// Writes into the top image; partial sectors are completed from the chain first.
    pub fn write(&self, buf: &[u8], offset: u64) -> Result<()> {
        let top = self.top();
        if !top.writable() {
            return Err(BlockError::ReadOnly.into());
        }
        block::check_range(offset, buf.len() as u64, self.size())?;
        if let Some(raw) = &self.linked {
            return Ok(raw.write_at(buf, offset)?);
        }
        if offset.is_multiple_of(SECTOR) && (buf.len() as u64).is_multiple_of(SECTOR) {
            return top.write_aligned(buf, offset);
        }
        let start = offset / SECTOR * SECTOR;
        let end = (offset + buf.len() as u64).div_ceil(SECTOR) * SECTOR;
        let mut whole = vec![0u8; (end - start) as usize];
        self.read(&mut whole[..SECTOR as usize], start)?;
        let last = whole.len() - SECTOR as usize;
        if last > 0 {
            self.read(&mut whole[last..], end - SECTOR)?;
        }
        let at = (offset - start) as usize;
        whole[at..at + buf.len()].copy_from_slice(buf);
        top.write_aligned(&whole, start)
    }

    /// Writes zeros, skipping what already reads as zeros in a dynamic top.
    pub fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        block::check_range(offset, len, self.size())?;
        if let Some(raw) = &self.linked {
            return Ok(raw.write_zeroes(offset, len)?);
        }
        let start = offset.div_ceil(SECTOR) * SECTOR;
        let end = (offset + len) / SECTOR * SECTOR;
        if start >= end {
            return self.write(&vec![0u8; len as usize], offset);
        }
        if start > offset {
            self.write(&vec![0u8; (start - offset) as usize], offset)?;
        }
        self.top().write_zeroes_aligned(start, end - start)?;
        if offset + len > end {
            self.write(&vec![0u8; (offset + len - end) as usize], end)?;
        }
        Ok(())
    }

    /// Flushes the top image.
    pub fn flush(&self) -> Result<()> {
        if let Some(raw) = &self.linked {
            raw.flush()?;
        }
        self.top().flush()
    }
}

impl BlockDevice for Disk {
    fn info(&self) -> DeviceInfo {
        DeviceInfo {
            size: self.size(),
            read_only: !self.top().writable(),
            preferred_block: 4096,
            can_trim: false,
        }
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), BlockError> {
        Ok(self.read(buf, offset)?)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), BlockError> {
        Ok(self.write(buf, offset)?)
    }
    fn flush(&self) -> Result<(), BlockError> {
        Ok(Disk::flush(self)?)
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), BlockError> {
        Ok(Disk::write_zeroes(self, offset, len)?)
    }
}

/// The raw target of a linked disk: a differencing-type file whose only locator is vine's
/// `vRaw` and whose parent id is zero.
pub fn linked_target(f: &VhdFile) -> Result<Option<PathBuf>> {
    let Some(h) = f.header() else { return Ok(None) };
    if f.disk_type() != DiskType::Differencing || h.parent_uuid != [0; 16] {
        return Ok(None);
    }
    if let Some((_, l)) = h.used_locators().find(|(_, l)| l.platform == spec::PLATFORM_VINE_RAW) {
        let mut payload = vec![0u8; (l.data_len as usize).min(64 * 1024)];
        f.read_data(&mut payload, l.data_offset)?;
        return Ok(locator::candidate(l.platform, &payload, Path::new("/")));
    }
    Ok(None)
}

/// Every place the parent of `child` may be, in the order they are tried.
pub fn parent_candidates(child: &VhdFile) -> Vec<PathBuf> {
    let header = child.header().expect("differencing disks have a header");
    let dir = child.path().parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    let mut out: Vec<PathBuf> = Vec::new();
    let order = [
        spec::PLATFORM_W2RU,
        spec::PLATFORM_MACX,
        spec::PLATFORM_W2KU,
        spec::PLATFORM_WI2R,
        spec::PLATFORM_WI2K,
    ];
    for code in order {
        for (_, l) in header.used_locators().filter(|(_, l)| l.platform == code) {
            let len = (l.data_len as usize).min(64 * 1024);
            let mut payload = vec![0u8; len];
            if child.read_data(&mut payload, l.data_offset).is_err() {
                continue;
            }
            if let Some(p) = locator::candidate(code, &payload, &dir) {
                if !out.contains(&p) {
                    out.push(p);
                }
            }
        }
    }
    if !header.parent_name.is_empty() {
        let name = header.parent_name.rsplit(['\\', '/']).next().unwrap_or_default();
        let p = dir.join(name);
        if !name.is_empty() && !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

fn open_parent(child: &VhdFile, opts: OpenOptions) -> Result<VhdFile> {
    let header = child.header().expect("differencing disks have a header");
    let tried = parent_candidates(child);
    let mut mismatch = None;
    for p in &tried {
        if !p.is_file() {
            continue;
        }
        let parent = match VhdFile::open(p, FileOptions { writable: false, lock: opts.lock }) {
            Ok(f) => f,
            Err(e @ VhdError::Locked { .. }) => return Err(e),
            Err(e) => {
                tracing::debug!(candidate = %p.display(), error = %e, "not a usable parent");
                continue;
            }
        };
        if parent.footer().uuid != header.parent_uuid {
            mismatch.get_or_insert((p.clone(), parent.footer().uuid));
            continue;
        }
        if opts.check_parent_time {
            let actual = file_vhd_time(p)?;
            if actual != header.parent_timestamp {
                return Err(VhdError::ParentModified {
                    child: child.path().to_path_buf(),
                    parent: p.clone(),
                    recorded: vhd_time_text(header.parent_timestamp),
                    actual: vhd_time_text(actual),
                });
            }
        }
        return Ok(parent);
    }
    match mismatch {
        Some((parent, found)) => Err(VhdError::ParentMismatch {
            child: child.path().to_path_buf(),
            parent,
            expected: uuid_text(&header.parent_uuid),
            found: uuid_text(&found),
        }),
        None => Err(VhdError::ParentNotFound { child: child.path().to_path_buf(), tried }),
    }
}

/// A file's modification time as VHD time.
pub fn file_vhd_time(p: &Path) -> Result<u32> {
    let meta = std::fs::metadata(p).map_err(|e| VhdError::io("stat", p, e))?;
    let unix = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Ok(spec::vhd_time_from_unix(unix))
}

/// VHD time as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn vhd_time_text(t: u32) -> String {
    let unix = spec::VHD_EPOCH_UNIX + u64::from(t);
    // Any u32 of seconds after 2000 is a representable date.
    match time::OffsetDateTime::from_unix_timestamp(unix as i64) {
        Ok(d) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            d.year(),
            u8::from(d.month()),
            d.day(),
            d.hour(),
            d.minute(),
            d.second()
        ),
        Err(_) => format!("{unix} s after 1970 UTC"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vhd_time_zero_is_year_2000() {
        assert_eq!(vhd_time_text(0), "2000-01-01 00:00:00 UTC");
        assert_eq!(vhd_time_text(86_400 * 366 + 3661), "2001-01-01 01:01:01 UTC");
    }
}
