//! Decoding of transmission requests (§ Request message, § Request types, § Command flags).

use super::{
    be_u16, be_u32, be_u64, command_name, CMD_BLOCK_STATUS, CMD_CACHE, CMD_DISC, CMD_FLAG_DF,
    CMD_FLAG_FAST_ZERO, CMD_FLAG_FUA, CMD_FLAG_NO_HOLE, CMD_FLAG_REQ_ONE, CMD_FLUSH, CMD_READ, CMD_TRIM,
    CMD_WRITE, CMD_WRITE_ZEROES, REQUEST_HEADER_LEN, REQUEST_MAGIC,
};
use crate::error::RequestError;

/// The 28-byte request header, fields as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHeader {
    /// `NBD_CMD_FLAG_*` bits.
    pub flags: u16,
    /// `NBD_CMD_*` type.
    pub kind: u16,
    /// Opaque value echoed in the reply ("handle" in older versions of the spec).
    pub cookie: u64,
    /// First byte of the range.
    pub offset: u64,
    /// Length of the range (and of the payload for `NBD_CMD_WRITE`).
    pub length: u32,
}

impl RequestHeader {
    /// True when `length` bytes of payload follow the header. Holds for every `NBD_CMD_WRITE`,
    /// even one with bad flags, so the reader can stay in sync.
    pub fn has_payload(&self) -> bool {
        self.kind == CMD_WRITE
    }
}

/// Decodes a request header: magic, flags, type, cookie, offset, length.
pub fn decode_request(bytes: &[u8]) -> Result<RequestHeader, RequestError> {
    if bytes.len() < REQUEST_HEADER_LEN {
        return Err(RequestError::Truncated { available: bytes.len() });
    }
    let magic = be_u32(bytes, 0);
    if magic != REQUEST_MAGIC {
        return Err(RequestError::BadMagic { found: magic });
    }
    Ok(RequestHeader {
        flags: be_u16(bytes, 4),
        kind: be_u16(bytes, 6),
        cookie: be_u64(bytes, 8),
        offset: be_u64(bytes, 16),
        length: be_u32(bytes, 24),
    })
}

/// A request with its type and flags checked; ranges are checked against the export later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `NBD_CMD_READ`.
    Read {
        /// First byte.
        offset: u64,
        /// Bytes to read.
        length: u32,
        /// `NBD_CMD_FLAG_DF`: at most one content chunk.
        dont_fragment: bool,
    },
    /// `NBD_CMD_WRITE`; the payload follows the header.
    Write {
        /// First byte.
        offset: u64,
        /// Payload length.
        length: u32,
        /// `NBD_CMD_FLAG_FUA`.
        fua: bool,
    },
    /// `NBD_CMD_DISC`.
    Disconnect,
    /// `NBD_CMD_FLUSH`.
    Flush,
    /// `NBD_CMD_TRIM`.
    Trim {
        /// First byte.
        offset: u64,
        /// Bytes to trim.
        length: u32,
        /// `NBD_CMD_FLAG_FUA`.
        fua: bool,
    },
    /// `NBD_CMD_CACHE`.
    Cache {
        /// First byte.
        offset: u64,
        /// Bytes to prefetch.
        length: u32,
    },
    /// `NBD_CMD_WRITE_ZEROES`.
    WriteZeroes {
        /// First byte.
        offset: u64,
        /// Bytes to zero.
        length: u32,
        /// `NBD_CMD_FLAG_FUA`.
        fua: bool,
        /// `NBD_CMD_FLAG_NO_HOLE`: the range must stay allocated.
        no_hole: bool,
        /// `NBD_CMD_FLAG_FAST_ZERO` (never advertised, so refused when set).
        fast: bool,
    },
    /// `NBD_CMD_BLOCK_STATUS`.
    BlockStatus {
        /// First byte.
        offset: u64,
        /// Bytes of interest.
        length: u32,
        /// `NBD_CMD_FLAG_REQ_ONE`.
        req_one: bool,
    },
}

impl Command {
    /// Classifies `header`, refusing unknown types and flags not defined for the type
    /// (§ Error values: both SHOULD get `NBD_EINVAL`). `NBD_CMD_FLAG_FUA` is accepted on every
    /// command, as § Command flags requires.
    pub fn from_header(header: &RequestHeader) -> Result<Self, RequestError> {
        let RequestHeader { flags, kind, offset, length, .. } = *header;
        let allowed = CMD_FLAG_FUA
            | match kind {
                CMD_READ => CMD_FLAG_DF,
                CMD_WRITE_ZEROES => CMD_FLAG_NO_HOLE | CMD_FLAG_FAST_ZERO,
                CMD_BLOCK_STATUS => CMD_FLAG_REQ_ONE,
                CMD_WRITE | CMD_DISC | CMD_FLUSH | CMD_TRIM | CMD_CACHE => 0,
                _ => return Err(RequestError::UnknownCommand { kind }),
            };
        if flags & !allowed != 0 {
            return Err(RequestError::BadFlags { command: command_name(kind), flags: flags & !allowed });
        }
        let has = |flag: u16| flags & flag != 0;
        let fua = has(CMD_FLAG_FUA);
        Ok(match kind {
            CMD_READ => Self::Read { offset, length, dont_fragment: has(CMD_FLAG_DF) },
            CMD_WRITE => Self::Write { offset, length, fua },
            CMD_DISC => Self::Disconnect,
            CMD_FLUSH => Self::Flush,
            CMD_TRIM => Self::Trim { offset, length, fua },
            CMD_CACHE => Self::Cache { offset, length },
            CMD_WRITE_ZEROES => Self::WriteZeroes {
                offset,
                length,
                fua,
                no_hole: has(CMD_FLAG_NO_HOLE),
                fast: has(CMD_FLAG_FAST_ZERO),
            },
            CMD_BLOCK_STATUS => Self::BlockStatus { offset, length, req_one: has(CMD_FLAG_REQ_ONE) },
            _ => unreachable!("unknown kinds returned above"),
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn request(magic: u32, flags: u16, kind: u16, cookie: u64, offset: u64, length: u32) -> Vec<u8> {
        [
            &magic.to_be_bytes()[..],
            &flags.to_be_bytes(),
            &kind.to_be_bytes(),
            &cookie.to_be_bytes(),
            &offset.to_be_bytes(),
            &length.to_be_bytes(),
        ]
        .concat()
    }

    fn command(flags: u16, kind: u16) -> Result<Command, RequestError> {
        let header =
            decode_request(&request(REQUEST_MAGIC, flags, kind, 7, 4096, 512)).expect("valid header");
        Command::from_header(&header)
    }

    #[test]
    fn request_decodes_every_field() {
        let header = decode_request(&request(REQUEST_MAGIC, CMD_FLAG_FUA, CMD_WRITE, 0xabcd, 1 << 40, 65536))
            .expect("valid header");
        assert_eq!(
            header,
            RequestHeader {
                flags: CMD_FLAG_FUA,
                kind: CMD_WRITE,
                cookie: 0xabcd,
                offset: 1 << 40,
                length: 65536
            }
        );
        assert!(header.has_payload());
    }

    #[test]
    fn request_with_bad_magic_is_rejected() {
        let err = decode_request(&request(0x2560_9514, 0, CMD_READ, 1, 0, 512)).unwrap_err();
        assert_eq!(err, RequestError::BadMagic { found: 0x2560_9514 });
        assert!(err.is_fatal());
    }

    #[test]
    fn request_shorter_than_a_header_is_rejected() {
        let err = decode_request(&request(REQUEST_MAGIC, 0, CMD_READ, 1, 0, 512)[..27]).unwrap_err();
        assert_eq!(err, RequestError::Truncated { available: 27 });
    }

    #[test]
    fn unknown_command_is_rejected_but_not_fatal() {
        let err = command(0, 99).unwrap_err();
        assert_eq!(err, RequestError::UnknownCommand { kind: 99 });
        assert!(!err.is_fatal());
    }

    #[test]
    fn read_with_no_hole_flag_is_rejected() {
        let err = command(CMD_FLAG_NO_HOLE, CMD_READ).unwrap_err();
        assert_eq!(err, RequestError::BadFlags { command: "NBD_CMD_READ", flags: CMD_FLAG_NO_HOLE });
    }

    #[test]
    fn write_with_undefined_flag_bit_is_rejected() {
        let err = command(1 << 9, CMD_WRITE).unwrap_err();
        assert_eq!(err, RequestError::BadFlags { command: "NBD_CMD_WRITE", flags: 1 << 9 });
    }

    #[test]
    fn fua_is_accepted_on_every_command() {
        for kind in [
            CMD_READ,
            CMD_WRITE,
            CMD_DISC,
            CMD_FLUSH,
            CMD_TRIM,
            CMD_CACHE,
            CMD_WRITE_ZEROES,
            CMD_BLOCK_STATUS,
        ] {
            command(CMD_FLAG_FUA, kind).unwrap_or_else(|e| panic!("{}: {e}", command_name(kind)));
        }
    }

    #[test]
    fn write_zeroes_decodes_no_hole_and_fua() {
        let decoded = command(CMD_FLAG_NO_HOLE | CMD_FLAG_FUA, CMD_WRITE_ZEROES).expect("valid");
        assert_eq!(
            decoded,
            Command::WriteZeroes { offset: 4096, length: 512, fua: true, no_hole: true, fast: false }
        );
    }

    #[test]
    fn block_status_decodes_req_one() {
        let decoded = command(CMD_FLAG_REQ_ONE, CMD_BLOCK_STATUS).expect("valid");
        assert_eq!(decoded, Command::BlockStatus { offset: 4096, length: 512, req_one: true });
    }

    proptest! {
        #[test]
        fn request_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(header) = decode_request(&bytes) {
                let _ = Command::from_header(&header);
            }
        }

        #[test]
        fn any_header_with_the_right_magic_decodes(
            flags in any::<u16>(), kind in any::<u16>(), cookie in any::<u64>(), offset in any::<u64>(), length in any::<u32>(),
        ) {
            let header = decode_request(&request(REQUEST_MAGIC, flags, kind, cookie, offset, length)).expect("valid magic");
            prop_assert_eq!(header, RequestHeader { flags, kind, cookie, offset, length });
            let _ = Command::from_header(&header);
        }
    }
}
