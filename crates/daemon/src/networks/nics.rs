//! The MACs of VM NICs (allocated and claimed in the store: one holder per MAC) and the taps
//! of running VMs.

use super::*;

impl Networks {
    /// Gives every NIC of `def` a MAC held by this VM alone: a MAC in the definition is claimed
    /// (refused when another NIC holds it), a missing one is allocated. MACs of NICs the
    /// definition no longer has are freed. Returns whether `def` changed (MACs filled in).
    pub fn claim_nics(&self, vm: &str, def: &mut VmDefinition) -> Res<bool> {
        let mut changed = false;
        let mut seen = std::collections::BTreeSet::new();
        for (i, nic) in def.nics.iter().enumerate() {
            if let Some(m) = &nic.mac {
                let mac: Mac = m.parse().map_err(|e| format!("field `nic[{i}].mac`: {e}"))?;
                if !seen.insert(mac) {
                    return Err(format!("field `nic[{i}].mac`: {mac} is given to two NICs of this VM").into());
                }
            }
        }
        for (i, nic) in def.nics.iter_mut().enumerate() {
            if !self.lock().contains_key(&nic.network) {
                return Err(format!("field `nic[{i}].network`: no network named '{}'", nic.network).into());
            }
            let rec = |mac: String| NicRecord {
                mac,
                vm: vm.to_string(),
                index: i as u32,
                network: nic.network.clone(),
            };
            match &nic.mac {
                Some(m) => {
                    let mac: Mac = m.parse().map_err(|e| format!("field `nic[{i}].mac`: {e}"))?;
                    self.store
                        .claim_mac(&rec(mac.to_string()))
                        .map_err(|e| format!("field `nic[{i}].mac`: {e}"))?;
                    if mac.to_string() != *m {
                        nic.mac = Some(mac.to_string());
                        changed = true;
                    }
                }
                None => {
                    let mut tries = 0;
                    let mac = loop {
                        let mut r = [0u8; 3];
                        getrandom::getrandom(&mut r).map_err(|e| format!("no random source: {e}"))?;
                        let p = NIC_MAC_PREFIX;
                        let mac = Mac([p[0], p[1], p[2], r[0], r[1], r[2]]).to_string();
                        match self.store.claim_mac(&rec(mac.clone())) {
                            Ok(()) => break mac,
                            Err(StoreError::MacInUse { .. }) if tries < 64 => tries += 1,
                            Err(e) => return Err(e.to_string().into()),
                        }
                    };
                    nic.mac = Some(mac);
                    changed = true;
                }
            }
        }
        self.store.release_macs(vm, def.nics.len() as u32).map_err(|e| e.to_string())?;
        Ok(changed)
    }

    /// Frees every MAC of `vm` (it is unregistered).
    pub fn release_nics(&self, vm: &str) {
        if let Err(e) = self.store.release_macs(vm, 0) {
            tracing::error!(vm, error = %e, "cannot free the VM's MACs");
        }
    }

    /// What a new tap on `network` for the NIC with `mac` may send from: where vine gives the
    /// addresses, the one its guest holds a lease of (a guest that migrated here, or restarts,
    /// keeps it), else nothing but DHCP until it leases one; anything where vine does not.
    fn first_addresses(&self, network: &str, mac: [u8; 6]) -> netconf::portsec::Addresses {
        let (served, here) = match self.lock().get(network) {
            Some(n) => (n.spec.dhcp.is_some(), n.spec.l3_here()),
            None => (false, true),
        };
        if !served {
            return netconf::portsec::Addresses::Any;
        }
        let leases = if here {
            dhcp::leases::read_journal(&self.dir(network).join("leases")).unwrap_or_default()
        } else {
            let remote = self.remote_leases.lock().unwrap_or_else(|p| p.into_inner());
            remote.get(network).cloned().unwrap_or_default()
        };
        super::leased_to(&leases, mac, crate::since_epoch().as_secs())
    }

    fn guard_table(&self) -> MutexGuard<'_, BTreeMap<String, Guarded>> {
        self.guarded.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates the taps of `def`'s NICs on their bridges; returns them in NIC order.
    pub fn plug(&self, vm: &str, def: &VmDefinition) -> Res<Vec<vmm::qemu_args::NicEndpoint>> {
        let mut out = Vec::new();
        for (i, nic) in def.nics.iter().enumerate() {
            let bridge =
                self.bridge_of(&nic.network).map_err(|e| format!("field `nic[{i}].network`: {e}"))?;
            let tap = self.tap_name(vm, i);
            let mac = nic.mac.clone().ok_or_else(|| format!("field `nic[{i}].mac`: no MAC allocated"))?;
            let bytes: Mac = mac.parse().map_err(|e| format!("field `nic[{i}].mac`: {e}"))?;
            // Port security first: the tap passes nothing before its rules are in place.
            let addrs = self.first_addresses(&nic.network, bytes.0);
            let r = self
                .kernel
                .guard_port(&tap, bytes.0, addrs)
                .and_then(|()| self.kernel.ensure_tap(&tap, &bridge, self.tap_owner));
            if let Err(e) = r {
                self.unplug(vm);
                return Err(format!("NIC {i} on network '{}': {e}", nic.network).into());
            }
            self.guard_table().insert(tap.clone(), (nic.network.clone(), bytes.0, addrs));
            out.push(vmm::qemu_args::NicEndpoint { tap, mac });
        }
        Ok(out)
    }

    /// A container's NICs: veths LXC makes, whose host sides carry the names vine gives NIC
    /// ports (port security guards them before they exist, matching by name), in NIC order.
    pub fn veths(&self, vm: &str, def: &VmDefinition) -> Res<Vec<lxc::Veth>> {
        let mut out = Vec::new();
        for (i, nic) in def.nics.iter().enumerate() {
            let bridge =
                self.bridge_of(&nic.network).map_err(|e| format!("field `nic[{i}].network`: {e}"))?;
            let port = self.tap_name(vm, i);
            let mac = nic.mac.clone().ok_or_else(|| format!("field `nic[{i}].mac`: no MAC allocated"))?;
            let bytes: Mac = mac.parse().map_err(|e| format!("field `nic[{i}].mac`: {e}"))?;
            let addrs = self.first_addresses(&nic.network, bytes.0);
            if let Err(e) = self.kernel.guard_port(&port, bytes.0, addrs) {
                self.unplug(vm);
                return Err(format!("NIC {i} on network '{}': {e}", nic.network).into());
            }
            self.guard_table().insert(port.clone(), (nic.network.clone(), bytes.0, addrs));
            // LXC splits the hook's command line at spaces, with no quoting.
            let exe = self.exe.display().to_string();
            if exe.contains(char::is_whitespace) {
                return Err(format!(
                    "the vine binary's path {exe:?} has spaces, which LXC's hooks cannot take"
                )
                .into());
            }
            let plug = format!("{exe} network plug-port {bridge}");
            out.push(lxc::Veth { host_name: port, mac, plug });
        }
        Ok(out)
    }

    /// Plugs the taps of a running VM (found again after a daemon restart) back into their
    /// bridges: a bridge that was re-created meanwhile has lost them. QEMU holds the taps open,
    /// so they are only attached, never re-created.
    pub fn replug(&self, vm: &str, def: &VmDefinition) {
        for (i, nic) in def.nics.iter().enumerate() {
            let tap = self.tap_name(vm, i);
            let Ok(bridge) = self.bridge_of(&nic.network) else { continue };
            if !self.kernel.link_exists(&tap) {
                tracing::warn!(
                    vm,
                    tap,
                    "the tap of a running VM is gone; its NIC stays unplugged until the next start"
                );
                continue;
            }
            if let Err(e) = self.kernel.replug(&tap, &bridge) {
                tracing::warn!(vm, tap, error = %e, "cannot plug a running VM's tap into its bridge");
            }
            // Its rules outlived the daemon; the next look at the leases refreshes them.
            if let Some(mac) = nic.mac.as_deref().and_then(|m| m.parse::<Mac>().ok()) {
                let addrs = self.first_addresses(&nic.network, mac.0);
                self.guard_table().insert(tap.clone(), (nic.network.clone(), mac.0, addrs));
            }
        }
    }

    /// Deletes every tap of `vm` (its QEMU is gone).
    pub fn unplug(&self, vm: &str) {
        for i in 0..vmconfig::MAX_NICS {
            let tap = self.tap_name(vm, i);
            let guarded = self.guard_table().remove(&tap).is_some();
            let exists = self.kernel.link_exists(&tap);
            if exists {
                if let Err(e) = self.kernel.remove_tap(&tap) {
                    tracing::warn!(vm, tap, error = %e, "cannot delete a tap");
                }
            }
            // A container's port (a veth) is gone with its container by now; its rules are not.
            if exists || guarded {
                if let Err(e) = self.kernel.unguard_port(&tap) {
                    tracing::warn!(vm, tap, error = %e, "cannot delete a tap's port security rules");
                }
            }
        }
    }
}
