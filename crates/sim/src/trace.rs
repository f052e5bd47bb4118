//! Workload traces: one directory per day, one file per VM with 288 CPU samples (percent, one per
//! 5 minutes), and the CSV that says which VM type CloudSim gave each file. Errors name the file and
//! the line.

use std::path::{Path, PathBuf};

/// Samples per day in a trace file.
pub const SAMPLES_PER_DAY: usize = 288;
/// Seconds between two samples.
pub const SAMPLE_PERIOD_S: f64 = 300.0;
/// Name of the VM-type mapping file CloudSim's listing order produces.
pub const VM_ORDER_FILE: &str = "planetlab-cloudsim-vm-order.csv";

/// CloudSim's four VM types (MIPS, memory MB), in type order.
pub const VM_TYPES: [(f64, u32); 4] = [(2500.0, 870), (2000.0, 1740), (1000.0, 1740), (500.0, 613)];

/// One VM's workload.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceVm {
    /// File name (PlanetLab node and slice).
    pub name: String,
    /// MIPS of its virtual CPU.
    pub mips: f64,
    /// Memory, MB.
    pub ram_mb: u32,
    /// Utilisation fractions; CloudSim repeats the last sample as a 289th.
    pub samples: Vec<f64>,
}

impl TraceVm {
    /// Utilisation at `t` seconds, interpolated linearly between samples exactly as CloudSim's
    /// `UtilizationModelPlanetLabInMemory.getUtilization` does.
    pub fn utilization_at(&self, t: f64) -> f64 {
        let p = SAMPLE_PERIOD_S;
        let last = self.samples.len() - 1;
        if t % p == 0.0 {
            let i = ((t as i64) / (p as i64)) as usize;
            return self.samples[i.min(last)];
        }
        let i1 = (t / p).floor();
        let i2 = (t / p).ceil();
        let u1 = self.samples[(i1 as usize).min(last)];
        let u2 = self.samples[(i2 as usize).min(last)];
        let delta = (u2 - u1) / ((i2 - i1) * p);
        u1 + delta * (t - i1 * p)
    }
}

/// One day of traces in CloudSim's VM order.
#[derive(Debug, Clone)]
pub struct Trace {
    /// Day (directory name).
    pub day: String,
    /// VMs, in CloudSim's creation order.
    pub vms: Vec<TraceVm>,
    /// Where the VM types came from.
    pub order: OrderSource,
}

/// Where the file order and VM types came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderSource {
    /// The CSV recorded from CloudSim.
    CloudSimListing(PathBuf),
    /// Sorted file names, types by CloudSim's quarter rule (no CSV found for this day).
    Sorted,
}

/// Errors loading traces.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// A file or directory could not be read.
    #[error("cannot read {path}")]
    Io {
        /// Path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A sample is not an integer percentage.
    #[error("{path}:{line}: expected an integer CPU percentage 0–100, found {found:?}")]
    BadSample {
        /// File.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// Text found.
        found: String,
    },
    /// Too few samples.
    #[error("{path}: has {found} samples, a day needs {SAMPLES_PER_DAY}")]
    Short {
        /// File.
        path: PathBuf,
        /// Lines found.
        found: usize,
    },
    /// The VM-order CSV is malformed.
    #[error("{path}:{line}: {why}")]
    BadOrder {
        /// File.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        why: String,
    },
    /// The directory holds no trace files.
    #[error("{0}: no trace files")]
    Empty(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TraceError + '_ {
    move |source| TraceError::Io { path: path.to_path_buf(), source }
}

/// Parses one VM's trace text.
pub fn parse_samples(path: &Path, text: &str) -> Result<Vec<f64>, TraceError> {
    let mut out = Vec::with_capacity(SAMPLES_PER_DAY + 1);
    for (i, line) in text.lines().enumerate() {
        if out.len() == SAMPLES_PER_DAY {
            break;
        }
        let s = line.trim();
        let v: u32 = s.parse().ok().filter(|v| *v <= 100).ok_or_else(|| TraceError::BadSample {
            path: path.to_path_buf(),
            line: i + 1,
            found: s.to_string(),
        })?;
        out.push(v as f64 / 100.0);
    }
    if out.len() < SAMPLES_PER_DAY {
        return Err(TraceError::Short { path: path.to_path_buf(), found: out.len() });
    }
    out.push(out[SAMPLES_PER_DAY - 1]);
    Ok(out)
}

/// (file, mips, ram) rows of the order CSV for `day`, in order; empty if the day is absent.
pub fn parse_order(path: &Path, text: &str, day: &str) -> Result<Vec<(String, f64, u32)>, TraceError> {
    let bad = |line, why: String| TraceError::BadOrder { path: path.to_path_buf(), line, why };
    let mut rows: Vec<(usize, String, f64, u32)> = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 6 {
            return Err(bad(i + 1, format!("expected 6 fields, found {}", f.len())));
        }
        if f[0] != day {
            continue;
        }
        let idx: usize =
            f[1].parse().map_err(|_| bad(i + 1, format!("vm_index {:?} is not a number", f[1])))?;
        let mips: f64 =
            f[4].parse().map_err(|_| bad(i + 1, format!("vm_mips {:?} is not a number", f[4])))?;
        let ram: u32 =
            f[5].parse().map_err(|_| bad(i + 1, format!("vm_ram_mb {:?} is not a number", f[5])))?;
        rows.push((idx, f[2].to_string(), mips, ram));
    }
    rows.sort_by_key(|r| r.0);
    Ok(rows.into_iter().map(|(_, f, m, r)| (f, m, r)).collect())
}

fn find_order_file(dir: &Path) -> Option<PathBuf> {
    dir.ancestors().skip(1).take(3).map(|a| a.join(VM_ORDER_FILE)).find(|p| p.is_file())
}

/// Loads the day in `dir`, in CloudSim's order when the order CSV is found beside the traces.
pub fn load_day(dir: &Path) -> Result<Trace, TraceError> {
    let day = dir.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()
        .map_err(io(dir))?;
    files.sort();
    if files.is_empty() {
        return Err(TraceError::Empty(dir.to_path_buf()));
    }
    let mut plan: Vec<(String, f64, u32)> = Vec::new();
    let mut order = OrderSource::Sorted;
    if let Some(csv) = find_order_file(dir) {
        let text = std::fs::read_to_string(&csv).map_err(io(&csv))?;
        let rows = parse_order(&csv, &text, &day)?;
        if rows.len() == files.len() {
            plan = rows;
            order = OrderSource::CloudSimListing(csv);
        }
    }
    if plan.is_empty() {
        let per_type = files.len().div_ceil(VM_TYPES.len());
        plan = files
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let (m, r) = VM_TYPES[i / per_type];
                (f.clone(), m, r)
            })
            .collect();
    }
    let mut vms = Vec::with_capacity(plan.len());
    for (name, mips, ram_mb) in plan {
        let path = dir.join(&name);
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        vms.push(TraceVm { samples: parse_samples(&path, &text)?, name, mips, ram_mb });
    }
    Ok(Trace { day, vms, order })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_sample_names_file_and_line() {
        let text = "1\n2\nabc\n";
        let e = parse_samples(Path::new("d/vm1"), text).unwrap_err();
        assert!(matches!(e, TraceError::BadSample { line: 3, .. }), "{e}");
        assert_eq!(e.to_string(), "d/vm1:3: expected an integer CPU percentage 0–100, found \"abc\"");
    }

    #[test]
    fn short_trace_is_refused() {
        let e = parse_samples(Path::new("vm"), "5\n").unwrap_err();
        assert!(matches!(e, TraceError::Short { found: 1, .. }), "{e}");
    }

    #[test]
    fn interpolation_matches_cloudsim() {
        let mut samples: Vec<f64> = vec![0.0; SAMPLES_PER_DAY + 1];
        samples[1] = 0.3;
        samples[2] = 0.6;
        let vm = TraceVm { name: "x".into(), mips: 1000.0, ram_mb: 1, samples };
        assert_eq!(vm.utilization_at(300.0), 0.3);
        assert!((vm.utilization_at(450.0) - 0.45).abs() < 1e-12);
        assert!((vm.utilization_at(300.1) - (0.3 + 0.3 * 0.1 / 300.0)).abs() < 1e-12);
    }

    #[test]
    fn order_rows_for_other_days_are_skipped_and_bad_rows_named() {
        let text = "day,vm_index,file,vm_type,vm_mips,vm_ram_mb\n1,1,b,0,2500,870\n1,0,a,3,500,613\n2,0,c,0,2500,870\n";
        let rows = parse_order(Path::new("o.csv"), text, "1").unwrap();
        assert_eq!(rows, vec![("a".into(), 500.0, 613), ("b".into(), 2500.0, 870)]);
        let e = parse_order(Path::new("o.csv"), "h\n1,x,a,0,1,1\n", "1").unwrap_err();
        assert!(matches!(e, TraceError::BadOrder { line: 2, .. }), "{e}");
    }
}
