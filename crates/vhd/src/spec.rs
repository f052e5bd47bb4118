//! Constants of the VHD format, each citing the section of Microsoft's *Virtual Hard Disk Image
//! Format Specification* v1.0 (October 2006) that defines it. Everything on disk is big-endian.

/// Bytes in a sector; the format has no other sector size (spec, "Hard Disk Footer Format").
pub const SECTOR: u64 = 512;
/// Length of the hard disk footer (spec, "Hard Disk Footer Format").
pub const FOOTER_LEN: usize = 512;
/// Length of the dynamic disk header (spec, "Dynamic Disk Header Format").
pub const HEADER_LEN: usize = 1024;
/// Footer cookie (spec, footer field "Cookie").
pub const FOOTER_COOKIE: &[u8; 8] = b"conectix";
/// Dynamic header cookie (spec, header field "Cookie").
pub const HEADER_COOKIE: &[u8; 8] = b"cxsparse";
/// Footer "Features" bit that must always be set (spec, footer field "Features": Reserved).
pub const FEATURE_RESERVED: u32 = 0x0000_0002;
/// Footer "Features" bit marking a temporary disk, deleted at shutdown (spec: Temporary).
pub const FEATURE_TEMPORARY: u32 = 0x0000_0001;
/// Footer and header format version 1.0 (spec, "File Format Version" / "Header Version").
pub const FORMAT_VERSION: u32 = 0x0001_0000;
/// Footer "Data Offset" of a fixed disk. The spec text says 0xFFFFFFFF; every known writer stores
/// all 64 bits set, so vine writes this and accepts both.
pub const FIXED_DATA_OFFSET: u64 = u64::MAX;
/// Header "Data Offset", unused; written as all ones (spec, header field "Data Offset").
pub const HEADER_DATA_OFFSET: u64 = u64::MAX;
/// A BAT entry that points at no block (spec, "Block Allocation Table and Data Blocks").
pub const BAT_UNALLOCATED: u32 = 0xFFFF_FFFF;
/// Bytes per BAT entry.
pub const BAT_ENTRY_LEN: u64 = 4;
/// Default block size, 2 MiB (spec, header field "Block Size").
pub const DEFAULT_BLOCK_SIZE: u32 = 0x0020_0000;
/// Smallest block size vine accepts: one sector.
pub const MIN_BLOCK_SIZE: u32 = 512;
/// Largest block size vine accepts (256 MiB; beyond that the bitmap alone is 64 KiB).
pub const MAX_BLOCK_SIZE: u32 = 256 << 20;
/// Seconds from the Unix epoch to the VHD epoch, 2000-01-01T00:00:00Z (spec, "Time Stamp").
pub const VHD_EPOCH_UNIX: u64 = 946_684_800;
/// Largest disk QEMU and vine create or open: 0xFF000000 sectors, 2040 GiB (QEMU block/vpc.c).
pub const MAX_DISK_SECTORS: u64 = 0xFF00_0000;
/// Largest file offset a BAT entry (a u32 sector number) can point at.
pub const MAX_BAT_SECTOR: u64 = u32::MAX as u64 - 1;
/// Creator application vine writes (spec, footer field "Creator Application").
pub const CREATOR_APP: &[u8; 4] = b"vine";
/// Creator version vine writes: major 1, minor 0.
pub const CREATOR_VERSION: u32 = 0x0001_0000;
/// Creator host OS vine writes: Windows, as Azure and Hyper-V expect (spec, "Creator Host OS").
pub const CREATOR_HOST_OS: &[u8; 4] = b"Wi2k";
/// Offset of the BAT vine writes: right after the header (as QEMU, VirtualBox and blktap do).
pub const DEFAULT_TABLE_OFFSET: u64 = 1536;
/// Number of parent locator entries in the header (spec, "Parent Locator Entries").
pub const LOCATOR_SLOTS: usize = 8;
/// Longest parent unicode name in UTF-16 code units (spec, "Parent Unicode Name": 512 bytes).
pub const PARENT_NAME_UNITS: usize = 256;
/// Deepest differencing chain vine follows.
pub const MAX_CHAIN_DEPTH: usize = 64;

/// Platform code of a relative Windows path locator, UTF-16LE (spec, "Parent Locator Entry").
pub const PLATFORM_W2RU: u32 = u32::from_be_bytes(*b"W2ru");
/// Platform code of an absolute Windows path locator, UTF-16LE.
pub const PLATFORM_W2KU: u32 = u32::from_be_bytes(*b"W2ku");
/// Platform code of a Mac OS X `file://` URL locator, UTF-8.
pub const PLATFORM_MACX: u32 = u32::from_be_bytes(*b"MacX");
/// Platform code of a Mac alias blob (read as unusable).
pub const PLATFORM_MAC: u32 = u32::from_be_bytes(*b"Mac ");
/// Deprecated ASCII relative Windows path.
pub const PLATFORM_WI2R: u32 = u32::from_be_bytes(*b"Wi2r");
/// Deprecated ASCII absolute Windows path.
pub const PLATFORM_WI2K: u32 = u32::from_be_bytes(*b"Wi2k");
/// vine's own code for a linked disk's raw target, an absolute UTF-8 path (not in the spec).
pub const PLATFORM_VINE_RAW: u32 = u32::from_be_bytes(*b"vRaw");

/// Byte offsets of the footer fields (spec, "Hard Disk Footer Format" table).
pub mod footer_off {
    /// Cookie, 8 bytes.
    pub const COOKIE: usize = 0;
    /// Features, 4 bytes.
    pub const FEATURES: usize = 8;
    /// File format version, 4 bytes.
    pub const VERSION: usize = 12;
    /// Data offset, 8 bytes.
    pub const DATA_OFFSET: usize = 16;
    /// Time stamp, 4 bytes.
    pub const TIMESTAMP: usize = 24;
    /// Creator application, 4 bytes.
    pub const CREATOR_APP: usize = 28;
    /// Creator version, 4 bytes.
    pub const CREATOR_VERSION: usize = 32;
    /// Creator host OS, 4 bytes.
    pub const CREATOR_OS: usize = 36;
    /// Original size, 8 bytes.
    pub const ORIGINAL_SIZE: usize = 40;
    /// Current size, 8 bytes.
    pub const CURRENT_SIZE: usize = 48;
    /// Disk geometry (cylinders u16, heads u8, sectors u8).
    pub const GEOMETRY: usize = 56;
    /// Disk type, 4 bytes.
    pub const DISK_TYPE: usize = 60;
    /// Checksum, 4 bytes.
    pub const CHECKSUM: usize = 64;
    /// Unique id, 16 bytes.
    pub const UUID: usize = 68;
    /// Saved state, 1 byte.
    pub const SAVED_STATE: usize = 84;
}

/// Byte offsets of the dynamic header fields (spec, "Dynamic Disk Header Format" table).
pub mod header_off {
    /// Cookie, 8 bytes.
    pub const COOKIE: usize = 0;
    /// Data offset, 8 bytes.
    pub const DATA_OFFSET: usize = 8;
    /// Table offset, 8 bytes.
    pub const TABLE_OFFSET: usize = 16;
    /// Header version, 4 bytes.
    pub const VERSION: usize = 24;
    /// Max table entries, 4 bytes.
    pub const MAX_TABLE_ENTRIES: usize = 28;
    /// Block size, 4 bytes.
    pub const BLOCK_SIZE: usize = 32;
    /// Checksum, 4 bytes.
    pub const CHECKSUM: usize = 36;
    /// Parent unique id, 16 bytes.
    pub const PARENT_UUID: usize = 40;
    /// Parent time stamp, 4 bytes.
    pub const PARENT_TIMESTAMP: usize = 56;
    /// Parent unicode name, 512 bytes of UTF-16BE.
    pub const PARENT_NAME: usize = 64;
    /// Eight parent locator entries of 24 bytes each.
    pub const LOCATORS: usize = 576;
    /// Length of one parent locator entry.
    pub const LOCATOR_LEN: usize = 24;
}

/// Converts Unix seconds to VHD time (saturating at the format's limits).
pub fn vhd_time_from_unix(unix: u64) -> u32 {
    unix.saturating_sub(VHD_EPOCH_UNIX).min(u32::MAX as u64) as u32
}

/// The current time as VHD time.
pub fn vhd_time_now() -> u32 {
    let unix =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    vhd_time_from_unix(unix)
}

/// Sum of all bytes with the 4-byte checksum field at `skip` taken as zero, inverted
/// (spec, footer field "Checksum"; the header uses the same rule).
pub fn checksum(bytes: &[u8], skip: usize) -> u32 {
    let mut sum: u32 = 0;
    for (i, b) in bytes.iter().enumerate() {
        if i < skip || i >= skip + 4 {
            sum = sum.wrapping_add(u32::from(*b));
        }
    }
    !sum
}

pub(crate) fn be_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
pub(crate) fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
pub(crate) fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}
pub(crate) fn put_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}
pub(crate) fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}
pub(crate) fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_be_bytes());
}

/// Rounds `v` up to a multiple of the sector size, or `None` on overflow.
pub fn round_up_sector(v: u64) -> Option<u64> {
    v.checked_add(SECTOR - 1).map(|x| x / SECTOR * SECTOR)
}

/// Bytes of the sector bitmap in front of each block: one bit per sector, padded to a sector
/// (spec, "Block Allocation Table and Data Blocks").
pub fn bitmap_len(block_size: u32) -> u64 {
    let sectors = u64::from(block_size) / SECTOR;
    round_up_sector(sectors.div_ceil(8)).expect("block size is bounded, cannot overflow")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmap_lengths_match_the_spec_examples() {
        assert_eq!(bitmap_len(2 << 20), 512);
        assert_eq!(bitmap_len(512 << 10), 512);
        assert_eq!(bitmap_len(4096), 512);
        assert_eq!(bitmap_len(16 << 20), 4096);
        assert_eq!(bitmap_len(512), 512);
    }

    #[test]
    fn checksum_ignores_its_own_field() {
        let mut a = [1u8; 16];
        let base = checksum(&a, 4);
        a[4..8].copy_from_slice(&[9, 9, 9, 9]);
        assert_eq!(checksum(&a, 4), base);
        assert_eq!(base, !12u32);
    }

    #[test]
    fn vhd_epoch_is_year_2000() {
        assert_eq!(vhd_time_from_unix(946_684_800), 0);
        assert_eq!(vhd_time_from_unix(946_684_801), 1);
        assert_eq!(vhd_time_from_unix(5), 0);
    }
}
