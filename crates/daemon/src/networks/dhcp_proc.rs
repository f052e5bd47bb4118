//! The DHCP server process of a network: started detached (its own process group, so it
//! outlives the daemon), recorded in `dhcp.pid` (pid and start time), adopted by the next daemon,
//! stopped with SIGTERM (SIGKILL after a grace period).

use super::*;

/// How long a new DHCP server gets to bind its socket.
const DHCP_READY: Duration = Duration::from_secs(15);
/// How long a DHCP server gets to exit after SIGTERM.
const DHCP_STOP: Duration = Duration::from_secs(5);

impl Networks {
    pub(super) fn adopt_dhcp(&self, name: &str) -> Option<DhcpProc> {
        let text = std::fs::read_to_string(self.dir(name).join("dhcp.pid")).ok()?;
        let mut f = text.split_whitespace();
        let id = Identity { pid: f.next()?.parse().ok()?, start_ticks: f.next()?.parse().ok()? };
        process::is_alive(id).then_some(DhcpProc { id, child: None })
    }

    pub(super) fn start_dhcp(&self, spec: &NetworkSpec) -> Res<DhcpProc> {
        let cfg = spec.dhcp.as_ref().expect("only networks with DHCP");
        let dir = self.dir(&spec.name);
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let conf = dir.join("dhcp.json");
        let text = serde_json::to_string_pretty(cfg).expect("configs serialise");
        crate::actor::write_atomic(&conf, &text)
            .map_err(|e| format!("cannot write {}: {e}", conf.display()))?;
        let log = dir.join("dhcp.log");
        let from = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let mut cmd = Command::new(&self.exe);
        cmd.args(["network", "dhcp-serve", "--interface", &spec.bridge, "--config"])
            .arg(&conf)
            .arg("--leases")
            .arg(dir.join("leases"));
        let (mut child, id) =
            process::spawn_detached(cmd, &log).map_err(|e| format!("cannot start the DHCP server: {e}"))?;
        std::fs::write(dir.join("dhcp.pid"), format!("{} {}\n", id.pid, id.start_ticks))
            .map_err(|e| format!("cannot record the DHCP server: {e}"))?;
        let deadline = Instant::now() + DHCP_READY;
        loop {
            let said = std::fs::read_to_string(&log).unwrap_or_default();
            let said = said.get(from as usize..).unwrap_or("");
            if said.contains("vine dhcp: ready") {
                return Ok(DhcpProc { id, child: Some(child) });
            }
            if let Ok(Some(st)) = child.try_wait() {
                return Err(format!("the DHCP server exited ({st}): {}", said.trim().replace('\n', " | ")));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("the DHCP server did not start within {DHCP_READY:?}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub(super) fn stop_dhcp(p: &mut DhcpProc) {
        if process::is_alive(p.id) {
            // SAFETY: kill(2) on the DHCP server we started, re-identified by start time just now.
            unsafe {
                libc::kill(p.id.pid as libc::pid_t, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + DHCP_STOP;
        loop {
            let gone = match p.child.as_mut() {
                Some(c) => !matches!(c.try_wait(), Ok(None)),
                None => !process::is_alive(p.id),
            };
            if gone {
                return;
            }
            if Instant::now() > deadline {
                if process::is_alive(p.id) {
                    // SAFETY: as above; it ignored SIGTERM.
                    unsafe {
                        libc::kill(p.id.pid as libc::pid_t, libc::SIGKILL);
                    }
                }
                if let Some(c) = p.child.as_mut() {
                    let _ = c.wait();
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
