//! Decoding of the client's handshake options (§ Newstyle negotiation, § Option types).

use super::{
    be_u16, be_u32, be_u64, option_name, IHAVEOPT, MAX_OPTION_LEN, MAX_STRING_LEN, OPTION_HEADER_LEN,
    OPT_ABORT, OPT_EXPORT_NAME, OPT_GO, OPT_INFO, OPT_LIST, OPT_LIST_META_CONTEXT, OPT_SET_META_CONTEXT,
    OPT_STARTTLS, OPT_STRUCTURED_REPLY,
};
use crate::error::OptionError;

/// The fixed part of an option: which option, and how many bytes of data follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionHeader {
    /// The `NBD_OPT_*` code.
    pub option: u32,
    /// Length of the data after the header.
    pub length: u32,
}

/// Decodes the 16-byte option header: `IHAVEOPT`, option, length.
pub fn decode_option_header(bytes: &[u8]) -> Result<OptionHeader, OptionError> {
    if bytes.len() < OPTION_HEADER_LEN {
        return Err(OptionError::HeaderTruncated { available: bytes.len() });
    }
    let magic = be_u64(bytes, 0);
    if magic != IHAVEOPT {
        return Err(OptionError::BadMagic { found: magic });
    }
    Ok(OptionHeader { option: be_u32(bytes, 8), length: be_u32(bytes, 12) })
}

/// The export and information items asked for by `NBD_OPT_INFO` or `NBD_OPT_GO`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRequest {
    /// Export name; empty means the default export.
    pub name: String,
    /// The `NBD_INFO_*` items the client asked for, in its order.
    pub info: Vec<u16>,
}

/// The export and queries of `NBD_OPT_LIST_META_CONTEXT` or `NBD_OPT_SET_META_CONTEXT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaContextRequest {
    /// Export name; empty means the default export.
    pub export: String,
    /// Context queries such as `base:allocation` or `base:`.
    pub queries: Vec<String>,
}

/// One decoded handshake option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOption {
    /// `NBD_OPT_EXPORT_NAME` with the export name.
    ExportName(String),
    /// `NBD_OPT_ABORT`.
    Abort,
    /// `NBD_OPT_LIST`.
    List,
    /// `NBD_OPT_STARTTLS`.
    StartTls,
    /// `NBD_OPT_INFO`.
    Info(ExportRequest),
    /// `NBD_OPT_GO`.
    Go(ExportRequest),
    /// `NBD_OPT_STRUCTURED_REPLY`.
    StructuredReply,
    /// `NBD_OPT_LIST_META_CONTEXT`.
    ListMetaContext(MetaContextRequest),
    /// `NBD_OPT_SET_META_CONTEXT`.
    SetMetaContext(MetaContextRequest),
    /// Any other option code; answered with `NBD_REP_ERR_UNSUP`.
    Unsupported(u32),
}

/// Decodes the data of option `option`. Never allocates more than `data.len()` bytes in total.
pub fn decode_option(option: u32, data: &[u8]) -> Result<ClientOption, OptionError> {
    let name = option_name(option);
    if data.len() > MAX_OPTION_LEN as usize {
        return Err(OptionError::TooLong {
            option: name,
            length: u32::try_from(data.len()).unwrap_or(u32::MAX),
        });
    }
    let mut fields = Fields { option: name, data };
    let decoded = match option {
        OPT_EXPORT_NAME => ClientOption::ExportName(fields.string("export name", data.len() as u64)?),
        // § Option types: "a server SHOULD ignore any data sent by the client" with NBD_OPT_ABORT.
        OPT_ABORT => return Ok(ClientOption::Abort),
        OPT_LIST => no_data(name, data, ClientOption::List)?,
        OPT_STARTTLS => no_data(name, data, ClientOption::StartTls)?,
        OPT_STRUCTURED_REPLY => no_data(name, data, ClientOption::StructuredReply)?,
        OPT_INFO => ClientOption::Info(fields.export_request()?),
        OPT_GO => ClientOption::Go(fields.export_request()?),
        OPT_LIST_META_CONTEXT => ClientOption::ListMetaContext(fields.meta_context_request()?),
        OPT_SET_META_CONTEXT => ClientOption::SetMetaContext(fields.meta_context_request()?),
        other => return Ok(ClientOption::Unsupported(other)),
    };
    fields.finish()?;
    Ok(decoded)
}

fn no_data(option: &'static str, data: &[u8], decoded: ClientOption) -> Result<ClientOption, OptionError> {
    if data.is_empty() {
        Ok(decoded)
    } else {
        Err(OptionError::UnexpectedData { option, length: data.len() })
    }
}

/// A cursor over option data whose errors name the option and the field.
struct Fields<'a> {
    option: &'static str,
    data: &'a [u8],
}

impl<'a> Fields<'a> {
    fn take(&mut self, field: &'static str, len: u64) -> Result<&'a [u8], OptionError> {
        match usize::try_from(len) {
            Ok(n) if n <= self.data.len() => {
                let (head, rest) = self.data.split_at(n);
                self.data = rest;
                Ok(head)
            }
            _ => Err(OptionError::Truncated {
                option: self.option,
                field,
                needed: len,
                available: self.data.len(),
            }),
        }
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, OptionError> {
        Ok(be_u16(self.take(field, 2)?, 0))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, OptionError> {
        Ok(be_u32(self.take(field, 4)?, 0))
    }

    /// A string of `len` bytes that must obey § Conventions: UTF-8, no NUL, at most 4096 bytes.
    fn string(&mut self, field: &'static str, len: u64) -> Result<String, OptionError> {
        if len > MAX_STRING_LEN as u64 {
            return Err(OptionError::StringTooLong { option: self.option, field, length: len });
        }
        let bytes = self.take(field, len)?;
        let value = std::str::from_utf8(bytes)
            .map_err(|_| OptionError::NotUtf8 { option: self.option, field })?
            .to_owned();
        if value.contains('\0') {
            return Err(OptionError::ContainsNul { option: self.option, field, value });
        }
        Ok(value)
    }

    /// `NBD_OPT_INFO`/`NBD_OPT_GO` data: name length, name, item count, items.
    fn export_request(&mut self) -> Result<ExportRequest, OptionError> {
        let name_len = self.u32("export name length")?;
        let name = self.string("export name", u64::from(name_len))?;
        let count = self.u16("information request count")?;
        let mut info = Vec::new();
        for _ in 0..count {
            info.push(self.u16("information request")?);
        }
        Ok(ExportRequest { name, info })
    }

    /// Meta context data: export length, export, query count, then length-prefixed queries.
    fn meta_context_request(&mut self) -> Result<MetaContextRequest, OptionError> {
        let export_len = self.u32("export name length")?;
        let export = self.string("export name", u64::from(export_len))?;
        let count = self.u32("query count")?;
        let mut queries = Vec::new();
        for _ in 0..count {
            let len = self.u32("query length")?;
            queries.push(self.string("query", u64::from(len))?);
        }
        Ok(MetaContextRequest { export, queries })
    }

    fn finish(self) -> Result<(), OptionError> {
        if self.data.is_empty() {
            Ok(())
        } else {
            Err(OptionError::TrailingBytes { option: self.option, extra: self.data.len() })
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn header(magic: u64, option: u32, length: u32) -> Vec<u8> {
        [&magic.to_be_bytes()[..], &option.to_be_bytes(), &length.to_be_bytes()].concat()
    }

    fn go_data(name: &[u8], info: &[u16]) -> Vec<u8> {
        let mut data = (name.len() as u32).to_be_bytes().to_vec();
        data.extend_from_slice(name);
        data.extend_from_slice(&(info.len() as u16).to_be_bytes());
        for item in info {
            data.extend_from_slice(&item.to_be_bytes());
        }
        data
    }

    fn meta_data(export: &str, queries: &[&str]) -> Vec<u8> {
        let mut data = (export.len() as u32).to_be_bytes().to_vec();
        data.extend_from_slice(export.as_bytes());
        data.extend_from_slice(&(queries.len() as u32).to_be_bytes());
        for query in queries {
            data.extend_from_slice(&(query.len() as u32).to_be_bytes());
            data.extend_from_slice(query.as_bytes());
        }
        data
    }

    #[test]
    fn option_header_decodes_option_and_length() {
        let decoded = decode_option_header(&header(IHAVEOPT, OPT_GO, 42)).expect("valid header");
        assert_eq!(decoded, OptionHeader { option: OPT_GO, length: 42 });
    }

    #[test]
    fn option_header_with_bad_magic_is_rejected() {
        let err = decode_option_header(&header(0xdead_beef, OPT_GO, 0)).unwrap_err();
        assert_eq!(err, OptionError::BadMagic { found: 0xdead_beef });
    }

    #[test]
    fn option_header_shorter_than_sixteen_bytes_is_rejected() {
        let err = decode_option_header(&header(IHAVEOPT, OPT_GO, 0)[..15]).unwrap_err();
        assert_eq!(err, OptionError::HeaderTruncated { available: 15 });
    }

    #[test]
    fn go_decodes_name_and_information_requests() {
        let decoded = decode_option(OPT_GO, &go_data(b"disk0", &[3, 1])).expect("valid GO");
        assert_eq!(decoded, ClientOption::Go(ExportRequest { name: "disk0".into(), info: vec![3, 1] }));
    }

    #[test]
    fn go_with_name_longer_than_data_is_rejected() {
        let mut data = go_data(b"disk0", &[]);
        data[3] = 200;
        let err = decode_option(OPT_GO, &data).unwrap_err();
        assert_eq!(
            err,
            OptionError::Truncated { option: "NBD_OPT_GO", field: "export name", needed: 200, available: 7 }
        );
    }

    #[test]
    fn info_with_more_requests_than_data_is_rejected() {
        let mut data = go_data(b"", &[1]);
        data[5] = 9; // claims 9 items, carries 1
        let err = decode_option(OPT_INFO, &data).unwrap_err();
        assert!(matches!(err, OptionError::Truncated { field: "information request", .. }), "{err:?}");
    }

    #[test]
    fn go_with_trailing_bytes_is_rejected() {
        let mut data = go_data(b"a", &[]);
        data.push(0);
        let err = decode_option(OPT_GO, &data).unwrap_err();
        assert_eq!(err, OptionError::TrailingBytes { option: "NBD_OPT_GO", extra: 1 });
    }

    #[test]
    fn export_name_longer_than_protocol_limit_is_rejected() {
        let name = vec![b'a'; MAX_STRING_LEN + 1];
        let err = decode_option(OPT_GO, &go_data(&name, &[])).unwrap_err();
        assert!(matches!(err, OptionError::StringTooLong { length: 4097, .. }), "{err:?}");
    }

    #[test]
    fn export_name_that_is_not_utf8_is_rejected() {
        let err = decode_option(OPT_EXPORT_NAME, &[0xff, 0xfe]).unwrap_err();
        assert_eq!(err, OptionError::NotUtf8 { option: "NBD_OPT_EXPORT_NAME", field: "export name" });
    }

    #[test]
    fn export_name_with_nul_is_rejected() {
        let err = decode_option(OPT_EXPORT_NAME, b"a\0b").unwrap_err();
        assert!(matches!(err, OptionError::ContainsNul { field: "export name", .. }), "{err:?}");
    }

    #[test]
    fn empty_export_name_means_the_default_export() {
        assert_eq!(
            decode_option(OPT_EXPORT_NAME, b"").expect("valid"),
            ClientOption::ExportName(String::new())
        );
    }

    #[test]
    fn list_with_data_is_rejected() {
        let err = decode_option(OPT_LIST, b"x").unwrap_err();
        assert_eq!(err, OptionError::UnexpectedData { option: "NBD_OPT_LIST", length: 1 });
    }

    #[test]
    fn abort_ignores_its_data() {
        assert_eq!(decode_option(OPT_ABORT, b"junk").expect("valid"), ClientOption::Abort);
    }

    #[test]
    fn option_data_beyond_the_server_limit_is_rejected() {
        let data = vec![0; MAX_OPTION_LEN as usize + 1];
        let err = decode_option(OPT_GO, &data).unwrap_err();
        assert_eq!(err, OptionError::TooLong { option: "NBD_OPT_GO", length: MAX_OPTION_LEN + 1 });
    }

    #[test]
    fn unknown_option_is_reported_as_unsupported() {
        assert_eq!(decode_option(4, b"").expect("decodes"), ClientOption::Unsupported(4));
    }

    #[test]
    fn set_meta_context_decodes_export_and_queries() {
        let decoded =
            decode_option(OPT_SET_META_CONTEXT, &meta_data("disk0", &["base:allocation", "qemu:x"]))
                .expect("valid");
        assert_eq!(
            decoded,
            ClientOption::SetMetaContext(MetaContextRequest {
                export: "disk0".into(),
                queries: vec!["base:allocation".into(), "qemu:x".into()],
            })
        );
    }

    #[test]
    fn meta_context_query_count_beyond_data_is_rejected() {
        let mut data = meta_data("", &[]);
        data[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        let err = decode_option(OPT_LIST_META_CONTEXT, &data).unwrap_err();
        assert!(matches!(err, OptionError::Truncated { field: "query length", available: 0, .. }), "{err:?}");
    }

    proptest! {
        #[test]
        fn option_decoder_never_panics(option in 0u32..16, data in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_option(option, &data);
        }

        #[test]
        fn option_header_decoder_never_panics(data in proptest::collection::vec(any::<u8>(), 0..32)) {
            let _ = decode_option_header(&data);
        }
    }
}
