//! Login throttling: failed logins slow down further tries per user *and* address, per address
//! (one address guessing many users) and per user (many addresses guessing one user), without ever
//! locking a user out: a right password from an address that has not been failing is checked as
//! usual, so an attacker cannot deny a user their own login.
//!
//! Each key has a count of recent failures. Past its free allowance, a key must wait after its
//! last failure before the next try is even checked: 1 s, doubling with each further failure, at
//! most [`MAX_DELAY`]. A try during the wait is answered at once (429) without a password check,
//! so guessing costs the attacker time and the host no hashing. Failures are forgotten
//! [`WINDOW`] after the last one; a success clears its user-and-address key. Pure: the time is
//! an argument, so the rules are unit-tested.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

/// Failures of one user from one address before tries are slowed.
pub const FREE_PAIR: u32 = 5;
/// Failures from one address (any user) before its tries are slowed.
pub const FREE_ADDRESS: u32 = 20;
/// Failures of one user (any address) before every failing address is slowed from its first
/// failure on.
pub const FREE_USER: u32 = 50;
/// The longest wait between two checked tries.
pub const MAX_DELAY: Duration = Duration::from_secs(15 * 60);
/// Failures are forgotten this long after a key's last one.
pub const WINDOW: Duration = Duration::from_secs(30 * 60);
/// Most keys kept; past it the stalest are dropped (memory stays bounded under any flood).
pub const MAX_KEYS: usize = 100_000;

#[derive(Debug, Clone, Copy, Default)]
struct Record {
    failures: u32,
    last_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Pair(String, IpAddr),
    Address(IpAddr),
    User(String),
}

/// Why a try is not checked now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Throttled {
    /// Seconds until the next try is checked.
    pub retry_after_s: u64,
    /// What is slowed: `user 'ann' from 10.0.0.1`, `address 10.0.0.1`.
    pub what: String,
}

/// The failure records.
#[derive(Debug, Default)]
pub struct Throttle {
    records: HashMap<Key, Record>,
}

/// The wait after `failures` failures with `free` of them allowed.
fn delay(failures: u32, free: u32) -> Duration {
    if failures < free {
        return Duration::ZERO;
    }
    let doublings = (failures - free).min(20);
    (Duration::from_secs(1) * 2u32.pow(doublings)).min(MAX_DELAY)
}

impl Throttle {
    fn get(&self, k: &Key, now_ms: u64) -> Record {
        self.records
            .get(k)
            .filter(|r| now_ms.saturating_sub(r.last_ms) < WINDOW.as_millis() as u64)
            .copied()
            .unwrap_or_default()
    }

    /// Whether a login of `user` from `addr` may be checked at `now_ms`.
    pub fn check(&self, user: &str, addr: IpAddr, now_ms: u64) -> Result<(), Throttled> {
        let pair = self.get(&Key::Pair(user.to_string(), addr), now_ms);
        let address = self.get(&Key::Address(addr), now_ms);
        let by_user = self.get(&Key::User(user.to_string()), now_ms);
        // A user under attack slows every address that fails for them, from its first failure.
        let pair_free = if by_user.failures >= FREE_USER { 1 } else { FREE_PAIR };
        let rules = [
            (pair, delay(pair.failures, pair_free), format!("user '{user}' from {addr}")),
            (address, delay(address.failures, FREE_ADDRESS), format!("address {addr}")),
        ];
        for (rec, wait, what) in rules {
            let until = rec.last_ms + wait.as_millis() as u64;
            if rec.failures > 0 && now_ms < until {
                return Err(Throttled { retry_after_s: (until - now_ms).div_ceil(1000), what });
            }
        }
        Ok(())
    }

    /// Records a failed (checked) try. Returns whether this failure starts slowing a key down
    /// (worth one log line and event rather than one per try).
    pub fn failed(&mut self, user: &str, addr: IpAddr, now_ms: u64) -> bool {
        if self.records.len() + 3 > MAX_KEYS {
            self.prune(now_ms);
        }
        let mut starts = false;
        for (k, free) in [
            (Key::Pair(user.to_string(), addr), FREE_PAIR),
            (Key::Address(addr), FREE_ADDRESS),
            (Key::User(user.to_string()), FREE_USER),
        ] {
            let mut r = self.get(&k, now_ms);
            r.failures = r.failures.saturating_add(1);
            r.last_ms = now_ms;
            starts |= r.failures == free;
            self.records.insert(k, r);
        }
        starts
    }

    /// A successful login: this user's failures from this address are forgotten.
    pub fn succeeded(&mut self, user: &str, addr: IpAddr) {
        self.records.remove(&Key::Pair(user.to_string(), addr));
    }

    /// Drops expired records, then the stalest until a tenth of the room is free.
    fn prune(&mut self, now_ms: u64) {
        let window = WINDOW.as_millis() as u64;
        self.records.retain(|_, r| now_ms.saturating_sub(r.last_ms) < window);
        if self.records.len() >= MAX_KEYS {
            let mut ages: Vec<u64> = self.records.values().map(|r| r.last_ms).collect();
            ages.sort_unstable();
            let cut = ages[MAX_KEYS / 10];
            self.records.retain(|_, r| r.last_ms > cut);
        }
    }

    /// Keys held (for tests).
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn a_pair_is_slowed_after_its_free_failures_and_doubles() {
        let mut t = Throttle::default();
        let mut now = 1_000_000;
        for _ in 0..FREE_PAIR - 1 {
            t.check("ann", A, now).unwrap();
            assert!(!t.failed("ann", A, now));
        }
        assert!(t.failed("ann", A, now), "the fifth failure starts the slowing");
        let e = t.check("ann", A, now).unwrap_err();
        assert_eq!(e, Throttled { retry_after_s: 1, what: "user 'ann' from 10.0.0.1".into() });
        now += 1000;
        t.check("ann", A, now).unwrap();
        t.failed("ann", A, now);
        assert_eq!(t.check("ann", A, now + 1).unwrap_err().retry_after_s, 2);
        now += 2000;
        t.failed("ann", A, now);
        assert_eq!(t.check("ann", A, now).unwrap_err().retry_after_s, 4);
    }

    #[test]
    fn another_address_of_the_same_user_is_not_locked_out() {
        let mut t = Throttle::default();
        for i in 0..1000 {
            let now = 1_000_000 + i * 10;
            if t.check("ann", A, now).is_ok() {
                t.failed("ann", A, now);
            }
        }
        assert!(t.check("ann", A, 1_010_000).is_err());
        t.check("ann", B, 1_010_000).unwrap();
        t.succeeded("ann", B);
        t.check("ann", B, 1_010_000).unwrap();
    }

    #[test]
    fn one_address_guessing_many_users_is_slowed() {
        let mut t = Throttle::default();
        for i in 0..FREE_ADDRESS {
            t.failed(&format!("u{i}"), A, 5000);
        }
        let e = t.check("someone-new", A, 5000).unwrap_err();
        assert_eq!(e.what, "address 10.0.0.1");
        t.check("someone-new", B, 5000).unwrap();
    }

    #[test]
    fn a_user_under_attack_from_many_addresses_slows_each_failing_address_at_once() {
        let mut t = Throttle::default();
        for i in 0..FREE_USER {
            let addr = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_1000 + i));
            t.failed("ann", addr, 5000);
        }
        let fresh = IpAddr::V4(std::net::Ipv4Addr::new(10, 9, 9, 9));
        t.check("ann", fresh, 5000).unwrap();
        t.failed("ann", fresh, 5000);
        assert!(t.check("ann", fresh, 5000).is_err(), "one failure is enough while the user is attacked");
        t.check("ann", B, 5000).unwrap();
    }

    #[test]
    fn failures_are_forgotten_after_the_window_and_delays_stay_bounded() {
        let mut t = Throttle::default();
        for _ in 0..200 {
            t.failed("ann", A, 1000);
        }
        let e = t.check("ann", A, 1000).unwrap_err();
        assert_eq!(e.retry_after_s, MAX_DELAY.as_secs());
        t.check("ann", A, 1000 + WINDOW.as_millis() as u64).unwrap();
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_keys() {
        let mut t = Throttle::default();
        for i in 0..(MAX_KEYS as u32 / 3 + 10) {
            let addr = IpAddr::V4(std::net::Ipv4Addr::from(i));
            t.failed(&format!("u{i}"), addr, u64::from(i));
        }
        assert!(t.len() <= MAX_KEYS, "{}", t.len());
    }
}
