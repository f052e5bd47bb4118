//! The fixed newstyle handshake: greeting, client flags, and option haggling until the client
//! enters transmission (`NBD_OPT_GO`, `NBD_OPT_EXPORT_NAME`) or leaves.
//!
//! Decoding is in [`crate::proto`]; this module owns the negotiation state (structured replies,
//! the selected metadata context) and the decisions (which export, writer policy, flags).

use std::io::{self, Read, Write};

use tracing::{debug, info};

use crate::error::{HandshakeError, OptionError};
use crate::export::{Claim, Export, ExportTable};
use crate::proto::{self, BlockSizes, ClientOption, ExportRequest, MetaContextRequest};
use crate::proto::{
    BASE_ALLOCATION, BASE_NAMESPACE, CLIENT_FLAGS_KNOWN, CLIENT_FLAG_NO_ZEROES, FLAG_FIXED_NEWSTYLE,
    FLAG_NO_ZEROES, IHAVEOPT, INFO_DESCRIPTION, INFO_NAME, MAX_OPTION_LEN, MAX_PAYLOAD, NBD_MAGIC,
    OPTION_HEADER_LEN, OPT_EXPORT_NAME, REP_ACK, REP_ERR_INVALID, REP_ERR_POLICY, REP_ERR_UNKNOWN,
    REP_ERR_UNSUP, REP_INFO, REP_META_CONTEXT, REP_SERVER, TFLAG_CAN_MULTI_CONN, TFLAG_HAS_FLAGS,
    TFLAG_READ_ONLY, TFLAG_SEND_CACHE, TFLAG_SEND_DF, TFLAG_SEND_FLUSH, TFLAG_SEND_FUA, TFLAG_SEND_TRIM,
    TFLAG_SEND_WRITE_ZEROES,
};
use crate::{read_exact_or_eof, skip};

/// The id this server gives `base:allocation` in `NBD_OPT_SET_META_CONTEXT` replies.
pub(crate) const BASE_ALLOCATION_ID: u32 = 1;

/// What the handshake agreed on, ready for transmission.
pub(crate) struct Negotiated<'a> {
    pub(crate) export: &'a Export,
    /// Holds the export's writer slot for as long as the connection lives.
    pub(crate) claim: Claim<'a>,
    pub(crate) size: u64,
    pub(crate) read_only: bool,
    pub(crate) structured: bool,
    /// The context id for `NBD_CMD_BLOCK_STATUS`, if `base:allocation` was selected for this export.
    pub(crate) meta_context: Option<u32>,
}

/// The transmission flags for an export (§ Transmission flags). `NBD_FLAG_CAN_MULTI_CONN` is only
/// claimed when every connection sees the same device: read-only or explicitly shared exports.
pub(crate) fn transmission_flags(read_only: bool, shared: bool, structured: bool) -> u16 {
    let mut flags = TFLAG_HAS_FLAGS | TFLAG_SEND_FLUSH | TFLAG_SEND_CACHE;
    if read_only {
        flags |= TFLAG_READ_ONLY;
    } else {
        flags |= TFLAG_SEND_FUA | TFLAG_SEND_TRIM | TFLAG_SEND_WRITE_ZEROES;
    }
    if read_only || shared {
        flags |= TFLAG_CAN_MULTI_CONN;
    }
    if structured {
        // Reads are always sent as one chunk, so "don't fragment" costs nothing.
        flags |= TFLAG_SEND_DF;
    }
    flags
}

/// Block sizes for an export: byte-granular access, the device's preferred block rounded to a
/// power of two in 512..=[`MAX_PAYLOAD`], and [`MAX_PAYLOAD`] as the largest request.
pub(crate) fn block_sizes(preferred: u32) -> BlockSizes {
    let preferred = preferred.max(512).checked_next_power_of_two().unwrap_or(MAX_PAYLOAD).min(MAX_PAYLOAD);
    BlockSizes { minimum: 1, preferred, maximum: MAX_PAYLOAD }
}

/// Runs the handshake on `stream`. `Ok(None)` means the client aborted or left politely.
///
/// Reads are unbuffered on purpose: the client may pipeline its first requests right behind
/// `NBD_OPT_GO`, and those bytes must still be in the socket for the transmission reader.
pub(crate) fn negotiate<'a, S: Read + Write>(
    stream: &mut S,
    exports: &'a ExportTable,
    peer: &str,
) -> Result<Option<Negotiated<'a>>, HandshakeError> {
    let mut greeting = NBD_MAGIC.to_be_bytes().to_vec();
    greeting.extend_from_slice(&IHAVEOPT.to_be_bytes());
    greeting.extend_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    stream.write_all(&greeting)?;

    let mut flags = [0; 4];
    if !read_exact_or_eof(stream, &mut flags)? {
        return Ok(None);
    }
    let flags = u32::from_be_bytes(flags);
    if flags & !CLIENT_FLAGS_KNOWN != 0 {
        return Err(HandshakeError::UnknownClientFlags { flags, unknown: flags & !CLIENT_FLAGS_KNOWN });
    }
    // Clients without NBD_FLAG_C_FIXED_NEWSTYLE only ever send NBD_OPT_EXPORT_NAME, which both
    // dialects answer alike, so fixed newstyle is honoured for everyone (§ Client flags).
    let mut haggle = Haggle {
        stream,
        exports,
        peer,
        zeroes: flags & CLIENT_FLAG_NO_ZEROES == 0,
        structured: false,
        meta: None,
    };
    haggle.run()
}

/// `NBD_OPT_SET_META_CONTEXT`'s outcome: the export it named, and whether it selected
/// `base:allocation`.
#[derive(Clone, Copy)]
struct MetaSelection {
    export: usize,
    base_allocation: bool,
}

/// What one option did to the handshake.
enum Step<'a> {
    Continue,
    /// `NBD_OPT_ABORT`: the client is leaving.
    Abort,
    /// The client entered transmission.
    Transmit(Negotiated<'a>),
}

struct Haggle<'s, 'a, S> {
    stream: &'s mut S,
    exports: &'a ExportTable,
    peer: &'s str,
    zeroes: bool,
    structured: bool,
    meta: Option<MetaSelection>,
}

impl<'a, S: Read + Write> Haggle<'_, 'a, S> {
    fn run(&mut self) -> Result<Option<Negotiated<'a>>, HandshakeError> {
        loop {
            let mut header = [0; OPTION_HEADER_LEN];
            if !read_exact_or_eof(self.stream, &mut header)? {
                return Ok(None);
            }
            let header = proto::decode_option_header(&header)?;
            let name = proto::option_name(header.option);
            debug!(peer = self.peer, option = name, length = header.length, "option");
            if header.length > MAX_OPTION_LEN {
                let err = OptionError::TooLong { option: name, length: header.length };
                if header.option == OPT_EXPORT_NAME {
                    return Err(err.into()); // cannot be answered with an error
                }
                skip(self.stream, header.length)?;
                self.reply(header.option, REP_ERR_INVALID, err.to_string().as_bytes())?;
                continue;
            }
            let mut data = vec![0; header.length as usize];
            self.stream.read_exact(&mut data)?;
            let option = match proto::decode_option(header.option, &data) {
                Ok(option) => option,
                Err(err) if header.option == OPT_EXPORT_NAME => return Err(err.into()),
                Err(err) => {
                    debug!(peer = self.peer, option = name, error = %err, "invalid option");
                    self.reply(header.option, REP_ERR_INVALID, err.to_string().as_bytes())?;
                    continue;
                }
            };
            match self.handle(header.option, option)? {
                Step::Continue => {}
                Step::Abort => return Ok(None),
                Step::Transmit(negotiated) => return Ok(Some(negotiated)),
            }
        }
    }

    /// Answers one option.
    fn handle(&mut self, code: u32, option: ClientOption) -> Result<Step<'a>, HandshakeError> {
        match option {
            ClientOption::ExportName(name) => return self.export_name(&name).map(Step::Transmit),
            ClientOption::Abort => {
                // The client may already have closed; § Option types asks us to cope.
                let _ = self.reply(code, REP_ACK, &[]);
                return Ok(Step::Abort);
            }
            ClientOption::List => {
                for export in self.exports.iter() {
                    self.reply(code, REP_SERVER, &proto::rep_server(&export.name, &export.description))?;
                }
                self.reply(code, REP_ACK, &[])?;
            }
            ClientOption::StartTls => {
                self.reply(code, REP_ERR_UNSUP, b"TLS is not supported by this server")?;
            }
            ClientOption::Info(request) => {
                self.info(code, &request, false)?;
            }
            ClientOption::Go(request) => {
                if let Some(negotiated) = self.info(code, &request, true)? {
                    return Ok(Step::Transmit(negotiated));
                }
            }
            ClientOption::StructuredReply => {
                self.structured = true;
                self.reply(code, REP_ACK, &[])?;
            }
            ClientOption::ListMetaContext(request) => self.meta_context(code, &request, false)?,
            ClientOption::SetMetaContext(request) => self.meta_context(code, &request, true)?,
            ClientOption::Unsupported(other) => {
                self.reply(other, REP_ERR_UNSUP, format!("option {other} is not supported").as_bytes())?;
            }
        }
        Ok(Step::Continue)
    }

    fn export_name(&mut self, name: &str) -> Result<Negotiated<'a>, HandshakeError> {
        let index =
            self.exports.find(name).ok_or_else(|| HandshakeError::UnknownExport { name: name.to_owned() })?;
        let claim = self.exports.claim(index).map_err(|message| HandshakeError::Refused { message })?;
        let negotiated = self.negotiated(index, claim);
        let flags = transmission_flags(negotiated.read_only, negotiated.export.shared, self.structured);
        self.stream.write_all(&proto::export_name_reply(negotiated.size, flags, self.zeroes))?;
        Ok(self.entered(negotiated, "NBD_OPT_EXPORT_NAME"))
    }

    /// `NBD_OPT_INFO` (`go == false`) or `NBD_OPT_GO`.
    fn info(
        &mut self,
        code: u32,
        request: &ExportRequest,
        go: bool,
    ) -> Result<Option<Negotiated<'a>>, HandshakeError> {
        let Some(index) = self.exports.find(&request.name) else {
            let message = format!("no export named {:?}", request.name);
            self.reply(code, REP_ERR_UNKNOWN, message.as_bytes())?;
            return Ok(None);
        };
        // NBD_OPT_INFO only looks; NBD_OPT_GO takes the writer slot before anything is sent.
        let claim = if go {
            self.exports.claim(index).map(Some)
        } else {
            self.exports.check_available(index).map(|()| None)
        };
        let claim = match claim {
            Ok(claim) => claim,
            Err(message) => {
                info!(peer = self.peer, export = self.exports.get(index).name, "refused: {message}");
                self.reply(code, REP_ERR_POLICY, message.as_bytes())?;
                return Ok(None);
            }
        };
        let export = self.exports.get(index);
        let device = export.device.info();
        let read_only = export.is_read_only();
        let flags = transmission_flags(read_only, export.shared, self.structured);
        self.reply(code, REP_INFO, &proto::info_export(device.size, flags))?;
        if request.info.contains(&INFO_NAME) {
            self.reply(code, REP_INFO, &proto::info_name(&export.name))?;
        }
        if request.info.contains(&INFO_DESCRIPTION) && !export.description.is_empty() {
            self.reply(code, REP_INFO, &proto::info_description(&export.description))?;
        }
        // Sent unasked: our maximum is below the protocol's "unlimited" default (§ Block size
        // constraints: a server with other constraints SHOULD advertise them).
        self.reply(code, REP_INFO, &proto::info_block_size(block_sizes(device.preferred_block)))?;
        self.reply(code, REP_ACK, &[])?;
        Ok(claim.map(|claim| {
            let negotiated = self.negotiated(index, claim);
            self.entered(negotiated, "NBD_OPT_GO")
        }))
    }

    fn meta_context(
        &mut self,
        code: u32,
        request: &MetaContextRequest,
        set: bool,
    ) -> Result<(), HandshakeError> {
        if set {
            self.meta = None; // replaced even when the option fails (§ Option types)
        }
        if !self.structured {
            let message = "negotiate NBD_OPT_STRUCTURED_REPLY before metadata contexts";
            self.reply(code, REP_ERR_INVALID, message.as_bytes())?;
            return Ok(());
        }
        let Some(index) = self.exports.find(&request.export) else {
            let message = format!("no export named {:?}", request.export);
            self.reply(code, REP_ERR_UNKNOWN, message.as_bytes())?;
            return Ok(());
        };
        let matches = |query: &str| query == BASE_ALLOCATION || (!set && query == BASE_NAMESPACE);
        let selected = if set {
            request.queries.iter().any(|q| matches(q))
        } else {
            request.queries.is_empty() || request.queries.iter().any(|q| matches(q))
        };
        if selected {
            let id = if set { BASE_ALLOCATION_ID } else { 0 };
            self.reply(code, REP_META_CONTEXT, &proto::rep_meta_context(id, BASE_ALLOCATION))?;
        }
        if set {
            self.meta = Some(MetaSelection { export: index, base_allocation: selected });
        }
        self.reply(code, REP_ACK, &[])?;
        Ok(())
    }

    fn negotiated(&self, index: usize, claim: Claim<'a>) -> Negotiated<'a> {
        let export = self.exports.get(index);
        let meta_context = match self.meta {
            Some(MetaSelection { export, base_allocation: true }) if export == index && self.structured => {
                Some(BASE_ALLOCATION_ID)
            }
            _ => None,
        };
        Negotiated {
            export,
            claim,
            size: export.device.info().size,
            read_only: export.is_read_only(),
            structured: self.structured,
            meta_context,
        }
    }

    fn entered(&self, negotiated: Negotiated<'a>, via: &str) -> Negotiated<'a> {
        info!(
            peer = self.peer,
            export = negotiated.export.name,
            via,
            read_only = negotiated.read_only,
            structured = negotiated.structured,
            "client entered transmission"
        );
        negotiated
    }

    fn reply(&mut self, option: u32, kind: u32, payload: &[u8]) -> io::Result<()> {
        self.stream.write_all(&proto::option_reply(option, kind, payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transmission_flags_follow_mode_and_sharing() {
        let base = TFLAG_HAS_FLAGS | TFLAG_SEND_FLUSH | TFLAG_SEND_CACHE;
        let writes = TFLAG_SEND_FUA | TFLAG_SEND_TRIM | TFLAG_SEND_WRITE_ZEROES;
        let cases = [
            // (read_only, shared, structured) -> flags
            ((false, false, false), base | writes),
            ((false, true, false), base | writes | TFLAG_CAN_MULTI_CONN),
            ((true, false, false), base | TFLAG_READ_ONLY | TFLAG_CAN_MULTI_CONN),
            ((true, true, false), base | TFLAG_READ_ONLY | TFLAG_CAN_MULTI_CONN),
            ((false, false, true), base | writes | TFLAG_SEND_DF),
            ((true, false, true), base | TFLAG_READ_ONLY | TFLAG_CAN_MULTI_CONN | TFLAG_SEND_DF),
        ];
        for ((read_only, shared, structured), expected) in cases {
            assert_eq!(
                transmission_flags(read_only, shared, structured),
                expected,
                "read_only={read_only} shared={shared} structured={structured}"
            );
        }
    }

    #[test]
    fn preferred_block_is_a_power_of_two_of_at_least_512() {
        assert_eq!(block_sizes(0).preferred, 512);
        assert_eq!(block_sizes(3000).preferred, 4096);
        assert_eq!(block_sizes(65536).preferred, 65536);
        assert_eq!(block_sizes(u32::MAX).preferred, MAX_PAYLOAD);
        assert_eq!(block_sizes(512), BlockSizes { minimum: 1, preferred: 512, maximum: MAX_PAYLOAD });
    }
}
