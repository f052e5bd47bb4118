//! The Prometheus text exposition of the daemon's metrics: host facts and, per VM, its state, CPU
//! time (a counter), utilisation over the last sample interval and memory.

use std::fmt::Write;

use serde_json::Value;

fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Renders the daemon's `Metrics` answer (`m`) and VM list (`vms`).
pub fn render(m: &Value, vms: &Value) -> String {
    let mut o = String::new();
    let host = &m["host"];
    let _ = writeln!(o, "# HELP vine_host_cpus Logical CPUs of the host.\n# TYPE vine_host_cpus gauge");
    let _ = writeln!(o, "vine_host_cpus {}", host["cpus"].as_u64().unwrap_or(0));
    let _ =
        writeln!(o, "# HELP vine_host_memory_bytes Memory of the host.\n# TYPE vine_host_memory_bytes gauge");
    let _ = writeln!(o, "vine_host_memory_bytes {}", host["memory_bytes"].as_u64().unwrap_or(0));
    let _ = writeln!(
        o,
        "# HELP vine_vm_running Whether the VM has a process (1) or not (0).\n# TYPE vine_vm_running gauge"
    );
    let _ = writeln!(
        o,
        "# HELP vine_vm_state The VM's state (1 for the current one).\n# TYPE vine_vm_state gauge"
    );
    for v in vms.as_array().into_iter().flatten() {
        let name = label(v["name"].as_str().unwrap_or(""));
        let state = v["state"].as_str().unwrap_or("");
        let running = v["pid"].is_u64();
        let _ = writeln!(o, "vine_vm_running{{vm=\"{name}\"}} {}", u8::from(running));
        let _ = writeln!(o, "vine_vm_state{{vm=\"{name}\",state=\"{}\"}} 1", label(state));
    }
    let _ = writeln!(o, "# HELP vine_vm_cpu_seconds_total CPU time used by the VM (QEMU and its disk servers) since it started.\n# TYPE vine_vm_cpu_seconds_total counter");
    let _ = writeln!(o, "# HELP vine_vm_cpu_utilization CPU use over the last sample interval, fraction of the VM's vCPUs.\n# TYPE vine_vm_cpu_utilization gauge");
    let _ =
        writeln!(o, "# HELP vine_vm_memory_bytes Memory given to the VM.\n# TYPE vine_vm_memory_bytes gauge");
    let _ = writeln!(o, "# HELP vine_vm_vcpus vCPUs of the VM.\n# TYPE vine_vm_vcpus gauge");
    for v in m["vms"].as_array().into_iter().flatten() {
        let name = label(v["name"].as_str().unwrap_or(""));
        let ns = v["cpu_time_ns"].as_u64().unwrap_or(0);
        let _ = writeln!(o, "vine_vm_cpu_seconds_total{{vm=\"{name}\"}} {}", ns as f64 / 1e9);
        if let Some(u) = v["history"].get(0).and_then(Value::as_f64) {
            let _ = writeln!(o, "vine_vm_cpu_utilization{{vm=\"{name}\"}} {u}");
        }
        let _ = writeln!(o, "vine_vm_memory_bytes{{vm=\"{name}\"}} {}", v["memory"].as_u64().unwrap_or(0));
        let _ = writeln!(o, "vine_vm_vcpus{{vm=\"{name}\"}} {}", v["vcpus"].as_u64().unwrap_or(0));
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_counters_and_escapes_labels() {
        let m = json!({"host": {"cpus": 2, "memory_bytes": 1024},
                       "vms": [{"name": "a\"b", "cpu_time_ns": 1_500_000_000u64, "history": [0.25], "memory": 5, "vcpus": 1}]});
        let vms = json!([{"name": "a\"b", "state": "running", "pid": 7}]);
        let t = render(&m, &vms);
        assert!(t.contains("vine_host_cpus 2\n"), "{t}");
        assert!(t.contains("vine_vm_cpu_seconds_total{vm=\"a\\\"b\"} 1.5\n"), "{t}");
        assert!(t.contains("vine_vm_cpu_utilization{vm=\"a\\\"b\"} 0.25\n"), "{t}");
        assert!(t.contains("vine_vm_state{vm=\"a\\\"b\",state=\"running\"} 1\n"), "{t}");
    }
}
