//! The lease table: who holds which address until when, and its journal file.
//!
//! The journal is a text file of one record per line, appended as bindings change:
//!
//! ```text
//! B <mac> <ip> <expires>     bound (ACKed) until <expires> (Unix seconds)
//! F <mac> <ip>               released by its client
//! D <mac> <ip> <until>       declined by <mac>: quarantined until <until>
//! ```
//!
//! A binding reaches the file (`write` + `fdatasync`) before the DHCPACK that announces it is
//! sent, so a server killed at any point restarts with every address it ever promised; offers are
//! kept in memory only (a client whose offer was lost is NAKed or re-offered, never given an
//! address someone else holds). On open the journal is replayed — a torn last line is ignored —
//! and rewritten compacted (temporary file, `fsync`, `rename`); it is compacted the same way
//! whenever renewals have made it much longer than the table.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Mac;

/// What a lease record means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaseState {
    /// Offered, not yet requested (memory only).
    Offered,
    /// Bound (ACKed).
    Bound,
    /// Given back by the client; the client gets it again first if it returns.
    Released,
    /// Declined (in use by someone vine does not know): not handed out until `expires`.
    Declined,
}

/// One address's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The address.
    pub ip: Ipv4Addr,
    /// The client (for a declined address: the client that declined it).
    pub mac: Mac,
    /// State.
    pub state: LeaseState,
    /// Unix seconds when it ends (bound, offered, declined).
    pub expires: u64,
}

impl Lease {
    /// Whether the record keeps the address from others at `now`.
    pub fn holds(&self, now: u64) -> bool {
        match self.state {
            LeaseState::Released => false,
            LeaseState::Offered | LeaseState::Bound | LeaseState::Declined => self.expires > now,
        }
    }
}

/// Errors of the journal.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Reading or writing the journal failed.
    #[error("lease journal {path}: {what}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was done.
        what: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

struct Journal {
    path: PathBuf,
    file: File,
    pending: Vec<u8>,
    /// Lines in the file.
    lines: usize,
}

/// The journal is rewritten compacted when it holds more than this many lines and more than
/// [`COMPACT_FACTOR`] times the records in the table (renewals append a line each).
pub const COMPACT_MIN_LINES: usize = 4096;
/// See [`COMPACT_MIN_LINES`].
pub const COMPACT_FACTOR: usize = 4;

/// Writes `text` to `path` atomically and durably (temporary file, sync, rename, sync the
/// directory).
fn replace_file(path: &Path, text: &str) -> Result<(), LeaseError> {
    let io = |what| move |source| LeaseError::Io { path: path.to_path_buf(), what, source };
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp).map_err(io("create"))?;
        f.write_all(text.as_bytes()).map_err(io("write"))?;
        f.sync_all().map_err(io("sync"))?;
    }
    std::fs::rename(&tmp, path).map_err(io("rename"))?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// The lease table of one network.
pub struct LeaseTable {
    by_ip: BTreeMap<Ipv4Addr, Lease>,
    by_mac: HashMap<Mac, Ipv4Addr>,
    journal: Option<Journal>,
}

fn parse_line(line: &str) -> Option<Lease> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let mac: Mac = f.get(1)?.parse().ok()?;
    let ip: Ipv4Addr = f.get(2)?.parse().ok()?;
    match (f.first()?, f.len()) {
        (&"B", 4) => Some(Lease { ip, mac, state: LeaseState::Bound, expires: f[3].parse().ok()? }),
        (&"F", 3) => Some(Lease { ip, mac, state: LeaseState::Released, expires: 0 }),
        (&"D", 4) => Some(Lease { ip, mac, state: LeaseState::Declined, expires: f[3].parse().ok()? }),
        _ => None,
    }
}

fn line(l: &Lease) -> Option<String> {
    match l.state {
        LeaseState::Bound => Some(format!("B {} {} {}\n", l.mac, l.ip, l.expires)),
        LeaseState::Released => Some(format!("F {} {}\n", l.mac, l.ip)),
        LeaseState::Declined => Some(format!("D {} {} {}\n", l.mac, l.ip, l.expires)),
        LeaseState::Offered => None,
    }
}

/// The leases recorded in a journal file (read-only; for `vine network leases`).
pub fn read_journal(path: &Path) -> Result<Vec<Lease>, LeaseError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => return Err(LeaseError::Io { path: path.into(), what: "read", source }),
    };
    let mut t = LeaseTable::in_memory();
    for l in text.lines().filter_map(parse_line) {
        t.put(l);
    }
    Ok(t.all().cloned().collect())
}

impl LeaseTable {
    /// A table kept in memory only (tests, fuzzing).
    pub fn in_memory() -> LeaseTable {
        LeaseTable { by_ip: BTreeMap::new(), by_mac: HashMap::new(), journal: None }
    }

    /// Opens (creating) the journal at `path`, replays it and rewrites it compacted.
    pub fn open(path: &Path) -> Result<LeaseTable, LeaseError> {
        let io = |what| move |source| LeaseError::Io { path: path.to_path_buf(), what, source };
        let mut t = LeaseTable::in_memory();
        for l in read_journal(path)? {
            t.put(l);
        }
        let (text, lines) = t.compacted();
        replace_file(path, &text)?;
        let file = File::options().append(true).open(path).map_err(io("open"))?;
        t.journal = Some(Journal { path: path.to_path_buf(), file, pending: Vec::new(), lines });
        Ok(t)
    }

    /// The journal's text for the table as it is (offers left out) and its line count.
    fn compacted(&self) -> (String, usize) {
        let mut text = String::new();
        let mut n = 0;
        for l in self.by_ip.values() {
            if let Some(x) = line(l) {
                text.push_str(&x);
                n += 1;
            }
        }
        (text, n)
    }

    fn put(&mut self, l: Lease) {
        if let Some(old) = self.by_ip.get(&l.ip) {
            if old.mac != l.mac && self.by_mac.get(&old.mac) == Some(&l.ip) {
                self.by_mac.remove(&old.mac);
            }
        }
        if l.state != LeaseState::Declined {
            if let Some(prev) = self.by_mac.insert(l.mac, l.ip) {
                if prev != l.ip {
                    // A client holds one address: its previous record goes.
                    if self
                        .by_ip
                        .get(&prev)
                        .is_some_and(|p| p.mac == l.mac && p.state != LeaseState::Declined)
                    {
                        self.by_ip.remove(&prev);
                    }
                }
            }
        } else if self.by_mac.get(&l.mac) == Some(&l.ip) {
            self.by_mac.remove(&l.mac);
        }
        self.by_ip.insert(l.ip, l);
    }

    /// Records a change (journalled unless it is an offer).
    pub fn record(&mut self, l: Lease) {
        if let (Some(j), Some(text)) = (self.journal.as_mut(), line(&l)) {
            j.pending.extend_from_slice(text.as_bytes());
        }
        self.put(l);
    }

    /// Writes and syncs the changes recorded since the last commit; replies that announce them
    /// may be sent once this returns.
    pub fn commit(&mut self) -> Result<(), LeaseError> {
        let Some(j) = self.journal.as_mut() else { return Ok(()) };
        if j.pending.is_empty() {
            return Ok(());
        }
        let path = j.path.clone();
        let io = |what| move |source| LeaseError::Io { path, what, source };
        j.file.write_all(&j.pending).map_err(io("append"))?;
        j.file.sync_data().map_err(|source| LeaseError::Io { path: j.path.clone(), what: "sync", source })?;
        j.lines += j.pending.iter().filter(|b| **b == b'\n').count();
        j.pending.clear();
        if j.lines > COMPACT_MIN_LINES.max(COMPACT_FACTOR * self.by_ip.len()) {
            self.compact()?;
        }
        Ok(())
    }

    /// Rewrites the journal with one line per record (atomically: a crash leaves the old
    /// journal or the new one, both complete).
    pub fn compact(&mut self) -> Result<(), LeaseError> {
        let (text, lines) = self.compacted();
        let Some(j) = self.journal.as_mut() else { return Ok(()) };
        replace_file(&j.path, &text)?;
        j.file = File::options().append(true).open(&j.path).map_err(|source| LeaseError::Io {
            path: j.path.clone(),
            what: "open",
            source,
        })?;
        j.lines = lines;
        Ok(())
    }

    /// Drops an offer (the client took another server's): the address was never used.
    pub fn forget_offer(&mut self, ip: Ipv4Addr) {
        if let Some(l) = self.by_ip.get(&ip) {
            if l.state == LeaseState::Offered {
                if self.by_mac.get(&l.mac) == Some(&ip) {
                    self.by_mac.remove(&l.mac);
                }
                self.by_ip.remove(&ip);
            }
        }
    }

    /// Whether changes wait for [`LeaseTable::commit`].
    pub fn has_pending(&self) -> bool {
        self.journal.as_ref().is_some_and(|j| !j.pending.is_empty())
    }

    /// The record of an address.
    pub fn get(&self, ip: Ipv4Addr) -> Option<&Lease> {
        self.by_ip.get(&ip)
    }

    /// The (non-declined) record of a client.
    pub fn of_mac(&self, mac: Mac) -> Option<&Lease> {
        self.by_mac.get(&mac).and_then(|ip| self.by_ip.get(ip)).filter(|l| l.mac == mac)
    }

    /// Addresses `mac` has declined that are still quarantined at `now`.
    pub fn declined_by(&self, mac: Mac, now: u64) -> usize {
        self.by_ip
            .values()
            .filter(|l| l.state == LeaseState::Declined && l.mac == mac && l.holds(now))
            .count()
    }

    /// Every record, by address.
    pub fn all(&self) -> impl Iterator<Item = &Lease> {
        self.by_ip.values()
    }

    /// Whether `ip` is free for `mac` at `now`: no record, or one of `mac`'s own (not declined),
    /// or one that no longer holds it.
    pub fn free_for(&self, ip: Ipv4Addr, mac: Mac, now: u64) -> bool {
        match self.by_ip.get(&ip) {
            None => true,
            Some(l) if l.mac == mac && l.state != LeaseState::Declined => true,
            Some(l) => !l.holds(now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(n: u8) -> Mac {
        Mac([2, 0, 0, 0, 0, n])
    }
    fn ip(n: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 0, n)
    }

    #[test]
    fn bindings_survive_reopening_and_a_torn_last_line_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("leases");
        let mut t = LeaseTable::open(&p).unwrap();
        t.record(Lease { ip: ip(5), mac: mac(1), state: LeaseState::Offered, expires: 100 });
        t.record(Lease { ip: ip(6), mac: mac(2), state: LeaseState::Bound, expires: 5000 });
        t.record(Lease { ip: ip(7), mac: mac(3), state: LeaseState::Bound, expires: 5000 });
        t.record(Lease { ip: ip(7), mac: mac(3), state: LeaseState::Released, expires: 0 });
        t.record(Lease { ip: ip(8), mac: mac(3), state: LeaseState::Declined, expires: 900 });
        t.commit().unwrap();
        drop(t);
        let mut f = File::options().append(true).open(&p).unwrap();
        f.write_all(b"B 02:00:00:00:00:09 10.0.0.9").unwrap(); // torn: no expiry
        drop(f);
        let t = LeaseTable::open(&p).unwrap();
        assert_eq!(t.get(ip(5)), None, "offers are not journalled");
        assert_eq!(t.get(ip(6)).unwrap().state, LeaseState::Bound);
        assert_eq!(t.get(ip(7)).unwrap().state, LeaseState::Released);
        assert_eq!(t.get(ip(8)).unwrap().state, LeaseState::Declined);
        assert_eq!(t.get(ip(9)), None);
        assert_eq!(t.of_mac(mac(2)).unwrap().ip, ip(6));
        assert_eq!(t.declined_by(mac(3), 100), 1);
        // Compacted: one line per address.
        assert_eq!(std::fs::read_to_string(&p).unwrap().lines().count(), 3);
    }

    #[test]
    fn renewals_do_not_grow_the_journal_without_bound() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("leases");
        let mut t = LeaseTable::open(&p).unwrap();
        for round in 0..(COMPACT_MIN_LINES as u64 + 500) {
            t.record(Lease { ip: ip(6), mac: mac(2), state: LeaseState::Bound, expires: 5000 + round });
            t.commit().unwrap();
        }
        let lines = std::fs::read_to_string(&p).unwrap().lines().count();
        assert!(lines <= COMPACT_MIN_LINES, "{lines} lines for one lease");
        drop(t);
        let t = LeaseTable::open(&p).unwrap();
        assert_eq!(t.get(ip(6)).unwrap().expires, 5000 + COMPACT_MIN_LINES as u64 + 499);
    }

    #[test]
    fn a_client_holds_one_address_and_moving_frees_the_old_one() {
        let mut t = LeaseTable::in_memory();
        t.record(Lease { ip: ip(5), mac: mac(1), state: LeaseState::Offered, expires: 100 });
        t.record(Lease { ip: ip(6), mac: mac(1), state: LeaseState::Bound, expires: 100 });
        assert_eq!(t.get(ip(5)), None);
        assert!(t.free_for(ip(5), mac(2), 0));
        assert!(!t.free_for(ip(6), mac(2), 50));
        assert!(t.free_for(ip(6), mac(2), 100), "an expired lease frees the address");
        assert!(t.free_for(ip(6), mac(1), 50));
    }
}
