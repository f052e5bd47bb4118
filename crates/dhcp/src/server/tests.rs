use std::collections::HashMap;

use proptest::prelude::*;

use super::*;
use crate::packet::{HTYPE_ETHERNET, OFF_OPTIONS};

fn mac(n: u8) -> Mac {
    Mac([2, 0, 0, 0, 0, n])
}

fn msg(m: Mac, t: MessageType, xid: u32) -> Packet {
    let mut chaddr = [0u8; 16];
    chaddr[..6].copy_from_slice(&m.0);
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
        options: vec![RawOption { code: opt::MESSAGE_TYPE, data: vec![t.code()], offset: 0 }],
    }
}

fn with(mut p: Packet, code: u8, data: &[u8]) -> Packet {
    p.set_option(code, data.to_vec());
    p
}

fn server() -> Server {
    Server::new(DhcpConfig::example(), LeaseTable::in_memory())
}

fn kind(r: &Reply) -> MessageType {
    r.packet.message_type().unwrap().unwrap()
}

/// DISCOVER then REQUEST (selecting); the ACKed address.
fn dora(s: &mut Server, m: Mac, now: u64) -> Ipv4Addr {
    let offer = s.handle(&msg(m, MessageType::Discover, 1), now).unwrap();
    assert_eq!(kind(&offer), MessageType::Offer);
    let ip = offer.packet.yiaddr;
    let req = with(
        with(msg(m, MessageType::Request, 2), opt::REQUESTED_IP, &ip.octets()),
        opt::SERVER_ID,
        &s.config().server.octets(),
    );
    let ack = s.handle(&req, now).unwrap();
    assert_eq!(kind(&ack), MessageType::Ack, "{ack:?}");
    assert_eq!(ack.packet.yiaddr, ip);
    ip
}

#[test]
fn discover_offer_request_ack_carries_what_a_client_needs() {
    let mut s = server();
    let offer = s.handle(&msg(mac(1), MessageType::Discover, 77), 1000).unwrap();
    assert_eq!(offer.to, Destination::Broadcast);
    let p = &offer.packet;
    assert_eq!((p.op, p.xid, p.yiaddr), (BOOTREPLY, 77, Ipv4Addr::new(10, 99, 0, 100)));
    let o = |c| p.option(c).unwrap().data.clone();
    assert_eq!(o(opt::SUBNET_MASK), vec![255, 255, 255, 0]);
    assert_eq!(o(opt::ROUTER), vec![10, 99, 0, 1]);
    assert_eq!(o(opt::DNS), vec![10, 99, 0, 1]);
    assert_eq!(o(opt::SERVER_ID), vec![10, 99, 0, 1]);
    assert_eq!(o(opt::LEASE_TIME), 3600u32.to_be_bytes().to_vec());
    assert_eq!(o(opt::RENEWAL), 1800u32.to_be_bytes().to_vec());
    assert_eq!(o(opt::REBINDING), 3150u32.to_be_bytes().to_vec());
    let ip = dora(&mut s, mac(1), 1000);
    let l = s.leases().get(ip).unwrap().clone();
    assert_eq!((l.mac, l.state, l.expires), (mac(1), LeaseState::Bound, 4600));
    let st = s.stats().clone();
    assert_eq!((st.received, st.offers, st.acks, st.naks), (3, 2, 1, 0));
}

#[test]
fn renewing_and_rebinding_extend_the_lease_and_answer_the_client_directly() {
    let mut s = server();
    let ip = dora(&mut s, mac(1), 1000);
    let mut renew = msg(mac(1), MessageType::Request, 3);
    renew.ciaddr = ip;
    let ack = s.handle(&renew, 2800).unwrap();
    assert_eq!((kind(&ack), ack.to, ack.packet.yiaddr), (MessageType::Ack, Destination::Unicast(ip), ip));
    assert_eq!(s.leases().get(ip).unwrap().expires, 6400);
    renew.flags = crate::packet::FLAG_BROADCAST; // rebinding is broadcast; the answer is the same
    let ack = s.handle(&renew, 4000).unwrap();
    assert_eq!(kind(&ack), MessageType::Ack);
    assert_eq!(s.leases().get(ip).unwrap().expires, 7600);
    // Another client renewing an address it does not hold is refused.
    let mut thief = msg(mac(2), MessageType::Request, 4);
    thief.ciaddr = ip;
    let nak = s.handle(&thief, 4000).unwrap();
    assert_eq!((kind(&nak), nak.to), (MessageType::Nak, Destination::Broadcast));
    assert_eq!(nak.packet.yiaddr, Ipv4Addr::UNSPECIFIED);
}

#[test]
fn init_reboot_with_a_foreign_or_taken_address_is_nakked() {
    let mut s = server();
    let ip = dora(&mut s, mac(1), 1000);
    let r = with(msg(mac(2), MessageType::Request, 5), opt::REQUESTED_IP, &ip.octets());
    assert_eq!(kind(&s.handle(&r, 1001).unwrap()), MessageType::Nak);
    let r = with(msg(mac(2), MessageType::Request, 6), opt::REQUESTED_IP, &[192, 168, 1, 5]);
    assert_eq!(kind(&s.handle(&r, 1001).unwrap()), MessageType::Nak);
    // A free address of the range is granted (vine is the network's only server).
    let r = with(msg(mac(2), MessageType::Request, 7), opt::REQUESTED_IP, &[10, 99, 0, 105]);
    assert_eq!(kind(&s.handle(&r, 1001).unwrap()), MessageType::Ack);
}

#[test]
fn release_frees_the_address_and_the_client_gets_it_back_first() {
    let mut s = server();
    let ip = dora(&mut s, mac(1), 1000);
    let mut rel = msg(mac(1), MessageType::Release, 8);
    rel.ciaddr = ip;
    // A release from someone else changes nothing.
    let mut fake = rel.clone();
    fake.chaddr[5] = 9;
    assert_eq!(s.handle(&fake, 1001).unwrap_err(), Silence::NoReplyDefined);
    assert_eq!(s.leases().get(ip).unwrap().state, LeaseState::Bound);
    assert_eq!(s.handle(&rel, 1001).unwrap_err(), Silence::NoReplyDefined);
    assert_eq!(s.leases().get(ip).unwrap().state, LeaseState::Released);
    assert_eq!(dora(&mut s, mac(1), 1002), ip);
}

#[test]
fn decline_quarantines_the_address_but_one_client_cannot_empty_the_pool() {
    let mut s = server();
    let mut declined = Vec::new();
    for round in 0..8u64 {
        let ip = dora(&mut s, mac(1), 1000 + round);
        let d = with(msg(mac(1), MessageType::Decline, 9), opt::REQUESTED_IP, &ip.octets());
        assert_eq!(s.handle(&d, 1000 + round).unwrap_err(), Silence::NoReplyDefined);
        declined.push(ip);
    }
    let quarantined: Vec<_> = s.leases().all().filter(|l| l.state == LeaseState::Declined).collect();
    assert_eq!(quarantined.len(), MAX_DECLINED_PER_MAC);
    // The first declined address is not offered to others until its quarantine ends.
    let ip0 = declined[0];
    for n in 2..=8 {
        let ip = dora(&mut s, mac(n), 1100);
        assert_ne!(ip, ip0);
    }
    let later = 1000 + DECLINE_HOLD_S + 1;
    let mut rel = msg(mac(2), MessageType::Release, 1);
    rel.ciaddr = s.leases().of_mac(mac(2)).unwrap().ip;
    let _ = s.handle(&rel, later);
    let got: Vec<Ipv4Addr> = (10..=11).map(|n| dora(&mut s, mac(n), later)).collect();
    assert!(got.contains(&ip0), "quarantine over: {ip0} should be back in the pool, got {got:?}");
}

#[test]
fn a_discover_flood_from_one_mac_holds_one_address_and_is_rate_limited() {
    let mut s = server();
    let mut offered = std::collections::BTreeSet::new();
    for i in 0..2000u64 {
        if let Ok(r) = s.handle(&msg(mac(1), MessageType::Discover, i as u32), 1000 + i / 100) {
            offered.insert(r.packet.yiaddr);
        }
    }
    assert_eq!(offered.len(), 1);
    let mut limited = 0;
    for i in 0..30 {
        if s.handle(&msg(mac(1), MessageType::Discover, i), 5000).unwrap_err_or_ok() {
            limited += 1;
        }
    }
    assert_eq!(limited, 30 - MAX_PER_MAC_PER_S as usize);
    // The other nine addresses remain for nine other clients.
    let others: std::collections::BTreeSet<_> = (2..=10).map(|n| dora(&mut s, mac(n), 5001)).collect();
    assert_eq!(others.len(), 9);
    assert!(!others.iter().any(|ip| offered.contains(ip)));
    // The range is full: the flooder's mere offer is taken back for the next client.
    let r = s.handle(&msg(mac(11), MessageType::Discover, 1), 5001).unwrap();
    assert!(offered.contains(&r.packet.yiaddr));
    // And again for the next one; the client that lost its offer is NAKed when it requests it.
    let r2 = s.handle(&msg(mac(12), MessageType::Discover, 1), 5001).unwrap();
    assert_eq!(r2.packet.yiaddr, r.packet.yiaddr);
    let req = with(
        with(msg(mac(11), MessageType::Request, 2), opt::REQUESTED_IP, &r.packet.yiaddr.octets()),
        opt::SERVER_ID,
        &s.config().server.octets(),
    );
    assert_eq!(kind(&s.handle(&req, 5001).unwrap()), MessageType::Nak);
}

#[test]
fn offers_to_forged_macs_cannot_starve_a_real_client() {
    let mut s = server();
    // Ten forged MACs take every address of the range with offers they never request.
    for n in 100..110 {
        assert_eq!(
            kind(&s.handle(&msg(mac(n), MessageType::Discover, 1), 1000).unwrap()),
            MessageType::Offer
        );
    }
    // A real client still completes its exchange, with the oldest offer's address.
    let ip = dora(&mut s, mac(1), 1001);
    assert_eq!(ip, Ipv4Addr::new(10, 99, 0, 100));
    // Bound leases are never taken back.
    for n in 2..=10 {
        dora(&mut s, mac(n), 1002);
    }
    assert_eq!(s.handle(&msg(mac(11), MessageType::Discover, 1), 1003).unwrap_err(), Silence::PoolExhausted);
    assert_eq!(s.leases().get(ip).unwrap().mac, mac(1));
}

trait Limited {
    fn unwrap_err_or_ok(self) -> bool;
}
impl Limited for Result<Reply, Silence> {
    fn unwrap_err_or_ok(self) -> bool {
        matches!(self, Err(Silence::RateLimited))
    }
}

#[test]
fn inform_gets_configuration_without_a_lease() {
    let mut s = server();
    let mut inf = msg(mac(1), MessageType::Inform, 10);
    inf.ciaddr = Ipv4Addr::new(10, 99, 0, 20);
    let r = s.handle(&inf, 1000).unwrap();
    assert_eq!((kind(&r), r.to), (MessageType::Ack, Destination::Unicast(inf.ciaddr)));
    assert_eq!(r.packet.yiaddr, Ipv4Addr::UNSPECIFIED);
    assert!(r.packet.option(opt::LEASE_TIME).is_none());
    assert!(r.packet.option(opt::SUBNET_MASK).is_some());
    assert_eq!(s.leases().all().count(), 0);
}

#[test]
fn reservations_go_only_to_their_mac() {
    let mut cfg = DhcpConfig::example();
    cfg.reservations.insert(mac(7), Ipv4Addr::new(10, 99, 0, 100));
    cfg.reservations.insert(mac(8), Ipv4Addr::new(10, 99, 0, 50));
    let mut s = Server::new(cfg, LeaseTable::in_memory());
    assert_eq!(dora(&mut s, mac(1), 1000), Ipv4Addr::new(10, 99, 0, 101));
    assert_eq!(dora(&mut s, mac(8), 1000), Ipv4Addr::new(10, 99, 0, 50));
    assert_eq!(dora(&mut s, mac(7), 1000), Ipv4Addr::new(10, 99, 0, 100));
    let r = with(msg(mac(8), MessageType::Request, 5), opt::REQUESTED_IP, &[10, 99, 0, 102]);
    assert_eq!(kind(&s.handle(&r, 1001).unwrap()), MessageType::Nak);
    let r = with(msg(mac(2), MessageType::Request, 5), opt::REQUESTED_IP, &[10, 99, 0, 50]);
    assert_eq!(kind(&s.handle(&r, 1001).unwrap()), MessageType::Nak);
}

#[test]
fn choosing_another_server_returns_our_offer_to_the_pool() {
    let mut s = server();
    let ip = s.handle(&msg(mac(1), MessageType::Discover, 1), 1000).unwrap().packet.yiaddr;
    let req = with(
        with(msg(mac(1), MessageType::Request, 2), opt::REQUESTED_IP, &[10, 99, 0, 200]),
        opt::SERVER_ID,
        &[10, 99, 0, 254],
    );
    assert_eq!(s.handle(&req, 1000).unwrap_err(), Silence::OtherServer);
    assert_eq!(dora(&mut s, mac(2), 1000), ip);
}

#[test]
fn replies_and_bootp_and_other_hardware_are_ignored() {
    let mut s = server();
    let mut p = msg(mac(1), MessageType::Discover, 1);
    p.op = BOOTREPLY;
    assert_eq!(s.handle(&p, 1).unwrap_err(), Silence::NotARequest);
    let mut p = msg(mac(1), MessageType::Discover, 1);
    p.hlen = 16;
    assert_eq!(s.handle(&p, 1).unwrap_err(), Silence::NotEthernet);
    let mut p = msg(mac(1), MessageType::Discover, 1);
    p.options.clear();
    assert_eq!(s.handle(&p, 1).unwrap_err(), Silence::NotARequest);
    assert_eq!(s.handle(&msg(mac(1), MessageType::Offer, 1), 1).unwrap_err(), Silence::NotARequest);
    assert_eq!(s.handle(&msg(mac(1), MessageType::Request, 1), 1).unwrap_err(), Silence::Malformed);
}

#[test]
fn a_restarted_server_honours_every_committed_binding() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leases");
    let mut s = Server::new(DhcpConfig::example(), LeaseTable::open(&path).unwrap());
    let mut bound = HashMap::new();
    for n in 1..=5 {
        bound.insert(mac(n), dora(&mut s, mac(n), 1000));
    }
    s.leases().commit().unwrap();
    drop(s); // as if killed: nothing else is written
    let mut s = Server::new(DhcpConfig::example(), LeaseTable::open(&path).unwrap());
    for n in 6..=10 {
        let ip = dora(&mut s, mac(n), 1001);
        assert!(!bound.values().any(|b| *b == ip), "{ip} handed out twice");
    }
    for (m, ip) in &bound {
        let mut renew = msg(*m, MessageType::Request, 3);
        renew.ciaddr = *ip;
        assert_eq!(kind(&s.handle(&renew, 1002).unwrap()), MessageType::Ack);
    }
}

#[derive(Debug, Clone)]
enum Step {
    Dora(u8),
    Renew(u8),
    Release(u8),
    Decline(u8),
    Reboot(u8, u8),
    Tick(u16),
    Restart,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u8..14).prop_map(Step::Dora),
        (0u8..14).prop_map(Step::Renew),
        (0u8..14).prop_map(Step::Release),
        (0u8..14).prop_map(Step::Decline),
        ((0u8..14), (95u8..112)).prop_map(|(m, a)| Step::Reboot(m, a)),
        (0u16..4000).prop_map(Step::Tick),
        Just(Step::Restart),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Whatever clients do, and however often the server restarts, no address is ACKed to a
    /// client while another client's ACKed lease on it is unexpired (and not released/declined).
    #[test]
    fn no_address_is_ever_bound_to_two_clients(steps in proptest::collection::vec(step(), 1..120)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leases");
        let mut s = Server::new(DhcpConfig::example(), LeaseTable::open(&path).unwrap());
        let mut now = 1000u64;
        let mut held: HashMap<Ipv4Addr, (Mac, u64)> = HashMap::new();
        let mut mine: HashMap<Mac, Ipv4Addr> = HashMap::new();
        let sid = DhcpConfig::example().server.octets();
        for st in steps {
            let mut sent = Vec::new();
            match st {
                Step::Dora(n) => {
                    if let Ok(o) = s.handle(&msg(mac(n), MessageType::Discover, 1), now) {
                        let ip = o.packet.yiaddr;
                        sent.push(with(with(msg(mac(n), MessageType::Request, 2), opt::REQUESTED_IP,
                            &ip.octets()), opt::SERVER_ID, &sid));
                    }
                }
                Step::Renew(n) => if let Some(ip) = mine.get(&mac(n)) {
                    let mut r = msg(mac(n), MessageType::Request, 3);
                    r.ciaddr = *ip;
                    sent.push(r);
                },
                Step::Release(n) => if let Some(ip) = mine.remove(&mac(n)) {
                    let mut r = msg(mac(n), MessageType::Release, 4);
                    r.ciaddr = ip;
                    held.remove(&ip);
                    let _ = s.handle(&r, now);
                },
                Step::Decline(n) => if let Some(ip) = mine.remove(&mac(n)) {
                    held.remove(&ip);
                    let _ = s.handle(&with(msg(mac(n), MessageType::Decline, 5), opt::REQUESTED_IP,
                        &ip.octets()), now);
                },
                Step::Reboot(n, a) => sent.push(with(msg(mac(n), MessageType::Request, 6),
                    opt::REQUESTED_IP, &[10, 99, 0, a])),
                Step::Tick(d) => now += u64::from(d),
                Step::Restart => {
                    drop(s);
                    s = Server::new(DhcpConfig::example(), LeaseTable::open(&path).unwrap());
                }
            }
            for p in sent {
                let m = Mac(p.mac().unwrap());
                if let Ok(r) = s.handle(&p, now) {
                    s.leases().commit().unwrap();
                    if kind(&r) == MessageType::Ack {
                        let ip = r.packet.yiaddr;
                        if let Some((other, until)) = held.get(&ip) {
                            prop_assert!(*other == m || *until <= now,
                                "{ip} ACKed to {m} while {other} holds it until {until} (now {now})");
                        }
                        if let Some(old) = mine.insert(m, ip) {
                            if old != ip { held.remove(&old); }
                        }
                        held.insert(ip, (m, now + 3600));
                    }
                }
            }
        }
    }
}

#[test]
fn packets_from_the_wire_decode_before_they_reach_the_server() {
    // A DISCOVER as udhcpc sends it, truncated at every length: decoding fails cleanly or the
    // server answers; nothing panics.
    let mut b = msg(mac(3), MessageType::Discover, 9).encode();
    b.truncate(OFF_OPTIONS + 3);
    b.extend_from_slice(&[opt::CLIENT_ID, 7, 1, 2, 0, 0, 0, 0, 3, opt::PARAMS, 3, 1, 3, 6, opt::END]);
    let mut s = server();
    for n in 0..=b.len() {
        if let Ok(p) = Packet::decode(&b[..n]) {
            let _ = s.handle(&p, 1000 + n as u64);
        }
    }
    let p = Packet::decode(&b).unwrap();
    assert_eq!(kind(&s.handle(&p, 9999).unwrap()), MessageType::Offer);
}
