//! Network namespaces for tests: a namespace with one veth end inside, the other end plugged
//! into a vine bridge (a stand-in for a machine on that network), or linked to the host with an
//! address (a stand-in for the outside world). Names are unique per process and counter; the
//! guard kills what runs inside (only this test starts processes there) and deletes the
//! namespace and its veth even when the test fails. Test code may use `ip`; the product never does.
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A namespace and its veth.
pub struct NetNs {
    /// The namespace.
    pub name: String,
    /// The host-side end.
    pub host_if: String,
    /// The end inside the namespace.
    pub ns_if: String,
}

fn run(args: &[&str]) -> Output {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A unique /24 for this test: 10.X.Y.0/24 with X from the process id, Y from a counter.
pub fn unique_subnet() -> (String, [u8; 3]) {
    let x = 180 + (std::process::id() % 60) as u8;
    let y = 1 + (NEXT.fetch_add(1, Ordering::SeqCst) % 250) as u8;
    (format!("10.{x}.{y}.0/24"), [10, x, y])
}

impl NetNs {
    fn new_bare() -> NetNs {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let id = std::process::id() % 100_000;
        let ns = NetNs {
            name: format!("vinet-{id}-{n}"),
            host_if: format!("vh{id}x{n}"),
            ns_if: format!("vn{id}x{n}"),
        };
        run(&["ip", "netns", "add", &ns.name]);
        run(&["ip", "link", "add", &ns.host_if, "type", "veth", "peer", "name", &ns.ns_if]);
        run(&["ip", "link", "set", &ns.ns_if, "netns", &ns.name]);
        run(&["ip", "-n", &ns.name, "link", "set", "lo", "up"]);
        run(&["ip", "-n", &ns.name, "link", "set", &ns.ns_if, "up"]);
        ns
    }

    /// A namespace on vine's bridge `bridge`; its NIC gets `mac` when given.
    pub fn on_bridge(bridge: &str, mac: Option<&str>) -> NetNs {
        let ns = NetNs::new_bare();
        if let Some(m) = mac {
            run(&["ip", "-n", &ns.name, "link", "set", &ns.ns_if, "address", m]);
        }
        run(&["ip", "link", "set", &ns.host_if, "master", bridge, "up"]);
        ns
    }

    /// A namespace linked to the host: host side `host/30`, namespace side `inside/30`.
    pub fn linked(host: Ipv4Addr, inside: Ipv4Addr) -> NetNs {
        let ns = NetNs::new_bare();
        run(&["ip", "addr", "add", &format!("{host}/30"), "dev", &ns.host_if]);
        run(&["ip", "link", "set", &ns.host_if, "up"]);
        run(&["ip", "-n", &ns.name, "addr", "add", &format!("{inside}/30"), "dev", &ns.ns_if]);
        ns
    }

    /// A command run inside the namespace.
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// The NIC's MAC inside the namespace.
    pub fn mac(&self) -> String {
        let out = run(&[
            "ip",
            "netns",
            "exec",
            &self.name,
            "cat",
            &format!("/sys/class/net/{}/address", self.ns_if),
        ]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Runs `f` on a thread inside the namespace (sockets it opens live there).
    pub fn within<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                use std::os::fd::AsRawFd;
                let f_ns = std::fs::File::open(&path).unwrap();
                // SAFETY: setns(2) on this thread only, with a namespace file we hold open.
                let r = unsafe { libc::setns(f_ns.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(r, 0, "setns {path}: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap()
        })
    }

    fn pids(&self) -> Vec<i32> {
        let out = Command::new("ip").args(["netns", "pids", &self.name]).output();
        out.map(|o| {
            String::from_utf8_lossy(&o.stdout).lines().filter_map(|l| l.trim().parse().ok()).collect()
        })
        .unwrap_or_default()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Only this test starts processes in its own namespace.
        for pid in self.pids() {
            // SAFETY: kill(2) on a process inside a namespace this test created.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        let _ = Command::new("ip").args(["link", "del", &self.host_if]).output();
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}
