//! The seam between storage formats and the things that export them.
//!
//! A [`BlockDevice`] is a byte-addressed virtual disk of fixed size that may be shared between
//! threads: the VHD engine implements it, the NBD server serves any implementation of it, and
//! neither knows about the other.
#![warn(missing_docs)]

use std::io;

/// What a device reports about itself to an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Guest-visible size in bytes.
    pub size: u64,
    /// True when the device refuses writes.
    pub read_only: bool,
    /// Smallest write the device handles without a read-modify-write cycle.
    pub preferred_block: u32,
    /// True when [`BlockDevice::trim`] can really give space back.
    pub can_trim: bool,
}

/// Errors a block device reports; exports map them onto their wire error codes.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// The range lies (partly) beyond the end of the device.
    #[error("range {offset}+{len} lies beyond the end of the device ({size} bytes)")]
    OutOfRange {
        /// First byte of the request.
        offset: u64,
        /// Length of the request.
        len: u64,
        /// Size of the device.
        size: u64,
    },
    /// The device was opened read-only.
    #[error("the device is read-only")]
    ReadOnly,
    /// The device has no room left to allocate the data (host file system full, format limit).
    #[error("no space left: {0}")]
    NoSpace(String),
    /// An I/O error from the backing store.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// The backing store's metadata is inconsistent; the message names the place.
    #[error("corrupt image: {0}")]
    Corrupt(String),
}

/// A virtual disk that many threads can read and write at once.
///
/// Implementations must be safe against concurrent calls on overlapping ranges in the sense of
/// a real disk: every call completes as a whole, in some order.
pub trait BlockDevice: Send + Sync {
    /// Size, mode and capabilities.
    fn info(&self) -> DeviceInfo;
    /// Reads `buf.len()` bytes at `offset`.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), BlockError>;
    /// Writes `buf` at `offset`. Not durable until [`BlockDevice::flush`] returns.
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), BlockError>;
    /// Makes every completed write durable.
    fn flush(&self) -> Result<(), BlockError>;
    /// Tells the device the range is no longer needed; later reads return zeros or old data.
    fn trim(&self, offset: u64, len: u64) -> Result<(), BlockError> {
        let _ = (offset, len);
        Ok(())
    }
    /// Writes zeros over the range, cheaply where the format allows.
    fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), BlockError> {
        const CHUNK: u64 = 1 << 20;
        let zeros = vec![0u8; CHUNK.min(len) as usize];
        let mut done = 0;
        while done < len {
            let n = CHUNK.min(len - done);
            self.write_at(&zeros[..n as usize], offset + done)?;
            done += n;
        }
        Ok(())
    }
}

/// Checks that `offset..offset+len` lies inside a device of `size` bytes.
pub fn check_range(offset: u64, len: u64, size: u64) -> Result<(), BlockError> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(BlockError::OutOfRange { offset, len, size }),
    }
}

/// A plain file or block device used as a disk, byte for byte.
pub mod raw;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_past_end_is_rejected() {
        assert!(matches!(
            check_range(10, 10, 15).unwrap_err(),
            BlockError::OutOfRange { offset: 10, len: 10, size: 15 }
        ));
    }

    #[test]
    fn range_that_overflows_u64_is_rejected() {
        assert!(matches!(check_range(u64::MAX, 2, u64::MAX).unwrap_err(), BlockError::OutOfRange { .. }));
    }

    #[test]
    fn range_ending_at_size_is_accepted() {
        check_range(5, 10, 15).expect("in range");
    }
}
