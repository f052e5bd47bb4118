//! What an operator sets per VM, with the limits of Virtual Server and MISSION C3: relative CPU
//! weight 1–10000 (default 100); reservation, a guaranteed minimum in % of one host CPU; maximum,
//! a cap in % of one host CPU (so 200 = two CPUs); memory in bytes.

/// Smallest CPU weight.
pub const MIN_WEIGHT: u32 = 1;
/// Largest CPU weight.
pub const MAX_WEIGHT: u32 = 10_000;
/// Weight when none is set.
pub const DEFAULT_WEIGHT: u32 = 100;

/// One VM's controls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Controls {
    /// Relative weight under contention.
    pub weight: u32,
    /// Guaranteed minimum, % of one host CPU (0 = none).
    pub reserve_pct: u32,
    /// Cap, % of one host CPU (`None` = no cap).
    pub max_pct: Option<u32>,
    /// Memory in bytes.
    pub memory: u64,
    /// vCPUs (a cap or reservation above vcpus × 100 % cannot be used).
    pub vcpus: u32,
    /// Memory the cgroup allows beyond `memory`: the emulator's own for a VM
    /// ([`crate::mapping::QEMU_OVERHEAD`]), none for a container (its limit is its memory).
    pub overhead: u64,
}

/// A control value that is not allowed; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlsError {
    /// Weight outside 1–10000.
    #[error("cpu-weight {0} is out of range: it must be from 1 to 10000 (default 100)")]
    Weight(u32),
    /// Reservation above what the VM's vCPUs can use.
    #[error("cpu-reserve {reserve}% is more than {vcpus} vCPU(s) can use ({max}%)", max = vcpus * 100)]
    ReserveAboveVcpus {
        /// Requested reservation.
        reserve: u32,
        /// vCPUs.
        vcpus: u32,
    },
    /// Cap of 0 or below the reservation.
    #[error("cpu-max {max}% must be at least 1% and not below cpu-reserve {reserve}%")]
    MaxBelowReserve {
        /// Requested cap.
        max: u32,
        /// Reservation.
        reserve: u32,
    },
    /// No memory.
    #[error("memory must be at least 1 MiB, got {0} bytes")]
    Memory(u64),
}

impl Controls {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ControlsError> {
        if !(MIN_WEIGHT..=MAX_WEIGHT).contains(&self.weight) {
            return Err(ControlsError::Weight(self.weight));
        }
        if self.reserve_pct > self.vcpus.max(1) * 100 {
            return Err(ControlsError::ReserveAboveVcpus {
                reserve: self.reserve_pct,
                vcpus: self.vcpus.max(1),
            });
        }
        if let Some(max) = self.max_pct {
            if max == 0 || max < self.reserve_pct {
                return Err(ControlsError::MaxBelowReserve { max, reserve: self.reserve_pct });
            }
        }
        if self.memory < 1 << 20 {
            return Err(ControlsError::Memory(self.memory));
        }
        Ok(())
    }
}

/// Why a VM may not start (or take new controls): the numbers, in a sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Admission {
    /// CPU reservations would exceed the host.
    #[error("cannot reserve {asked}% CPU for '{vm}': {reserved}% of the host's {capacity}% is already reserved by running VMs, {free}% is free")]
    Cpu {
        /// The VM.
        vm: String,
        /// Its reservation.
        asked: u32,
        /// Sum of other running VMs' reservations.
        reserved: u32,
        /// Host CPUs × 100.
        capacity: u32,
        /// capacity − reserved.
        free: u32,
    },
    /// Memory would exceed the host less its reserve.
    #[error("cannot give '{vm}' {asked} bytes of memory: running VMs hold {used} of the {capacity} bytes the host offers to VMs (total less the host reserve), {free} bytes are free")]
    Memory {
        /// The VM.
        vm: String,
        /// Its memory.
        asked: u64,
        /// Memory of other running VMs.
        used: u64,
        /// Host memory less the host reserve.
        capacity: u64,
        /// capacity − used.
        free: u64,
    },
}

/// Checks that `vm` with `new` fits beside the `running` VMs on a host of `cpus` CPUs and
/// `memory_for_vms` bytes (total less the host reserve). No overcommit of either.
pub fn admit(
    vm: &str,
    new: &Controls,
    running: &[Controls],
    cpus: u32,
    memory_for_vms: u64,
) -> Result<(), Admission> {
    let capacity = cpus * 100;
    let reserved: u32 = running.iter().map(|c| c.reserve_pct).sum();
    if reserved + new.reserve_pct > capacity {
        return Err(Admission::Cpu {
            vm: vm.into(),
            asked: new.reserve_pct,
            reserved,
            capacity,
            free: capacity.saturating_sub(reserved),
        });
    }
    let used: u64 = running.iter().map(|c| c.memory).sum();
    if used + new.memory > memory_for_vms {
        return Err(Admission::Memory {
            vm: vm.into(),
            asked: new.memory,
            used,
            capacity: memory_for_vms,
            free: memory_for_vms.saturating_sub(used),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(weight: u32, reserve: u32, max: Option<u32>, memory: u64) -> Controls {
        Controls { weight, reserve_pct: reserve, max_pct: max, memory, vcpus: 2, overhead: 0 }
    }

    #[test]
    fn out_of_range_values_name_the_field() {
        assert_eq!(c(0, 0, None, 1 << 30).validate().unwrap_err(), ControlsError::Weight(0));
        assert_eq!(c(10_001, 0, None, 1 << 30).validate().unwrap_err(), ControlsError::Weight(10_001));
        assert!(c(100, 250, None, 1 << 30).validate().unwrap_err().to_string().contains("cpu-reserve 250%"));
        assert!(c(100, 50, Some(25), 1 << 30).validate().unwrap_err().to_string().contains("cpu-max 25%"));
        assert_eq!(c(100, 0, None, 1000).validate().unwrap_err(), ControlsError::Memory(1000));
        c(10_000, 200, Some(200), 1 << 20).validate().unwrap();
    }

    #[test]
    fn reservations_beyond_the_host_are_refused_with_the_numbers() {
        let running = [c(100, 120, None, 1 << 30), c(100, 50, None, 1 << 30)];
        let err = admit("web1", &c(100, 40, None, 1 << 30), &running, 2, 8 << 30).unwrap_err();
        assert_eq!(err.to_string(), "cannot reserve 40% CPU for 'web1': 170% of the host's 200% is already reserved by running VMs, 30% is free");
        admit("web1", &c(100, 30, None, 1 << 30), &running, 2, 8 << 30).unwrap();
    }

    #[test]
    fn memory_beyond_the_host_is_refused_with_the_numbers() {
        let running = [c(100, 0, None, 6 << 30)];
        let err = admit("db", &c(100, 0, None, 3 << 30), &running, 2, 8 << 30).unwrap_err();
        assert!(matches!(err, Admission::Memory { free, .. } if free == 2 << 30), "{err}");
        assert!(err.to_string().contains("2147483648 bytes are free"));
    }
}
