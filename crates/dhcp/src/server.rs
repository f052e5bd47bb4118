//! The DHCP protocol state machine (RFC 2131 §4.3), pure: a decoded message and the time in, a
//! reply (and where it goes) out. The caller commits the lease table's journal before it sends
//! the replies of a batch (see [`crate::serve`]).
//!
//! Defences: each client (MAC) holds one address — a flood of DISCOVERs from one MAC is offered
//! the same address again; at most [`MAX_PER_MAC_PER_S`] messages per second per MAC are
//! answered; a DECLINE quarantines only the decliner's own address and at most
//! [`MAX_DECLINED_PER_MAC`] of them per MAC, so one client cannot empty the pool for the others;
//! when the range is full of offers, the oldest offer is taken back, so clients forging many MACs
//! cannot starve a client that completes its exchange.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use crate::config::{DhcpConfig, Mac};
use crate::leases::{Lease, LeaseState, LeaseTable};
use crate::packet::{opt, MessageType, Packet, RawOption, BOOTREPLY, BOOTREQUEST};

/// How long an offer keeps its address from other clients (seconds).
pub const OFFER_HOLD_S: u64 = 30;
/// How long a declined address stays out of the pool (seconds).
pub const DECLINE_HOLD_S: u64 = 600;
/// Most quarantined (declined) addresses one MAC can cause at a time.
pub const MAX_DECLINED_PER_MAC: usize = 2;
/// Most messages per second answered for one MAC.
pub const MAX_PER_MAC_PER_S: u32 = 20;
/// Rate-limiter entries kept before old ones are dropped.
const MAX_RATE_ENTRIES: usize = 8192;

/// Where a reply goes (RFC 2131 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// 255.255.255.255 port 68 on the network's bridge.
    Broadcast,
    /// The client's own address, port 68 (renewing, INFORM).
    Unicast(Ipv4Addr),
    /// A relay agent, port 67.
    Relay(Ipv4Addr),
}

/// A reply to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The message.
    pub packet: Packet,
    /// Where it goes.
    pub to: Destination,
}

/// Why a message got no reply (for logs and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Silence {
    /// Not a client's DHCP message (a reply, plain BOOTP, a server's message type).
    NotARequest,
    /// Not Ethernet.
    NotEthernet,
    /// The client sent too many messages this second.
    RateLimited,
    /// No free address.
    PoolExhausted,
    /// The client chose another server's offer.
    OtherServer,
    /// RELEASE or DECLINE (no reply is defined), or one that was ignored.
    NoReplyDefined,
    /// A REQUEST without any address to check.
    Malformed,
}

/// The server of one network.
pub struct Server {
    cfg: DhcpConfig,
    leases: LeaseTable,
    reserved: HashMap<Ipv4Addr, Mac>,
    rate: HashMap<Mac, (u64, u32)>,
    stats: Stats,
}

/// Counters of what the server saw and answered since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Messages received that decoded.
    pub received: u64,
    /// Messages that did not decode (counted by the socket loop).
    pub malformed: u64,
    /// OFFERs sent.
    pub offers: u64,
    /// ACKs sent (bindings and INFORM answers).
    pub acks: u64,
    /// NAKs sent.
    pub naks: u64,
    /// RELEASEs honoured.
    pub releases: u64,
    /// DECLINEs that quarantined an address.
    pub declines: u64,
    /// Messages dropped by the per-client rate limit.
    pub rate_limited: u64,
    /// DISCOVERs left unanswered for want of an address.
    pub pool_exhausted: u64,
}

impl Server {
    /// A server for `cfg` over `leases`.
    pub fn new(cfg: DhcpConfig, leases: LeaseTable) -> Server {
        let reserved = cfg.reservations.iter().map(|(m, a)| (*a, *m)).collect();
        Server { cfg, leases, reserved, rate: HashMap::new(), stats: Stats::default() }
    }

    /// The counters.
    pub fn stats(&mut self) -> &mut Stats {
        &mut self.stats
    }

    /// The configuration.
    pub fn config(&self) -> &DhcpConfig {
        &self.cfg
    }

    /// The lease table (to commit it, or list it).
    pub fn leases(&mut self) -> &mut LeaseTable {
        &mut self.leases
    }

    /// Answers one message received at `now` (Unix seconds).
    pub fn handle(&mut self, p: &Packet, now: u64) -> Result<Reply, Silence> {
        self.stats.received += 1;
        let r = self.answer(p, now);
        match &r {
            Ok(reply) => match reply.packet.message_type() {
                Ok(Some(MessageType::Offer)) => self.stats.offers += 1,
                Ok(Some(MessageType::Ack)) => self.stats.acks += 1,
                Ok(Some(MessageType::Nak)) => self.stats.naks += 1,
                _ => {}
            },
            Err(Silence::RateLimited) => self.stats.rate_limited += 1,
            Err(Silence::PoolExhausted) => self.stats.pool_exhausted += 1,
            Err(_) => {}
        }
        r
    }

    fn answer(&mut self, p: &Packet, now: u64) -> Result<Reply, Silence> {
        if p.op != BOOTREQUEST {
            return Err(Silence::NotARequest);
        }
        let Some(mac) = p.mac().map(Mac) else { return Err(Silence::NotEthernet) };
        let Ok(Some(t)) = p.message_type() else { return Err(Silence::NotARequest) };
        if !self.allow(mac, now) {
            return Err(Silence::RateLimited);
        }
        match t {
            MessageType::Discover => self.discover(p, mac, now),
            MessageType::Request => self.request(p, mac, now),
            MessageType::Release => {
                if let Some(l) = self.leases.get(p.ciaddr) {
                    if l.mac == mac && l.state == LeaseState::Bound {
                        self.leases.record(Lease {
                            ip: p.ciaddr,
                            mac,
                            state: LeaseState::Released,
                            expires: 0,
                        });
                        self.stats.releases += 1;
                    }
                }
                Err(Silence::NoReplyDefined)
            }
            MessageType::Decline => {
                let ip = p.requested_ip().ok().flatten().unwrap_or(p.ciaddr);
                let own =
                    self.leases.get(ip).is_some_and(|l| l.mac == mac && l.state != LeaseState::Declined);
                if own && self.leases.declined_by(mac, now) < MAX_DECLINED_PER_MAC {
                    self.leases.record(Lease {
                        ip,
                        mac,
                        state: LeaseState::Declined,
                        expires: now + DECLINE_HOLD_S,
                    });
                    self.stats.declines += 1;
                }
                Err(Silence::NoReplyDefined)
            }
            MessageType::Inform => {
                if p.ciaddr.is_unspecified() {
                    return Err(Silence::Malformed);
                }
                Ok(self.reply(p, MessageType::Ack, Ipv4Addr::UNSPECIFIED, false))
            }
            MessageType::Offer | MessageType::Ack | MessageType::Nak => Err(Silence::NotARequest),
        }
    }

    fn allow(&mut self, mac: Mac, now: u64) -> bool {
        if self.rate.len() > MAX_RATE_ENTRIES {
            self.rate.retain(|_, (t, _)| *t == now);
        }
        let e = self.rate.entry(mac).or_insert((now, 0));
        if e.0 != now {
            *e = (now, 0);
        }
        e.1 += 1;
        e.1 <= MAX_PER_MAC_PER_S
    }

    /// Whether `mac` may hold `ip` at `now`.
    fn acceptable(&self, mac: Mac, ip: Ipv4Addr, now: u64) -> bool {
        if !self.cfg.in_subnet(ip) {
            return false;
        }
        let place_ok = match self.cfg.reservations.get(&mac) {
            Some(r) => *r == ip,
            None => self.cfg.in_range(ip) && !self.reserved.contains_key(&ip),
        };
        place_ok && self.leases.free_for(ip, mac, now)
    }

    fn choose(&self, mac: Mac, requested: Option<Ipv4Addr>, now: u64) -> Option<Ipv4Addr> {
        if let Some(r) = self.cfg.reservations.get(&mac) {
            return self.leases.free_for(*r, mac, now).then_some(*r);
        }
        if let Some(l) = self.leases.of_mac(mac) {
            if self.acceptable(mac, l.ip, now) {
                return Some(l.ip);
            }
        }
        if let Some(r) = requested {
            if self.acceptable(mac, r, now) {
                return Some(r);
            }
        }
        let (a, b) = (u32::from(self.cfg.range_start), u32::from(self.cfg.range_end));
        let usable = |ip: Ipv4Addr| {
            !self.reserved.contains_key(&ip) && ip != self.cfg.server && Some(ip) != self.cfg.router
        };
        // Never-used addresses first, so a returning client usually finds its old one.
        (a..=b)
            .map(Ipv4Addr::from)
            .find(|ip| usable(*ip) && self.leases.get(*ip).is_none())
            .or_else(|| {
                (a..=b).map(Ipv4Addr::from).find(|ip| usable(*ip) && self.leases.free_for(*ip, mac, now))
            })
            .or_else(|| {
                // Full: an offer is no promise, so the oldest one goes to this client. Clients
                // forging MACs to hold the pool with offers can then delay others, not starve them.
                self.leases
                    .all()
                    .filter(|l| l.state == LeaseState::Offered && self.cfg.in_range(l.ip) && usable(l.ip))
                    .min_by_key(|l| l.expires)
                    .map(|l| l.ip)
            })
    }

    fn discover(&mut self, p: &Packet, mac: Mac, now: u64) -> Result<Reply, Silence> {
        let requested = p.requested_ip().ok().flatten();
        let ip = self.choose(mac, requested, now).ok_or(Silence::PoolExhausted)?;
        let keep_bound = self.leases.get(ip).is_some_and(|l| l.mac == mac && l.state == LeaseState::Bound);
        if !keep_bound {
            self.leases.record(Lease { ip, mac, state: LeaseState::Offered, expires: now + OFFER_HOLD_S });
        }
        Ok(self.reply(p, MessageType::Offer, ip, true))
    }

    fn request(&mut self, p: &Packet, mac: Mac, now: u64) -> Result<Reply, Silence> {
        let requested = p.requested_ip().ok().flatten();
        let ip = match p.server_id().ok().flatten() {
            // SELECTING: the client answers an offer.
            Some(sid) if sid != self.cfg.server => {
                if let Some(l) = self.leases.of_mac(mac) {
                    if l.state == LeaseState::Offered {
                        let ip = l.ip;
                        self.leases.forget_offer(ip);
                    }
                }
                return Err(Silence::OtherServer);
            }
            Some(_) => requested.or((!p.ciaddr.is_unspecified()).then_some(p.ciaddr)),
            // INIT-REBOOT: a client that remembers its address.
            None if requested.is_some() => requested,
            // RENEWING (unicast) or REBINDING (broadcast).
            None if !p.ciaddr.is_unspecified() => Some(p.ciaddr),
            None => None,
        };
        let Some(ip) = ip else { return Err(Silence::Malformed) };
        if !self.acceptable(mac, ip, now) {
            return Ok(self.reply(p, MessageType::Nak, Ipv4Addr::UNSPECIFIED, false));
        }
        self.leases.record(Lease {
            ip,
            mac,
            state: LeaseState::Bound,
            expires: now + u64::from(self.cfg.lease_s),
        });
        Ok(self.reply(p, MessageType::Ack, ip, true))
    }

    fn reply(&self, p: &Packet, t: MessageType, yiaddr: Ipv4Addr, lease: bool) -> Reply {
        let c = &self.cfg;
        let mut options = vec![
            RawOption { code: opt::MESSAGE_TYPE, data: vec![t.code()], offset: 0 },
            RawOption { code: opt::SERVER_ID, data: c.server.octets().to_vec(), offset: 0 },
        ];
        if t != MessageType::Nak {
            if lease {
                let l = c.lease_s;
                options.push(RawOption { code: opt::LEASE_TIME, data: l.to_be_bytes().to_vec(), offset: 0 });
                options.push(RawOption {
                    code: opt::RENEWAL,
                    data: (l / 2).to_be_bytes().to_vec(),
                    offset: 0,
                });
                let t2 = (u64::from(l) * 7 / 8) as u32;
                options.push(RawOption { code: opt::REBINDING, data: t2.to_be_bytes().to_vec(), offset: 0 });
            }
            options.push(RawOption {
                code: opt::SUBNET_MASK,
                data: c.netmask().octets().to_vec(),
                offset: 0,
            });
            options.push(RawOption {
                code: opt::BROADCAST,
                data: c.broadcast().octets().to_vec(),
                offset: 0,
            });
            if let Some(r) = c.router {
                options.push(RawOption { code: opt::ROUTER, data: r.octets().to_vec(), offset: 0 });
            }
            if !c.dns.is_empty() {
                let data = c.dns.iter().flat_map(|d| d.octets()).collect();
                options.push(RawOption { code: opt::DNS, data, offset: 0 });
            }
        }
        let packet = Packet {
            op: BOOTREPLY,
            htype: p.htype,
            hlen: p.hlen,
            hops: 0,
            xid: p.xid,
            secs: 0,
            flags: p.flags,
            ciaddr: if t == MessageType::Nak { Ipv4Addr::UNSPECIFIED } else { p.ciaddr },
            yiaddr,
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: p.giaddr,
            chaddr: p.chaddr,
            options,
        };
        let to = if !p.giaddr.is_unspecified() {
            Destination::Relay(p.giaddr)
        } else if t != MessageType::Nak && !p.ciaddr.is_unspecified() {
            Destination::Unicast(p.ciaddr)
        } else {
            // The client has no address yet: broadcast (RFC 2131 §4.1 allows it whether or not
            // the broadcast bit is set; both udhcpc and dhclient listen on raw sockets).
            Destination::Broadcast
        };
        Reply { packet, to }
    }
}

#[cfg(test)]
mod tests;
