//! The server loop of one network: a UDP socket on port 67 bound to the network's bridge
//! (`SO_BINDTODEVICE`, so servers of several networks coexist), batches of messages answered by
//! [`Server`], the batch's lease changes committed (written and synced) before any of its replies
//! is sent. Anything a client can trigger is logged at most once per second.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::DhcpConfig;
use crate::leases::{LeaseError, LeaseTable};
use crate::packet::Packet;
use crate::server::{Destination, Server, Silence};

/// The server's port (RFC 2131 §4.1).
pub const SERVER_PORT: u16 = 67;
/// The client's port.
pub const CLIENT_PORT: u16 = 68;
/// Most messages answered per journal commit.
const BATCH: usize = 256;
/// How often the loop looks at the stop flag.
const WAKE: Duration = Duration::from_millis(200);
/// The receive buffer asked for: a pool of guests booting together (or one client flooding) sends
/// bursts far larger than the kernel's default of about 200 KiB holds while the loop is busy
/// committing a batch, and a message dropped by the kernel is a client waiting seconds to resend.
const RECV_BUFFER: usize = 4 << 20;

/// What the server process needs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The bridge to serve on.
    pub interface: String,
    /// The settings.
    pub config: DhcpConfig,
    /// The lease journal.
    pub leases: PathBuf,
    /// Where the counters are written (JSON, atomically, at most once a second when they change).
    pub stats: Option<PathBuf>,
}

/// Errors that end the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The socket could not be set up.
    #[error("DHCP server on {interface}: {what}: {source}")]
    Socket {
        /// The bridge.
        interface: String,
        /// What was done.
        what: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The lease journal failed (replies are not sent unless their leases are durable).
    #[error(transparent)]
    Leases(#[from] LeaseError),
}

fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn setsockopt(fd: i32, level: i32, name: i32, val: &[u8]) -> std::io::Result<()> {
    // SAFETY: `val` is a live buffer of the length passed; setsockopt copies it.
    let r = unsafe { libc::setsockopt(fd, level, name, val.as_ptr().cast(), val.len() as libc::socklen_t) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A UDP socket on 0.0.0.0:`port` bound to `interface`, allowed to broadcast.
pub fn bound_socket(interface: &str, port: u16) -> std::io::Result<UdpSocket> {
    // SAFETY: plain socket(2) call; the descriptor is owned by the UdpSocket below at once.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh socket nobody else owns.
    let sock = unsafe { UdpSocket::from_raw_fd(fd) };
    let one = 1i32.to_ne_bytes();
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, &one)?;
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_BROADCAST, &one)?;
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_BINDTODEVICE, interface.as_bytes())?;
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr { s_addr: 0 },
        sin_zero: [0; 8],
    };
    // SAFETY: `addr` is a valid sockaddr_in of the size passed.
    let r = unsafe {
        libc::bind(
            fd,
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(sock)
}

/// Logs client-triggered problems at most once per second, counting the rest.
struct Throttle {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    fn warn(&mut self, msg: impl FnOnce() -> String) {
        if self.last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            tracing::warn!(suppressed = self.suppressed, "{}", msg());
            self.last = Some(Instant::now());
            self.suppressed = 0;
        } else {
            self.suppressed += 1;
        }
    }
}

fn write_stats(path: &std::path::Path, s: &crate::server::Stats) {
    let tmp = path.with_extension("tmp");
    let text = serde_json::to_string(s).expect("counters serialise");
    if let Err(e) = std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, path)) {
        tracing::warn!(path = %path.display(), error = %e, "cannot write the DHCP counters");
    }
}

/// Serves until `stop` is set (checked every 200 ms) or a fatal error; `ready` is called once the
/// socket is bound and the journal replayed.
pub fn serve(opts: &ServeOptions, stop: &AtomicBool, ready: &dyn Fn()) -> Result<(), ServeError> {
    let sock_err = |what| {
        let interface = opts.interface.clone();
        move |source| ServeError::Socket { interface, what, source }
    };
    let leases = LeaseTable::open(&opts.leases)?;
    let mut server = Server::new(opts.config.clone(), leases);
    let sock = bound_socket(&opts.interface, SERVER_PORT).map_err(sock_err("bind port 67"))?;
    sock.set_read_timeout(Some(WAKE)).map_err(sock_err("set timeout"))?;
    let size = (RECV_BUFFER as i32).to_ne_bytes();
    let fd = sock.as_raw_fd();
    // SO_RCVBUFFORCE passes the rmem_max cap when the server has CAP_NET_ADMIN (it runs as root);
    // otherwise the capped SO_RCVBUF is the best there is.
    if setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &size).is_err() {
        setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &size).map_err(sock_err("set receive buffer"))?;
    }
    tracing::info!(interface = opts.interface, server = %opts.config.server, "DHCP server ready");
    ready();
    let mut throttle = Throttle { last: None, suppressed: 0 };
    let mut buf = vec![0u8; 65536];
    let mut replies = Vec::with_capacity(BATCH);
    let mut written = crate::server::Stats::default();
    let mut last_stats = Instant::now();
    if let Some(path) = &opts.stats {
        write_stats(path, &written);
    }
    while !stop.load(Ordering::Relaxed) {
        let mut first = true;
        replies.clear();
        while replies.len() < BATCH {
            if !first {
                sock.set_nonblocking(true).map_err(sock_err("set non-blocking"))?;
            }
            let r = sock.recv_from(&mut buf);
            if !first {
                sock.set_nonblocking(false).map_err(sock_err("set blocking"))?;
            }
            let n = match r {
                Ok((n, _)) => n,
                Err(e)
                    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
                {
                    break
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(sock_err("receive")(e)),
            };
            first = false;
            let p = match Packet::decode(&buf[..n]) {
                Ok(p) => p,
                Err(e) => {
                    server.stats().malformed += 1;
                    throttle.warn(|| format!("malformed DHCP message ignored: {e}"));
                    continue;
                }
            };
            match server.handle(&p, now_s()) {
                Ok(r) => replies.push(r),
                Err(Silence::RateLimited) => throttle
                    .warn(|| format!("DHCP client {:02x?} sends too fast; messages dropped", &p.chaddr[..6])),
                Err(Silence::PoolExhausted) => {
                    throttle.warn(|| format!("DHCP pool of {} exhausted", opts.interface))
                }
                Err(_) => {}
            }
        }
        if let Some(path) = &opts.stats {
            if last_stats.elapsed() >= Duration::from_secs(1) && *server.stats() != written {
                written = server.stats().clone();
                last_stats = Instant::now();
                write_stats(path, &written);
            }
        }
        if replies.is_empty() && !server.leases().has_pending() {
            continue;
        }
        server.leases().commit()?;
        for r in &replies {
            let to = match r.to {
                Destination::Broadcast => SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT),
                Destination::Unicast(a) => SocketAddrV4::new(a, CLIENT_PORT),
                Destination::Relay(a) => SocketAddrV4::new(a, SERVER_PORT),
            };
            if let Err(e) = sock.send_to(&r.packet.encode(), to) {
                throttle.warn(|| format!("cannot send a DHCP reply to {to}: {e}"));
            }
        }
    }
    Ok(())
}
