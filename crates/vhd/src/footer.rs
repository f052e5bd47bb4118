//! The hard disk footer (spec, "Hard Disk Footer Format"): decoding, encoding, validation.

use crate::error::FormatError;
use crate::geometry::Geometry;
use crate::spec::{self, footer_off as off, FOOTER_COOKIE, FOOTER_LEN, SECTOR};

/// The three disk types the spec defines (spec, footer field "Disk Type").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DiskType {
    /// Raw data followed by the footer.
    Fixed,
    /// Sparse: header, BAT, blocks allocated on write.
    Dynamic,
    /// Sparse over a read-only parent.
    Differencing,
}

impl DiskType {
    /// The on-disk code.
    pub fn code(self) -> u32 {
        match self {
            DiskType::Fixed => 2,
            DiskType::Dynamic => 3,
            DiskType::Differencing => 4,
        }
    }

    /// The type for an on-disk code.
    pub fn from_code(code: u32) -> Option<DiskType> {
        match code {
            2 => Some(DiskType::Fixed),
            3 => Some(DiskType::Dynamic),
            4 => Some(DiskType::Differencing),
            _ => None,
        }
    }

    /// Lower-case name used by the CLI and JSON.
    pub fn name(self) -> &'static str {
        match self {
            DiskType::Fixed => "fixed",
            DiskType::Dynamic => "dynamic",
            DiskType::Differencing => "differencing",
        }
    }

    /// True for dynamic and differencing disks.
    pub fn is_sparse(self) -> bool {
        self != DiskType::Fixed
    }
}

/// A decoded footer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Footer {
    /// Feature bits.
    pub features: u32,
    /// File format version.
    pub format_version: u32,
    /// Offset of the dynamic header, or all ones for fixed disks.
    pub data_offset: u64,
    /// Creation time, VHD time.
    pub timestamp: u32,
    /// Creator application, four raw bytes.
    pub creator_app: [u8; 4],
    /// Creator version.
    pub creator_version: u32,
    /// Creator host OS, four raw bytes.
    pub creator_os: [u8; 4],
    /// Size at creation.
    pub original_size: u64,
    /// Guest-visible size.
    pub current_size: u64,
    /// CHS geometry.
    pub geometry: Geometry,
    /// Disk type.
    pub disk_type: DiskType,
    /// Unique id.
    pub uuid: [u8; 16],
    /// Saved-state flag.
    pub saved_state: bool,
}

impl Footer {
    /// Decodes and validates the 512 bytes of a footer found at file offset `at`.
    pub fn decode(b: &[u8; FOOTER_LEN], at: u64) -> Result<Footer, FormatError> {
        let field = |field: &'static str, o: usize, value: u64, reason: &str| FormatError::BadField {
            structure: "footer",
            field,
            offset: at + o as u64,
            value,
            reason: reason.to_string(),
        };
        if &b[off::COOKIE..off::COOKIE + 8] != FOOTER_COOKIE {
            return Err(FormatError::BadCookie {
                structure: "footer",
                offset: at,
                found: String::from_utf8_lossy(&b[..8]).into_owned(),
                expected: "conectix",
            });
        }
        let stored = spec::be_u32(b, off::CHECKSUM);
        let computed = spec::checksum(b, off::CHECKSUM);
        if stored != computed {
            return Err(FormatError::BadChecksum {
                structure: "footer",
                offset: at + off::CHECKSUM as u64,
                stored,
                computed,
            });
        }
        let format_version = spec::be_u32(b, off::VERSION);
        if format_version >> 16 != 1 {
            return Err(field(
                "File Format Version",
                off::VERSION,
                format_version.into(),
                "major version must be 1",
            ));
        }
        let code = spec::be_u32(b, off::DISK_TYPE);
        let disk_type = DiskType::from_code(code).ok_or_else(|| {
            field(
                "Disk Type",
                off::DISK_TYPE,
                code.into(),
                "must be 2 (fixed), 3 (dynamic) or 4 (differencing)",
            )
        })?;
        let current_size = spec::be_u64(b, off::CURRENT_SIZE);
        if !current_size.is_multiple_of(SECTOR) {
            return Err(field("Current Size", off::CURRENT_SIZE, current_size, "not a multiple of 512"));
        }
        if current_size / SECTOR > spec::MAX_DISK_SECTORS {
            return Err(field(
                "Current Size",
                off::CURRENT_SIZE,
                current_size,
                "larger than the 2040 GiB limit",
            ));
        }
        let data_offset = spec::be_u64(b, off::DATA_OFFSET);
        if disk_type.is_sparse() && (!data_offset.is_multiple_of(SECTOR) || data_offset == u64::MAX) {
            return Err(field(
                "Data Offset",
                off::DATA_OFFSET,
                data_offset,
                "a dynamic disk's header offset must be a multiple of 512",
            ));
        }
        let mut creator_app = [0u8; 4];
        creator_app.copy_from_slice(&b[off::CREATOR_APP..off::CREATOR_APP + 4]);
        let mut creator_os = [0u8; 4];
        creator_os.copy_from_slice(&b[off::CREATOR_OS..off::CREATOR_OS + 4]);
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&b[off::UUID..off::UUID + 16]);
        Ok(Footer {
            features: spec::be_u32(b, off::FEATURES),
            format_version,
            data_offset,
            timestamp: spec::be_u32(b, off::TIMESTAMP),
            creator_app,
            creator_version: spec::be_u32(b, off::CREATOR_VERSION),
            creator_os,
            original_size: spec::be_u64(b, off::ORIGINAL_SIZE),
            current_size,
            geometry: Geometry {
                cylinders: spec::be_u16(b, off::GEOMETRY),
                heads: b[off::GEOMETRY + 2],
                sectors: b[off::GEOMETRY + 3],
            },
            disk_type,
            uuid,
            saved_state: b[off::SAVED_STATE] != 0,
        })
    }

    /// Encodes the footer with a fresh checksum; reserved bytes are zero.
    pub fn encode(&self) -> [u8; FOOTER_LEN] {
        let mut b = [0u8; FOOTER_LEN];
        b[off::COOKIE..off::COOKIE + 8].copy_from_slice(FOOTER_COOKIE);
        spec::put_u32(&mut b, off::FEATURES, self.features);
        spec::put_u32(&mut b, off::VERSION, self.format_version);
        spec::put_u64(&mut b, off::DATA_OFFSET, self.data_offset);
        spec::put_u32(&mut b, off::TIMESTAMP, self.timestamp);
        b[off::CREATOR_APP..off::CREATOR_APP + 4].copy_from_slice(&self.creator_app);
        spec::put_u32(&mut b, off::CREATOR_VERSION, self.creator_version);
        b[off::CREATOR_OS..off::CREATOR_OS + 4].copy_from_slice(&self.creator_os);
        spec::put_u64(&mut b, off::ORIGINAL_SIZE, self.original_size);
        spec::put_u64(&mut b, off::CURRENT_SIZE, self.current_size);
        spec::put_u16(&mut b, off::GEOMETRY, self.geometry.cylinders);
        b[off::GEOMETRY + 2] = self.geometry.heads;
        b[off::GEOMETRY + 3] = self.geometry.sectors;
        spec::put_u32(&mut b, off::DISK_TYPE, self.disk_type.code());
        b[off::UUID..off::UUID + 16].copy_from_slice(&self.uuid);
        b[off::SAVED_STATE] = u8::from(self.saved_state);
        let sum = spec::checksum(&b, off::CHECKSUM);
        spec::put_u32(&mut b, off::CHECKSUM, sum);
        b
    }

    /// Creator application as printable text (non-printing bytes shown as `\0` etc.).
    pub fn creator_app_text(&self) -> String {
        self.creator_app.iter().map(|&c| std::ascii::escape_default(c).to_string()).collect()
    }

    /// The size QEMU (10.x) and Virtual PC report: the CHS product when the creator is `vpc ` or
    /// `qemu` and the geometry is not the maximum; the current size otherwise.
    pub fn qemu_size(&self) -> u64 {
        if (&self.creator_app == b"vpc " || &self.creator_app == b"qemu") && !self.geometry.is_max() {
            self.geometry.size()
        } else {
            self.current_size
        }
    }
}

/// A new random (version 4) UUID in the byte order the footer stores.
pub fn new_uuid() -> [u8; 16] {
    uuid::Uuid::new_v4().into_bytes()
}

/// Formats raw UUID bytes in the usual 8-4-4-4-12 form, in stored byte order.
pub fn uuid_text(u: &[u8; 16]) -> String {
    uuid::Uuid::from_bytes(*u).hyphenated().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Footer {
        Footer {
            features: spec::FEATURE_RESERVED,
            format_version: spec::FORMAT_VERSION,
            data_offset: 512,
            timestamp: 123,
            creator_app: *spec::CREATOR_APP,
            creator_version: spec::CREATOR_VERSION,
            creator_os: *spec::CREATOR_HOST_OS,
            original_size: 1 << 20,
            current_size: 1 << 20,
            geometry: Geometry { cylinders: 31, heads: 4, sectors: 17 },
            disk_type: DiskType::Dynamic,
            uuid: [7; 16],
            saved_state: false,
        }
    }

    #[test]
    fn footer_round_trips() {
        let f = sample();
        assert_eq!(Footer::decode(&f.encode(), 0).unwrap(), f);
    }

    #[test]
    fn footer_with_flipped_byte_fails_checksum_naming_offset() {
        let mut b = sample().encode();
        b[100] ^= 1;
        let err = Footer::decode(&b, 0x1000).unwrap_err();
        assert!(matches!(err, FormatError::BadChecksum { offset: 0x1040, .. }), "{err}");
    }

    #[test]
    fn footer_with_unknown_disk_type_is_rejected() {
        let mut b = sample().encode();
        spec::put_u32(&mut b, off::DISK_TYPE, 5);
        let sum = spec::checksum(&b, off::CHECKSUM);
        spec::put_u32(&mut b, off::CHECKSUM, sum);
        let err = Footer::decode(&b, 0).unwrap_err();
        assert!(matches!(err, FormatError::BadField { field: "Disk Type", value: 5, .. }), "{err}");
    }

    #[test]
    fn footer_with_unaligned_size_is_rejected() {
        let mut f = sample();
        f.current_size = 1000;
        let err = Footer::decode(&f.encode(), 0).unwrap_err();
        assert!(matches!(err, FormatError::BadField { field: "Current Size", .. }), "{err}");
    }

    #[test]
    fn footer_with_wrong_cookie_is_rejected() {
        let mut b = sample().encode();
        b[0] = b'X';
        let err = Footer::decode(&b, 0).unwrap_err();
        assert!(matches!(err, FormatError::BadCookie { structure: "footer", .. }), "{err}");
    }

    #[test]
    fn qemu_size_uses_chs_for_qemu_creator_only() {
        let mut f = sample();
        f.current_size = 2 << 20;
        assert_eq!(f.qemu_size(), 2 << 20);
        f.creator_app = *b"qemu";
        assert_eq!(f.qemu_size(), 31 * 4 * 17 * 512);
    }

    #[test]
    fn uuid_is_version_4() {
        let u = new_uuid();
        assert_eq!(u[6] >> 4, 4);
        assert_eq!(uuid_text(&[0xab; 16]).len(), 36);
    }
}
