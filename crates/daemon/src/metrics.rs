//! Live metrics: every interval the sampler reads each running VM's CPU time from its cgroup and
//! keeps the utilisation over the interval (a fraction of the VM's vCPUs) for the last
//! [`HISTORY`] intervals. These are the Receiver's input for `vine policy dry-run` and the CPU
//! counters a metrics endpoint exports.

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
