//! Making new images: fixed, dynamic, differencing and linked, laid out as QEMU, VirtualBox and
//! blktap lay them out (footer copy, header at 512, BAT at 1536, locator data, blocks, footer).

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::backing::Backing;
use crate::chain::{file_vhd_time, Disk, OpenOptions};
use crate::error::{Result, VhdError};
use crate::footer::{new_uuid, DiskType, Footer};
use crate::geometry::{self, Geometry};
use crate::header::{DynamicHeader, LocatorEntry};
use crate::locator;
use crate::spec::{self, FOOTER_LEN, HEADER_LEN, LOCATOR_SLOTS, SECTOR};

/// How a requested size becomes the disk's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SizeRule {
    /// Round up to the next CHS product (QEMU's rule), so every reader of every version sees
    /// the same size. The default.
    #[default]
    Compatible,
    /// Keep the size exact (rounded up to a sector) with the spec's geometry, as Hyper-V does.
    Exact,
}

/// Size, geometry and type of a new base image.
#[derive(Debug, Clone, Copy)]
pub struct NewImage {
    /// Requested size in bytes.
    pub size: u64,
    /// Fixed or dynamic.
    pub disk_type: DiskType,
    /// Block size for dynamic disks.
    pub block_size: u32,
    /// Size rounding rule.
    pub rule: SizeRule,
}

impl Default for NewImage {
    fn default() -> Self {
        Self {
            size: 0,
            disk_type: DiskType::Dynamic,
            block_size: spec::DEFAULT_BLOCK_SIZE,
            rule: SizeRule::Compatible,
        }
    }
}

/// The geometry and size a request turns into.
pub fn plan_size(size: u64, rule: SizeRule) -> Result<(Geometry, u64)> {
    let r = match rule {
        SizeRule::Compatible => geometry::compatible_size(size),
        SizeRule::Exact => geometry::exact_size(size),
    };
    r.map_err(|e| VhdError::Invalid(e.to_string()))
}

/// Checks a block size given by a user.
pub fn validate_block_size(bs: u32) -> Result<()> {
    if !bs.is_power_of_two() || !(spec::MIN_BLOCK_SIZE..=spec::MAX_BLOCK_SIZE).contains(&bs) {
        return Err(VhdError::Invalid(format!(
            "block size {bs} is not allowed: it must be a power of two from 512 bytes to 256 MiB"
        )));
    }
    Ok(())
}

pub(crate) fn base_footer(disk_type: DiskType, size: u64, geometry: Geometry) -> Footer {
    Footer {
        features: spec::FEATURE_RESERVED,
        format_version: spec::FORMAT_VERSION,
        data_offset: if disk_type.is_sparse() { FOOTER_LEN as u64 } else { spec::FIXED_DATA_OFFSET },
        timestamp: spec::vhd_time_now(),
        creator_app: *spec::CREATOR_APP,
        creator_version: spec::CREATOR_VERSION,
        creator_os: *spec::CREATOR_HOST_OS,
        original_size: size,
        current_size: size,
        geometry,
        disk_type,
        uuid: new_uuid(),
        saved_state: false,
    }
}

fn create_file(path: &Path) -> Result<File> {
    let f = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            VhdError::Invalid(format!("{} already exists; vine does not overwrite images", path.display()))
        } else {
            VhdError::io("create", path, e)
        }
    })?;
    if let Err(holder) = crate::lock::lock(&f, true).map_err(|e| VhdError::io("lock", path, e))? {
        return Err(VhdError::Locked { path: path.to_path_buf(), holder });
    }
    Ok(f)
}

/// Creates a new fixed or dynamic image; returns its footer.
pub fn create(path: &Path, img: NewImage) -> Result<Footer> {
    let (geometry, size) = plan_size(img.size, img.rule)?;
    let file = create_file(path)?;
    let result = (|| match img.disk_type {
        DiskType::Fixed => {
            let footer = base_footer(DiskType::Fixed, size, geometry);
            write(&file, path, &footer.encode(), size)?;
            file.sync_all().map_err(|e| VhdError::io("sync", path, e))?;
            Ok(footer)
        }
        DiskType::Dynamic => {
            validate_block_size(img.block_size)?;
            let footer = base_footer(DiskType::Dynamic, size, geometry);
            let header = empty_header(size, img.block_size);
            write_sparse_layout(&file, path, &footer, &header, &[])?;
            Ok(footer)
        }
        DiskType::Differencing => {
            Err(VhdError::Invalid("use create_differencing for differencing disks".into()))
        }
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(path);
    }
    result
}

pub(crate) fn empty_header(size: u64, block_size: u32) -> DynamicHeader {
    let entries = size.div_ceil(u64::from(block_size));
    DynamicHeader {
        table_offset: spec::DEFAULT_TABLE_OFFSET,
        header_version: spec::FORMAT_VERSION,
        max_table_entries: u32::try_from(entries).expect("2040 GiB in 512-byte blocks fits in u32"),
        block_size,
        parent_uuid: [0; 16],
        parent_timestamp: 0,
        parent_name: String::new(),
        locators: [LocatorEntry::default(); LOCATOR_SLOTS],
    }
}

/// Writes footer copy, header, an empty BAT, locator payloads and the EOF footer; syncs.
/// `locators` pairs a platform code with its payload; their entries are filled in here.
pub(crate) fn write_sparse_layout(
    io: &dyn Backing,
    path: &Path,
    footer: &Footer,
    header: &DynamicHeader,
    locators: &[(u32, Vec<u8>)],
) -> Result<u64> {
    let mut header = header.clone();
    let mut at = header.table_offset + header.bat_bytes();
    let mut payloads = Vec::new();
    for (slot, (code, payload)) in locators.iter().enumerate() {
        let space = spec::round_up_sector(payload.len() as u64).expect("small").max(SECTOR);
        header.locators[slot] = LocatorEntry {
            platform: *code,
            data_space: space as u32,
            data_len: payload.len() as u32,
            data_offset: at,
        };
        payloads.push((at, payload));
        at += space;
    }
    let footer_bytes = footer.encode();
    write(io, path, &footer_bytes, 0)?;
    write(io, path, &header.encode(), footer.data_offset)?;
    let bat = vec![0xFFu8; header.bat_bytes() as usize];
    write(io, path, &bat, header.table_offset)?;
    for (off, p) in payloads {
        let mut padded = p.clone();
        padded.resize(spec::round_up_sector(p.len() as u64).expect("small").max(SECTOR) as usize, 0);
        write(io, path, &padded, off)?;
    }
    write(io, path, &footer_bytes, at)?;
    io.set_len(at + FOOTER_LEN as u64).map_err(|e| VhdError::io("truncate", path, e))?;
    io.sync().map_err(|e| VhdError::io("sync", path, e))?;
    debug_assert!(footer.data_offset + HEADER_LEN as u64 <= header.table_offset);
    Ok(at)
}

fn write(io: &dyn Backing, path: &Path, buf: &[u8], at: u64) -> Result<()> {
    io.write_at(buf, at).map_err(|e| VhdError::io("write", path, e))
}

/// Absolute form of `p` (the file must exist).
pub fn absolute(p: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(p).map_err(|e| VhdError::io("resolve", p, e))
}

/// What a new differencing disk records about its parent.
pub(crate) struct ParentRecord {
    pub uuid: [u8; 16],
    pub timestamp: u32,
    pub name: String,
    pub locators: Vec<(u32, Vec<u8>)>,
}

pub(crate) fn parent_record(parent_abs: &Path, child_dir: &Path, uuid: [u8; 16]) -> Result<ParentRecord> {
    let name = parent_abs.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if name.encode_utf16().count() > spec::PARENT_NAME_UNITS {
        return Err(VhdError::Invalid(format!(
            "parent file name {name:?} is longer than the {} UTF-16 units a VHD header holds",
            spec::PARENT_NAME_UNITS
        )));
    }
    Ok(ParentRecord {
        uuid,
        timestamp: file_vhd_time(parent_abs)?,
        name,
        locators: vec![
            (spec::PLATFORM_W2RU, locator::w2ru_payload(parent_abs, child_dir)),
            (spec::PLATFORM_MACX, locator::macx_payload(parent_abs)),
        ],
    })
}

/// Creates a differencing disk over `parent` (whose whole chain must open cleanly).
pub fn create_differencing(path: &Path, parent: &Path) -> Result<Footer> {
    let parent_abs = absolute(parent)?;
    let pdisk = Disk::open(&parent_abs, OpenOptions { writable: false, ..Default::default() })?;
    let ptop = pdisk.top();
    let size = ptop.size();
    let block_size = ptop.header().map(|h| h.block_size).unwrap_or(spec::DEFAULT_BLOCK_SIZE);
    let child_dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => absolute(d)?,
        _ => absolute(Path::new("."))?,
    };
    let record = parent_record(&parent_abs, &child_dir, ptop.footer().uuid)?;
    let mut footer = base_footer(DiskType::Differencing, size, ptop.footer().geometry);
    footer.original_size = ptop.footer().original_size;
    let mut header = empty_header(size, block_size);
    header.parent_uuid = record.uuid;
    header.parent_timestamp = record.timestamp;
    header.parent_name = record.name;
    let file = create_file(path)?;
    let r = write_sparse_layout(&file, path, &footer, &header, &record.locators);
    if let Err(e) = r {
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    Ok(footer)
}

/// Creates a linked disk: a VHD whose data is the whole of `target` (a raw image or a block
/// device), read and written in place. vine stores it as a differencing-type file with no
/// blocks, a zero parent id and one `vRaw` locator holding the target's absolute path; other
/// VHD readers do not know this convention.
pub fn create_linked(path: &Path, target: &Path) -> Result<Footer> {
    let abs = absolute(target)?;
    let f = File::open(&abs).map_err(|e| VhdError::io("open", &abs, e))?;
    let size = block::raw::file_len(&f).map_err(|e| VhdError::io("stat", &abs, e))?;
    if size == 0 || size % SECTOR != 0 {
        return Err(VhdError::Invalid(format!(
            "{}: a linked disk's target must be a non-empty whole number of 512-byte sectors, it is {size} bytes",
            abs.display()
        )));
    }
    let (geometry, vsize) = plan_size(size, SizeRule::Exact)?;
    let footer = base_footer(DiskType::Differencing, vsize, geometry);
    let mut header = empty_header(vsize, spec::DEFAULT_BLOCK_SIZE);
    header.parent_name = abs.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let file = create_file(path)?;
    let locators = [(spec::PLATFORM_VINE_RAW, abs.to_string_lossy().into_owned().into_bytes())];
    if let Err(e) = write_sparse_layout(&file, path, &footer, &header, &locators) {
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    Ok(footer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{FileOptions, VhdFile};

    #[test]
    fn dynamic_layout_matches_qemu() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.vhd");
        create(&p, NewImage { size: 64 << 20, ..Default::default() }).unwrap();
        let f = VhdFile::open(&p, FileOptions { writable: false, lock: true }).unwrap();
        assert_eq!(f.header().unwrap().table_offset, 1536);
        assert_eq!(f.header().unwrap().max_table_entries, 33);
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 2048 + 512);
    }

    #[test]
    fn existing_file_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.vhd");
        std::fs::write(&p, b"precious").unwrap();
        let err = create(&p, NewImage { size: 1 << 20, ..Default::default() }).unwrap_err();
        assert!(matches!(err, VhdError::Invalid(ref m) if m.contains("already exists")), "{err}");
        assert_eq!(std::fs::read(&p).unwrap(), b"precious");
    }

    #[test]
    fn bad_block_size_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.vhd");
        let err = create(&p, NewImage { size: 1 << 20, block_size: 3000, ..Default::default() }).unwrap_err();
        assert!(matches!(err, VhdError::Invalid(ref m) if m.contains("block size 3000")), "{err}");
        assert!(!p.exists());
    }
}
