//! The dynamic disk header and its parent locator entries (spec, "Dynamic Disk Header Format").

use crate::error::FormatError;
use crate::spec::{self, header_off as off, HEADER_COOKIE, HEADER_LEN, LOCATOR_SLOTS, SECTOR};

/// One parent locator entry (spec, "Parent Locator Entry").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LocatorEntry {
    /// Platform code (`W2ru`, `W2ku`, `MacX`, …); 0 for an unused slot.
    pub platform: u32,
    /// Space reserved for the payload as stored (sectors or bytes, see [`LocatorEntry::space_bytes`]).
    pub data_space: u32,
    /// Payload length in bytes.
    pub data_len: u32,
    /// Absolute file offset of the payload.
    pub data_offset: u64,
}

impl LocatorEntry {
    /// Reserved space in bytes. The spec says sectors, Virtual PC and Hyper-V store bytes: a
    /// value below 512 is read as sectors, a multiple of 512 as bytes (blktap's rule).
    pub fn space_bytes(&self) -> Option<u64> {
        let s = u64::from(self.data_space);
        if s < SECTOR {
            Some(s * SECTOR)
        } else if s % SECTOR == 0 {
            Some(s)
        } else {
            None
        }
    }

    /// Platform code as text.
    pub fn platform_text(&self) -> String {
        String::from_utf8_lossy(&self.platform.to_be_bytes()).into_owned()
    }
}

/// A decoded dynamic disk header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamicHeader {
    /// Absolute offset of the BAT.
    pub table_offset: u64,
    /// Header version.
    pub header_version: u32,
    /// Number of BAT entries.
    pub max_table_entries: u32,
    /// Data bytes per block.
    pub block_size: u32,
    /// Parent's unique id (differencing disks).
    pub parent_uuid: [u8; 16],
    /// Parent's modification time when the child was made, VHD time.
    pub parent_timestamp: u32,
    /// Parent's file name, decoded from UTF-16BE.
    pub parent_name: String,
    /// The eight locator slots.
    pub locators: [LocatorEntry; LOCATOR_SLOTS],
}

impl DynamicHeader {
    /// Decodes and validates a header found at file offset `at`.
    pub fn decode(b: &[u8; HEADER_LEN], at: u64) -> Result<DynamicHeader, FormatError> {
        let bad = |field: &'static str, o: usize, value: u64, reason: &str| FormatError::BadField {
            structure: "dynamic header",
            field,
            offset: at + o as u64,
            value,
            reason: reason.to_string(),
        };
        if &b[off::COOKIE..off::COOKIE + 8] != HEADER_COOKIE {
            return Err(FormatError::BadCookie {
                structure: "dynamic header",
                offset: at,
                found: String::from_utf8_lossy(&b[..8]).into_owned(),
                expected: "cxsparse",
            });
        }
        let stored = spec::be_u32(b, off::CHECKSUM);
        let computed = spec::checksum(b, off::CHECKSUM);
        if stored != computed {
            return Err(FormatError::BadChecksum {
                structure: "dynamic header",
                offset: at + off::CHECKSUM as u64,
                stored,
                computed,
            });
        }
        let header_version = spec::be_u32(b, off::VERSION);
        if header_version >> 16 != 1 {
            return Err(bad(
                "Header Version",
                off::VERSION,
                header_version.into(),
                "major version must be 1",
            ));
        }
        let table_offset = spec::be_u64(b, off::TABLE_OFFSET);
        if !table_offset.is_multiple_of(SECTOR) || table_offset < SECTOR {
            return Err(bad(
                "Table Offset",
                off::TABLE_OFFSET,
                table_offset,
                "must be a non-zero multiple of 512",
            ));
        }
        let block_size = spec::be_u32(b, off::BLOCK_SIZE);
        if !block_size.is_power_of_two()
            || !(spec::MIN_BLOCK_SIZE..=spec::MAX_BLOCK_SIZE).contains(&block_size)
        {
            return Err(bad(
                "Block Size",
                off::BLOCK_SIZE,
                block_size.into(),
                "must be a power of two from 512 bytes to 256 MiB",
            ));
        }
        let mut parent_uuid = [0u8; 16];
        parent_uuid.copy_from_slice(&b[off::PARENT_UUID..off::PARENT_UUID + 16]);
        let mut locators = [LocatorEntry::default(); LOCATOR_SLOTS];
        for (i, l) in locators.iter_mut().enumerate() {
            let o = off::LOCATORS + i * off::LOCATOR_LEN;
            *l = LocatorEntry {
                platform: spec::be_u32(b, o),
                data_space: spec::be_u32(b, o + 4),
                data_len: spec::be_u32(b, o + 8),
                data_offset: spec::be_u64(b, o + 16),
            };
        }
        Ok(DynamicHeader {
            table_offset,
            header_version,
            max_table_entries: spec::be_u32(b, off::MAX_TABLE_ENTRIES),
            block_size,
            parent_uuid,
            parent_timestamp: spec::be_u32(b, off::PARENT_TIMESTAMP),
            parent_name: decode_utf16(&b[off::PARENT_NAME..off::PARENT_NAME + 512], true),
            locators,
        })
    }

    /// Encodes the header with a fresh checksum.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[off::COOKIE..off::COOKIE + 8].copy_from_slice(HEADER_COOKIE);
        spec::put_u64(&mut b, off::DATA_OFFSET, spec::HEADER_DATA_OFFSET);
        spec::put_u64(&mut b, off::TABLE_OFFSET, self.table_offset);
        spec::put_u32(&mut b, off::VERSION, self.header_version);
        spec::put_u32(&mut b, off::MAX_TABLE_ENTRIES, self.max_table_entries);
        spec::put_u32(&mut b, off::BLOCK_SIZE, self.block_size);
        b[off::PARENT_UUID..off::PARENT_UUID + 16].copy_from_slice(&self.parent_uuid);
        spec::put_u32(&mut b, off::PARENT_TIMESTAMP, self.parent_timestamp);
        let name = encode_utf16(&self.parent_name, true);
        let n = name.len().min(512);
        b[off::PARENT_NAME..off::PARENT_NAME + n].copy_from_slice(&name[..n]);
        for (i, l) in self.locators.iter().enumerate() {
            let o = off::LOCATORS + i * off::LOCATOR_LEN;
            spec::put_u32(&mut b, o, l.platform);
            spec::put_u32(&mut b, o + 4, l.data_space);
            spec::put_u32(&mut b, o + 8, l.data_len);
            spec::put_u64(&mut b, o + 16, l.data_offset);
        }
        let sum = spec::checksum(&b, off::CHECKSUM);
        spec::put_u32(&mut b, off::CHECKSUM, sum);
        b
    }

    /// Bytes the BAT occupies, padded to a sector.
    pub fn bat_bytes(&self) -> u64 {
        spec::round_up_sector(u64::from(self.max_table_entries) * spec::BAT_ENTRY_LEN)
            .expect("u32 entries times 4 cannot overflow")
    }

    /// The locators in use, with their slot numbers.
    pub fn used_locators(&self) -> impl Iterator<Item = (usize, &LocatorEntry)> {
        self.locators.iter().enumerate().filter(|(_, l)| l.platform != 0)
    }
}

/// Decodes NUL-terminated UTF-16 (big- or little-endian); bad code units become U+FFFD.
pub fn decode_utf16(bytes: &[u8], big_endian: bool) -> String {
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| if big_endian { u16::from_be_bytes([c[0], c[1]]) } else { u16::from_le_bytes([c[0], c[1]]) })
        .take_while(|&u| u != 0)
        .collect();
    String::from_utf16_lossy(&units)
}

/// Encodes text as UTF-16 without a terminator.
pub fn encode_utf16(text: &str, big_endian: bool) -> Vec<u8> {
    text.encode_utf16().flat_map(|u| if big_endian { u.to_be_bytes() } else { u.to_le_bytes() }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> DynamicHeader {
        let mut locators = [LocatorEntry::default(); LOCATOR_SLOTS];
        locators[0] =
            LocatorEntry { platform: spec::PLATFORM_W2RU, data_space: 512, data_len: 20, data_offset: 2048 };
        DynamicHeader {
            table_offset: 1536,
            header_version: spec::FORMAT_VERSION,
            max_table_entries: 10,
            block_size: spec::DEFAULT_BLOCK_SIZE,
            parent_uuid: [3; 16],
            parent_timestamp: 99,
            parent_name: "päränt.vhd".into(),
            locators,
        }
    }

    #[test]
    fn header_round_trips_with_unicode_parent_name() {
        let h = sample();
        assert_eq!(DynamicHeader::decode(&h.encode(), 512).unwrap(), h);
    }

    #[test]
    fn header_block_size_not_power_of_two_is_rejected() {
        let mut h = sample();
        h.block_size = 3 << 20;
        let err = DynamicHeader::decode(&h.encode(), 512).unwrap_err();
        assert!(matches!(err, FormatError::BadField { field: "Block Size", offset: 544, .. }), "{err}");
    }

    #[test]
    fn header_unaligned_table_offset_is_rejected() {
        let mut h = sample();
        h.table_offset = 1537;
        let err = DynamicHeader::decode(&h.encode(), 512).unwrap_err();
        assert!(matches!(err, FormatError::BadField { field: "Table Offset", .. }), "{err}");
    }

    #[test]
    fn header_checksum_mismatch_names_offset() {
        let mut b = sample().encode();
        b[700] ^= 0x40;
        let err = DynamicHeader::decode(&b, 512).unwrap_err();
        assert!(matches!(err, FormatError::BadChecksum { offset: 548, .. }), "{err}");
    }

    #[test]
    fn locator_space_in_sectors_or_bytes() {
        let mut l = LocatorEntry { data_space: 1, ..Default::default() };
        assert_eq!(l.space_bytes(), Some(512));
        l.data_space = 1024;
        assert_eq!(l.space_bytes(), Some(1024));
        l.data_space = 1000;
        assert_eq!(l.space_bytes(), None);
    }
}
