//! A minimal rtnetlink client (RFC 3549; `linux/rtnetlink.h`, `linux/if_link.h`,
//! `linux/neighbour.h`): the messages vine needs to create and delete bridges, veths and VXLAN
//! links, bring links up, attach them to a bridge, give a bridge an address, and keep a VXLAN
//! link's flooding list (its all-zero forwarding entries). Messages are built by pure functions
//! (unit-tested byte for byte); [`Netlink`] sends them one at a time and waits for the kernel's
//! acknowledgement (or, for a dump, its answers).

use std::net::Ipv4Addr;

use crate::NetError;

/// `struct nlmsghdr` length.
const NLMSG_HDRLEN: usize = 16;
/// `struct ifinfomsg` length.
const IFINFOMSG_LEN: usize = 16;
/// `struct ifaddrmsg` length.
const IFADDRMSG_LEN: usize = 8;

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWNEIGH: u16 = 28;
const RTM_DELNEIGH: u16 = 29;
const RTM_GETNEIGH: u16 = 30;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NLM_F_DUMP: u16 = 0x300;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const IFLA_VXLAN_ID: u16 = 1;
const IFLA_VXLAN_LOCAL: u16 = 4;
const IFLA_VXLAN_LEARNING: u16 = 7;
const IFLA_VXLAN_PORT: u16 = 15;
const NLA_F_NESTED: u16 = 0x8000;

const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;

const IFF_UP: u32 = 0x1;

/// `struct ndmsg` length.
const NDMSG_LEN: usize = 12;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
const NUD_NOARP: u16 = 0x40;
const NUD_PERMANENT: u16 = 0x80;
const NTF_SELF: u8 = 0x02;

/// The UDP port of VXLAN (IANA, RFC 7348).
pub const VXLAN_PORT: u16 = 4789;

/// Longest interface name (IFNAMSIZ − 1).
pub const MAX_IFNAME: usize = 15;

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// A message under construction: header, fixed part, attributes.
struct Msg {
    buf: Vec<u8>,
    nests: Vec<usize>,
}

impl Msg {
    fn new(kind: u16, flags: u16, seq: u32) -> Msg {
        let mut buf = vec![0u8; NLMSG_HDRLEN];
        buf[4..6].copy_from_slice(&kind.to_ne_bytes());
        // A dump ends with NLMSG_DONE; an acknowledgement would only follow it.
        let ack = if flags & NLM_F_DUMP == NLM_F_DUMP { 0 } else { NLM_F_ACK };
        buf[6..8].copy_from_slice(&(flags | NLM_F_REQUEST | ack).to_ne_bytes());
        buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        Msg { buf, nests: Vec::new() }
    }

    fn ifinfo(mut self, index: u32, flags: u32, change: u32) -> Msg {
        let mut b = [0u8; IFINFOMSG_LEN];
        b[0] = libc::AF_UNSPEC as u8;
        b[4..8].copy_from_slice(&index.to_ne_bytes());
        b[8..12].copy_from_slice(&flags.to_ne_bytes());
        b[12..16].copy_from_slice(&change.to_ne_bytes());
        self.buf.extend_from_slice(&b);
        self
    }

    fn ndmsg(mut self, index: u32, state: u16, flags: u8) -> Msg {
        let mut b = [0u8; NDMSG_LEN];
        b[0] = libc::AF_BRIDGE as u8;
        b[4..8].copy_from_slice(&index.to_ne_bytes());
        b[8..10].copy_from_slice(&state.to_ne_bytes());
        b[10] = flags;
        self.buf.extend_from_slice(&b);
        self
    }

    fn attr(mut self, kind: u16, data: &[u8]) -> Msg {
        let len = 4 + data.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.buf.resize(align4(self.buf.len()), 0);
        self
    }

    fn name(self, kind: u16, s: &str) -> Msg {
        let mut d = s.as_bytes().to_vec();
        d.push(0);
        self.attr(kind, &d)
    }

    fn begin(mut self, kind: u16) -> Msg {
        self.nests.push(self.buf.len());
        self.buf.extend_from_slice(&[0, 0]);
        self.buf.extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        self
    }

    fn raw(mut self, data: &[u8]) -> Msg {
        self.buf.extend_from_slice(data);
        self
    }

    fn end(mut self) -> Msg {
        let start = self.nests.pop().expect("end() after begin()");
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }

    fn done(mut self) -> Vec<u8> {
        assert!(self.nests.is_empty(), "unbalanced nesting");
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

/// RTM_NEWLINK creating a bridge (with a fixed MAC, so the gateway's address never changes).
pub fn new_bridge(seq: u32, name: &str, mac: [u8; 6]) -> Vec<u8> {
    Msg::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, seq)
        .ifinfo(0, 0, 0)
        .name(IFLA_IFNAME, name)
        .attr(IFLA_ADDRESS, &mac)
        .begin(IFLA_LINKINFO)
        .name(IFLA_INFO_KIND, "bridge")
        .end()
        .done()
}

/// RTM_NEWLINK creating a veth pair `a` ↔ `b`.
pub fn new_veth(seq: u32, a: &str, b: &str) -> Vec<u8> {
    let mut peer = [0u8; IFINFOMSG_LEN];
    peer[0] = libc::AF_UNSPEC as u8;
    let peer_name = Msg { buf: Vec::new(), nests: Vec::new() }.name(IFLA_IFNAME, b).buf;
    Msg::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, seq)
        .ifinfo(0, 0, 0)
        .name(IFLA_IFNAME, a)
        .begin(IFLA_LINKINFO)
        .name(IFLA_INFO_KIND, "veth")
        .begin(IFLA_INFO_DATA)
        .begin(VETH_INFO_PEER)
        .raw(&peer)
        .raw(&peer_name)
        .end()
        .end()
        .end()
        .done()
}

/// RTM_NEWLINK creating VXLAN link `name` for network `vni`, sending from `local` to UDP port
/// 4789, learning where remote MACs are from the frames it receives. Its MTU is 1500 whatever the
/// underlay's, so guests need no smaller one: larger encapsulated packets are fragmented.
pub fn new_vxlan(seq: u32, name: &str, vni: u32, local: Ipv4Addr) -> Vec<u8> {
    Msg::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, seq)
        .ifinfo(0, 0, 0)
        .name(IFLA_IFNAME, name)
        .attr(IFLA_MTU, &1500u32.to_ne_bytes())
        .begin(IFLA_LINKINFO)
        .name(IFLA_INFO_KIND, "vxlan")
        .begin(IFLA_INFO_DATA)
        .attr(IFLA_VXLAN_ID, &vni.to_ne_bytes())
        .attr(IFLA_VXLAN_LOCAL, &local.octets())
        .attr(IFLA_VXLAN_LEARNING, &[1])
        .attr(IFLA_VXLAN_PORT, &VXLAN_PORT.to_be_bytes())
        .end()
        .end()
        .done()
}

/// RTM_NEWNEIGH (`add`) or RTM_DELNEIGH adding `remote` to (or taking it from) the flooding list
/// of VXLAN link `index`: its all-zero forwarding entry, which sends broadcast, multicast and
/// unknown unicast frames to every remote on the list (head-end replication).
pub fn flood_entry(seq: u32, index: u32, remote: Ipv4Addr, add: bool) -> Vec<u8> {
    let (kind, flags) = if add { (RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_APPEND) } else { (RTM_DELNEIGH, 0) };
    Msg::new(kind, flags, seq)
        .ndmsg(index, NUD_PERMANENT | NUD_NOARP, NTF_SELF)
        .attr(NDA_LLADDR, &[0; 6])
        .attr(NDA_DST, &remote.octets())
        .done()
}

/// RTM_GETNEIGH dumping every bridge forwarding entry.
pub fn dump_fdb(seq: u32) -> Vec<u8> {
    Msg::new(RTM_GETNEIGH, NLM_F_DUMP, seq).ndmsg(0, 0, 0).done()
}

/// The remotes of all-zero entries of link `index` in one answer of an FDB dump (the message
/// body after its header): `None` when the entry is another link's or another MAC's.
pub fn flood_remote(index: u32, body: &[u8]) -> Option<Ipv4Addr> {
    if body.len() < NDMSG_LEN || i32::from(body[0]) != libc::AF_BRIDGE {
        return None;
    }
    if u32::from_ne_bytes(body[4..8].try_into().ok()?) != index {
        return None;
    }
    let (mut zero, mut dst) = (false, None);
    let mut off = NDMSG_LEN;
    while off + 4 <= body.len() {
        let len = u16::from_ne_bytes([body[off], body[off + 1]]) as usize;
        let kind = u16::from_ne_bytes([body[off + 2], body[off + 3]]) & !NLA_F_NESTED;
        if len < 4 || off + len > body.len() {
            return None;
        }
        let data = &body[off + 4..off + len];
        match kind {
            NDA_LLADDR => zero = data == [0; 6],
            NDA_DST if data.len() == 4 => dst = Some(Ipv4Addr::new(data[0], data[1], data[2], data[3])),
            _ => {}
        }
        off += align4(len);
    }
    if zero {
        dst
    } else {
        None
    }
}

/// The error number an NLMSG_ERROR answer's body starts with (0: an acknowledgement).
fn errno_of(body: &[u8]) -> Option<i32> {
    Some(i32::from_ne_bytes(body.get(..4)?.try_into().ok()?))
}

/// RTM_DELLINK of link `index`.
pub fn del_link(seq: u32, index: u32) -> Vec<u8> {
    Msg::new(RTM_DELLINK, 0, seq).ifinfo(index, 0, 0).done()
}

/// RTM_NEWLINK setting link `index` up or down.
pub fn set_up(seq: u32, index: u32, up: bool) -> Vec<u8> {
    Msg::new(RTM_NEWLINK, 0, seq).ifinfo(index, if up { IFF_UP } else { 0 }, IFF_UP).done()
}

/// RTM_NEWLINK attaching link `index` to bridge `master` (0 detaches).
pub fn set_master(seq: u32, index: u32, master: u32) -> Vec<u8> {
    Msg::new(RTM_NEWLINK, 0, seq).ifinfo(index, 0, 0).attr(IFLA_MASTER, &master.to_ne_bytes()).done()
}

/// RTM_NEWADDR giving link `index` the address `ip/prefix` (replacing the same address).
pub fn add_addr(seq: u32, index: u32, ip: Ipv4Addr, prefix: u8, broadcast: Ipv4Addr) -> Vec<u8> {
    let mut m = Msg::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, seq);
    let mut ifa = [0u8; IFADDRMSG_LEN];
    ifa[0] = libc::AF_INET as u8;
    ifa[1] = prefix;
    ifa[4..8].copy_from_slice(&index.to_ne_bytes());
    m.buf.extend_from_slice(&ifa);
    m.attr(IFA_LOCAL, &ip.octets())
        .attr(IFA_ADDRESS, &ip.octets())
        .attr(IFA_BROADCAST, &broadcast.octets())
        .done()
}

/// The index of interface `name`, or `None` if there is none.
pub fn index_of(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

/// The IPv4 addresses of interface `name` (none if it has none or does not exist).
pub fn ipv4_addresses(name: &str) -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let ifname = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
        if !ifa.ifa_addr.is_null() && ifname.to_bytes() == name.as_bytes() {
            // SAFETY: ifa_addr points to a sockaddr whose family says which struct it is.
            let family = unsafe { (*ifa.ifa_addr).sa_family };
            if i32::from(family) == libc::AF_INET {
                // SAFETY: the family is AF_INET, so this is a sockaddr_in.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                out.push(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    out
}

/// An open NETLINK_ROUTE socket.
pub struct Netlink {
    fd: std::os::fd::OwnedFd,
    seq: u32,
}

impl Netlink {
    /// Opens a socket.
    pub fn open() -> Result<Netlink, NetError> {
        use std::os::fd::FromRawFd;
        // SAFETY: plain socket(2); the descriptor is owned by the OwnedFd at once.
        let fd = unsafe {
            libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE)
        };
        if fd < 0 {
            return Err(NetError::io("open a netlink socket", std::io::Error::last_os_error()));
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        Ok(Netlink { fd: unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }, seq: 1 })
    }

    fn next(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Sends a request; its sequence number.
    fn send(&mut self, msg: &[u8]) -> Result<u32, i32> {
        use std::os::fd::AsRawFd;
        let mut addr: libc::sockaddr_nl =
            // SAFETY: sockaddr_nl is plain data; all-zero is a valid value (the kernel as peer).
            unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `msg` and `addr` are live for the call and their lengths are passed.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO));
        }
        Ok(u32::from_ne_bytes([msg[8], msg[9], msg[10], msg[11]]))
    }

    /// Reads the kernel's answers to request `seq`, handing each one's type and body (after
    /// its header) to `each` until `each` says how the request ended.
    fn answers<T>(
        &mut self,
        seq: u32,
        mut each: impl FnMut(u16, &[u8]) -> Option<Result<T, i32>>,
    ) -> Result<T, i32> {
        use std::os::fd::AsRawFd;
        let fd = self.fd.as_raw_fd();
        let mut buf = vec![0u8; 32768];
        loop {
            // SAFETY: `buf` is a live buffer of the length passed.
            let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e.raw_os_error().unwrap_or(libc::EIO));
            }
            let n = n as usize;
            let mut off = 0usize;
            while off + NLMSG_HDRLEN <= n {
                let len = u32::from_ne_bytes(buf[off..off + 4].try_into().expect("4 bytes")) as usize;
                let kind = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
                let mseq = u32::from_ne_bytes(buf[off + 8..off + 12].try_into().expect("4 bytes"));
                if len < NLMSG_HDRLEN || off + len > n {
                    return Err(libc::EPROTO);
                }
                if mseq == seq {
                    if let Some(done) = each(kind, &buf[off + NLMSG_HDRLEN..off + len]) {
                        return done;
                    }
                }
                off += align4(len);
            }
        }
    }

    /// Sends a request and waits for its acknowledgement; `Err(errno)` when the kernel refuses.
    fn call(&mut self, msg: &[u8]) -> Result<(), i32> {
        let seq = self.send(msg)?;
        self.answers(seq, |kind, body| match (kind, errno_of(body)) {
            (NLMSG_ERROR, Some(0)) => Some(Ok(())),
            (NLMSG_ERROR, Some(err)) => Some(Err(-err)),
            _ => None,
        })
    }

    /// Sends a dump request and hands every answer's type and body to `each`, until the kernel
    /// says it is done.
    fn dump(&mut self, msg: &[u8], mut each: impl FnMut(u16, &[u8])) -> Result<(), i32> {
        let seq = self.send(msg)?;
        self.answers(seq, |kind, body| match (kind, errno_of(body)) {
            (NLMSG_DONE, _) => Some(Ok(())),
            (NLMSG_ERROR, Some(err)) if err != 0 => Some(Err(-err)),
            (NLMSG_ERROR, _) => None,
            _ => {
                each(kind, body);
                None
            }
        })
    }

    fn run(&mut self, what: String, msg: Vec<u8>) -> Result<(), NetError> {
        self.call(&msg).map_err(|errno| NetError::Kernel { what, errno })
    }

    fn index(&self, name: &str) -> Result<u32, NetError> {
        index_of(name).ok_or_else(|| NetError::NoSuchLink(name.to_string()))
    }

    /// Creates bridge `name` with MAC `mac`; `Ok(false)` if it already exists.
    pub fn create_bridge(&mut self, name: &str, mac: [u8; 6]) -> Result<bool, NetError> {
        check_name(name)?;
        let seq = self.next();
        match self.call(&new_bridge(seq, name, mac)) {
            Ok(()) => Ok(true),
            Err(libc::EEXIST) => Ok(false),
            Err(errno) => Err(NetError::Kernel { what: format!("create bridge {name}"), errno }),
        }
    }

    /// Creates VXLAN link `name` (network `vni`, sending from `local`); `Ok(false)` if a link
    /// of that name exists.
    pub fn create_vxlan(&mut self, name: &str, vni: u32, local: Ipv4Addr) -> Result<bool, NetError> {
        check_name(name)?;
        let seq = self.next();
        match self.call(&new_vxlan(seq, name, vni, local)) {
            Ok(()) => Ok(true),
            Err(libc::EEXIST) => Ok(false),
            Err(errno) => {
                Err(NetError::Kernel { what: format!("create VXLAN link {name} (VNI {vni})"), errno })
            }
        }
    }

    /// The remotes on VXLAN link `name`'s flooding list.
    pub fn flood_list(&mut self, name: &str) -> Result<Vec<Ipv4Addr>, NetError> {
        let i = self.index(name)?;
        let seq = self.next();
        let mut out = Vec::new();
        self.dump(&dump_fdb(seq), |kind, body| {
            if kind == RTM_NEWNEIGH {
                out.extend(flood_remote(i, body));
            }
        })
        .map_err(|errno| NetError::Kernel {
            what: format!("list the forwarding entries of {name}"),
            errno,
        })?;
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Adds `remote` to (or takes it from) VXLAN link `name`'s flooding list.
    pub fn set_flood(&mut self, name: &str, remote: Ipv4Addr, add: bool) -> Result<(), NetError> {
        let i = self.index(name)?;
        let seq = self.next();
        match self.call(&flood_entry(seq, i, remote, add)) {
            Err(libc::ENOENT) if !add => Ok(()),
            r => r.map_err(|errno| NetError::Kernel {
                what: format!("{} {remote} on the flooding list of {name}", if add { "put" } else { "drop" }),
                errno,
            }),
        }
    }

    /// Creates the veth pair `a` ↔ `b`.
    pub fn create_veth(&mut self, a: &str, b: &str) -> Result<(), NetError> {
        check_name(a)?;
        check_name(b)?;
        let seq = self.next();
        self.run(format!("create veth {a}/{b}"), new_veth(seq, a, b))
    }

    /// Deletes link `name`; `Ok(false)` if there was none.
    pub fn delete_link(&mut self, name: &str) -> Result<bool, NetError> {
        let Some(i) = index_of(name) else { return Ok(false) };
        let seq = self.next();
        match self.call(&del_link(seq, i)) {
            Ok(()) => Ok(true),
            Err(libc::ENODEV) => Ok(false),
            Err(errno) => Err(NetError::Kernel { what: format!("delete link {name}"), errno }),
        }
    }

    /// Sets link `name` up or down.
    pub fn set_up(&mut self, name: &str, up: bool) -> Result<(), NetError> {
        let i = self.index(name)?;
        let seq = self.next();
        self.run(format!("set {name} {}", if up { "up" } else { "down" }), set_up(seq, i, up))
    }

    /// Attaches link `name` to bridge `bridge`.
    pub fn set_master(&mut self, name: &str, bridge: &str) -> Result<(), NetError> {
        let (i, m) = (self.index(name)?, self.index(bridge)?);
        let seq = self.next();
        self.run(format!("attach {name} to {bridge}"), set_master(seq, i, m))
    }

    /// Gives link `name` the address `ip/prefix`.
    pub fn add_address(
        &mut self,
        name: &str,
        ip: Ipv4Addr,
        prefix: u8,
        broadcast: Ipv4Addr,
    ) -> Result<(), NetError> {
        let i = self.index(name)?;
        let seq = self.next();
        self.run(format!("add {ip}/{prefix} to {name}"), add_addr(seq, i, ip, prefix, broadcast))
    }
}

/// Checks an interface name the kernel would take.
pub fn check_name(name: &str) -> Result<(), NetError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_IFNAME
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(NetError::BadName(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bridge_request_is_laid_out_as_the_kernel_expects() {
        let m = new_bridge(7, "vb1", [2, 0, 0, 0, 0, 1]);
        assert_eq!(m.len(), u32::from_ne_bytes(m[0..4].try_into().unwrap()) as usize);
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), RTM_NEWLINK);
        let flags = u16::from_ne_bytes([m[6], m[7]]);
        assert_eq!(flags, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL);
        assert_eq!(u32::from_ne_bytes(m[8..12].try_into().unwrap()), 7);
        // ifinfomsg, then IFLA_IFNAME "vb1\0" (len 8), IFLA_ADDRESS (len 10, padded to 12),
        // IFLA_LINKINFO { IFLA_INFO_KIND "bridge\0" (len 11, padded 12) } (len 16).
        let a = NLMSG_HDRLEN + IFINFOMSG_LEN;
        assert_eq!(&m[a..a + 8], &[8, 0, 3, 0, b'v', b'b', b'1', 0]);
        assert_eq!(&m[a + 8..a + 20], &[10, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(u16::from_ne_bytes([m[a + 20], m[a + 21]]), 16);
        assert_eq!(u16::from_ne_bytes([m[a + 22], m[a + 23]]), IFLA_LINKINFO | NLA_F_NESTED);
        assert_eq!(&m[a + 24..a + 35], b"\x0b\x00\x01\x00bridge\0");
        assert_eq!(m.len(), a + 36);
    }

    #[test]
    fn a_veth_request_nests_the_peer() {
        let m = new_veth(1, "a", "bb");
        let a = NLMSG_HDRLEN + IFINFOMSG_LEN + 8; // after IFLA_IFNAME "a\0"
        let linkinfo = u16::from_ne_bytes([m[a], m[a + 1]]) as usize;
        assert_eq!(a + linkinfo, m.len());
        // The peer's name is the last attribute: "bb\0".
        assert_eq!(&m[m.len() - 8..m.len() - 1], &[7, 0, 3, 0, b'b', b'b', 0]);
    }

    #[test]
    fn a_vxlan_request_carries_its_vni_local_address_and_port() {
        let m = new_vxlan(3, "vx1", 0x01_0203, Ipv4Addr::new(10, 9, 0, 2));
        assert_eq!(m.len(), u32::from_ne_bytes(m[0..4].try_into().unwrap()) as usize);
        let a = NLMSG_HDRLEN + IFINFOMSG_LEN;
        assert_eq!(&m[a..a + 8], &[8, 0, 3, 0, b'v', b'x', b'1', 0]);
        assert_eq!(&m[a + 8..a + 12], &[8, 0, 4, 0]);
        assert_eq!(&m[a + 12..a + 16], &1500u32.to_ne_bytes());
        let tail = &m[m.len() - 36..];
        // IFLA_INFO_DATA { ID, LOCAL, LEARNING, PORT }.
        assert_eq!(u16::from_ne_bytes([tail[2], tail[3]]), IFLA_INFO_DATA | NLA_F_NESTED);
        assert_eq!(&tail[4..8], &[8, 0, 1, 0]);
        assert_eq!(&tail[8..12], &0x01_0203u32.to_ne_bytes());
        assert_eq!(&tail[12..20], &[8, 0, 4, 0, 10, 9, 0, 2]);
        assert_eq!(&tail[20..25], &[5, 0, 7, 0, 1]);
        assert_eq!(&tail[28..34], &[6, 0, 15, 0, 0x12, 0xb5]);
    }

    #[test]
    fn a_flooding_entry_is_an_all_zero_mac_to_the_remote() {
        let m = flood_entry(5, 9, Ipv4Addr::new(10, 9, 0, 3), true);
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), RTM_NEWNEIGH);
        let flags = u16::from_ne_bytes([m[6], m[7]]);
        assert_eq!(flags, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND);
        let body = &m[NLMSG_HDRLEN..];
        assert_eq!(body[0], libc::AF_BRIDGE as u8);
        assert_eq!(u32::from_ne_bytes(body[4..8].try_into().unwrap()), 9);
        assert_eq!(u16::from_ne_bytes([body[8], body[9]]), NUD_PERMANENT | NUD_NOARP);
        assert_eq!(body[10], NTF_SELF);
        assert_eq!(flood_remote(9, body), Some(Ipv4Addr::new(10, 9, 0, 3)));
        assert_eq!(flood_remote(8, body), None, "another link's entry");
        let del = flood_entry(6, 9, Ipv4Addr::new(10, 9, 0, 3), false);
        assert_eq!(u16::from_ne_bytes([del[4], del[5]]), RTM_DELNEIGH);
        let dump = dump_fdb(7);
        assert_eq!(u16::from_ne_bytes([dump[6], dump[7]]), NLM_F_REQUEST | NLM_F_DUMP);
    }

    #[test]
    fn a_truncated_dump_answer_is_no_entry() {
        let m = flood_entry(5, 9, Ipv4Addr::new(10, 9, 0, 3), true);
        let body = &m[NLMSG_HDRLEN..];
        for cut in 0..body.len() {
            assert_eq!(flood_remote(9, &body[..cut]), None, "cut at {cut}");
        }
    }

    #[test]
    fn loopback_has_its_address() {
        assert!(ipv4_addresses("lo").contains(&Ipv4Addr::LOCALHOST));
        assert!(ipv4_addresses("no-such-link").is_empty());
    }

    #[test]
    fn names_are_checked() {
        check_name("vb0123456789abc").unwrap();
        assert!(matches!(check_name("vb0123456789abcd").unwrap_err(), NetError::BadName(_)));
        assert!(matches!(check_name("a b").unwrap_err(), NetError::BadName(_)));
    }
}
