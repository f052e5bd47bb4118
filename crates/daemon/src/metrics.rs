//! Live metrics: every interval the sampler reads each running VM's CPU time from its cgroup and
//! keeps the utilisation over the interval (a fraction of the VM's vCPUs) for the last
//! [`HISTORY`] intervals. These are the Receiver's input for `vine policy dry-run` and the CPU
//! counters a metrics endpoint exports. Each VM's actor adds what its guest says of its memory
//! through the balloon ([`Memory`]), for the pool's resizer.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

/// Samples kept per VM (as the policy engine's history).
pub const HISTORY: usize = 30;

#[derive(Debug)]
struct Series {
    last_ns: u64,
    last_at: Instant,
    /// Utilisation per interval, newest first.
    history: VecDeque<f64>,
}

/// Per-VM utilisation histories.
#[derive(Debug, Default)]
pub struct Metrics {
    series: Mutex<BTreeMap<String, Series>>,
    memory: Mutex<BTreeMap<String, Memory>>,
}

/// A running guest's memory as its balloon device last told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Memory {
    /// What the balloon leaves the guest, bytes (QMP `query-balloon`).
    pub balloon: u64,
    /// The guest's own total memory, bytes (its balloon driver's statistics), if it said.
    pub guest_total: Option<u64>,
    /// What the guest says is available, bytes.
    pub guest_available: Option<u64>,
}

/// One VM's metrics as reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VmMetrics {
    /// The VM.
    pub name: String,
    /// vCPUs.
    pub vcpus: u32,
    /// Memory in bytes.
    pub memory: u64,
    /// CPU time since its start, ns.
    pub cpu_time_ns: u64,
    /// Utilisation per interval as a fraction of its vCPUs, newest first.
    pub history: Vec<f64>,
    /// CPU reservation, % of one host CPU.
    pub cpu_reserve: u32,
    /// Its own CPU cap, % of one host CPU.
    pub cpu_max: Option<u32>,
    /// The pool's resizer's cap while it runs.
    pub allocated_cpu_max: Option<u32>,
    /// What its balloon said of its memory (none: no balloon, or not yet).
    pub balloon: Option<Memory>,
}

impl Metrics {
    /// Records a reading of `name`'s CPU time (`vcpus` virtual CPUs); returns nothing until the
    /// second reading, which gives the first sample.
    pub fn record(&self, name: &str, vcpus: u32, cpu_ns: u64, at: Instant) {
        let mut all = self.series.lock().unwrap_or_else(|p| p.into_inner());
        match all.get_mut(name) {
            Some(s) if cpu_ns >= s.last_ns && at > s.last_at => {
                let wall = at.duration_since(s.last_at).as_nanos() as f64 * f64::from(vcpus.max(1));
                let u = ((cpu_ns - s.last_ns) as f64 / wall).clamp(0.0, 1.0);
                s.history.push_front(u);
                s.history.truncate(HISTORY);
                s.last_ns = cpu_ns;
                s.last_at = at;
            }
            _ => {
                // First reading, or the counter went back (the VM restarted): start over.
                all.insert(
                    name.to_string(),
                    Series { last_ns: cpu_ns, last_at: at, history: VecDeque::new() },
                );
            }
        }
    }

    /// Forgets VMs not in `running`.
    pub fn retain(&self, running: &[String]) {
        self.series.lock().unwrap_or_else(|p| p.into_inner()).retain(|k, _| running.contains(k));
        self.memory.lock().unwrap_or_else(|p| p.into_inner()).retain(|k, _| running.contains(k));
    }

    /// Records what `name`'s balloon said (`None`: forget it, the guest stopped).
    pub fn record_memory(&self, name: &str, m: Option<Memory>) {
        let mut all = self.memory.lock().unwrap_or_else(|p| p.into_inner());
        match m {
            Some(m) => all.insert(name.to_string(), m),
            None => all.remove(name),
        };
    }

    /// What `name`'s balloon said last.
    pub fn memory(&self, name: &str) -> Option<Memory> {
        self.memory.lock().unwrap_or_else(|p| p.into_inner()).get(name).copied()
    }

    /// `name`'s history, newest first.
    pub fn history(&self, name: &str) -> Vec<f64> {
        self.series
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .map(|s| s.history.iter().copied().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn utilisation_is_cpu_time_over_wall_time_and_vcpus() {
        let m = Metrics::default();
        let t0 = Instant::now();
        m.record("a", 2, 0, t0);
        assert!(m.history("a").is_empty());
        m.record("a", 2, 1_000_000_000, t0 + Duration::from_secs(1));
        assert_eq!(m.history("a"), vec![0.5]);
        m.record("a", 2, 1_500_000_000, t0 + Duration::from_secs(2));
        assert_eq!(m.history("a"), vec![0.25, 0.5]);
        // A restart (counter back to 0) starts the series again.
        m.record("a", 2, 10, t0 + Duration::from_secs(3));
        assert!(m.history("a").is_empty());
        for i in 1..=40u64 {
            m.record("a", 1, 10 + i * 100_000_000, t0 + Duration::from_secs(3 + i));
        }
        let h = m.history("a");
        assert_eq!(h.len(), HISTORY);
        assert!(h.iter().all(|u| (u - 0.1).abs() < 1e-9), "{h:?}");
        m.retain(&[]);
        assert!(m.history("a").is_empty());
    }
}
