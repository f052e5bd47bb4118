//! The file under an image, behind a small trait so tests can inject I/O failures at any write.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicI64, Ordering};

/// Positioned I/O on the file that holds an image.
pub trait Backing: Send + Sync + std::fmt::Debug {
    /// Reads exactly `buf.len()` bytes at `offset`; bytes past the end of the file read as zeros.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset`, extending the file when needed.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes every completed write durable (fdatasync).
    fn sync(&self) -> io::Result<()>;
    /// Current length of the file.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file holds no bytes.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Truncates or extends the file.
    fn set_len(&self, len: u64) -> io::Result<()>;
}

impl Backing for File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            match FileExt::read_at(self, &mut buf[done..], offset + done as u64) {
                Ok(0) => {
                    buf[done..].fill(0);
                    return Ok(());
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.write_all_at(buf, offset)
    }
    fn sync(&self) -> io::Result<()> {
        self.sync_data()
    }
    fn len(&self) -> io::Result<u64> {
        block::raw::file_len(self)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }
}

/// A backing that starts failing every write and sync after a given number of writes, to
/// simulate a disk that dies in the middle of an operation (crash tests).
#[derive(Debug)]
pub struct FailingBacking<B> {
    inner: B,
    writes_left: AtomicI64,
}

impl<B: Backing> FailingBacking<B> {
    /// Lets `writes` writes through, then fails everything but reads.
    pub fn new(inner: B, writes: i64) -> Self {
        Self { inner, writes_left: AtomicI64::new(writes) }
    }

    fn gate(&self) -> io::Result<()> {
        if self.writes_left.fetch_sub(1, Ordering::SeqCst) <= 0 {
            Err(io::Error::other("injected I/O failure"))
        } else {
            Ok(())
        }
    }
}

impl<B: Backing> Backing for FailingBacking<B> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.gate()?;
        self.inner.write_at(buf, offset)
    }
    fn sync(&self) -> io::Result<()> {
        if self.writes_left.load(Ordering::SeqCst) <= 0 {
            return Err(io::Error::other("injected I/O failure"));
        }
        self.inner.sync()
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.gate()?;
        self.inner.set_len(len)
    }
}

/// An image held in memory (fuzzing and tests).
#[derive(Debug, Default)]
pub struct MemBacking(std::sync::Mutex<Vec<u8>>);

impl MemBacking {
    /// A backing holding `bytes`.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(std::sync::Mutex::new(bytes))
    }

    /// A copy of the bytes.
    pub fn bytes(&self) -> Vec<u8> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Backing for MemBacking {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let v = self.lock();
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(v.len());
        let n = (v.len() - start).min(buf.len());
        buf[..n].copy_from_slice(&v[start..start + n]);
        buf[n..].fill(0);
        Ok(())
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut v = self.lock();
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= 1 << 32)
            .ok_or_else(|| io::Error::other("in-memory image limited to 4 GiB"))? as usize;
        if v.len() < end {
            v.resize(end, 0);
        }
        v[offset as usize..end].copy_from_slice(buf);
        Ok(())
    }
    fn sync(&self) -> io::Result<()> {
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.lock().len() as u64)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        if len > 1 << 32 {
            return Err(io::Error::other("in-memory image limited to 4 GiB"));
        }
        self.lock().resize(len as usize, 0);
        Ok(())
    }
}

impl<B: Backing + ?Sized> Backing for std::sync::Arc<B> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        (**self).read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        (**self).write_at(buf, offset)
    }
    fn sync(&self) -> io::Result<()> {
        (**self).sync()
    }
    fn len(&self) -> io::Result<u64> {
        (**self).len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        (**self).set_len(len)
    }
}
