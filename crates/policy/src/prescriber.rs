//! Prescriber: turns a plan into concrete commands, each with its reason as sentences an operator
//! can check ("host 12 was at 93 % requested CPU, over the 80 % threshold; VM 40 has the least
//! memory (613 MB) …").

use serde::{Deserialize, Serialize};

use crate::model::{HostId, Plan, Reason, VmId};

/// One command for the hosts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Live-migrate a VM.
    Migrate {
        /// VM.
        vm: VmId,
        /// Source.
        from: HostId,
        /// Target.
        to: HostId,
        /// Why, in sentences.
        why: String,
    },
    /// Switch a host off once it is empty.
    SwitchOff {
        /// Host.
        host: HostId,
        /// Why.
        why: String,
    },
    /// Set the CPU cap the resizer gives a running VM (`None`: it has none).
    Cap {
        /// VM.
        vm: VmId,
        /// % of one host CPU.
        pct: Option<u32>,
        /// Why.
        why: String,
    },
    /// Size a running VM's balloon: the memory its guest keeps, bytes.
    Balloon {
        /// VM.
        vm: VmId,
        /// Bytes.
        bytes: u64,
        /// Why.
        why: String,
    },
}

impl Command {
    /// The explanation.
    pub fn why(&self) -> &str {
        match self {
            Command::Migrate { why, .. }
            | Command::SwitchOff { why, .. }
            | Command::Cap { why, .. }
            | Command::Balloon { why, .. } => why,
        }
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Migrate { vm, from, to, why } => write!(f, "migrate {vm} from {from} to {to}: {why}"),
            Command::SwitchOff { host, why } => write!(f, "switch off {host}: {why}"),
            Command::Cap { vm, pct: Some(p), why } => write!(f, "cap {vm} at {p} %: {why}"),
            Command::Cap { vm, pct: None, why } => write!(f, "uncap {vm}: {why}"),
            Command::Balloon { vm, bytes, why } => write!(f, "balloon {vm} to {} MiB: {why}", bytes >> 20),
        }
    }
}

fn pct(v: f64) -> String {
    format!("{:.0} %", v * 100.0)
}

/// The commands for `plan`, migrations first, then switch-offs.
pub fn prescribe(plan: &Plan) -> Vec<Command> {
    let mut out = Vec::with_capacity(plan.migrations.len() + plan.hosts_to_switch_off.len());
    for m in &plan.migrations {
        let reason = match &m.reason {
            Reason::Overload { value, threshold, basis, selection } => format!(
                "{} was overloaded: {} against {} ({basis}). {} was chosen: {selection}.",
                m.from,
                pct(*value),
                pct(*threshold),
                m.vm
            ),
            Reason::Underload { utilization, why } => {
                format!("{} was at {} utilisation: {why}.", m.from, pct(*utilization))
            }
        };
        let target = format!(
            " {} was chosen by {}: {} after the move, {:+.1} W.",
            m.to,
            m.target.rule,
            pct(m.target.utilization_after),
            m.target.extra_watts
        );
        out.push(Command::Migrate { vm: m.vm, from: m.from, to: m.to, why: reason + &target });
    }
    for h in &plan.hosts_to_switch_off {
        out.push(Command::SwitchOff {
            host: *h,
            why: format!("all VMs of {h} are planned to leave; an idle host draws power for nothing"),
        });
    }
    out
}
