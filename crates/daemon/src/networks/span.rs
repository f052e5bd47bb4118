//! This host's part of the networks that span the pool: a member's settings from the home's,
//! the VXLAN flooding list, the leases a home publishes and the ones a member follows.

use super::*;

impl Networks {
    /// This host's settings for the spanning network `name` whose home made it with
    /// `settings` (the home's own [`NetworkSpec`], as JSON): the same kind, subnet and DHCP
    /// settings, this host's own bridge, and a [`Span`] saying where the home is.
    pub fn member_spec(
        &self,
        name: &str,
        settings: &Value,
        vni: u32,
        home: &str,
        local: Ipv4Addr,
    ) -> Res<NetworkSpec> {
        let theirs: NetworkSpec = serde_json::from_value(settings.clone())
            .map_err(|e| format!("network '{name}': its record in the pool is unreadable: {e}"))?;
        if theirs.name != name {
            return Err(format!("network '{name}': its record in the pool names '{}'", theirs.name).into());
        }
        if theirs.kind == Kind::Bridged {
            return Err(format!("network '{name}': a bridged network cannot span the pool").into());
        }
        validate_name(name)?;
        let (bridge, bridge_mac) = self.bridge_name(name);
        Ok(NetworkSpec {
            name: name.to_string(),
            kind: theirs.kind,
            bridge,
            bridge_mac,
            address: theirs.address,
            dhcp: theirs.dhcp,
            uplink: None,
            span: Some(Span { vni, home: home.to_string(), here: false, local }),
        })
    }

    /// The networks here that span the pool: name, span and bridge.
    pub fn spans(&self) -> Vec<(String, Span, String)> {
        self.lock()
            .values()
            .filter_map(|n| n.spec.span.clone().map(|s| (n.spec.name.clone(), s, n.spec.bridge.clone())))
            .collect()
    }

    /// Makes `remotes` the hosts the broadcasts of spanning network `name` go to; returns what
    /// changed.
    pub fn flood(&self, name: &str, remotes: &[Ipv4Addr]) -> Res<Vec<String>> {
        let bridge = self.bridge_of(name)?;
        self.kernel.flood_to(&bridge, remotes).map_err(|e| format!("network '{name}': {e}").into())
    }

    /// The leases of the spanning networks whose home this host is, as they are to be published.
    pub fn home_leases(&self) -> Vec<(String, Value)> {
        let homes: Vec<String> = self
            .lock()
            .values()
            .filter(|n| n.spec.span.as_ref().is_some_and(|s| s.here) && n.spec.dhcp.is_some())
            .map(|n| n.spec.name.clone())
            .collect();
        homes
            .into_iter()
            .filter_map(|name| {
                let l = dhcp::leases::read_journal(&self.dir(&name).join("leases")).ok()?;
                Some((name, serde_json::to_value(&l).expect("leases serialise")))
            })
            .collect()
    }

    /// Takes the leases the homes of spanning networks published (`network → leases`), for the
    /// networks here whose home is another host; the next look at the leases applies them.
    pub fn set_remote_leases(&self, published: Vec<(String, Value)>) {
        let away: std::collections::BTreeSet<String> = self
            .lock()
            .values()
            .filter(|n| n.spec.span.as_ref().is_some_and(|s| !s.here))
            .map(|n| n.spec.name.clone())
            .collect();
        let mut map = BTreeMap::new();
        for (name, v) in published {
            if !away.contains(&name) {
                continue;
            }
            match serde_json::from_value::<Vec<dhcp::leases::Lease>>(v) {
                Ok(l) => {
                    map.insert(name, l);
                }
                Err(e) => tracing::warn!(network = name, error = %e, "unreadable published leases"),
            }
        }
        *self.remote_leases.lock().unwrap_or_else(|p| p.into_inner()) = map;
    }

    /// Whether `name` is a network here that spans the pool.
    pub fn spans_pool(&self, name: &str) -> bool {
        self.lock().get(name).is_some_and(|n| n.spec.span.is_some())
    }

    /// The kind of network `name`.
    pub fn kind_of(&self, name: &str) -> Option<Kind> {
        self.lock().get(name).map(|n| n.spec.kind)
    }
}
