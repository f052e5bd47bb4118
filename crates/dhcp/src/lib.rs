//! vine's built-in DHCP server (RFC 2131, options from RFC 2132), one per virtual network:
//!
//! * [`packet`]: the BOOTP/DHCP message codec — pure, never panics, errors name the field and its
//!   offset (fuzzed: `fuzz/fuzz_targets/dhcp_packet.rs`).
//! * [`config`]: a network's DHCP settings (subnet, range, gateway, DNS, lease time,
//!   reservations) and their validation.
//! * [`leases`]: the lease table and its journal file — every binding is written before the ACK
//!   that announces it, so a killed server never hands one address to two clients.
//! * [`server`]: the protocol state machine (DISCOVER/OFFER/REQUEST/ACK/NAK/RELEASE/DECLINE/INFORM,
//!   renewing, rebinding), pure: a packet and the time in, a reply out.
//! * [`serve`]: the socket loop bound to one bridge (UDP port 67, `SO_BINDTODEVICE`).
//! * [`load`]: a load generator of simulated clients (benchmark, crash tests).
//!
//! **Invariant:** an address is bound to at most one client at a time, across restarts; a client
//! (one MAC) holds at most one address and a bounded number of quarantined (declined) ones, so
//! one client cannot exhaust the pool for the others.
#![warn(missing_docs)]

pub mod config;
pub mod leases;
pub mod load;
pub mod packet;
pub mod serve;
pub mod server;

pub use config::{DhcpConfig, Mac};
pub use leases::{Lease, LeaseState, LeaseTable};
pub use packet::{DecodeError, MessageType, Packet};
pub use server::Server;

/// Entry point for fuzzing and corpus replay: decodes `data`, and when it is a valid request,
/// runs it through a server with a small pool. Must never panic.
pub fn fuzz_one(data: &[u8]) {
    if let Ok(p) = packet::Packet::decode(data) {
        let encoded = p.encode();
        let again = packet::Packet::decode(&encoded).expect("an encoded packet decodes");
        assert_eq!(again.xid, p.xid);
        let cfg = config::DhcpConfig::example();
        let mut s = server::Server::new(cfg, leases::LeaseTable::in_memory());
        let _ = s.handle(&p, 1_000);
        let _ = s.handle(&p, 1_001);
    }
}
