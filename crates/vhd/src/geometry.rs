//! CHS disk geometry: the spec's algorithm (appendix "CHS Calculation") and QEMU's rule for
//! choosing the size of a new image so that every reader agrees on it.

use crate::spec::{MAX_DISK_SECTORS, SECTOR};

/// Cylinders, heads and sectors per track as stored in the footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Geometry {
    /// Cylinders.
    pub cylinders: u16,
    /// Heads.
    pub heads: u8,
    /// Sectors per track.
    pub sectors: u8,
}

/// The largest geometry the format holds; a disk with it is sized by its current size alone.
pub const MAX_GEOMETRY: Geometry = Geometry { cylinders: 65535, heads: 16, sectors: 255 };

impl Geometry {
    /// Total sectors the geometry addresses.
    pub fn total_sectors(self) -> u64 {
        u64::from(self.cylinders) * u64::from(self.heads) * u64::from(self.sectors)
    }

    /// Bytes the geometry addresses.
    pub fn size(self) -> u64 {
        self.total_sectors() * SECTOR
    }

    /// The spec's geometry for `total_sectors` (rounds down; clamps at [`MAX_GEOMETRY`]).
    pub fn from_sectors(total_sectors: u64) -> Geometry {
        let ts = total_sectors.min(MAX_GEOMETRY.total_sectors());
        let (spt, heads, cth);
        if ts >= 65535 * 16 * 63 {
            spt = 255;
            heads = 16;
            cth = ts / 255;
        } else {
            let mut s = 17u64;
            let mut c = ts / s;
            let mut h = c.div_ceil(1024).max(4);
            if c >= h * 1024 || h > 16 {
                s = 31;
                h = 16;
                c = ts / s;
            }
            if c >= h * 1024 {
                s = 63;
                h = 16;
                c = ts / s;
            }
            spt = s;
            heads = h;
            cth = c;
        }
        let cylinders = (cth / heads).min(65535);
        Geometry { cylinders: cylinders as u16, heads: heads as u8, sectors: spt as u8 }
    }

    /// Whether this is [`MAX_GEOMETRY`], for which every reader uses the current size.
    pub fn is_max(self) -> bool {
        self == MAX_GEOMETRY
    }
}

/// The error for sizes the format cannot hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// Zero bytes.
    #[error("disk size must be at least 1 byte")]
    Zero,
    /// More than 2040 GiB.
    #[error("disk size {0} bytes is larger than the VHD limit of 2040 GiB ({limit} bytes)", limit = MAX_DISK_SECTORS * SECTOR)]
    TooLarge(u64),
}

/// Chooses geometry and current size for a new disk of at least `requested` bytes, the way
/// QEMU's `vpc` driver does: the smallest CHS product not below the request, so that readers
/// that size by CHS (Virtual PC, QEMU < 10 for unknown creators) and readers that size by the
/// current size (Hyper-V, QEMU ≥ 10, 7-Zip) see the same disk. When the request needs the
/// maximum geometry the size is kept exact (rounded up to a sector).
pub fn compatible_size(requested: u64) -> Result<(Geometry, u64), SizeError> {
    if requested == 0 {
        return Err(SizeError::Zero);
    }
    let sectors = requested.div_ceil(SECTOR);
    if sectors > MAX_DISK_SECTORS {
        return Err(SizeError::TooLarge(requested));
    }
    if sectors > MAX_GEOMETRY.total_sectors() {
        return Ok((MAX_GEOMETRY, sectors * SECTOR));
    }
    let mut i = 0u64;
    loop {
        let g = Geometry::from_sectors(sectors + i);
        if g.is_max() {
            return Ok((g, sectors * SECTOR));
        }
        if g.total_sectors() >= sectors {
            return Ok((g, g.size()));
        }
        i += 1;
    }
}

/// Geometry and size for a disk of exactly `requested` bytes rounded up to a sector
/// (Hyper-V style): the geometry is the spec's rounding-down one.
pub fn exact_size(requested: u64) -> Result<(Geometry, u64), SizeError> {
    if requested == 0 {
        return Err(SizeError::Zero);
    }
    let sectors = requested.div_ceil(SECTOR);
    if sectors > MAX_DISK_SECTORS {
        return Err(SizeError::TooLarge(requested));
    }
    Ok((Geometry::from_sectors(sectors), sectors * SECTOR))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn compatible_sizes_match_qemu_img_create() {
        // Values observed with qemu-img 10.0.2 (shared/ref/vhd-facts.md §3).
        let cases: &[(u64, u64, (u16, u8, u8))] = &[
            (1, 34_816, (1, 4, 17)),
            (512, 34_816, (1, 4, 17)),
            (1_000_000, 1_009_664, (29, 4, 17)),
            (1 << 20, 1_079_296, (31, 4, 17)),
            (GIB, 1_073_995_776, (2081, 16, 63)),
            (4 * GIB, 4_295_467_008, (8323, 16, 63)),
            (127 * GIB, 136_365_219_840, (65279, 16, 255)),
            (128 * GIB, 128 * GIB, (65535, 16, 255)),
            (2040 * GIB, 2040 * GIB, (65535, 16, 255)),
        ];
        for &(req, size, (c, h, s)) in cases {
            let (g, got) = compatible_size(req).unwrap();
            assert_eq!(got, size, "size for {req}");
            assert_eq!((g.cylinders, g.heads, g.sectors), (c, h, s), "geometry for {req}");
        }
    }

    #[test]
    fn spec_geometry_rounds_down() {
        let g = Geometry::from_sectors(GIB / 512);
        assert_eq!((g.cylinders, g.heads, g.sectors), (2080, 16, 63));
        assert!(g.size() <= GIB);
    }

    #[test]
    fn over_2040_gib_is_refused() {
        assert_eq!(compatible_size(2041 * GIB).unwrap_err(), SizeError::TooLarge(2041 * GIB));
        assert_eq!(compatible_size(0).unwrap_err(), SizeError::Zero);
    }

    proptest::proptest! {
        #[test]
        fn compatible_size_is_never_smaller_and_agrees_with_chs(req in 1u64..(200u64 << 30)) {
            let (g, size) = compatible_size(req).unwrap();
            proptest::prop_assert!(size >= req);
            proptest::prop_assert!(g.is_max() || g.size() == size);
        }
    }
}
