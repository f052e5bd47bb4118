//! Live resizing: the CPU cap and the balloon of each running VM that allows it, from what it
//! used lately. The coordinator's rounds run it beside the planner, and the Sender changes the
//! VM's cgroup cap and its virtio balloon (a VM is never resized past its operator's limits:
//! the cap stays at least its reservation and at most its operator's cap, the balloon at most
//! its memory, which its host keeps reserved for it, so the no-overcommit rule holds whatever
//! the balloon holds).
//!
//! - **CPU**: the cap follows the busiest of the last [`CPU_WINDOW`] samples, with room to grow
//!   ([`CPU_HEADROOM`] times it, plus [`CPU_SLACK_PCT`] points), in steps of [`CPU_STEP_PCT`]. A
//!   guest pressing on its cap measures at the cap, which raises it by half again the next round;
//!   the cap changes only by [`CPU_HYSTERESIS_PCT`] or more either way, so a guest whose load
//!   wobbles keeps it.
//! - **Memory**: the balloon leaves the guest what it uses (its total less what it says is
//!   available) plus a quarter and [`MEMORY_HEADROOM`], in steps of [`MEMORY_STEP`], besides
//!   what its kernel keeps out of its total (the balloon's size less the guest's total); it grows
//!   as soon as that is more than the guest has, and shrinks once it frees at least
//!   [`MEMORY_HYSTERESIS`]. A guest that reports no figures keeps what it has. (The balloon does
//!   not deflate on the guest's out-of-memory: with that feature a Linux guest counts the
//!   balloon's pages in its total, and neither it nor the resizer would see its memory change.)

use serde::{Deserialize, Serialize};

use crate::model::VmId;
use crate::prescriber::Command;

/// Samples the CPU cap follows (the busiest counts).
pub const CPU_WINDOW: usize = 3;
/// The cap is this many times the demand...
pub const CPU_HEADROOM: f64 = 1.5;
/// ... plus these points (% of one host CPU).
pub const CPU_SLACK_PCT: f64 = 10.0;
/// Caps are multiples of this (% of one host CPU).
pub const CPU_STEP_PCT: u32 = 5;
/// The least a cap changes by.
pub const CPU_HYSTERESIS_PCT: u32 = 10;
/// The least the balloon leaves a guest (the daemon's floor too).
pub const MEMORY_MIN: u64 = 32 << 20;
/// Memory a guest keeps free beyond a quarter of what it uses.
pub const MEMORY_HEADROOM: u64 = 64 << 20;
/// Balloon targets are multiples of this.
pub const MEMORY_STEP: u64 = 16 << 20;
/// The least the balloon is inflated by.
pub const MEMORY_HYSTERESIS: u64 = 32 << 20;

/// What the resizer knows of one running VM that may be resized.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sizing {
    /// Which VM.
    pub vm: VmId,
    /// Its vCPUs.
    pub vcpus: u32,
    /// CPU utilisation per sample as a fraction of its vCPUs, newest first.
    pub history: Vec<f64>,
    /// Its CPU reservation, % of one host CPU.
    pub reserve_pct: u32,
    /// Its operator's cap, % of one host CPU.
    pub max_pct: Option<u32>,
    /// The cap the resizer gave it, if any.
    pub allocated_pct: Option<u32>,
    /// Its memory, bytes.
    pub memory: u64,
    /// What its balloon leaves it now, bytes (none: no balloon).
    pub balloon: Option<u64>,
    /// The guest's own total memory, bytes, as it last reported.
    pub guest_total: Option<u64>,
    /// What the guest says is available, bytes.
    pub guest_available: Option<u64>,
}

/// The commands that resize `vms`, in their order.
pub fn resize(vms: &[Sizing]) -> Vec<Command> {
    let mut out = Vec::new();
    for s in vms {
        if let Some(c) = cap(s) {
            out.push(c);
        }
        if let Some(c) = balloon(s) {
            out.push(c);
        }
    }
    out
}

fn cap(s: &Sizing) -> Option<Command> {
    let recent: Vec<f64> = s.history.iter().take(CPU_WINDOW).copied().filter(|u| u.is_finite()).collect();
    if recent.len() < CPU_WINDOW {
        return None;
    }
    let full = s.vcpus.max(1) * 100;
    let ceiling = s.max_pct.map_or(full, |m| m.min(full));
    let floor = s.reserve_pct.max(CPU_STEP_PCT).min(ceiling);
    let used = recent.iter().fold(0.0f64, |a, b| a.max(*b)).clamp(0.0, 1.0) * f64::from(full);
    let want = used * CPU_HEADROOM + CPU_SLACK_PCT;
    let steps = (want / f64::from(CPU_STEP_PCT)).ceil().clamp(0.0, f64::from(full));
    let target = (steps as u32 * CPU_STEP_PCT).clamp(floor, ceiling);
    let now = s.allocated_pct.unwrap_or(ceiling).min(ceiling);
    let pct = |p: u32| format!("{p} %");
    if target >= ceiling {
        // Its own ceiling is enough: the resizer's cap goes.
        return s.allocated_pct.map(|a| Command::Cap {
            vm: s.vm,
            pct: None,
            why: format!(
                "{} used up to {} of one CPU lately, close to its cap of {}: the cap goes (it keeps its own limit, {})",
                s.vm,
                pct(used.round() as u32),
                pct(a),
                pct(ceiling)
            ),
        });
    }
    // Either way by at least the hysteresis, so a guest whose load wobbles keeps its cap; one
    // pressing on its cap measures at it, which asks for half as much again plus the slack.
    if target.abs_diff(now) < CPU_HYSTERESIS_PCT {
        return None;
    }
    Some(Command::Cap {
        vm: s.vm,
        pct: Some(target),
        why: format!(
            "{} used up to {} of one CPU over the last {CPU_WINDOW} samples: its cap goes from {} to {} ({CPU_HEADROOM} times that plus {CPU_SLACK_PCT} points, at least its reservation of {})",
            s.vm,
            pct(used.round() as u32),
            pct(now),
            pct(target),
            pct(s.reserve_pct)
        ),
    })
}

fn balloon(s: &Sizing) -> Option<Command> {
    let (Some(now), Some(total), Some(available)) = (s.balloon, s.guest_total, s.guest_available) else {
        return None;
    };
    if s.memory < MEMORY_MIN || total == 0 {
        return None;
    }
    let used = total.saturating_sub(available);
    let kernel = now.saturating_sub(total);
    let want = kernel + used + used / 4 + MEMORY_HEADROOM;
    let target = want.div_ceil(MEMORY_STEP).saturating_mul(MEMORY_STEP).clamp(MEMORY_MIN, s.memory);
    let raise = target > now;
    let lower = now >= target + MEMORY_HYSTERESIS;
    if !raise && !lower {
        return None;
    }
    let mib = |b: u64| format!("{} MiB", b >> 20);
    Some(Command::Balloon {
        vm: s.vm,
        bytes: target,
        why: format!(
            "the guest of {} uses {} of the {} it sees: its balloon goes from {} to {} (what it uses, a quarter more, {} free and the {} its kernel keeps; at most its {})",
            s.vm,
            mib(used),
            mib(total),
            mib(now),
            mib(target),
            mib(MEMORY_HEADROOM),
            mib(kernel),
            mib(s.memory)
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn vm(history: &[f64]) -> Sizing {
        Sizing {
            vm: VmId(7),
            vcpus: 1,
            history: history.to_vec(),
            reserve_pct: 0,
            max_pct: None,
            allocated_pct: None,
            memory: 256 * MIB,
            balloon: None,
            guest_total: None,
            guest_available: None,
        }
    }

    fn caps(s: &Sizing) -> Vec<Option<u32>> {
        resize(std::slice::from_ref(s))
            .into_iter()
            .filter_map(|c| match c {
                Command::Cap { pct, .. } => Some(pct),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn an_idle_vm_s_cap_comes_down_and_a_busy_one_s_goes_back_up() {
        // 4 % of one CPU: 4 * 1.5 + 10 = 16 -> 20 %.
        let mut s = vm(&[0.04, 0.03, 0.02]);
        assert_eq!(caps(&s), vec![Some(20)]);
        s.allocated_pct = Some(20);
        assert!(caps(&s).is_empty(), "no change when the cap fits");
        // Pressing on its cap: 20 * 1.5 + 10 = 40.
        s.history = vec![0.2, 0.04, 0.03];
        assert_eq!(caps(&s), vec![Some(40)]);
        // Busy: the cap goes.
        s.history = vec![0.7, 0.2, 0.1];
        assert_eq!(caps(&s), vec![None]);
        // Too few samples: nothing.
        assert!(caps(&vm(&[0.01])).is_empty());
    }

    #[test]
    fn a_cap_keeps_the_reservation_the_operator_s_cap_and_its_hysteresis() {
        let mut s = vm(&[0.0, 0.0, 0.0]);
        s.reserve_pct = 30;
        assert_eq!(caps(&s), vec![Some(30)], "never below the reservation");
        let mut s = vm(&[0.1, 0.1, 0.1]);
        s.max_pct = Some(20);
        assert!(caps(&s).is_empty(), "the operator's cap is low enough already");
        let mut s = vm(&[0.1, 0.1, 0.1]);
        s.allocated_pct = Some(30);
        // Wants 25: 5 points lower is under the hysteresis.
        assert!(caps(&s).is_empty());
        s.allocated_pct = Some(40);
        assert_eq!(caps(&s), vec![Some(25)]);
    }

    #[test]
    fn the_balloon_follows_what_the_guest_uses() {
        let mut s = vm(&[0.01; 3]);
        s.allocated_pct = Some(15);
        s.balloon = Some(256 * MIB);
        s.guest_total = Some(204 * MIB);
        s.guest_available = Some(184 * MIB);
        // Its kernel keeps 52 MiB, it uses 20: 52 + 20 + 5 + 64 = 141 -> 144 MiB.
        let cmds = resize(std::slice::from_ref(&s));
        assert!(
            matches!(cmds.as_slice(), [Command::Balloon { bytes, .. }] if *bytes == 144 * MIB),
            "{cmds:?}"
        );
        // The guest fills up: 80 of 92 MiB used -> 52 + 80 + 20 + 64 = 216 -> 224 MiB.
        s.balloon = Some(144 * MIB);
        s.guest_total = Some(92 * MIB);
        s.guest_available = Some(12 * MIB);
        let cmds = resize(std::slice::from_ref(&s));
        assert!(
            matches!(cmds.as_slice(), [Command::Balloon { bytes, .. }] if *bytes == 224 * MIB),
            "{cmds:?}"
        );
        // Never past its memory.
        s.guest_available = Some(0);
        s.guest_total = Some(250 * MIB);
        let cmds = resize(std::slice::from_ref(&s));
        assert!(
            matches!(cmds.as_slice(), [Command::Balloon { bytes, .. }] if *bytes == 256 * MIB),
            "{cmds:?}"
        );
        // Within the hysteresis: nothing; no figures: nothing. 12 + 30 + 7 + 64 = 113 -> 128.
        s.balloon = Some(144 * MIB);
        s.guest_total = Some(132 * MIB);
        s.guest_available = Some(102 * MIB);
        assert!(resize(std::slice::from_ref(&s)).is_empty());
        s.guest_available = None;
        assert!(resize(std::slice::from_ref(&s)).is_empty());
    }
}
