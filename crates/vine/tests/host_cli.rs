//! `vine host info` on this machine: the accelerator follows the CPU flags and modules, the
//! cgroup version follows the mounts.

mod common;

use common::*;

#[test]
fn host_info_reports_accelerator_with_reason_and_cgroup_version() {
    let out = ok(vine().args(["host", "info", "--json"]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    let hw = cpuinfo.lines().any(|l| l.starts_with("flags") && (l.contains(" vmx") || l.contains(" svm")));
    let kind = v["accelerator"]["kind"].as_str().unwrap();
    if !hw {
        assert_eq!(kind, "tcg", "no vmx/svm on this CPU, yet vine chose {kind}");
    }
    assert!(!v["accelerator"]["reason"].as_str().unwrap().is_empty());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let v1 = mounts.lines().any(|l| l.split_whitespace().nth(2) == Some("cgroup"));
    let version = v["cgroup"]["version"].as_str().unwrap();
    if v1 {
        assert_eq!(version, "v1");
    }
    assert!(v["cpus"].as_u64().unwrap() >= 1);
    assert!(v["memory_bytes"].as_u64().unwrap() > 1 << 26);
    let text = text(&ok(vine().args(["host", "info"])));
    assert!(text.contains(&format!("accelerator:  {kind} (")), "{text}");
}
