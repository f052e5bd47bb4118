//! A network's DHCP settings: the server's own address, the subnet, the dynamic range, the
//! gateway and DNS servers handed out, the lease time and static reservations. Serialised as
//! JSON for the server process (`vine network dhcp-serve`); [`DhcpConfig::validate`] names the
//! field at fault.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Shortest lease vine hands out (seconds).
pub const MIN_LEASE_S: u32 = 60;
/// Longest lease (one year, seconds).
pub const MAX_LEASE_S: u32 = 365 * 24 * 3600;
/// Default lease time (one hour).
pub const DEFAULT_LEASE_S: u32 = 3600;
/// Most DNS servers per network.
pub const MAX_DNS: usize = 8;

/// An Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mac(pub [u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
    }
}

/// Why text is not a MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a MAC address like 52:54:00:12:34:56")]
pub struct BadMac(pub String);

impl FromStr for Mac {
    type Err = BadMac;
    fn from_str(s: &str) -> Result<Mac, BadMac> {
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 6 {
            return Err(BadMac(s.into()));
        }
        let mut m = [0u8; 6];
        for (i, p) in parts.iter().enumerate() {
            if p.len() != 2 {
                return Err(BadMac(s.into()));
            }
            m[i] = u8::from_str_radix(p, 16).map_err(|_| BadMac(s.into()))?;
        }
        Ok(Mac(m))
    }
}

impl Serialize for Mac {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Mac, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The DHCP settings of one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DhcpConfig {
    /// The server's address on the bridge (the server identifier, option 54).
    pub server: Ipv4Addr,
    /// The subnet's network address.
    pub network: Ipv4Addr,
    /// Prefix length of the subnet.
    pub prefix: u8,
    /// First address of the dynamic range.
    pub range_start: Ipv4Addr,
    /// Last address of the dynamic range.
    pub range_end: Ipv4Addr,
    /// Default gateway handed out (option 3), if any.
    #[serde(default)]
    pub router: Option<Ipv4Addr>,
    /// DNS servers handed out (option 6).
    #[serde(default)]
    pub dns: Vec<Ipv4Addr>,
    /// Lease time in seconds.
    pub lease_s: u32,
    /// Static reservations: this MAC always gets this address.
    #[serde(default)]
    pub reservations: BTreeMap<Mac, Ipv4Addr>,
}

/// A setting that is not allowed; names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {problem}")]
pub struct ConfigError {
    /// The field.
    pub field: String,
    /// What is wrong.
    pub problem: String,
}

fn bad(field: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError { field: field.into(), problem: problem.into() }
}

/// The netmask of a prefix length (0..=32).
pub fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    }
}

impl DhcpConfig {
    /// A small example network (10.99.0.0/24, range .100–.109), for tests and fuzzing.
    pub fn example() -> DhcpConfig {
        DhcpConfig {
            server: Ipv4Addr::new(10, 99, 0, 1),
            network: Ipv4Addr::new(10, 99, 0, 0),
            prefix: 24,
            range_start: Ipv4Addr::new(10, 99, 0, 100),
            range_end: Ipv4Addr::new(10, 99, 0, 109),
            router: Some(Ipv4Addr::new(10, 99, 0, 1)),
            dns: vec![Ipv4Addr::new(10, 99, 0, 1)],
            lease_s: DEFAULT_LEASE_S,
            reservations: BTreeMap::new(),
        }
    }

    /// The subnet mask.
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(mask(self.prefix))
    }

    /// The subnet's broadcast address.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !mask(self.prefix))
    }

    /// Whether `a` is a host address of the subnet (not the network or broadcast address).
    pub fn in_subnet(&self, a: Ipv4Addr) -> bool {
        let m = mask(self.prefix);
        u32::from(a) & m == u32::from(self.network) && a != self.network && a != self.broadcast()
    }

    /// Whether `a` is in the dynamic range.
    pub fn in_range(&self, a: Ipv4Addr) -> bool {
        (u32::from(self.range_start)..=u32::from(self.range_end)).contains(&u32::from(a))
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(8..=30).contains(&self.prefix) {
            return Err(bad("subnet", format!("prefix /{} must be /8 to /30", self.prefix)));
        }
        if u32::from(self.network) & !mask(self.prefix) != 0 {
            return Err(bad(
                "subnet",
                format!("{}/{} has host bits set (the network is {})", self.network, self.prefix, {
                    Ipv4Addr::from(u32::from(self.network) & mask(self.prefix))
                }),
            ));
        }
        if !self.in_subnet(self.server) {
            return Err(bad("server", format!("{} is not a host address of the subnet", self.server)));
        }
        for (f, a) in [("range", self.range_start), ("range", self.range_end)] {
            if !self.in_subnet(a) {
                return Err(bad(f, format!("{a} is not a host address of {}/{}", self.network, self.prefix)));
            }
        }
        if u32::from(self.range_start) > u32::from(self.range_end) {
            return Err(bad("range", format!("{} comes after {}", self.range_start, self.range_end)));
        }
        if self.in_range(self.server) {
            return Err(bad("range", format!("holds the server's own address {}", self.server)));
        }
        if let Some(r) = self.router {
            if !self.in_subnet(r) {
                return Err(bad("gateway", format!("{r} is not in the subnet")));
            }
            if self.in_range(r) {
                return Err(bad("gateway", format!("{r} is inside the dynamic range")));
            }
        }
        if self.dns.len() > MAX_DNS {
            return Err(bad("dns", format!("{} servers; at most {MAX_DNS}", self.dns.len())));
        }
        if !(MIN_LEASE_S..=MAX_LEASE_S).contains(&self.lease_s) {
            return Err(bad(
                "lease",
                format!("{} s must be {MIN_LEASE_S} s to {MAX_LEASE_S} s", self.lease_s),
            ));
        }
        let mut seen = BTreeMap::new();
        for (mac, a) in &self.reservations {
            let f = format!("reservation[{mac}]");
            if !self.in_subnet(*a) || *a == self.server || Some(*a) == self.router {
                return Err(bad(f, format!("{a} is not a free host address of the subnet")));
            }
            if let Some(other) = seen.insert(*a, *mac) {
                return Err(bad(f, format!("{a} is already reserved for {other}")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_parse_print_and_refuse_garbage() {
        let m: Mac = "52:54:0A:bc:00:01".parse().unwrap();
        assert_eq!(m.to_string(), "52:54:0a:bc:00:01");
        assert_eq!("52:54:00".parse::<Mac>().unwrap_err(), BadMac("52:54:00".into()));
        assert!("zz:54:00:00:00:00".parse::<Mac>().is_err());
    }

    #[test]
    fn the_example_is_valid_and_each_bad_field_is_named() {
        let c = DhcpConfig::example();
        c.validate().unwrap();
        assert_eq!(c.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(c.broadcast(), Ipv4Addr::new(10, 99, 0, 255));
        let mut x = c.clone();
        x.range_end = Ipv4Addr::new(10, 98, 0, 1);
        assert_eq!(x.validate().unwrap_err().field, "range");
        let mut x = c.clone();
        x.range_start = Ipv4Addr::new(10, 99, 0, 1);
        assert!(x.validate().unwrap_err().problem.contains("server's own address"));
        let mut x = c.clone();
        x.lease_s = 5;
        assert_eq!(x.validate().unwrap_err().field, "lease");
        let mut x = c.clone();
        x.network = Ipv4Addr::new(10, 99, 0, 3);
        assert_eq!(x.validate().unwrap_err().field, "subnet");
        let mut x = c.clone();
        x.reservations.insert(Mac([2, 0, 0, 0, 0, 1]), Ipv4Addr::new(10, 99, 0, 50));
        x.reservations.insert(Mac([2, 0, 0, 0, 0, 2]), Ipv4Addr::new(10, 99, 0, 50));
        let e = x.validate().unwrap_err();
        assert_eq!(e.field, "reservation[02:00:00:00:00:02]");
    }
}
