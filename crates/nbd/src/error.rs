//! The crate's error types, one per concern, and the single mapping from [`BlockError`] to the
//! NBD error code a client sees.
//!
//! Codec errors ([`OptionError`], [`RequestError`]) name the field and the value that was wrong;
//! connection errors wrap them as `#[source]`, so [`display_chain`] prints the whole story.

use std::error::Error;
use std::io;

use block::BlockError;

use crate::proto::{
    IHAVEOPT, MAX_OPTION_LEN, MAX_STRING_LEN, OPTION_HEADER_LEN, REQUEST_HEADER_LEN, REQUEST_MAGIC,
};

/// A handshake option that cannot be decoded (from [`crate::proto::decode_option`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    /// Fewer than [`OPTION_HEADER_LEN`] bytes.
    #[error("option header is {available} bytes, expected {OPTION_HEADER_LEN}")]
    HeaderTruncated {
        /// Bytes available.
        available: usize,
    },
    /// The header does not start with `IHAVEOPT`.
    #[error("option magic is {found:#018x}, expected IHAVEOPT ({IHAVEOPT:#018x})")]
    BadMagic {
        /// The magic received.
        found: u64,
    },
    /// The option's data is longer than [`MAX_OPTION_LEN`].
    #[error("{option} carries {length} bytes of data, more than the {MAX_OPTION_LEN} this server reads")]
    TooLong {
        /// Option name.
        option: &'static str,
        /// Declared data length.
        length: u32,
    },
    /// The option must carry no data but does.
    #[error("{option} must carry no data, got {length} bytes")]
    UnexpectedData {
        /// Option name.
        option: &'static str,
        /// Data length received.
        length: usize,
    },
    /// A field runs past the end of the option data.
    #[error("{option}: {field} needs {needed} bytes but only {available} remain")]
    Truncated {
        /// Option name.
        option: &'static str,
        /// The field being decoded.
        field: &'static str,
        /// Bytes the field needs.
        needed: u64,
        /// Bytes left in the option data.
        available: usize,
    },
    /// A string is longer than the protocol's [`MAX_STRING_LEN`].
    #[error("{option}: {field} is {length} bytes, longer than the protocol's limit of {MAX_STRING_LEN}")]
    StringTooLong {
        /// Option name.
        option: &'static str,
        /// The string field.
        field: &'static str,
        /// Its declared length.
        length: u64,
    },
    /// A string is not UTF-8.
    #[error("{option}: {field} is not valid UTF-8")]
    NotUtf8 {
        /// Option name.
        option: &'static str,
        /// The string field.
        field: &'static str,
    },
    /// A string contains a NUL byte, which the protocol forbids (§ Conventions).
    #[error("{option}: {field} {value:?} contains a NUL byte")]
    ContainsNul {
        /// Option name.
        option: &'static str,
        /// The string field.
        field: &'static str,
        /// The string received.
        value: String,
    },
    /// Bytes are left over after the last field.
    #[error("{option}: {extra} bytes follow the last field")]
    TrailingBytes {
        /// Option name.
        option: &'static str,
        /// Number of extra bytes.
        extra: usize,
    },
}

/// A transmission request that cannot be decoded or executed as sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Fewer than [`REQUEST_HEADER_LEN`] bytes.
    #[error("request header is {available} bytes, expected {REQUEST_HEADER_LEN}")]
    Truncated {
        /// Bytes available.
        available: usize,
    },
    /// The header does not start with `NBD_REQUEST_MAGIC`; the stream is out of sync.
    #[error("request magic is {found:#010x}, expected {REQUEST_MAGIC:#010x}")]
    BadMagic {
        /// The magic received.
        found: u32,
    },
    /// The command type is not one this server knows.
    #[error("unknown command type {kind}")]
    UnknownCommand {
        /// The type received.
        kind: u16,
    },
    /// The command carries flags not defined for it.
    #[error("{command} does not accept command flags {flags:#06x}")]
    BadFlags {
        /// Command name.
        command: &'static str,
        /// The offending flag bits.
        flags: u16,
    },
}

impl RequestError {
    /// True when the stream can no longer be trusted and the connection must be closed; other
    /// errors are answered with `NBD_EINVAL`.
    pub fn is_fatal(&self) -> bool {
        match self {
            Self::Truncated { .. } | Self::BadMagic { .. } => true,
            Self::UnknownCommand { .. } | Self::BadFlags { .. } => false,
        }
    }
}

/// Why a handshake ended without entering transmission.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The socket failed or the client went away.
    #[error("I/O error during the handshake")]
    Io(#[from] io::Error),
    /// The client set flags this server never offered (§ Client flags: "the server MUST drop
    /// the TCP connection").
    #[error("client flags {flags:#010x} include unknown bits {unknown:#010x}")]
    UnknownClientFlags {
        /// Flags received.
        flags: u32,
        /// The bits not understood.
        unknown: u32,
    },
    /// An option that cannot be answered with an error reply (bad magic, a malformed
    /// `NBD_OPT_EXPORT_NAME`).
    #[error("malformed option")]
    Option(#[from] OptionError),
    /// `NBD_OPT_EXPORT_NAME` named an export that does not exist; that option cannot fail
    /// gracefully, so the session ends.
    #[error("NBD_OPT_EXPORT_NAME asked for export {name:?}, which does not exist")]
    UnknownExport {
        /// The name asked for.
        name: String,
    },
    /// `NBD_OPT_EXPORT_NAME` asked for an export that already has a writer.
    #[error("NBD_OPT_EXPORT_NAME refused: {message}")]
    Refused {
        /// Why.
        message: String,
    },
}

/// Why transmission ended other than by `NBD_CMD_DISC` or the client closing the socket.
#[derive(Debug, thiserror::Error)]
pub enum TransmissionError {
    /// The socket failed.
    #[error("I/O error in transmission")]
    Io(#[from] io::Error),
    /// The client sent something that desynchronises the stream.
    #[error("malformed request")]
    Request(#[from] RequestError),
}

/// Why a connection ended abnormally (see [`crate::Server::handle`]).
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// The stream could not be split into a reader and a writer.
    #[error("cannot clone the connection's stream")]
    Split(#[source] io::Error),
    /// Negotiation failed.
    #[error("handshake failed")]
    Handshake(#[from] HandshakeError),
    /// Transmission failed.
    #[error("transmission failed")]
    Transmission(#[from] TransmissionError),
}

/// A server configuration that cannot be served (see [`crate::Server::new`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// No exports at all.
    #[error("no exports configured")]
    NoExports,
    /// An export without a name; the empty name is reserved for "the default export".
    #[error("export #{index} has an empty name; the empty name means the default export")]
    EmptyName {
        /// Position in the list.
        index: usize,
    },
    /// Two exports with the same name.
    #[error("export name {name:?} appears more than once")]
    DuplicateName {
        /// The repeated name.
        name: String,
    },
    /// A name or description the protocol cannot carry (too long, or containing NUL).
    #[error("{field} of export {name:?} is not a valid NBD string (at most {MAX_STRING_LEN} bytes, no NUL)")]
    InvalidString {
        /// The export's name.
        name: String,
        /// `name` or `description`.
        field: &'static str,
    },
}

/// The NBD error code for a failed device call. `write` selects `NBD_ENOSPC` for ranges past the
/// end, as § Error values asks for writes (reads get `NBD_EINVAL`).
pub fn wire_error(err: &BlockError, write: bool) -> u32 {
    use crate::proto::{EINVAL, EIO, ENOSPC, EPERM};
    match err {
        BlockError::OutOfRange { .. } if write => ENOSPC,
        BlockError::OutOfRange { .. } => EINVAL,
        BlockError::ReadOnly => EPERM,
        BlockError::NoSpace(_) => ENOSPC,
        // § Error values: "SHOULD map the EDQUOT and EFBIG errors to NBD_ENOSPC".
        BlockError::Io(e) => match e.raw_os_error() {
            Some(libc::ENOSPC | libc::EDQUOT | libc::EFBIG) => ENOSPC,
            _ => EIO,
        },
        BlockError::Corrupt(_) => EIO,
    }
}

/// `err` and all its sources, joined with ": ", for logs at the edge.
pub fn display_chain(err: &dyn Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{EINVAL, EIO, ENOSPC, EPERM};

    #[test]
    fn out_of_range_is_enospc_for_writes_and_einval_for_reads() {
        let err = BlockError::OutOfRange { offset: 10, len: 10, size: 15 };
        assert_eq!(wire_error(&err, true), ENOSPC);
        assert_eq!(wire_error(&err, false), EINVAL);
    }

    #[test]
    fn host_quota_and_file_size_errors_map_to_enospc() {
        for errno in [libc::ENOSPC, libc::EDQUOT, libc::EFBIG] {
            let err = BlockError::Io(io::Error::from_raw_os_error(errno));
            assert_eq!(wire_error(&err, true), ENOSPC, "errno {errno}");
        }
        assert_eq!(wire_error(&BlockError::Io(io::Error::from_raw_os_error(libc::EIO)), true), EIO);
    }

    #[test]
    fn read_only_and_corruption_map_to_eperm_and_eio() {
        assert_eq!(wire_error(&BlockError::ReadOnly, true), EPERM);
        assert_eq!(wire_error(&BlockError::Corrupt("bat".into()), false), EIO);
    }

    #[test]
    fn chain_includes_every_source() {
        let err = ConnectionError::Transmission(TransmissionError::Request(RequestError::BadMagic {
            found: 0x1234_5678,
        }));
        assert_eq!(
            display_chain(&err),
            "transmission failed: malformed request: request magic is 0x12345678, expected 0x25609513"
        );
    }
}
