//! A DHCP load generator (for `bench/dhcp.sh` and the crash tests): `n` simulated clients with
//! MACs `0a:42:xx:xx:xx:xx` each run DISCOVER → OFFER → REQUEST → ACK over one socket bound to an
//! interface, at most `window` in flight, retrying from DISCOVER after a second without an answer
//! or after a NAK. Run it inside a network namespace plugged into the bridge under test.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use crate::config::Mac;
use crate::packet::{opt, MessageType, Packet, RawOption, BOOTREQUEST, FLAG_BROADCAST, HTYPE_ETHERNET};

/// How long a client waits for an answer before it starts over.
const RETRY: Duration = Duration::from_secs(1);

/// What a run achieved.
#[derive(Debug, Clone)]
pub struct LoadResult {
    /// Clients that got an ACK.
    pub leases: u32,
    /// From the first DISCOVER to the last ACK.
    pub seconds: f64,
    /// Times a client started over (timeouts and NAKs).
    pub retries: u64,
    /// Every ACK received: the client, the address, and when (since the start).
    pub acks: Vec<(Mac, Ipv4Addr, Duration)>,
}

#[derive(Clone, Copy, PartialEq)]
enum St {
    Waiting,
    Discovering,
    Requesting,
    Done,
}

/// The MAC of simulated client `i`.
pub fn client_mac(i: u32) -> Mac {
    let b = i.to_be_bytes();
    Mac([0x0a, 0x42, b[0], b[1], b[2], b[3]])
}

fn packet(i: u32, t: MessageType, extra: Vec<RawOption>) -> Vec<u8> {
    let mut chaddr = [0u8; 16];
    chaddr[..6].copy_from_slice(&client_mac(i).0);
    let mut options = vec![RawOption { code: opt::MESSAGE_TYPE, data: vec![t.code()], offset: 0 }];
    options.extend(extra);
    Packet {
        op: BOOTREQUEST,
        htype: HTYPE_ETHERNET,
        hlen: 6,
        hops: 0,
        xid: i,
        secs: 0,
        flags: FLAG_BROADCAST,
        ciaddr: Ipv4Addr::UNSPECIFIED,
        yiaddr: Ipv4Addr::UNSPECIFIED,
        siaddr: Ipv4Addr::UNSPECIFIED,
        giaddr: Ipv4Addr::UNSPECIFIED,
        chaddr,
        options,
    }
    .encode()
}

/// Runs `n` clients on `interface`, `window` at a time, for at most `limit`.
pub fn run(interface: &str, n: u32, window: usize, limit: Duration) -> std::io::Result<LoadResult> {
    let sock = crate::serve::bound_socket(interface, crate::serve::CLIENT_PORT)?;
    sock.set_read_timeout(Some(Duration::from_millis(5)))?;
    let to = SocketAddrV4::new(Ipv4Addr::BROADCAST, crate::serve::SERVER_PORT);
    let k = n as usize;
    let mut st = vec![St::Waiting; k];
    let mut sent_at = vec![Instant::now(); k];
    let mut offered = vec![Ipv4Addr::UNSPECIFIED; k];
    let mut queue: VecDeque<u32> = (0..n).collect();
    let (mut in_flight, mut done, mut retries) = (0usize, 0u32, 0u64);
    let mut acks = Vec::new();
    let start = Instant::now();
    let mut last_ack = start;
    let mut buf = vec![0u8; 2048];
    while done < n && start.elapsed() < limit {
        while in_flight < window {
            let Some(i) = queue.pop_front() else { break };
            let _ = sock.send_to(&packet(i, MessageType::Discover, vec![]), to);
            st[i as usize] = St::Discovering;
            sent_at[i as usize] = Instant::now();
            in_flight += 1;
        }
        while let Ok((len, _)) = sock.recv_from(&mut buf) {
            let Ok(p) = Packet::decode(&buf[..len]) else { continue };
            let i = p.xid;
            if i >= n || p.chaddr[..6] != client_mac(i).0 {
                continue;
            }
            let c = i as usize;
            match (p.message_type(), st[c]) {
                (Ok(Some(MessageType::Offer)), St::Discovering) => {
                    let sid = p.server_id().ok().flatten().unwrap_or(Ipv4Addr::UNSPECIFIED);
                    offered[c] = p.yiaddr;
                    let extra = vec![
                        RawOption { code: opt::REQUESTED_IP, data: p.yiaddr.octets().to_vec(), offset: 0 },
                        RawOption { code: opt::SERVER_ID, data: sid.octets().to_vec(), offset: 0 },
                    ];
                    let _ = sock.send_to(&packet(i, MessageType::Request, extra), to);
                    st[c] = St::Requesting;
                    sent_at[c] = Instant::now();
                }
                (Ok(Some(MessageType::Ack)), St::Requesting) if p.yiaddr == offered[c] => {
                    st[c] = St::Done;
                    done += 1;
                    in_flight -= 1;
                    last_ack = Instant::now();
                    acks.push((client_mac(i), p.yiaddr, start.elapsed()));
                }
                (Ok(Some(MessageType::Nak)), St::Requesting) => {
                    st[c] = St::Waiting;
                    in_flight -= 1;
                    retries += 1;
                    queue.push_back(i);
                }
                _ => {}
            }
        }
        let now = Instant::now();
        for c in 0..k {
            if matches!(st[c], St::Discovering | St::Requesting) && now - sent_at[c] > RETRY {
                st[c] = St::Waiting;
                in_flight -= 1;
                retries += 1;
                queue.push_back(c as u32);
            }
        }
    }
    let seconds = (last_ack - start).as_secs_f64().max(1e-6);
    Ok(LoadResult { leases: done, seconds, retries, acks })
}
