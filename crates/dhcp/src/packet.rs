//! The BOOTP/DHCP message (RFC 2131 §2, figure 1) and its options (RFC 2132). Decoding is pure,
//! bounds-checked and never panics; every error names the field and its byte offset. Option
//! overloading (option 52, RFC 2132 §9.3) and split options (RFC 3396) are understood.

use std::net::Ipv4Addr;

/// Offset of `op` (1 = BOOTREQUEST, 2 = BOOTREPLY), RFC 2131 §2.
pub const OFF_OP: usize = 0;
/// Offset of `htype` (1 = Ethernet).
pub const OFF_HTYPE: usize = 1;
/// Offset of `hlen` (6 for Ethernet).
pub const OFF_HLEN: usize = 2;
/// Offset of `hops`.
pub const OFF_HOPS: usize = 3;
/// Offset of `xid`, the transaction id.
pub const OFF_XID: usize = 4;
/// Offset of `secs`.
pub const OFF_SECS: usize = 8;
/// Offset of `flags` (bit 15: broadcast).
pub const OFF_FLAGS: usize = 10;
/// Offset of `ciaddr`, the client's current address.
pub const OFF_CIADDR: usize = 12;
/// Offset of `yiaddr`, "your" (the offered) address.
pub const OFF_YIADDR: usize = 16;
/// Offset of `siaddr`, the next server.
pub const OFF_SIADDR: usize = 20;
/// Offset of `giaddr`, the relay agent.
pub const OFF_GIADDR: usize = 24;
/// Offset of `chaddr`, the client hardware address (16 bytes).
pub const OFF_CHADDR: usize = 28;
/// Offset of `sname` (64 bytes; options when overloaded).
pub const OFF_SNAME: usize = 44;
/// Offset of `file` (128 bytes; options when overloaded).
pub const OFF_FILE: usize = 108;
/// Offset of the magic cookie (RFC 2131 §3).
pub const OFF_MAGIC: usize = 236;
/// Offset of the options field.
pub const OFF_OPTIONS: usize = 240;
/// The magic cookie 99.130.83.99 (RFC 2132 §2).
pub const MAGIC: [u8; 4] = [99, 130, 83, 99];
/// BOOTP's minimum message length (RFC 1542 §2.1); replies are padded to it.
pub const MIN_LEN: usize = 300;
/// `op` of a client's message.
pub const BOOTREQUEST: u8 = 1;
/// `op` of a server's message.
pub const BOOTREPLY: u8 = 2;
/// `htype` of Ethernet (RFC 1700).
pub const HTYPE_ETHERNET: u8 = 1;
/// The broadcast bit of `flags` (RFC 2131 §2).
pub const FLAG_BROADCAST: u16 = 0x8000;

/// Option codes vine reads or writes (RFC 2132).
pub mod opt {
    /// Padding (§3.1).
    pub const PAD: u8 = 0;
    /// Subnet mask (§3.3).
    pub const SUBNET_MASK: u8 = 1;
    /// Routers (§3.5).
    pub const ROUTER: u8 = 3;
    /// DNS servers (§3.8).
    pub const DNS: u8 = 6;
    /// Host name (§3.14).
    pub const HOST_NAME: u8 = 12;
    /// Broadcast address (§5.3).
    pub const BROADCAST: u8 = 28;
    /// Requested IP address (§9.1).
    pub const REQUESTED_IP: u8 = 50;
    /// IP address lease time (§9.2).
    pub const LEASE_TIME: u8 = 51;
    /// Option overload (§9.3).
    pub const OVERLOAD: u8 = 52;
    /// DHCP message type (§9.6).
    pub const MESSAGE_TYPE: u8 = 53;
    /// Server identifier (§9.7).
    pub const SERVER_ID: u8 = 54;
    /// Parameter request list (§9.8).
    pub const PARAMS: u8 = 55;
    /// Message (§9.9).
    pub const MESSAGE: u8 = 56;
    /// Maximum DHCP message size (§9.10).
    pub const MAX_SIZE: u8 = 57;
    /// Renewal (T1) time (§9.11).
    pub const RENEWAL: u8 = 58;
    /// Rebinding (T2) time (§9.12).
    pub const REBINDING: u8 = 59;
    /// Client identifier (§9.14).
    pub const CLIENT_ID: u8 = 61;
    /// End (§3.2).
    pub const END: u8 = 255;
}

/// DHCP message types (option 53, RFC 2132 §9.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// 1: a client looks for servers.
    Discover,
    /// 2: a server offers an address.
    Offer,
    /// 3: a client requests an offered or known address, or renews.
    Request,
    /// 4: a client found the address in use.
    Decline,
    /// 5: a server commits a binding.
    Ack,
    /// 6: a server refuses a request.
    Nak,
    /// 7: a client gives its address back.
    Release,
    /// 8: a client with an address asks for configuration only.
    Inform,
}

impl MessageType {
    /// The option value.
    pub fn code(self) -> u8 {
        match self {
            MessageType::Discover => 1,
            MessageType::Offer => 2,
            MessageType::Request => 3,
            MessageType::Decline => 4,
            MessageType::Ack => 5,
            MessageType::Nak => 6,
            MessageType::Release => 7,
            MessageType::Inform => 8,
        }
    }

    /// The type for an option value.
    pub fn from_code(c: u8) -> Option<MessageType> {
        Some(match c {
            1 => MessageType::Discover,
            2 => MessageType::Offer,
            3 => MessageType::Request,
            4 => MessageType::Decline,
            5 => MessageType::Ack,
            6 => MessageType::Nak,
            7 => MessageType::Release,
            8 => MessageType::Inform,
            _ => return None,
        })
    }

    /// Upper-case name as in the RFC.
    pub fn name(self) -> &'static str {
        match self {
            MessageType::Discover => "DHCPDISCOVER",
            MessageType::Offer => "DHCPOFFER",
            MessageType::Request => "DHCPREQUEST",
            MessageType::Decline => "DHCPDECLINE",
            MessageType::Ack => "DHCPACK",
            MessageType::Nak => "DHCPNAK",
            MessageType::Release => "DHCPRELEASE",
            MessageType::Inform => "DHCPINFORM",
        }
    }
}

/// Why bytes are not a DHCP message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The message ends inside a fixed field.
    #[error("DHCP message truncated: field `{field}` at offset {offset} needs {need} bytes, the message has {len}")]
    Truncated {
        /// The field.
        field: &'static str,
        /// Its offset.
        offset: usize,
        /// Bytes it needs.
        need: usize,
        /// The message's length.
        len: usize,
    },
    /// The magic cookie is wrong (a BOOTP message, or garbage).
    #[error("DHCP magic cookie at offset {OFF_MAGIC}: expected 63825363, found {found:08x}")]
    BadMagic {
        /// What was there.
        found: u32,
    },
    /// An option's length runs past its area.
    #[error("DHCP option {code} at offset {offset}: length {len} runs past the end of its area at {end}")]
    OptionOverrun {
        /// Option code.
        code: u8,
        /// Offset of the code byte.
        offset: usize,
        /// Its length byte.
        len: usize,
        /// Where its area ends.
        end: usize,
    },
    /// An option has a value that is not allowed.
    #[error("DHCP option {code} ({name}) at offset {offset}: {problem}")]
    BadOption {
        /// Option code.
        code: u8,
        /// Its RFC name.
        name: &'static str,
        /// Offset of the code byte.
        offset: usize,
        /// What is wrong.
        problem: String,
    },
}

/// One option as found in the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawOption {
    /// Code.
    pub code: u8,
    /// Value (split options concatenated, RFC 3396).
    pub data: Vec<u8>,
    /// Offset of its (first) code byte in the message.
    pub offset: usize,
}

/// A decoded DHCP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// `op`: [`BOOTREQUEST`] or [`BOOTREPLY`].
    pub op: u8,
    /// Hardware type.
    pub htype: u8,
    /// Hardware address length.
    pub hlen: u8,
    /// Relay hops.
    pub hops: u8,
    /// Transaction id.
    pub xid: u32,
    /// Seconds since the client began.
    pub secs: u16,
    /// Flags.
    pub flags: u16,
    /// Client's address (renewing, rebinding, INFORM).
    pub ciaddr: Ipv4Addr,
    /// Address given to the client.
    pub yiaddr: Ipv4Addr,
    /// Next server.
    pub siaddr: Ipv4Addr,
    /// Relay agent.
    pub giaddr: Ipv4Addr,
    /// Client hardware address (16 bytes, `hlen` of them meaningful).
    pub chaddr: [u8; 16],
    /// Options in the order found.
    pub options: Vec<RawOption>,
}

fn be16(b: &[u8], o: usize) -> u16 {
    u16::from_be_bytes([b[o], b[o + 1]])
}
fn be32(b: &[u8], o: usize) -> u32 {
    u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn ip(b: &[u8], o: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[o], b[o + 1], b[o + 2], b[o + 3])
}

fn option_name(code: u8) -> &'static str {
    match code {
        opt::SUBNET_MASK => "subnet mask",
        opt::ROUTER => "router",
        opt::DNS => "domain name server",
        opt::REQUESTED_IP => "requested IP address",
        opt::LEASE_TIME => "IP address lease time",
        opt::OVERLOAD => "option overload",
        opt::MESSAGE_TYPE => "DHCP message type",
        opt::SERVER_ID => "server identifier",
        opt::MAX_SIZE => "maximum DHCP message size",
        opt::CLIENT_ID => "client identifier",
        _ => "option",
    }
}

/// Reads the options in `b[start..end]` into `out`; returns the overload value if seen.
fn read_options(b: &[u8], start: usize, end: usize, out: &mut Vec<RawOption>) -> Result<u8, DecodeError> {
    let mut i = start;
    let mut overload = 0;
    while i < end {
        let code = b[i];
        match code {
            opt::PAD => {
                i += 1;
                continue;
            }
            opt::END => break,
            _ => {}
        }
        if i + 1 >= end {
            return Err(DecodeError::OptionOverrun { code, offset: i, len: 0, end });
        }
        let len = b[i + 1] as usize;
        let data_end = i + 2 + len;
        if data_end > end {
            return Err(DecodeError::OptionOverrun { code, offset: i, len, end });
        }
        let data = &b[i + 2..data_end];
        if code == opt::OVERLOAD {
            if len != 1 || !(1..=3).contains(&data[0]) {
                return Err(DecodeError::BadOption {
                    code,
                    name: option_name(code),
                    offset: i,
                    problem: format!("must be one byte 1, 2 or 3, got {data:?}"),
                });
            }
            overload = data[0];
        }
        match out.iter_mut().find(|o| o.code == code) {
            Some(o) => o.data.extend_from_slice(data),
            None => out.push(RawOption { code, data: data.to_vec(), offset: i }),
        }
        i = data_end;
    }
    Ok(overload)
}

impl Packet {
    /// Decodes a message.
    pub fn decode(b: &[u8]) -> Result<Packet, DecodeError> {
        let need = |field, offset, n| {
            if b.len() < offset + n {
                Err(DecodeError::Truncated { field, offset, need: n, len: b.len() })
            } else {
                Ok(())
            }
        };
        need("op..giaddr", OFF_OP, OFF_CHADDR)?;
        need("chaddr", OFF_CHADDR, 16)?;
        need("sname", OFF_SNAME, 64)?;
        need("file", OFF_FILE, 128)?;
        need("magic cookie", OFF_MAGIC, 4)?;
        if b[OFF_MAGIC..OFF_OPTIONS] != MAGIC {
            return Err(DecodeError::BadMagic { found: be32(b, OFF_MAGIC) });
        }
        let mut options = Vec::new();
        let overload = read_options(b, OFF_OPTIONS, b.len(), &mut options)?;
        if overload & 1 != 0 {
            read_options(b, OFF_FILE, OFF_MAGIC, &mut options)?;
        }
        if overload & 2 != 0 {
            read_options(b, OFF_SNAME, OFF_FILE, &mut options)?;
        }
        let mut chaddr = [0u8; 16];
        chaddr.copy_from_slice(&b[OFF_CHADDR..OFF_SNAME]);
        let p = Packet {
            op: b[OFF_OP],
            htype: b[OFF_HTYPE],
            hlen: b[OFF_HLEN],
            hops: b[OFF_HOPS],
            xid: be32(b, OFF_XID),
            secs: be16(b, OFF_SECS),
            flags: be16(b, OFF_FLAGS),
            ciaddr: ip(b, OFF_CIADDR),
            yiaddr: ip(b, OFF_YIADDR),
            siaddr: ip(b, OFF_SIADDR),
            giaddr: ip(b, OFF_GIADDR),
            chaddr,
            options,
        };
        // Check the typed options once, so the server can trust them.
        p.message_type()?;
        p.requested_ip()?;
        p.server_id()?;
        Ok(p)
    }

    /// Encodes the message (options in order, then END; padded to [`MIN_LEN`]).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; OFF_OPTIONS];
        b[OFF_OP] = self.op;
        b[OFF_HTYPE] = self.htype;
        b[OFF_HLEN] = self.hlen;
        b[OFF_HOPS] = self.hops;
        b[OFF_XID..OFF_XID + 4].copy_from_slice(&self.xid.to_be_bytes());
        b[OFF_SECS..OFF_SECS + 2].copy_from_slice(&self.secs.to_be_bytes());
        b[OFF_FLAGS..OFF_FLAGS + 2].copy_from_slice(&self.flags.to_be_bytes());
        b[OFF_CIADDR..OFF_CIADDR + 4].copy_from_slice(&self.ciaddr.octets());
        b[OFF_YIADDR..OFF_YIADDR + 4].copy_from_slice(&self.yiaddr.octets());
        b[OFF_SIADDR..OFF_SIADDR + 4].copy_from_slice(&self.siaddr.octets());
        b[OFF_GIADDR..OFF_GIADDR + 4].copy_from_slice(&self.giaddr.octets());
        b[OFF_CHADDR..OFF_SNAME].copy_from_slice(&self.chaddr);
        b[OFF_MAGIC..OFF_OPTIONS].copy_from_slice(&MAGIC);
        for o in &self.options {
            if o.code == opt::OVERLOAD {
                continue; // sname/file are never written with options
            }
            // Long values are split into several options (RFC 3396).
            let chunks: Vec<&[u8]> =
                if o.data.is_empty() { vec![&[][..]] } else { o.data.chunks(255).collect() };
            for c in chunks {
                b.push(o.code);
                b.push(c.len() as u8);
                b.extend_from_slice(c);
            }
        }
        b.push(opt::END);
        if b.len() < MIN_LEN {
            b.resize(MIN_LEN, opt::PAD);
        }
        b
    }

    /// The option with `code`.
    pub fn option(&self, code: u8) -> Option<&RawOption> {
        self.options.iter().find(|o| o.code == code)
    }

    /// Sets (replacing) an option.
    pub fn set_option(&mut self, code: u8, data: Vec<u8>) {
        match self.options.iter_mut().find(|o| o.code == code) {
            Some(o) => o.data = data,
            None => self.options.push(RawOption { code, data, offset: 0 }),
        }
    }

    fn addr_option(&self, code: u8) -> Result<Option<Ipv4Addr>, DecodeError> {
        match self.option(code) {
            None => Ok(None),
            Some(o) if o.data.len() == 4 => Ok(Some(ip(&o.data, 0))),
            Some(o) => Err(DecodeError::BadOption {
                code,
                name: option_name(code),
                offset: o.offset,
                problem: format!("must be 4 bytes, has {}", o.data.len()),
            }),
        }
    }

    /// Option 53; `None` for a plain BOOTP message.
    pub fn message_type(&self) -> Result<Option<MessageType>, DecodeError> {
        match self.option(opt::MESSAGE_TYPE) {
            None => Ok(None),
            Some(o) if o.data.len() == 1 => match MessageType::from_code(o.data[0]) {
                Some(t) => Ok(Some(t)),
                None => Err(DecodeError::BadOption {
                    code: opt::MESSAGE_TYPE,
                    name: option_name(opt::MESSAGE_TYPE),
                    offset: o.offset,
                    problem: format!("unknown message type {}", o.data[0]),
                }),
            },
            Some(o) => Err(DecodeError::BadOption {
                code: opt::MESSAGE_TYPE,
                name: option_name(opt::MESSAGE_TYPE),
                offset: o.offset,
                problem: format!("must be 1 byte, has {}", o.data.len()),
            }),
        }
    }

    /// Option 50.
    pub fn requested_ip(&self) -> Result<Option<Ipv4Addr>, DecodeError> {
        self.addr_option(opt::REQUESTED_IP)
    }

    /// Option 54.
    pub fn server_id(&self) -> Result<Option<Ipv4Addr>, DecodeError> {
        self.addr_option(opt::SERVER_ID)
    }

    /// The client's Ethernet address, when the message says it is Ethernet.
    pub fn mac(&self) -> Option<[u8; 6]> {
        if self.htype != HTYPE_ETHERNET || self.hlen != 6 {
            return None;
        }
        let mut m = [0u8; 6];
        m.copy_from_slice(&self.chaddr[..6]);
        Some(m)
    }

    /// Whether the client asked for broadcast replies.
    pub fn wants_broadcast(&self) -> bool {
        self.flags & FLAG_BROADCAST != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn discover(mac: [u8; 6], xid: u32) -> Packet {
        let mut chaddr = [0u8; 16];
        chaddr[..6].copy_from_slice(&mac);
        Packet {
            op: BOOTREQUEST,
            htype: HTYPE_ETHERNET,
            hlen: 6,
            hops: 0,
            xid,
            secs: 0,
            flags: 0,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: Ipv4Addr::UNSPECIFIED,
            chaddr,
            options: vec![RawOption { code: opt::MESSAGE_TYPE, data: vec![1], offset: 0 }],
        }
    }

    #[test]
    fn a_message_round_trips_and_is_padded_to_the_bootp_minimum() {
        let mut p = discover([2, 0, 0, 0, 0, 1], 0xdead_beef);
        p.set_option(opt::REQUESTED_IP, vec![10, 0, 0, 7]);
        p.set_option(opt::HOST_NAME, vec![b'x'; 300]);
        let b = p.encode();
        assert!(b.len() >= MIN_LEN);
        let mut q = Packet::decode(&b).unwrap();
        for o in &mut q.options {
            o.offset = 0;
        }
        assert_eq!(q, p);
        assert_eq!(q.requested_ip().unwrap(), Some(Ipv4Addr::new(10, 0, 0, 7)));
        assert_eq!(q.message_type().unwrap(), Some(MessageType::Discover));
        assert_eq!(q.mac(), Some([2, 0, 0, 0, 0, 1]));
    }

    #[test]
    fn a_truncated_message_names_the_field_and_offset() {
        let b = discover([2, 0, 0, 0, 0, 1], 1).encode();
        let e = Packet::decode(&b[..100]).unwrap_err();
        assert_eq!(e, DecodeError::Truncated { field: "sname", offset: OFF_SNAME, need: 64, len: 100 });
        let e = Packet::decode(&b[..20]).unwrap_err();
        assert!(matches!(e, DecodeError::Truncated { field: "op..giaddr", .. }), "{e}");
    }

    #[test]
    fn a_wrong_cookie_is_refused() {
        let mut b = discover([2, 0, 0, 0, 0, 1], 1).encode();
        b[OFF_MAGIC] = 0;
        assert_eq!(Packet::decode(&b).unwrap_err(), DecodeError::BadMagic { found: 0x0082_5363 });
    }

    #[test]
    fn an_option_running_past_the_end_is_refused_with_its_offset() {
        let mut b = discover([2, 0, 0, 0, 0, 1], 1).encode();
        b.truncate(OFF_OPTIONS);
        b.extend_from_slice(&[opt::HOST_NAME, 10, b'a']);
        let e = Packet::decode(&b).unwrap_err();
        assert_eq!(e, DecodeError::OptionOverrun { code: 12, offset: OFF_OPTIONS, len: 10, end: 243 });
    }

    #[test]
    fn a_wrong_sized_typed_option_is_refused() {
        let mut b = discover([2, 0, 0, 0, 0, 1], 1).encode();
        b.truncate(OFF_OPTIONS + 3);
        b.extend_from_slice(&[opt::REQUESTED_IP, 3, 1, 2, 3, opt::END]);
        let e = Packet::decode(&b).unwrap_err();
        assert!(
            matches!(e, DecodeError::BadOption { code: 50, offset: 243, .. }),
            "{e} should name option 50 at 243"
        );
        let mut b = discover([2, 0, 0, 0, 0, 1], 1).encode();
        b[OFF_OPTIONS + 2] = 99;
        assert!(matches!(Packet::decode(&b).unwrap_err(), DecodeError::BadOption { code: 53, .. }));
    }

    #[test]
    fn overloaded_file_field_options_are_read() {
        let mut b = discover([2, 0, 0, 0, 0, 1], 1).encode();
        b.truncate(OFF_OPTIONS + 3);
        b.extend_from_slice(&[opt::OVERLOAD, 1, 1, opt::END]);
        b[OFF_FILE..OFF_FILE + 7].copy_from_slice(&[opt::REQUESTED_IP, 4, 10, 1, 2, 3, opt::END]);
        let p = Packet::decode(&b).unwrap();
        assert_eq!(p.requested_ip().unwrap(), Some(Ipv4Addr::new(10, 1, 2, 3)));
    }

    proptest! {
        #[test]
        fn decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
            let _ = Packet::decode(&bytes);
        }

        #[test]
        fn decoding_mutated_messages_never_panics(idx in 0usize..320, val: u8, cut in 0usize..400) {
            let mut b = discover([2, 0, 0, 0, 0, 1], 7).encode();
            b.extend_from_slice(&[opt::HOST_NAME, 3, b'a', b'b', b'c', opt::END]);
            if idx < b.len() { b[idx] = val; }
            b.truncate(cut.max(1));
            if let Ok(p) = Packet::decode(&b) {
                let again = Packet::decode(&p.encode()).unwrap();
                prop_assert_eq!(again.xid, p.xid);
            }
        }
    }
}
