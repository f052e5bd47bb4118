//! Entry points shared by the cargo-fuzz targets (fuzz/) and by the test that replays the
//! committed fuzz corpus on every run. Each takes arbitrary bytes and must never panic.

use std::path::Path;
use std::sync::Arc;

use crate::backing::MemBacking;
use crate::footer::Footer;
use crate::header::DynamicHeader;
use crate::image::{Extent, ExtentKind, VhdFile};
use crate::{locator, spec};

/// Recomputes the checksum of the structure of `len` bytes at `at` in `buf` (if it fits), so
/// the fuzzer reaches the checks behind it.
fn fix_checksum(buf: &mut [u8], at: usize, len: usize, field: usize) {
    if let Some(s) = buf.get_mut(at..at.saturating_add(len)) {
        if s.len() == len {
            let sum = spec::checksum(s, field);
            spec::put_u32(s, field, sum);
        }
    }
}

/// Decodes a footer as given and with its checksum fixed; a decoded footer must survive an
/// encode/decode round trip.
pub fn footer(data: &[u8]) {
    let Some(raw) = data.get(..spec::FOOTER_LEN) else { return };
    let mut fixed = raw.to_vec();
    fix_checksum(&mut fixed, 0, spec::FOOTER_LEN, spec::footer_off::CHECKSUM);
    footer_once(raw);
    footer_once(&fixed);
}

fn footer_once(data: &[u8]) {
    let Ok(b) = <&[u8; spec::FOOTER_LEN]>::try_from(data) else { return };
    if let Ok(f) = Footer::decode(b, 0) {
        assert_eq!(Footer::decode(&f.encode(), 0).as_ref(), Ok(&f), "footer round trip");
    }
}

/// Decodes a dynamic header as given and with its checksum fixed; a decoded header must
/// survive an encode/decode round trip.
pub fn header(data: &[u8]) {
    let Some(raw) = data.get(..spec::HEADER_LEN) else { return };
    let mut fixed = raw.to_vec();
    fix_checksum(&mut fixed, 0, spec::HEADER_LEN, spec::header_off::CHECKSUM);
    header_once(raw);
    header_once(&fixed);
}

fn header_once(data: &[u8]) {
    let Ok(b) = <&[u8; spec::HEADER_LEN]>::try_from(data) else { return };
    if let Ok(h) = DynamicHeader::decode(b, 512) {
        let again = DynamicHeader::decode(&h.encode(), 512).expect("re-encoded header decodes");
        assert_eq!(again.block_size, h.block_size);
        assert_eq!(again.locators, h.locators);
    }
}

/// Decodes a parent locator payload of every platform.
pub fn locator_payload(data: &[u8]) {
    for code in [
        spec::PLATFORM_W2RU,
        spec::PLATFORM_W2KU,
        spec::PLATFORM_MACX,
        spec::PLATFORM_WI2R,
        spec::PLATFORM_WI2K,
        0,
    ] {
        let _ = locator::candidate(code, data, Path::new("/images"));
    }
}

/// Opens a whole image held in memory, as given and with its footers' and header's checksums
/// fixed; maps and reads it (BAT, bitmaps, locators), checks it, and when it opens writes into it
/// and reopens it.
pub fn image(data: &[u8]) {
    image_once(data);
    let mut fixed = data.to_vec();
    fix_checksum(&mut fixed, 0, spec::FOOTER_LEN, spec::footer_off::CHECKSUM);
    let eof = fixed.len().saturating_sub(spec::FOOTER_LEN);
    fix_checksum(&mut fixed, eof, spec::FOOTER_LEN, spec::footer_off::CHECKSUM);
    if let Some(f) = fixed.get(spec::footer_off::DATA_OFFSET..spec::footer_off::DATA_OFFSET + 8) {
        let at = u64::from_be_bytes(f.try_into().expect("8 bytes"));
        if let Ok(at) = usize::try_from(at) {
            fix_checksum(&mut fixed, at, spec::HEADER_LEN, spec::header_off::CHECKSUM);
        }
    }
    if fixed != data {
        image_once(&fixed);
    }
}

fn image_once(data: &[u8]) {
    let mem = Arc::new(MemBacking::new(data.to_vec()));
    let path = Path::new("/fuzz/image.vhd");
    let _ = crate::check::check_backing(path, &*mem);
    let Ok(f) = VhdFile::open_backing(path, Box::new(mem.clone()), false) else { return };
    let size = f.size();
    let mut extents: Vec<Extent> = Vec::new();
    for off in [0, size / 2, size.saturating_sub(65536)] {
        let off = off / 512 * 512;
        let len = 65536.min(size - off.min(size));
        extents.clear();
        if f.map(off, len, &mut extents).is_err() {
            return;
        }
        assert_eq!(extents.iter().map(|e| e.len).sum::<u64>(), len, "extents cover the range");
        for e in &extents {
            if let ExtentKind::Data(at) = e.kind {
                let mut buf = vec![0u8; e.len.min(1 << 20) as usize];
                let _ = f.read_data(&mut buf, at);
            }
        }
    }
    if f.header().is_some() && f.disk_type() == crate::DiskType::Differencing {
        let _ = crate::chain::parent_candidates(&f);
    }
    drop(f);
    let copy = Arc::new(MemBacking::new(mem.bytes()));
    let Ok(w) = VhdFile::open_backing(path, Box::new(copy.clone()), true) else { return };
    let size = w.size();
    if size >= 4096 {
        let at = (size / 2) / 512 * 512;
        let at = at.min(size - 4096);
        if w.write_aligned(&[0x5a; 4096], at).is_ok() && w.flush().is_ok() {
            drop(w);
            let r = VhdFile::open_backing(path, Box::new(copy), false).expect("an image vine wrote reopens");
            let mut ex = Vec::new();
            r.map(at, 4096, &mut ex).expect("maps");
        }
    }
}
