//! DHCP load generator for `bench/dhcp.sh`: `N` simulated clients (MACs 0a:42:xx:xx:xx:xx) each
//! run DISCOVER → OFFER → REQUEST → ACK through one socket on `IFACE` (run it inside a network
//! namespace plugged into the bridge under test), at most `WINDOW` clients in flight, a client
//! retrying after 1 s without an answer. Prints one JSON line: clients, leases, seconds, rate.
//!
//!     dhcp_load IFACE N WINDOW

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use dhcp::packet::{opt, MessageType, Packet, RawOption, BOOTREQUEST, FLAG_BROADCAST, HTYPE_ETHERNET};

#[derive(Clone, Copy, PartialEq)]
enum St {
    Waiting,
    Discovering,
    Requesting,
    Done,
}

fn packet(i: u32, t: MessageType, extra: Vec<RawOption>) -> Vec<u8> {
    let mut chaddr = [0u8; 16];
    chaddr[..2].copy_from_slice(&[0x0a, 0x42]);
    chaddr[2..6].copy_from_slice(&i.to_be_bytes());
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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: dhcp_load IFACE CLIENTS WINDOW");
        std::process::exit(2);
    }
    let n: u32 = args[2].parse().expect("CLIENTS is a number");
    let window: usize = args[3].parse().expect("WINDOW is a number");
    let sock = dhcp::serve::bound_socket(&args[1], 68).expect("bind port 68");
    sock.set_read_timeout(Some(Duration::from_millis(5))).expect("timeout");
    let to = SocketAddrV4::new(Ipv4Addr::BROADCAST, 67);
    let mut st = vec![St::Waiting; n as usize];
    let mut sent_at = vec![Instant::now(); n as usize];
    let mut offered = vec![(Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED); n as usize];
    let mut queue: VecDeque<u32> = (0..n).collect();
    let mut in_flight = 0usize;
    let mut done = 0u32;
    let mut retries = 0u64;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(120);
    let mut buf = vec![0u8; 2048];
    while done < n && Instant::now() < deadline {
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
            if i >= n || p.chaddr[..2] != [0x0a, 0x42] {
                continue;
            }
            let k = i as usize;
            match (p.message_type(), st[k]) {
                (Ok(Some(MessageType::Offer)), St::Discovering) => {
                    let sid = p.server_id().ok().flatten().unwrap_or(Ipv4Addr::UNSPECIFIED);
                    offered[k] = (p.yiaddr, sid);
                    let extra = vec![
                        RawOption { code: opt::REQUESTED_IP, data: p.yiaddr.octets().to_vec(), offset: 0 },
                        RawOption { code: opt::SERVER_ID, data: sid.octets().to_vec(), offset: 0 },
                    ];
                    let _ = sock.send_to(&packet(i, MessageType::Request, extra), to);
                    st[k] = St::Requesting;
                    sent_at[k] = Instant::now();
                }
                (Ok(Some(MessageType::Ack)), St::Requesting) if p.yiaddr == offered[k].0 => {
                    st[k] = St::Done;
                    done += 1;
                    in_flight -= 1;
                }
                (Ok(Some(MessageType::Nak)), St::Requesting) => {
                    st[k] = St::Waiting;
                    in_flight -= 1;
                    queue.push_back(i);
                }
                _ => {}
            }
        }
        let now = Instant::now();
        for k in 0..n as usize {
            if matches!(st[k], St::Discovering | St::Requesting) && now - sent_at[k] > Duration::from_secs(1)
            {
                st[k] = St::Waiting;
                in_flight -= 1;
                retries += 1;
                queue.push_back(k as u32);
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{{\"clients\":{n},\"leases\":{done},\"seconds\":{secs:.3},\"leases_per_s\":{:.1},\"retries\":{retries}}}",
        f64::from(done) / secs
    );
}
