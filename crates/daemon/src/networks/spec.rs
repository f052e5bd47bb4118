//! A new network's settings from a create request: defaults, the subnet, range, gateway and DNS,
//! overlap with other networks, a bridged network's uplink; every error names the field.

use super::*;

/// Default subnets are 10.77.N.0/24, the first N no other network uses.
const DEFAULT_SUBNET: [u8; 2] = [10, 77];
/// Most addresses in a default DHCP range (from .100, or .2 in subnets smaller than a /24).
const MAX_DEFAULT_RANGE: u32 = 4096;

fn parse_subnet(s: &str) -> Res<(Ipv4Addr, u8)> {
    let (a, p) = s.split_once('/').ok_or_else(|| format!("field `subnet`: {s:?} is not like 10.1.2.0/24"))?;
    let a: Ipv4Addr = a.parse().map_err(|_| format!("field `subnet`: {a:?} is not an IPv4 address"))?;
    let p: u8 = p.parse().map_err(|_| format!("field `subnet`: {p:?} is not a prefix length"))?;
    Ok((a, p))
}

pub(super) fn ip(field: &str, s: &str) -> Res<Ipv4Addr> {
    s.trim().parse().map_err(|_| format!("field `{field}`: {s:?} is not an IPv4 address").into())
}

fn overlaps(a: (Ipv4Addr, u8), b: (Ipv4Addr, u8)) -> bool {
    let p = a.1.min(b.1);
    let m = dhcp::config::mask(p);
    u32::from(a.0) & m == u32::from(b.0) & m
}

/// Checks a network name.
pub fn validate_name(name: &str) -> Res<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NETWORK_NAME
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "field `name`: {name:?} must be 1 to {MAX_NETWORK_NAME} letters, digits, '-', '_' or '.', starting with a letter or digit"
        ).into())
    }
}

impl Networks {
    pub(super) fn spec_for(&self, a: &NetworkCreate, nets: &BTreeMap<String, Net>) -> Res<NetworkSpec> {
        validate_name(&a.name)?;
        if nets.contains_key(&a.name) {
            return Err(format!("a network named '{}' already exists", a.name).into());
        }
        let (bridge, bridge_mac) = self.bridge_name(&a.name);
        if a.kind == Kind::Bridged {
            let up =
                a.uplink.clone().ok_or("field `uplink`: a bridged network needs the host NIC to bridge")?;
            netconf::netlink::check_name(&up).map_err(|e| format!("field `uplink`: {e}"))?;
            if !self.kernel.link_exists(&up) {
                return Err(format!("field `uplink`: the host has no interface {up:?}").into());
            }
            let held = self.kernel.ipv4_addresses(&up);
            if !held.is_empty() {
                let list = held.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ");
                return Err(format!(
                    "field `uplink`: {up} has the host's address(es) {list}; a bridge port cannot keep them, so \
                     bridging it would cut the host off that network (move them to another NIC first)"
                ).into());
            }
            if nets.values().any(|n| n.spec.uplink.as_deref() == Some(&up)) {
                return Err(format!("field `uplink`: {up} is already bridged by another network").into());
            }
            if a.subnet.is_some() || a.range.is_some() || a.gateway.is_some() {
                return Err("field `subnet`: a bridged network takes its addresses from the uplink's LAN; vine serves no DHCP on it".into());
            }
            return Ok(NetworkSpec {
                name: a.name.clone(),
                kind: a.kind,
                bridge,
                bridge_mac,
                address: None,
                dhcp: None,
                uplink: Some(up),
                span: None,
            });
        }
        if a.uplink.is_some() {
            return Err(
                format!("field `uplink`: only bridged networks have one, not {}", a.kind.name()).into()
            );
        }
        let taken: Vec<(Ipv4Addr, u8)> = nets.values().filter_map(|n| n.spec.address).collect();
        let (network, prefix) = match &a.subnet {
            Some(s) => parse_subnet(s)?,
            None => (1..=254u8)
                .map(|n| (Ipv4Addr::new(DEFAULT_SUBNET[0], DEFAULT_SUBNET[1], n, 0), 24))
                .find(|s| !taken.iter().any(|t| overlaps(*s, *t)))
                .ok_or("field `subnet`: no free default subnet; give one")?,
        };
        if let Some(t) = taken.iter().find(|t| overlaps((network, prefix), **t)) {
            let other = nets.values().find(|n| n.spec.address == Some(*t)).map(|n| n.spec.name.clone());
            return Err(format!(
                "field `subnet`: {network}/{prefix} overlaps network '{}' ({}/{})",
                other.unwrap_or_default(),
                t.0,
                t.1
            )
            .into());
        }
        let m = dhcp::config::mask(prefix.min(32));
        let base = u32::from(network) & m;
        let host = |n: u32| Ipv4Addr::from(base + n);
        let last = (base | !m).saturating_sub(1);
        let server = host(1);
        let (range_start, range_end) = match &a.range {
            Some(r) => {
                let (x, y) =
                    r.split_once('-').ok_or_else(|| format!("field `range`: {r:?} is not like A-B"))?;
                (ip("range", x)?, ip("range", y)?)
            }
            None => {
                let start = if !m >= 255 { 100 } else { 2 };
                (host(start), Ipv4Addr::from(last.min(base + start + MAX_DEFAULT_RANGE - 1)))
            }
        };
        let router = match &a.gateway {
            Some(g) => Some(ip("gateway", g)?),
            None if a.kind == Kind::Internal => None,
            None => Some(server),
        };
        let dns = a.dns.iter().map(|d| ip("dns", d)).collect::<Res<Vec<_>>>()?;
        let cfg = DhcpConfig {
            server,
            network,
            prefix,
            range_start,
            range_end,
            router,
            dns,
            lease_s: a.lease_s.unwrap_or(DEFAULT_LEASE_S),
            reservations: BTreeMap::new(),
        };
        cfg.validate().map_err(|e| e.to_string())?;
        Ok(NetworkSpec {
            name: a.name.clone(),
            kind: a.kind,
            bridge,
            bridge_mac,
            address: Some((server, prefix)),
            dhcp: (!a.no_dhcp).then_some(cfg),
            uplink: None,
            span: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_overlap_by_the_shorter_prefix() {
        let a = (Ipv4Addr::new(10, 1, 0, 0), 16);
        assert!(overlaps(a, (Ipv4Addr::new(10, 1, 5, 0), 24)));
        assert!(!overlaps(a, (Ipv4Addr::new(10, 2, 0, 0), 24)));
    }

    #[test]
    fn network_names_are_checked() {
        validate_name("lan-1").unwrap();
        assert!(validate_name("-x").unwrap_err().to_string().contains("field `name`"));
        assert!(validate_name(&"x".repeat(33)).is_err());
    }
}
