//! An NBD server (fixed newstyle handshake) that exports any [`block::BlockDevice`].
//!
//! ```no_run
//! use std::sync::Arc;
//! # fn demo(disk: Arc<dyn block::BlockDevice>) -> Result<(), Box<dyn std::error::Error>> {
//! let server = nbd::Server::new(vec![nbd::Export::new("disk0", disk)])?;
//! let stop = server.shutdown_handle(); // call stop.shutdown() from another thread
//! server.serve_unix(std::path::Path::new("/run/vine/disk0.sock"))?;
//! # Ok(()) }
//! ```
//!
//! What is served (section names refer to the protocol document, see [`proto`]):
//! - Handshake: `NBD_OPT_EXPORT_NAME`, `ABORT`, `LIST`, `INFO`, `GO` (with `NBD_INFO_EXPORT`,
//!   `NAME`, `DESCRIPTION`, `BLOCK_SIZE`), `STRUCTURED_REPLY`, `LIST_META_CONTEXT` and
//!   `SET_META_CONTEXT` (`base:allocation`, every extent reported as allocated data).
//!   `STARTTLS` and unknown options get `NBD_REP_ERR_UNSUP`.
//! - Transmission: `READ`, `WRITE` (+`FUA`), `DISC`, `FLUSH`, `TRIM`, `CACHE` (a no-op),
//!   `WRITE_ZEROES` (+`NO_HOLE`), `BLOCK_STATUS`; up to 16 requests run in parallel per
//!   connection, one thread per connection.
//! - Writer policy: a read-write export that is not `shared` takes one connection at a time;
//!   others are refused at `NBD_OPT_GO`/`NBD_OPT_INFO` with `NBD_REP_ERR_POLICY`.
//!
//! Module map: [`proto`] (constants and pure codecs, fuzzable), `handshake` (option haggling),
//! `transmission` (request pipeline), `server` (sockets, threads, shutdown), `export` (exports
//! and writer policy), `error` (error types and the device-to-wire error mapping).
#![warn(missing_docs)]

use std::io::{self, Read};

mod error;
mod export;
mod handshake;
pub mod proto;
mod server;
mod transmission;

pub use error::{ConfigError, ConnectionError, HandshakeError, OptionError, RequestError, TransmissionError};
pub use export::{Export, CLAIM_GRACE};
pub use server::{Listener, Server, ShutdownHandle, Stream, HANDSHAKE_TIMEOUT, SHUTDOWN_GRACE};
pub use transmission::{MAX_IN_FLIGHT, MAX_IN_FLIGHT_BYTES};

/// Fills `buf`, or returns `false` if the stream ends before its first byte (a clean close).
/// An end of stream in the middle is an `UnexpectedEof` error.
fn read_exact_or_eof<R: Read + ?Sized>(reader: &mut R, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(true)
}

/// Reads and discards `len` bytes through a small buffer, never allocating `len`.
fn skip<R: Read + ?Sized>(reader: &mut R, len: u32) -> io::Result<()> {
    let skipped = io::copy(&mut Read::take(reader, u64::from(len)), &mut io::sink())?;
    if skipped < u64::from(len) {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}
