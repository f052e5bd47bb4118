//! DHCP load generator for `bench/dhcp.sh` ([`dhcp::load`]): prints one JSON line with clients,
//! leases, seconds, the rate and retries.
//!
//!     dhcp_load IFACE CLIENTS WINDOW

use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: dhcp_load IFACE CLIENTS WINDOW");
        std::process::exit(2);
    }
    let n: u32 = args[2].parse().expect("CLIENTS is a number");
    let window: usize = args[3].parse().expect("WINDOW is a number");
    let r = dhcp::load::run(&args[1], n, window, Duration::from_secs(120)).expect("bind port 68");
    println!(
        "{{\"clients\":{n},\"leases\":{},\"seconds\":{:.3},\"leases_per_s\":{:.1},\"retries\":{}}}",
        r.leases,
        r.seconds,
        f64::from(r.leases) / r.seconds,
        r.retries
    );
}
