//! Encoding of everything the server sends: option replies and their payloads
//! (§ Option reply types) and transmission replies (§ Simple reply message, § Structured reply
//! chunk message, § Structured reply types).

use super::{
    EXPORT_NAME_ZEROES, INFO_BLOCK_SIZE, INFO_DESCRIPTION, INFO_EXPORT, INFO_NAME, MAX_STRING_LEN,
    OPTION_REPLY_HEADER_LEN, OPTION_REPLY_MAGIC, REPLY_FLAG_DONE, REPLY_TYPE_BLOCK_STATUS, REPLY_TYPE_ERROR,
    REPLY_TYPE_NONE, REPLY_TYPE_OFFSET_DATA, SIMPLE_REPLY_LEN, SIMPLE_REPLY_MAGIC, STRUCTURED_HEADER_LEN,
    STRUCTURED_REPLY_MAGIC,
};

/// Block size constraints sent in `NBD_INFO_BLOCK_SIZE` (§ Block size constraints).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockSizes {
    /// Smallest addressable length and alignment.
    pub minimum: u32,
    /// Smallest length with efficient I/O.
    pub preferred: u32,
    /// Largest length served in one request.
    pub maximum: u32,
}

/// An option reply: magic, the option answered, reply type, length, payload.
pub fn option_reply(option: u32, kind: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(OPTION_REPLY_HEADER_LEN + payload.len());
    out.extend_from_slice(&OPTION_REPLY_MAGIC.to_be_bytes());
    out.extend_from_slice(&option.to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&len_u32(payload.len()).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The answer to `NBD_OPT_EXPORT_NAME`: size, transmission flags, and 124 zero bytes unless the
/// client negotiated `NBD_FLAG_C_NO_ZEROES` (§ Newstyle negotiation).
pub fn export_name_reply(size: u64, flags: u16, zeroes: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(10 + EXPORT_NAME_ZEROES);
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    if zeroes {
        out.resize(out.len() + EXPORT_NAME_ZEROES, 0);
    }
    out
}

/// `NBD_REP_SERVER` payload: name length, name, then the description for humans.
pub fn rep_server(name: &str, description: &str) -> Vec<u8> {
    let mut out = len_u32(name.len()).to_be_bytes().to_vec();
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(description.as_bytes());
    out
}

/// `NBD_REP_META_CONTEXT` payload: context id, context name.
pub fn rep_meta_context(id: u32, name: &str) -> Vec<u8> {
    [&id.to_be_bytes()[..], name.as_bytes()].concat()
}

/// `NBD_REP_INFO` payload for `NBD_INFO_EXPORT`: size and transmission flags.
pub fn info_export(size: u64, flags: u16) -> Vec<u8> {
    [&INFO_EXPORT.to_be_bytes()[..], &size.to_be_bytes(), &flags.to_be_bytes()].concat()
}

/// `NBD_REP_INFO` payload for `NBD_INFO_NAME`.
pub fn info_name(name: &str) -> Vec<u8> {
    [&INFO_NAME.to_be_bytes()[..], name.as_bytes()].concat()
}

/// `NBD_REP_INFO` payload for `NBD_INFO_DESCRIPTION`.
pub fn info_description(description: &str) -> Vec<u8> {
    [&INFO_DESCRIPTION.to_be_bytes()[..], description.as_bytes()].concat()
}

/// `NBD_REP_INFO` payload for `NBD_INFO_BLOCK_SIZE`.
pub fn info_block_size(sizes: BlockSizes) -> Vec<u8> {
    [
        &INFO_BLOCK_SIZE.to_be_bytes()[..],
        &sizes.minimum.to_be_bytes(),
        &sizes.preferred.to_be_bytes(),
        &sizes.maximum.to_be_bytes(),
    ]
    .concat()
}

/// A simple reply header: magic, error, cookie. Read data (if any) follows it.
pub fn simple_reply(cookie: u64, error: u32) -> [u8; SIMPLE_REPLY_LEN] {
    let mut out = [0; SIMPLE_REPLY_LEN];
    out[0..4].copy_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    out[4..8].copy_from_slice(&error.to_be_bytes());
    out[8..16].copy_from_slice(&cookie.to_be_bytes());
    out
}

fn chunk_header(flags: u16, kind: u16, cookie: u64, length: u32) -> [u8; STRUCTURED_HEADER_LEN] {
    let mut out = [0; STRUCTURED_HEADER_LEN];
    out[0..4].copy_from_slice(&STRUCTURED_REPLY_MAGIC.to_be_bytes());
    out[4..6].copy_from_slice(&flags.to_be_bytes());
    out[6..8].copy_from_slice(&kind.to_be_bytes());
    out[8..16].copy_from_slice(&cookie.to_be_bytes());
    out[16..20].copy_from_slice(&length.to_be_bytes());
    out
}

/// The final `NBD_REPLY_TYPE_NONE` chunk.
pub fn none_chunk(cookie: u64) -> [u8; STRUCTURED_HEADER_LEN] {
    chunk_header(REPLY_FLAG_DONE, REPLY_TYPE_NONE, cookie, 0)
}

/// Header and offset of a final `NBD_REPLY_TYPE_OFFSET_DATA` chunk carrying `data_len` bytes,
/// which follow it. `data_len` is at most [`super::MAX_PAYLOAD`], far below the 2^32 - 8 at which
/// a read must be split.
pub fn offset_data_header(cookie: u64, offset: u64, data_len: u32) -> [u8; STRUCTURED_HEADER_LEN + 8] {
    let mut out = [0; STRUCTURED_HEADER_LEN + 8];
    let length = data_len.checked_add(8).expect("read length bounded by MAX_PAYLOAD");
    out[..STRUCTURED_HEADER_LEN].copy_from_slice(&chunk_header(
        REPLY_FLAG_DONE,
        REPLY_TYPE_OFFSET_DATA,
        cookie,
        length,
    ));
    out[STRUCTURED_HEADER_LEN..].copy_from_slice(&offset.to_be_bytes());
    out
}

/// A final `NBD_REPLY_TYPE_ERROR` chunk: error code and a message for a human, cut to the
/// protocol's string limit at a character boundary.
pub fn error_chunk(cookie: u64, error: u32, message: &str) -> Vec<u8> {
    let message = truncate(message, MAX_STRING_LEN);
    let mut out =
        chunk_header(REPLY_FLAG_DONE, REPLY_TYPE_ERROR, cookie, len_u32(6 + message.len())).to_vec();
    out.extend_from_slice(&error.to_be_bytes());
    out.extend_from_slice(&(message.len() as u16).to_be_bytes());
    out.extend_from_slice(message.as_bytes());
    out
}

/// A final `NBD_REPLY_TYPE_BLOCK_STATUS` chunk: context id, then (length, flags) descriptors.
pub fn block_status_chunk(cookie: u64, context: u32, extents: &[(u32, u32)]) -> Vec<u8> {
    let length = len_u32(4 + 8 * extents.len());
    let mut out = chunk_header(REPLY_FLAG_DONE, REPLY_TYPE_BLOCK_STATUS, cookie, length).to_vec();
    out.extend_from_slice(&context.to_be_bytes());
    for (len, flags) in extents {
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&flags.to_be_bytes());
    }
    out
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Payload lengths here are built from bounded strings and lists, never from client input.
fn len_u32(len: usize) -> u32 {
    u32::try_from(len).expect("reply payloads are bounded far below 4 GiB")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{OPT_GO, REP_ACK};

    #[test]
    fn option_reply_has_magic_option_type_and_length() {
        let reply = option_reply(OPT_GO, REP_ACK, b"xy");
        assert_eq!(&reply[0..8], &OPTION_REPLY_MAGIC.to_be_bytes());
        assert_eq!(&reply[8..12], &OPT_GO.to_be_bytes());
        assert_eq!(&reply[12..16], &REP_ACK.to_be_bytes());
        assert_eq!(&reply[16..20], &2u32.to_be_bytes());
        assert_eq!(&reply[20..], b"xy");
    }

    #[test]
    fn export_name_reply_pads_with_zeroes_only_when_asked() {
        assert_eq!(export_name_reply(1 << 20, 1, true).len(), 134);
        assert_eq!(export_name_reply(1 << 20, 1, false), [0, 0, 0, 0, 0, 0x10, 0, 0, 0, 1]);
    }

    #[test]
    fn info_export_is_twelve_bytes() {
        assert_eq!(info_export(512, 0x0101), [0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1, 1]);
    }

    #[test]
    fn simple_reply_carries_error_and_cookie() {
        assert_eq!(simple_reply(0x0102, 22), [0x67, 0x44, 0x66, 0x98, 0, 0, 0, 22, 0, 0, 0, 0, 0, 0, 1, 2]);
    }

    #[test]
    fn offset_data_length_counts_the_offset() {
        let header = offset_data_header(9, 4096, 512);
        assert_eq!(&header[16..20], &520u32.to_be_bytes());
        assert_eq!(&header[20..28], &4096u64.to_be_bytes());
    }

    #[test]
    fn error_chunk_message_is_cut_at_a_character_boundary() {
        let message = "é".repeat(3000); // 6000 bytes
        let chunk = error_chunk(1, 5, &message);
        let message_len = u16::from_be_bytes([chunk[24], chunk[25]]) as usize;
        assert_eq!(message_len, 4096);
        assert_eq!(chunk.len(), STRUCTURED_HEADER_LEN + 6 + 4096);
        std::str::from_utf8(&chunk[26..]).expect("valid UTF-8 after truncation");
    }

    #[test]
    fn block_status_chunk_lists_extents_after_the_context() {
        let chunk = block_status_chunk(3, 1, &[(4096, 0)]);
        assert_eq!(&chunk[16..20], &12u32.to_be_bytes());
        assert_eq!(&chunk[20..], [0, 0, 0, 1, 0, 0, 0x10, 0, 0, 0, 0, 0]);
    }
}
