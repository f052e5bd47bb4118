//! Resource Allocator: per-VM CPU grants on one host. Implements the time-shared, oversubscribable
//! CPU scheduler of CloudSim (`VmSchedulerTimeSharedOverSubscription`): each VM gets what it asks
//! (at most one core); when the host cannot serve everyone, all grants are scaled down together
//! (rounded down to whole MIPS). A VM migrating out gets 90 % of its grant; a VM migrating in costs
//! the target 10 % of its demand.

use crate::model::VmId;

/// Share of a migrating VM's demand the source still serves.
pub const MIGRATION_SOURCE_SHARE: f64 = 0.9;
/// Share of a migrating VM's demand that loads the target.
pub const MIGRATION_TARGET_SHARE: f64 = 0.1;

/// A VM's part in a migration, as seen from this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Not migrating (or migrating but not from or to here).
    Resident,
    /// Leaving this host.
    MigratingOut,
    /// Arriving on this host.
    MigratingIn,
}

/// One VM's request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Request {
    /// Which VM.
    pub vm: VmId,
    /// MIPS requested.
    pub mips: f64,
    /// Its migration role here.
    pub role: Role,
}

/// The outcome of allocating one host's CPU.
#[derive(Debug, Clone, PartialEq)]
pub struct Grants {
    /// MIPS granted, in request order.
    pub granted: Vec<f64>,
    /// MIPS left unallocated (0 when oversubscribed).
    pub available: f64,
    /// Whether demand exceeded capacity and every grant was scaled down.
    pub oversubscribed: bool,
}

/// Grants CPU to `requests` (in order) on a host of `total` MIPS with cores of `pe_mips`.
pub fn allocate(total: f64, pe_mips: f64, requests: &[Request]) -> Grants {
    let need = |r: &Request| {
        let capped = r.mips.min(pe_mips);
        if r.role == Role::MigratingIn {
            capped * MIGRATION_TARGET_SHARE
        } else {
            capped
        }
    };
    let mut available = total;
    let mut oversubscribed = false;
    for r in requests {
        let n = need(r);
        if !oversubscribed && available >= n {
            available -= n;
        } else if n > 0.0 || oversubscribed {
            oversubscribed = true;
        }
    }
    if !oversubscribed {
        let granted = requests
            .iter()
            .map(|r| {
                let capped = r.mips.min(pe_mips);
                match r.role {
                    Role::Resident => capped,
                    Role::MigratingOut => capped * MIGRATION_SOURCE_SHARE,
                    Role::MigratingIn => capped * MIGRATION_TARGET_SHARE,
                }
            })
            .collect();
        return Grants { granted, available, oversubscribed };
    }
    let required: f64 = requests.iter().map(need).sum();
    let scaling = total / required;
    let granted = requests
        .iter()
        .map(|r| {
            let capped = r.mips.min(pe_mips);
            let g = match r.role {
                Role::Resident => capped * scaling,
                Role::MigratingOut => capped * scaling * MIGRATION_SOURCE_SHARE,
                Role::MigratingIn => capped * MIGRATION_TARGET_SHARE * scaling,
            };
            g.floor()
        })
        .collect();
    Grants { granted, available: 0.0, oversubscribed }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(mips: f64, role: Role) -> Request {
        Request { vm: VmId(0), mips, role }
    }

    #[test]
    fn fitting_requests_are_granted_in_full_except_migration_shares() {
        let g = allocate(
            2000.0,
            1000.0,
            &[req(500.0, Role::Resident), req(500.0, Role::MigratingOut), req(1000.0, Role::MigratingIn)],
        );
        assert_eq!(g.granted, vec![500.0, 450.0, 100.0]);
        assert_eq!(g.available, 900.0);
        assert!(!g.oversubscribed);
    }

    #[test]
    fn oversubscribed_host_scales_every_grant_down_to_whole_mips() {
        let g = allocate(1000.0, 1000.0, &[req(900.0, Role::Resident), req(600.0, Role::Resident)]);
        assert!(g.oversubscribed);
        assert_eq!(g.granted, vec![600.0, 400.0]);
        assert_eq!(g.available, 0.0);
    }

    #[test]
    fn a_request_above_one_core_is_capped() {
        let g = allocate(2000.0, 800.0, &[req(1000.0, Role::Resident)]);
        assert_eq!(g.granted, vec![800.0]);
    }
}
