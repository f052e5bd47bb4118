//! [`RawFile`]: a regular file or block device exposed as a [`BlockDevice`] unchanged.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::{check_range, BlockDevice, BlockError, DeviceInfo};

/// A raw image: byte `n` of the device is byte `n` of the file.
#[derive(Debug)]
pub struct RawFile {
    file: File,
    size: u64,
    read_only: bool,
}

impl RawFile {
    /// Opens `path`; its current length is the device size.
    pub fn open(path: &Path, read_only: bool) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(!read_only).open(path)?;
        let size = file_len(&file)?;
        Ok(Self { file, size, read_only })
    }

    /// The file behind the device.
    pub fn file(&self) -> &File {
        &self.file
    }
}

/// The length of a regular file or of a block device (seeking to its end).
pub fn file_len(file: &File) -> io::Result<u64> {
    use std::io::{Seek, SeekFrom};
    let meta = file.metadata()?;
    if meta.is_file() {
        return Ok(meta.len());
    }
    let mut f = file.try_clone()?;
    f.seek(SeekFrom::End(0))
}

impl BlockDevice for RawFile {
    fn info(&self) -> DeviceInfo {
        DeviceInfo { size: self.size, read_only: self.read_only, preferred_block: 512, can_trim: false }
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), BlockError> {
        check_range(offset, buf.len() as u64, self.size)?;
        self.file.read_exact_at(buf, offset)?;
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), BlockError> {
        if self.read_only {
            return Err(BlockError::ReadOnly);
        }
        check_range(offset, buf.len() as u64, self.size)?;
        self.file.write_all_at(buf, offset)?;
        Ok(())
    }

    fn flush(&self) -> Result<(), BlockError> {
        self.file.sync_data()?;
        Ok(())
    }
}
