//! One step of the pipeline on a live pool, and its record: the coordinator plans each round
//! with [`step`] and writes a [`RecordedRound`] (snapshot, rules, commands) to its record file,
//! after a [`RecordHeader`] naming the policy. [`replay`] runs a fresh planner over the recorded
//! snapshots and rules and gives the commands of every round again: the same, since the
//! pipeline is deterministic (`vine policy simulate --replay FILE`).

use serde::{Deserialize, Serialize};

use crate::constraints::{Constraints, Dropped};
use crate::model::{Plan, Snapshot};
use crate::planner::Planner;
use crate::prescriber::{prescribe, Command};
use crate::resizer::{resize, Sizing};
use crate::spec::Policy;

/// The first line of a record file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordHeader {
    /// The policy every round of the file was planned with.
    pub policy: Policy,
    /// The host that coordinated.
    pub host: String,
    /// When its run began, ms since the epoch.
    pub started_ms: i64,
}

/// One round of a record file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedRound {
    /// Its number, from 1.
    pub round: u64,
    /// Host names by id (`HostId` n is `hosts[n]`).
    pub hosts: Vec<String>,
    /// VM names by id.
    pub vms: Vec<String>,
    /// What the plan was made from.
    pub snapshot: Snapshot,
    /// The pool's rules then.
    pub constraints: Constraints,
    /// What the resizer was given: the running VMs that may be resized.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sizing: Vec<Sizing>,
    /// The commands the round gave (what was sent, or advised): the plan's, then the resizer's.
    pub commands: Vec<Command>,
}

/// What one step gave.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The policy's plan, before the rules.
    pub planned: Plan,
    /// What the rules took out, and why.
    pub dropped: Vec<Dropped>,
    /// The commands of what is left.
    pub commands: Vec<Command>,
}

/// Plans one round from `snap` under `rules`, and resizes the VMs of `sizing`.
pub fn step(planner: &mut Planner, snap: &Snapshot, rules: &Constraints, sizing: &[Sizing]) -> Step {
    let planned = planner.plan_with(snap, Some(rules));
    let (kept, dropped) = rules.apply(snap, &planned);
    let mut commands = prescribe(&kept);
    commands.extend(resize(sizing));
    Step { planned, dropped, commands }
}

/// A record file's text, read: its header and rounds. The error names the line.
pub fn parse_record(text: &str) -> Result<(RecordHeader, Vec<RecordedRound>), String> {
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let (_, first) = lines.next().ok_or("the record is empty (no header line)")?;
    let header: RecordHeader =
        serde_json::from_str(first).map_err(|e| format!("line 1 (the header): {e}"))?;
    header.policy.validate().map_err(|e| format!("line 1 (the header): {e}"))?;
    let mut rounds = Vec::new();
    for (i, line) in lines {
        let mut r: RecordedRound = serde_json::from_str(line).map_err(|e| format!("line {}: {e}", i + 1))?;
        check(&r).map_err(|e| format!("line {} (round {}): {e}", i + 1, r.round))?;
        r.snapshot.reindex();
        rounds.push(r);
    }
    Ok((header, rounds))
}

/// That a recorded round's ids are all within its snapshot (a plan would index them).
fn check(r: &RecordedRound) -> Result<(), String> {
    let hosts = r.snapshot.hosts.len();
    for (i, h) in r.snapshot.hosts.iter().enumerate() {
        if h.id.0 as usize != i {
            return Err(format!("host {i} of the snapshot has id {}", h.id.0));
        }
        if h.spec.pes == 0 || h.spec.pe_mips.is_nan() || h.spec.pe_mips <= 0.0 {
            return Err(format!("host {i} has no CPU"));
        }
    }
    for v in &r.snapshot.vms {
        if v.host.0 as usize >= hosts {
            return Err(format!("{} is on {}, which the snapshot lacks", v.id, v.host));
        }
        if v.id.0 > 1_000_000 {
            return Err(format!("{} is out of range", v.id));
        }
    }
    let known = |id: u32| r.snapshot.vms.iter().any(|v| v.id.0 == id);
    for h in &r.snapshot.hosts {
        if let Some(v) = h.vms.iter().find(|v| !known(v.0)) {
            return Err(format!("{} lists {v}, which the snapshot lacks", h.id));
        }
    }
    Ok(())
}

/// The commands of every round, planned again by a fresh planner from the recorded snapshots.
pub fn replay(header: &RecordHeader, rounds: &[RecordedRound]) -> Vec<Vec<Command>> {
    let mut planner = Planner::new(header.policy.clone());
    rounds.iter().map(|r| step(&mut planner, &r.snapshot, &r.constraints, &r.sizing).commands).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_records_name_the_line() {
        assert!(parse_record("").unwrap_err().contains("empty"));
        assert!(parse_record("{\"x\":1}").unwrap_err().starts_with("line 1"));
        let header = serde_json::to_string(&RecordHeader {
            policy: Policy::builtin("vine").unwrap(),
            host: "h1".into(),
            started_ms: 1,
        })
        .unwrap();
        let e = parse_record(&format!("{header}\n\n[1,2]\n")).unwrap_err();
        assert!(e.starts_with("line 3"), "{e}");
        let (h, rounds) = parse_record(&header).unwrap();
        assert_eq!(h.host, "h1");
        assert!(rounds.is_empty());
    }
}
