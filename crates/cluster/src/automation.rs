//! How far the pool's policy engine may act, and on what (`/vine/policy/…`):
//!
//! - `/vine/policy/settings`: the pool's [`Automation`] — its mode (`off`, `advise`,
//!   `automatic`), the policy it runs, how often it plans, how many live migrations it runs at
//!   once, and the migration threshold (DRS's five levels).
//! - `/vine/policy/vms/VM`: one VM's [`VmRules`] — a mode of its own, a pin to a host, an
//!   affinity group. Absent: the pool's mode, anywhere, alone.
//! - `/vine/policy/last`: what the coordinator's last round found and did ([`Round`]), for
//!   `vine policy advice` and the web UI on every host.
//!
//! Settings change by compare-and-swap, so two operators never lose each other's change.

use std::collections::BTreeMap;

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};
use serde::{Deserialize, Serialize};

use crate::client::{json, parse, timed};
use crate::{Cluster, ClusterError};

const SETTINGS: &str = "/vine/policy/settings";
const VM_RULES: &str = "/vine/policy/vms/";
const LAST: &str = "/vine/policy/last";

/// The shortest planning interval, seconds (a round gathers every host's metrics).
pub const INTERVAL_MIN_S: u32 = 2;
/// The longest planning interval, seconds.
pub const INTERVAL_MAX_S: u32 = 3600;
/// The default planning interval, seconds.
pub const INTERVAL_DEFAULT_S: u32 = 60;
/// The most live migrations the coordinator runs at once.
pub const PARALLEL_MAX: u32 = 8;

/// How far the policy engine acts.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// It does not plan.
    #[default]
    Off,
    /// It plans and records its advice (events, `vine policy advice`); changes nothing.
    Advise,
    /// It plans and carries the plan out.
    Automatic,
}

impl Mode {
    /// The mode's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Advise => "advise",
            Mode::Automatic => "automatic",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "off" => Ok(Mode::Off),
            "advise" => Ok(Mode::Advise),
            "automatic" => Ok(Mode::Automatic),
            other => Err(format!("'{other}' is no automation mode (off, advise, automatic)")),
        }
    }
}

/// The pool's automation (`/vine/policy/settings`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Automation {
    /// The pool's mode (a VM's own mode overrides it).
    #[serde(default)]
    pub mode: Mode,
    /// The policy the pool runs.
    pub policy: policy::Policy,
    /// Seconds between two planning rounds.
    pub interval_s: u32,
    /// Live migrations run at once.
    pub parallel: u32,
    /// Migration threshold: 1 (only relieve overloaded hosts) to 5 (every move the policy plans).
    pub threshold: u8,
    /// A program run to power a host off (`PROGRAM off HOST`) when it goes to standby, and on
    /// (`PROGRAM on HOST`) when it is woken: wake-on-LAN, IPMI or Redfish, as the site has.
    /// None: standby is a state only (the host keeps running, takes no VMs, counts as off).
    #[serde(default)]
    pub power_program: Option<String>,
}

impl Default for Automation {
    fn default() -> Self {
        Automation {
            mode: Mode::Off,
            policy: policy::Policy::builtin(policy::spec::DEFAULT_POLICY)
                .expect("the default policy is built in"),
            interval_s: INTERVAL_DEFAULT_S,
            parallel: 2,
            threshold: policy::constraints::THRESHOLD_DEFAULT,
            power_program: None,
        }
    }
}

impl Automation {
    /// Checks every field; the error names the field and the value.
    pub fn validate(&self) -> Result<(), ClusterError> {
        self.policy.validate().map_err(|e| ClusterError::Invalid(format!("policy: {e}")))?;
        if !(INTERVAL_MIN_S..=INTERVAL_MAX_S).contains(&self.interval_s) {
            return Err(ClusterError::Invalid(format!(
                "interval: must be {INTERVAL_MIN_S} to {INTERVAL_MAX_S} seconds, got {}",
                self.interval_s
            )));
        }
        if !(1..=PARALLEL_MAX).contains(&self.parallel) {
            return Err(ClusterError::Invalid(format!(
                "parallel: must be 1 to {PARALLEL_MAX}, got {}",
                self.parallel
            )));
        }
        let t = policy::constraints::THRESHOLD_MIN..=policy::constraints::THRESHOLD_MAX;
        if !t.contains(&self.threshold) {
            return Err(ClusterError::Invalid(format!("threshold: must be 1 to 5, got {}", self.threshold)));
        }
        if let Some(p) = &self.power_program {
            if !p.starts_with('/') {
                return Err(ClusterError::Invalid(format!(
                    "power_program: must be an absolute path, got '{p}'"
                )));
            }
        }
        Ok(())
    }
}

/// One VM's rules (`/vine/policy/vms/VM`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VmRules {
    /// Its own mode (None: the pool's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// The host it runs on and nowhere else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<String>,
    /// Its affinity group: the group's VMs stay on one host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub together: Option<String>,
    /// Whether the pool's resizer may cap its CPU and size its balloon while it runs (in
    /// `automatic` mode; advised in `advise`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resize: bool,
}

impl VmRules {
    /// Whether these rules say nothing (the key is then removed).
    pub fn is_empty(&self) -> bool {
        self == &VmRules::default()
    }
}

/// One command of a round, as operators read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Action {
    /// What, with VM and host names ("migrate VM 'a' from host 'h1' to host 'h2'").
    pub text: String,
    /// Why, in sentences.
    pub why: String,
    /// `advised` (nothing done), `done`, `failed: …`, or `not done: …`.
    pub outcome: String,
}

/// What the coordinator's last round found and did (`/vine/policy/last`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Round {
    /// The coordinator's host.
    pub host: String,
    /// The round's number in the coordinator's run (from 1).
    pub round: u64,
    /// When it was planned, ms since the epoch.
    pub at_ms: i64,
    /// The policy.
    pub policy: String,
    /// The pool's mode then.
    pub mode: Mode,
    /// The commands, each with its outcome.
    pub actions: Vec<Action>,
    /// What the pool's rules kept the policy from doing, in sentences.
    pub held_back: Vec<String>,
    /// Hosts whose metrics could not be read, with why.
    pub unreachable: Vec<String>,
    /// Where the coordinator records every round's snapshot (on its host), for
    /// `vine policy simulate --replay`.
    pub record: String,
}

fn vm_key(vm: &str) -> String {
    format!("{VM_RULES}{vm}")
}

impl Cluster {
    /// The pool's automation (the defaults until an operator changed them).
    pub fn automation(&self) -> Result<Automation, ClusterError> {
        Ok(self.automation_rev()?.0)
    }

    fn automation_rev(&self) -> Result<(Automation, i64), ClusterError> {
        let mut c = self.client();
        let e = self.endpoints().to_string();
        self.block_on(async move {
            let r = timed!(&e, "reading the pool's automation", c.get(SETTINGS, None)).await?;
            match r.kvs().first() {
                Some(kv) => Ok((parse(SETTINGS, kv.value())?, kv.mod_revision())),
                None => Ok((Automation::default(), 0)),
            }
        })
    }

    /// Changes the pool's automation with `change`, validated, by compare-and-swap; returns
    /// what is stored.
    pub fn update_automation(
        &self,
        change: impl Fn(&mut Automation) -> Result<(), ClusterError>,
    ) -> Result<Automation, ClusterError> {
        for _ in 0..5 {
            let (mut a, rev) = self.automation_rev()?;
            change(&mut a)?;
            a.validate()?;
            let mut c = self.client();
            let e = self.endpoints().to_string();
            let value = json(&a);
            let won = self.block_on(async move {
                let cmp = if rev == 0 {
                    Compare::version(SETTINGS, CompareOp::Equal, 0)
                } else {
                    Compare::mod_revision(SETTINGS, CompareOp::Equal, rev)
                };
                let txn = Txn::new().when([cmp]).and_then([TxnOp::put(SETTINGS, value, None)]);
                Ok::<_, ClusterError>(
                    timed!(&e, "writing the pool's automation", c.txn(txn.clone())).await?.succeeded(),
                )
            })?;
            if won {
                return Ok(a);
            }
        }
        Err(ClusterError::Conflict("the pool's automation changed five times meanwhile; try again".into()))
    }

    /// Every VM's rules, by VM.
    pub fn vm_rules(&self) -> Result<BTreeMap<String, VmRules>, ClusterError> {
        let mut c = self.client();
        let e = self.endpoints().to_string();
        self.block_on(async move {
            let r = timed!(&e, "listing VM rules", c.get(VM_RULES, Some(GetOptions::new().with_prefix())))
                .await?;
            r.kvs()
                .iter()
                .map(|kv| {
                    let key = String::from_utf8_lossy(kv.key()).to_string();
                    Ok((key.trim_start_matches(VM_RULES).to_string(), parse(&key, kv.value())?))
                })
                .collect()
        })
    }

    /// Changes VM `vm`'s rules with `change`; rules that say nothing are removed.
    pub fn update_vm_rules(&self, vm: &str, change: impl Fn(&mut VmRules)) -> Result<VmRules, ClusterError> {
        let key = vm_key(vm);
        for _ in 0..5 {
            let mut c = self.client();
            let e = self.endpoints().to_string();
            let k = key.clone();
            let (mut rules, rev) = self.block_on(async move {
                let r =
                    timed!(&e, &format!("reading the rules of VM '{vm}'"), c.get(k.as_str(), None)).await?;
                match r.kvs().first() {
                    Some(kv) => Ok::<_, ClusterError>((parse::<VmRules>(&k, kv.value())?, kv.mod_revision())),
                    None => Ok((VmRules::default(), 0)),
                }
            })?;
            change(&mut rules);
            let mut c = self.client();
            let e = self.endpoints().to_string();
            let k = key.clone();
            let value = json(&rules);
            let empty = rules.is_empty();
            let won = self.block_on(async move {
                let cmp = if rev == 0 {
                    Compare::version(k.as_str(), CompareOp::Equal, 0)
                } else {
                    Compare::mod_revision(k.as_str(), CompareOp::Equal, rev)
                };
                let op =
                    if empty { TxnOp::delete(k.as_str(), None) } else { TxnOp::put(k.as_str(), value, None) };
                let txn = Txn::new().when([cmp]).and_then([op]);
                Ok::<_, ClusterError>(timed!(&e, "writing VM rules", c.txn(txn.clone())).await?.succeeded())
            })?;
            if won {
                return Ok(rules);
            }
        }
        Err(ClusterError::Conflict(format!("the rules of VM '{vm}' changed five times meanwhile; try again")))
    }

    /// Records the coordinator's last round.
    pub fn set_last_round(&self, round: &Round) -> Result<(), ClusterError> {
        let mut c = self.client();
        let e = self.endpoints().to_string();
        let value = json(round);
        self.block_on(async move {
            timed!(&e, "recording the policy's round", c.put(LAST, value.clone(), None)).await?;
            Ok(())
        })
    }

    /// The coordinator's last round, if it made one.
    pub fn last_round(&self) -> Result<Option<Round>, ClusterError> {
        let mut c = self.client();
        let e = self.endpoints().to_string();
        self.block_on(async move {
            let r = timed!(&e, "reading the policy's last round", c.get(LAST, None)).await?;
            r.kvs().first().map(|kv| parse(LAST, kv.value())).transpose()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bad_fields_are_named() {
        let a = Automation::default();
        a.validate().unwrap();
        assert_eq!(a.mode, Mode::Off);
        let bad = |f: fn(&mut Automation), field: &str| {
            let mut a = Automation::default();
            f(&mut a);
            let e = a.validate().unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
        };
        bad(|a| a.interval_s = 1, "interval");
        bad(|a| a.parallel = 0, "parallel");
        bad(|a| a.threshold = 6, "threshold");
        bad(|a| a.power_program = Some("power.sh".into()), "power_program");
    }

    #[test]
    fn modes_parse_and_print() {
        for m in [Mode::Off, Mode::Advise, Mode::Automatic] {
            assert_eq!(m.as_str().parse::<Mode>().unwrap(), m);
        }
        assert!("auto".parse::<Mode>().unwrap_err().contains("off, advise, automatic"));
        assert!(VmRules::default().is_empty());
        assert_eq!(serde_json::to_string(&VmRules::default()).unwrap(), "{}");
    }
}
