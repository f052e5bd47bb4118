//! The NBD wire protocol: every constant, and pure codecs that turn bytes into typed messages and
//! back. Nothing here does I/O, so the decoders can be fuzzed and property-tested directly.
//!
//! Section names in the doc comments ("§ Option types") refer to the protocol document,
//! <https://github.com/NetworkBlockDevice/nbd/blob/master/doc/proto.md>. All integers on the wire
//! are big-endian ("§ Conventions").

mod option;
mod reply;
mod request;

pub use option::{
    decode_option, decode_option_header, ClientOption, ExportRequest, MetaContextRequest, OptionHeader,
};
pub use reply::{
    block_status_chunk, error_chunk, export_name_reply, info_block_size, info_description, info_export,
    info_name, none_chunk, offset_data_header, option_reply, rep_meta_context, rep_server, simple_reply,
    BlockSizes,
};
pub use request::{decode_request, Command, RequestHeader};

// ---- Handshake magic and flags ----------------------------------------------------------------

/// `NBDMAGIC` (`INIT_PASSWD`), the first eight bytes the server sends (§ Newstyle negotiation).
pub const NBD_MAGIC: u64 = 0x4e42_444d_4147_4943;
/// `IHAVEOPT`: sent by the server after [`NBD_MAGIC`] and by the client before every option
/// (§ Newstyle negotiation).
pub const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
/// Magic that starts every option reply (§ Fixed newstyle negotiation).
pub const OPTION_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;

/// `NBD_FLAG_FIXED_NEWSTYLE`: the server speaks fixed newstyle (§ Handshake flags).
pub const FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
/// `NBD_FLAG_NO_ZEROES`: the server can omit the 124 zero bytes after `NBD_OPT_EXPORT_NAME`
/// (§ Handshake flags).
pub const FLAG_NO_ZEROES: u16 = 1 << 1;

/// `NBD_FLAG_C_FIXED_NEWSTYLE`: the client speaks fixed newstyle (§ Client flags).
pub const CLIENT_FLAG_FIXED_NEWSTYLE: u32 = 1 << 0;
/// `NBD_FLAG_C_NO_ZEROES`: the client does not want the 124 zero bytes (§ Client flags).
pub const CLIENT_FLAG_NO_ZEROES: u32 = 1 << 1;
/// Every client flag this server understands; the server must drop clients that set others
/// (§ Client flags).
pub const CLIENT_FLAGS_KNOWN: u32 = CLIENT_FLAG_FIXED_NEWSTYLE | CLIENT_FLAG_NO_ZEROES;

/// Reserved zero bytes after the `NBD_OPT_EXPORT_NAME` reply unless `NBD_FLAG_C_NO_ZEROES` was
/// negotiated (§ Newstyle negotiation).
pub const EXPORT_NAME_ZEROES: usize = 124;

// ---- Options (§ Option types) -----------------------------------------------------------------

/// `NBD_OPT_EXPORT_NAME`: choose an export and enter transmission; cannot report errors.
pub const OPT_EXPORT_NAME: u32 = 1;
/// `NBD_OPT_ABORT`: the client ends the negotiation.
pub const OPT_ABORT: u32 = 2;
/// `NBD_OPT_LIST`: list the exports, one `NBD_REP_SERVER` each.
pub const OPT_LIST: u32 = 3;
/// `NBD_OPT_STARTTLS`: upgrade to TLS (not supported here).
pub const OPT_STARTTLS: u32 = 5;
/// `NBD_OPT_INFO`: describe an export without entering transmission.
pub const OPT_INFO: u32 = 6;
/// `NBD_OPT_GO`: describe an export and enter transmission; can report errors.
pub const OPT_GO: u32 = 7;
/// `NBD_OPT_STRUCTURED_REPLY`: use structured reply chunks in transmission.
pub const OPT_STRUCTURED_REPLY: u32 = 8;
/// `NBD_OPT_LIST_META_CONTEXT`: list metadata contexts matching queries.
pub const OPT_LIST_META_CONTEXT: u32 = 9;
/// `NBD_OPT_SET_META_CONTEXT`: select the metadata contexts for `NBD_CMD_BLOCK_STATUS`.
pub const OPT_SET_META_CONTEXT: u32 = 10;

// ---- Option replies (§ Option reply types) ----------------------------------------------------

/// `NBD_REP_ACK`: the option succeeded, or a list has ended.
pub const REP_ACK: u32 = 1;
/// `NBD_REP_SERVER`: one export in the answer to `NBD_OPT_LIST`.
pub const REP_SERVER: u32 = 2;
/// `NBD_REP_INFO`: one `NBD_INFO_*` item in the answer to `NBD_OPT_INFO`/`NBD_OPT_GO`.
pub const REP_INFO: u32 = 3;
/// `NBD_REP_META_CONTEXT`: one metadata context.
pub const REP_META_CONTEXT: u32 = 4;
/// Bit 31 marks every error reply.
pub const REP_ERR_BIT: u32 = 1 << 31;
/// `NBD_REP_ERR_UNSUP`: the option is not known to this server.
pub const REP_ERR_UNSUP: u32 = REP_ERR_BIT + 1;
/// `NBD_REP_ERR_POLICY`: the option is valid but server policy forbids it.
pub const REP_ERR_POLICY: u32 = REP_ERR_BIT + 2;
/// `NBD_REP_ERR_INVALID`: the option is syntactically or semantically invalid.
pub const REP_ERR_INVALID: u32 = REP_ERR_BIT + 3;
/// `NBD_REP_ERR_UNKNOWN`: the requested export does not exist.
pub const REP_ERR_UNKNOWN: u32 = REP_ERR_BIT + 6;
/// `NBD_REP_ERR_TOO_BIG`: the request or its reply is too large to process.
pub const REP_ERR_TOO_BIG: u32 = REP_ERR_BIT + 9;

// ---- NBD_REP_INFO items (§ Option reply types, `NBD_REP_INFO`) --------------------------------

/// `NBD_INFO_EXPORT`: size and transmission flags; mandatory before a successful `NBD_REP_ACK`.
pub const INFO_EXPORT: u16 = 0;
/// `NBD_INFO_NAME`: the canonical export name.
pub const INFO_NAME: u16 = 1;
/// `NBD_INFO_DESCRIPTION`: a human-readable description.
pub const INFO_DESCRIPTION: u16 = 2;
/// `NBD_INFO_BLOCK_SIZE`: minimum, preferred and maximum block sizes.
pub const INFO_BLOCK_SIZE: u16 = 3;

// ---- Transmission flags (§ Transmission flags) ------------------------------------------------

/// `NBD_FLAG_HAS_FLAGS`: must always be set.
pub const TFLAG_HAS_FLAGS: u16 = 1 << 0;
/// `NBD_FLAG_READ_ONLY`: the export refuses writes.
pub const TFLAG_READ_ONLY: u16 = 1 << 1;
/// `NBD_FLAG_SEND_FLUSH`: the server supports `NBD_CMD_FLUSH`.
pub const TFLAG_SEND_FLUSH: u16 = 1 << 2;
/// `NBD_FLAG_SEND_FUA`: the server supports `NBD_CMD_FLAG_FUA`.
pub const TFLAG_SEND_FUA: u16 = 1 << 3;
/// `NBD_FLAG_SEND_TRIM`: the server supports `NBD_CMD_TRIM`.
pub const TFLAG_SEND_TRIM: u16 = 1 << 5;
/// `NBD_FLAG_SEND_WRITE_ZEROES`: the server supports `NBD_CMD_WRITE_ZEROES` and `NO_HOLE`.
pub const TFLAG_SEND_WRITE_ZEROES: u16 = 1 << 6;
/// `NBD_FLAG_SEND_DF`: `NBD_CMD_READ` honours `NBD_CMD_FLAG_DF` (structured replies only).
pub const TFLAG_SEND_DF: u16 = 1 << 7;
/// `NBD_FLAG_CAN_MULTI_CONN`: flushes are visible across all connections to the export.
pub const TFLAG_CAN_MULTI_CONN: u16 = 1 << 8;
/// `NBD_FLAG_SEND_CACHE`: the server understands `NBD_CMD_CACHE`.
pub const TFLAG_SEND_CACHE: u16 = 1 << 10;

// ---- Requests and replies (§ Request message, § Simple reply message, § Structured reply chunk
// message) ---------------------------------------------------------------------------------------

/// `NBD_REQUEST_MAGIC`, the first four bytes of every request (§ Request message).
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
/// `NBD_SIMPLE_REPLY_MAGIC` (§ Simple reply message).
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
/// `NBD_STRUCTURED_REPLY_MAGIC` (§ Structured reply chunk message).
pub const STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;

/// Length of a request header: magic, flags, type, cookie, offset, length (§ Request message).
pub const REQUEST_HEADER_LEN: usize = 28;
/// Length of an option header: magic, option, length (§ Newstyle negotiation).
pub const OPTION_HEADER_LEN: usize = 16;
/// Length of a simple reply header: magic, error, cookie (§ Simple reply message).
pub const SIMPLE_REPLY_LEN: usize = 16;
/// Length of a structured reply chunk header: magic, flags, type, cookie, length
/// (§ Structured reply chunk message).
pub const STRUCTURED_HEADER_LEN: usize = 20;
/// Length of an option reply header: magic, option, type, length (§ Fixed newstyle negotiation).
pub const OPTION_REPLY_HEADER_LEN: usize = 20;

// ---- Commands (§ Request types) ---------------------------------------------------------------

/// `NBD_CMD_READ`.
pub const CMD_READ: u16 = 0;
/// `NBD_CMD_WRITE`: the only request followed by a payload.
pub const CMD_WRITE: u16 = 1;
/// `NBD_CMD_DISC`: soft disconnect; no reply.
pub const CMD_DISC: u16 = 2;
/// `NBD_CMD_FLUSH`.
pub const CMD_FLUSH: u16 = 3;
/// `NBD_CMD_TRIM`.
pub const CMD_TRIM: u16 = 4;
/// `NBD_CMD_CACHE`.
pub const CMD_CACHE: u16 = 5;
/// `NBD_CMD_WRITE_ZEROES`.
pub const CMD_WRITE_ZEROES: u16 = 6;
/// `NBD_CMD_BLOCK_STATUS`.
pub const CMD_BLOCK_STATUS: u16 = 7;

// ---- Command flags (§ Command flags) ----------------------------------------------------------

/// `NBD_CMD_FLAG_FUA`: persist the command's writes before replying; valid on every command.
pub const CMD_FLAG_FUA: u16 = 1 << 0;
/// `NBD_CMD_FLAG_NO_HOLE`: `NBD_CMD_WRITE_ZEROES` must leave the range allocated.
pub const CMD_FLAG_NO_HOLE: u16 = 1 << 1;
/// `NBD_CMD_FLAG_DF`: `NBD_CMD_READ` wants at most one content chunk.
pub const CMD_FLAG_DF: u16 = 1 << 2;
/// `NBD_CMD_FLAG_REQ_ONE`: `NBD_CMD_BLOCK_STATUS` wants one extent per context.
pub const CMD_FLAG_REQ_ONE: u16 = 1 << 3;
/// `NBD_CMD_FLAG_FAST_ZERO`: fail `NBD_CMD_WRITE_ZEROES` unless it is fast (never advertised here).
pub const CMD_FLAG_FAST_ZERO: u16 = 1 << 4;

// ---- Structured replies (§ Structured reply flags, § Structured reply types) ------------------

/// `NBD_REPLY_FLAG_DONE`: the last chunk of a reply.
pub const REPLY_FLAG_DONE: u16 = 1 << 0;
/// `NBD_REPLY_TYPE_NONE`: an empty final chunk.
pub const REPLY_TYPE_NONE: u16 = 0;
/// `NBD_REPLY_TYPE_OFFSET_DATA`: an offset followed by data.
pub const REPLY_TYPE_OFFSET_DATA: u16 = 1;
/// `NBD_REPLY_TYPE_BLOCK_STATUS`: a context id followed by (length, flags) extents.
pub const REPLY_TYPE_BLOCK_STATUS: u16 = 5;
/// `NBD_REPLY_TYPE_ERROR`: an error code and a message for a human.
pub const REPLY_TYPE_ERROR: u16 = (1 << 15) + 1;

// ---- Errors (§ Error values) ------------------------------------------------------------------

/// `NBD_EPERM`: operation not permitted (writes to a read-only export).
pub const EPERM: u32 = 1;
/// `NBD_EIO`: input/output error.
pub const EIO: u32 = 5;
/// `NBD_EINVAL`: invalid argument (bad flags, unknown command, read past the end).
pub const EINVAL: u32 = 22;
/// `NBD_ENOSPC`: no space left (writes past the end, full host file system).
pub const ENOSPC: u32 = 28;
/// `NBD_EOVERFLOW`: value too large (only for `NBD_CMD_FLAG_DF` reads).
pub const EOVERFLOW: u32 = 75;
/// `NBD_ESHUTDOWN`: the server is shutting down.
pub const ESHUTDOWN: u32 = 108;

// ---- Metadata (§ The `base:` metadata namespace) ----------------------------------------------

/// The one metadata context this server offers.
pub const BASE_ALLOCATION: &str = "base:allocation";
/// The `base:` namespace prefix; on its own it is a wildcard for `NBD_OPT_LIST_META_CONTEXT`.
pub const BASE_NAMESPACE: &str = "base:";
/// `NBD_STATE_HOLE`: the extent is not allocated. This server reports every extent as data
/// (status 0), which the spec allows ("a server MAY always safely report a status of 0").
pub const STATE_HOLE: u32 = 1 << 0;

// ---- Limits -----------------------------------------------------------------------------------

/// Longest string (export name, description, error message) the protocol allows (§ Conventions).
pub const MAX_STRING_LEN: usize = 4096;
/// Longest option payload this server reads. Our policy, not the spec's: every option we
/// understand fits easily, and the bound keeps a client from making us allocate 4 GiB.
pub const MAX_OPTION_LEN: u32 = 64 * 1024;
/// Largest `NBD_CMD_READ`/`NBD_CMD_WRITE` payload served, advertised as the maximum block size.
/// "any *length* less than 2^25 (33,554,432) bytes SHOULD NOT be considered a denial of service
/// attack" (§ Block size constraints).
pub const MAX_PAYLOAD: u32 = 32 * 1024 * 1024;

/// The name of an option code, for logs and error messages.
pub fn option_name(option: u32) -> &'static str {
    match option {
        OPT_EXPORT_NAME => "NBD_OPT_EXPORT_NAME",
        OPT_ABORT => "NBD_OPT_ABORT",
        OPT_LIST => "NBD_OPT_LIST",
        OPT_STARTTLS => "NBD_OPT_STARTTLS",
        OPT_INFO => "NBD_OPT_INFO",
        OPT_GO => "NBD_OPT_GO",
        OPT_STRUCTURED_REPLY => "NBD_OPT_STRUCTURED_REPLY",
        OPT_LIST_META_CONTEXT => "NBD_OPT_LIST_META_CONTEXT",
        OPT_SET_META_CONTEXT => "NBD_OPT_SET_META_CONTEXT",
        _ => "unknown option",
    }
}

/// The name of a command type, for logs and error messages.
pub fn command_name(kind: u16) -> &'static str {
    match kind {
        CMD_READ => "NBD_CMD_READ",
        CMD_WRITE => "NBD_CMD_WRITE",
        CMD_DISC => "NBD_CMD_DISC",
        CMD_FLUSH => "NBD_CMD_FLUSH",
        CMD_TRIM => "NBD_CMD_TRIM",
        CMD_CACHE => "NBD_CMD_CACHE",
        CMD_WRITE_ZEROES => "NBD_CMD_WRITE_ZEROES",
        CMD_BLOCK_STATUS => "NBD_CMD_BLOCK_STATUS",
        _ => "unknown command",
    }
}

/// Reads a big-endian integer at `at`; callers have checked the length.
fn be_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes(bytes[at..at + 2].try_into().expect("slice of two bytes"))
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(bytes[at..at + 4].try_into().expect("slice of four bytes"))
}

fn be_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(bytes[at..at + 8].try_into().expect("slice of eight bytes"))
}
