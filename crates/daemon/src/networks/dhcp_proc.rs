//! The DHCP server process of a network, a [`Helper`]: started detached (it outlives the
//! daemon), recorded in `dhcp.pid` (pid and start time), adopted by the next daemon, stopped
//! with SIGTERM (SIGKILL after a grace period).

use super::*;
use crate::helpers::Helper;

/// How long a new DHCP server gets to bind its socket.
const DHCP_READY: Duration = Duration::from_secs(15);
/// How long a DHCP server gets to exit after SIGTERM.
const DHCP_STOP: Duration = Duration::from_secs(5);

impl Networks {
    pub(super) fn adopt_dhcp(&self, name: &str) -> Option<DhcpProc> {
        let text = std::fs::read_to_string(self.dir(name).join("dhcp.pid")).ok()?;
        let mut f = text.split_whitespace();
        let id = Identity { pid: f.next()?.parse().ok()?, start_ticks: f.next()?.parse().ok()? };
        Helper::adopt(id)
    }

    pub(super) fn start_dhcp(&self, spec: &NetworkSpec) -> Res<DhcpProc> {
        let cfg = spec.dhcp.as_ref().expect("only networks with DHCP");
        let dir = self.dir(&spec.name);
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let conf = dir.join("dhcp.json");
        let text = serde_json::to_string_pretty(cfg).expect("configs serialise");
        crate::actor::write_atomic(&conf, &text)
            .map_err(|e| format!("cannot write {}: {e}", conf.display()))?;
        let mut cmd = Command::new(&self.exe);
        cmd.args(["network", "dhcp-serve", "--interface", &spec.bridge, "--config"])
            .arg(&conf)
            .arg("--leases")
            .arg(dir.join("leases"));
        let (p, _) = Helper::start(
            cmd,
            &dir.join("dhcp.log"),
            DHCP_READY,
            |_| {},
            |said| said.contains("vine dhcp: ready"),
        )
        .map_err(|e| format!("the DHCP server {e}"))?;
        std::fs::write(dir.join("dhcp.pid"), format!("{} {}\n", p.id.pid, p.id.start_ticks))
            .map_err(|e| format!("cannot record the DHCP server: {e}"))?;
        Ok(p)
    }

    pub(super) fn stop_dhcp(p: &mut DhcpProc) {
        if p.stop(DHCP_STOP) {
            tracing::warn!(pid = p.id.pid, "the DHCP server did not stop after SIGTERM; it was killed");
        }
    }
}
