//! Choosing the accelerator: KVM only when the host really offers hardware virtualisation —
//! the CPU advertises it (`vmx`/`svm` in /proc/cpuinfo), the vendor module is loaded
//! (`kvm_intel`/`kvm_amd` in /proc/modules) and /dev/kvm can be opened — otherwise TCG, with the
//! reason. A /dev/kvm alone is not enough: nested or paravirtual devices exist that cannot run
//! ordinary guest kernels (QEMU hangs after the real-mode stage).

use serde::Serialize;

use crate::Probe;

/// The two accelerators QEMU offers on x86.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Accelerator {
    /// Hardware virtualisation.
    Kvm,
    /// QEMU's software emulation.
    Tcg,
}

impl Accelerator {
    /// The value of QEMU's `-accel` option.
    pub fn qemu_name(self) -> &'static str {
        match self {
            Accelerator::Kvm => "kvm",
            Accelerator::Tcg => "tcg",
        }
    }
}

/// The choice and its reason, as shown by `vine host info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AcceleratorChoice {
    /// The accelerator.
    pub kind: Accelerator,
    /// Why, in a sentence.
    pub reason: String,
}

/// Decides between KVM and TCG.
pub fn choose(p: &dyn Probe) -> AcceleratorChoice {
    let cpuinfo = p.read("/proc/cpuinfo").unwrap_or_default();
    let flags: Vec<&str> = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .flat_map(|l| l.split(':').nth(1).unwrap_or_default().split_whitespace())
        .collect();
    let cpu_flag = ["vmx", "svm"].into_iter().find(|f| flags.contains(f));
    let modules = p.read("/proc/modules").unwrap_or_default();
    let module = ["kvm_intel", "kvm_amd"]
        .into_iter()
        .find(|m| modules.lines().any(|l| l.split_whitespace().next() == Some(m)));
    let dev = p.openable_rw("/dev/kvm");
    match (cpu_flag, module, dev) {
        (Some(f), Some(m), true) => AcceleratorChoice {
            kind: Accelerator::Kvm,
            reason: format!("the CPU advertises {f}, {m} is loaded and /dev/kvm is usable"),
        },
        _ => {
            let mut missing = Vec::new();
            if cpu_flag.is_none() {
                missing.push("the CPU advertises neither vmx nor svm in /proc/cpuinfo".to_string());
            }
            if module.is_none() {
                missing.push("neither kvm_intel nor kvm_amd is loaded".to_string());
            }
            if !dev {
                missing.push("/dev/kvm cannot be opened".to_string());
            } else if cpu_flag.is_none() || module.is_none() {
                missing.push(
                    "/dev/kvm exists but is not backed by hardware virtualisation (nested or paravirtual)"
                        .into(),
                );
            }
            AcceleratorChoice {
                kind: Accelerator::Tcg,
                reason: format!("software emulation (TCG): {}", missing.join("; ")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeHost;

    fn host(flags: &str, modules: &str, dev: bool) -> FakeHost {
        let mut h = FakeHost::default();
        h.files.insert("/proc/cpuinfo", format!("processor\t: 0\nflags\t\t: fpu sse2 {flags} lm\n"));
        h.files.insert("/proc/modules", modules.to_string());
        if dev {
            h.rw.push("/dev/kvm");
        }
        h
    }

    #[test]
    fn kvm_needs_flag_module_and_device() {
        let c = choose(&host("vmx", "kvm_intel 393216 0 - Live 0x0\nkvm 1 1 kvm_intel", true));
        assert_eq!(c.kind, Accelerator::Kvm);
        assert!(c.reason.contains("vmx") && c.reason.contains("kvm_intel"));
        assert_eq!(choose(&host("svm", "kvm_amd 1 0 - Live 0x0", true)).kind, Accelerator::Kvm);
    }

    #[test]
    fn a_bare_dev_kvm_without_hardware_support_means_tcg() {
        let c = choose(&host("hypervisor", "", true));
        assert_eq!(c.kind, Accelerator::Tcg);
        assert!(c.reason.contains("neither vmx nor svm"), "{}", c.reason);
        assert!(c.reason.contains("not backed by hardware"), "{}", c.reason);
    }

    #[test]
    fn missing_module_or_device_means_tcg() {
        assert_eq!(choose(&host("vmx", "", true)).kind, Accelerator::Tcg);
        let c = choose(&host("vmx", "kvm_intel 1 0 - Live 0x0", false));
        assert_eq!(c.kind, Accelerator::Tcg);
        assert!(c.reason.contains("/dev/kvm cannot be opened"));
    }

    #[test]
    fn module_name_must_match_whole_word() {
        assert_eq!(choose(&host("vmx", "kvm_intelx 1 0 - Live 0x0", true)).kind, Accelerator::Tcg);
    }
}
