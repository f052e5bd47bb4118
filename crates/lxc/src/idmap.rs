//! Containers' id ranges. vine registers one range for root in `/etc/subuid` and `/etc/subgid`
//! (shadow then hands no user those ids, and `newuidmap` would map only registered ranges; LXC's
//! commands run without it, see [`crate::cmd`]) and gives each container a slot of it:
//! slot `k` maps container ids 0–65535 onto host ids `IDMAP_START + k × 65536`, so no two
//! containers share a host id and none is a host user.

use std::path::Path;

/// Ids each container has (0–65535 inside).
pub const IDS_PER_CONTAINER: u32 = 65_536;
/// The first host id of vine's range (above the ranges `useradd` and Incus hand out).
pub const IDMAP_START: u32 = 2_000_000_000;
/// Containers one host can hold at once (the range stays below 2³¹).
pub const SLOTS: u32 = 2_000;

/// The first host id of slot `slot`.
pub fn base_of(slot: u32) -> u32 {
    IDMAP_START + slot * IDS_PER_CONTAINER
}

/// The slot whose first host id is `base`, if it is one.
pub fn slot_of(base: u32) -> Option<u32> {
    let off = base.checked_sub(IDMAP_START)?;
    (off % IDS_PER_CONTAINER == 0 && off / IDS_PER_CONTAINER < SLOTS).then_some(off / IDS_PER_CONTAINER)
}

/// The lowest slot not in `used`.
pub fn free_slot(used: impl IntoIterator<Item = u32>) -> Option<u32> {
    let used: std::collections::BTreeSet<u32> = used.into_iter().collect();
    (0..SLOTS).find(|s| !used.contains(s))
}

/// `text` (a subuid/subgid file) with the line `user:start:count` added, or `None` when it
/// already has it.
pub fn with_range(text: &str, user: &str, start: u32, count: u32) -> Option<String> {
    let want = format!("{user}:{start}:{count}");
    if text.lines().any(|l| l.trim() == want) {
        return None;
    }
    let mut out = text.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&want);
    out.push('\n');
    Some(out)
}

/// Registers vine's range for root in `/etc/subuid` and `/etc/subgid` (under `etc`), once.
pub fn ensure_registered(etc: &Path) -> std::io::Result<()> {
    for file in ["subuid", "subgid"] {
        let path = etc.join(file);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        if let Some(new) = with_range(&text, "root", IDMAP_START, SLOTS * IDS_PER_CONTAINER) {
            let tmp = path.with_extension("vine-tmp");
            std::fs::write(&tmp, new)?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, &path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_disjoint_and_found_again_from_their_base() {
        assert_eq!(base_of(0), IDMAP_START);
        assert_eq!(base_of(1) - base_of(0), IDS_PER_CONTAINER);
        assert!(u64::from(base_of(SLOTS - 1)) + u64::from(IDS_PER_CONTAINER) <= 1 << 31);
        for s in [0, 1, 17, SLOTS - 1] {
            assert_eq!(slot_of(base_of(s)), Some(s));
        }
        assert_eq!(slot_of(base_of(3) + 1), None);
        assert_eq!(slot_of(1000), None);
        assert_eq!(free_slot([0, 1, 3]), Some(2));
        assert_eq!(free_slot(0..SLOTS), None);
    }

    #[test]
    fn the_range_is_added_once() {
        let t = with_range("ann:100000:65536", "root", 5, 10).unwrap();
        assert_eq!(t, "ann:100000:65536\nroot:5:10\n");
        assert_eq!(with_range(&t, "root", 5, 10), None);
        let dir = tempfile::tempdir().unwrap();
        ensure_registered(dir.path()).unwrap();
        ensure_registered(dir.path()).unwrap();
        let t = std::fs::read_to_string(dir.path().join("subgid")).unwrap();
        assert_eq!(t, format!("root:{IDMAP_START}:{}\n", SLOTS * IDS_PER_CONTAINER));
    }
}
