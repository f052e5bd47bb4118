//! Policies as data: what the operator writes (TOML or JSON) and the built-in baselines, which are
//! policies like any other. Owns parsing and validation; no I/O (callers pass the text).

use serde::{Deserialize, Serialize};

/// What a policy optimises for first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Goal {
    /// Spread load evenly; never empty hosts to save power.
    Balance,
    /// Use as few hosts as the load allows (switch the rest off).
    Consolidate,
    /// Keep every VM's demand met first; consolidate only with a wide margin.
    SlaFirst,
}

/// How the pool's energy is accounted (a property of the data centre the policy assumes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PowerMode {
    /// Hosts draw full power all the time (CloudSim's "non power aware", NPA).
    AlwaysMax,
    /// Hosts draw power according to their load; an idle host is off (DVFS and all others).
    Dynamic,
}

/// Where a new or moving VM goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlacementRule {
    /// The first host with room (CloudSim's `PowerVmAllocationPolicySimple`).
    FirstFit,
    /// The host whose power rises least (power-aware best fit decreasing, PABFD).
    PowerAwareBestFit,
}

/// How a host is judged overloaded (the Optimizer's upper threshold).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "kebab-case", deny_unknown_fields)]
pub enum OverloadRule {
    /// Requested CPU above a static fraction of capacity.
    Thr {
        /// Fraction of capacity, e.g. 0.8.
        threshold: f64,
    },
    /// Requested CPU above 1 − safety × inter-quartile range of the host's history.
    Iqr {
        /// Safety parameter, e.g. 1.5.
        safety: f64,
    },
    /// Requested CPU above 1 − safety × median absolute deviation of the host's history.
    Mad {
        /// Safety parameter, e.g. 2.5.
        safety: f64,
    },
    /// Local regression forecast × safety ≥ 1.
    Lr {
        /// Safety parameter, e.g. 1.2.
        safety: f64,
    },
    /// Robust local regression forecast × safety ≥ 1.
    Lrr {
        /// Safety parameter, e.g. 1.2.
        safety: f64,
    },
}

/// Which VM leaves an overloaded host first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SelectionRule {
    /// Minimum migration time: the VM with the least memory.
    Mmt,
}

/// How the Predictor forecasts a VM's or host's next demand.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "kebab-case", deny_unknown_fields)]
pub enum PredictionRule {
    /// Next = the current value.
    Last,
    /// Ordinary least squares over the last `window` samples, extrapolated one interval.
    LocalRegression {
        /// Samples used.
        window: usize,
    },
    /// A high quantile of the last `window` samples (a demand envelope).
    Quantile {
        /// Samples used.
        window: usize,
        /// Quantile in 0..=1, e.g. 0.9.
        q: f64,
    },
}

/// CloudSim's reactive consolidation loop (its `PowerVmAllocationPolicyMigration*` classes).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReactiveSpec {
    /// Overload detection.
    pub overload: OverloadRule,
    /// VM selection.
    pub selection: SelectionRule,
    /// Fallback static threshold while a host has too little history (CloudSim: 0.7).
    #[serde(default = "default_fallback")]
    pub fallback_threshold: f64,
}

fn default_fallback() -> f64 {
    0.7
}

fn default_lower_memory() -> f64 {
    PredictiveSpec::VINE_DEFAULT.lower_memory
}

fn default_consolidation_horizon() -> f64 {
    PredictiveSpec::VINE_DEFAULT.consolidation_horizon
}

/// vine's predictive, migration-aware planner.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictiveSpec {
    /// How each VM's demand over the next interval is forecast.
    pub prediction: PredictionRule,
    /// A host is overloaded when its forecast demand exceeds this fraction of capacity.
    pub upper: f64,
    /// Targets are filled only up to this fraction of capacity (forecast demand).
    pub target_fill: f64,
    /// A host whose forecast is below this fraction is a candidate to be emptied.
    pub lower: f64,
    /// ... unless its VMs occupy at least this fraction of its memory: where memory binds, such a
    /// host is well used however idle its CPU, and emptying it frees little room elsewhere.
    /// Default: the `vine` policy's.
    #[serde(default = "default_lower_memory")]
    pub lower_memory: f64,
    /// A host is emptied only when the energy it draws over this many intervals, as a share of the
    /// energy used so far, is at least the share its migrations add to the CPU lost to migrations
    /// so far (ESV is energy × SLA violation: each side weighed by its relative change).
    /// Default: the `vine` policy's.
    #[serde(default = "default_consolidation_horizon")]
    pub consolidation_horizon: f64,
    /// At most this many migrations per interval (0 = no limit).
    pub max_migrations_per_interval: u32,
    /// Let the Validator widen the margin when forecasts were too low.
    pub adaptive_margin: bool,
}

/// What the policy does between intervals.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Migrations {
    /// Never migrate (NPA, DVFS).
    None,
    /// CloudSim's reactive heuristics.
    Reactive(ReactiveSpec),
    /// vine's predictive planner.
    Predictive(PredictiveSpec),
}

/// A complete policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Short name (`thr-mmt-0.8`).
    pub name: String,
    /// One sentence for operators.
    #[serde(default)]
    pub description: String,
    /// What it optimises first.
    pub goal: Goal,
    /// Energy accounting it assumes.
    #[serde(default = "default_power")]
    pub power: PowerMode,
    /// Placement of new and moving VMs.
    pub placement: PlacementRule,
    /// Migration behaviour.
    pub migrations: Migrations,
}

fn default_power() -> PowerMode {
    PowerMode::Dynamic
}

/// Errors reading or checking a policy.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The text is not valid TOML for a policy.
    #[error("policy is not valid TOML: {0}")]
    Toml(#[from] toml::de::Error),
    /// The text is not valid JSON for a policy.
    #[error("policy is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A field is out of range.
    #[error("policy '{policy}': field '{field}' is {value}, must be {expected}")]
    Invalid {
        /// Policy name.
        policy: String,
        /// Field path.
        field: &'static str,
        /// Value found.
        value: f64,
        /// What is allowed.
        expected: &'static str,
    },
    /// No built-in policy has this name.
    #[error("no built-in policy named '{0}' (built-ins: {names})", names = BUILTIN_NAMES.join(", "))]
    UnknownBuiltin(String),
}

/// Names of the built-in policies, baselines first, ours (`vine`, the default) last.
pub const BUILTIN_NAMES: &[&str] =
    &["npa", "dvfs", "thr-mmt-0.8", "iqr-mmt-1.5", "mad-mmt-2.5", "lr-mmt-1.2", "lrr-mmt-1.2", "vine"];

/// The default policy's name.
pub const DEFAULT_POLICY: &str = "vine";

impl Migrations {
    /// The threshold a host must stay under when VMs are first placed (when nothing has history
    /// yet): the static threshold, or the fallback of the history-based rules; `None` without
    /// migrations (first placement is then not load-checked).
    pub fn initial_threshold(&self) -> Option<f64> {
        match self {
            Migrations::None => None,
            Migrations::Reactive(r) => Some(match r.overload {
                OverloadRule::Thr { threshold } => threshold,
                _ => r.fallback_threshold,
            }),
            Migrations::Predictive(p) => Some(p.target_fill),
        }
    }
}

impl Policy {
    /// A built-in policy by name.
    pub fn builtin(name: &str) -> Result<Policy, PolicyError> {
        let reactive = |overload| {
            Migrations::Reactive(ReactiveSpec {
                overload,
                selection: SelectionRule::Mmt,
                fallback_threshold: default_fallback(),
            })
        };
        let (goal, power, placement, migrations, description) = match name {
            "npa" => (
                Goal::Balance,
                PowerMode::AlwaysMax,
                PlacementRule::FirstFit,
                Migrations::None,
                "No power awareness: first fit, no migrations, every host at full power.",
            ),
            "dvfs" => (
                Goal::Balance,
                PowerMode::Dynamic,
                PlacementRule::FirstFit,
                Migrations::None,
                "First fit, no migrations, power follows load (DVFS).",
            ),
            "thr-mmt-0.8" => (
                Goal::Consolidate,
                PowerMode::Dynamic,
                PlacementRule::PowerAwareBestFit,
                reactive(OverloadRule::Thr { threshold: 0.8 }),
                "Static threshold 80 %, minimum migration time, power-aware best fit.",
            ),
            "iqr-mmt-1.5" => (
                Goal::Consolidate,
                PowerMode::Dynamic,
                PlacementRule::PowerAwareBestFit,
                reactive(OverloadRule::Iqr { safety: 1.5 }),
                "Threshold 1 − 1.5 × IQR of the host's history, minimum migration time.",
            ),
            "mad-mmt-2.5" => (
                Goal::Consolidate,
                PowerMode::Dynamic,
                PlacementRule::PowerAwareBestFit,
                reactive(OverloadRule::Mad { safety: 2.5 }),
                "Threshold 1 − 2.5 × MAD of the host's history, minimum migration time.",
            ),
            "lr-mmt-1.2" => (
                Goal::Consolidate,
                PowerMode::Dynamic,
                PlacementRule::PowerAwareBestFit,
                reactive(OverloadRule::Lr { safety: 1.2 }),
                "Local regression forecast × 1.2 ≥ 100 %, minimum migration time.",
            ),
            "lrr-mmt-1.2" => (
                Goal::Consolidate,
                PowerMode::Dynamic,
                PlacementRule::PowerAwareBestFit,
                reactive(OverloadRule::Lrr { safety: 1.2 }),
                "Robust local regression forecast × 1.2 ≥ 100 %, minimum migration time.",
            ),
            "vine" => (
                Goal::Consolidate,
                PowerMode::Dynamic,
                PlacementRule::FirstFit,
                Migrations::Predictive(PredictiveSpec::VINE_DEFAULT),
                "vine: forecast each VM's demand, move few VMs with the most effect, explain every move.",
            ),
            other => return Err(PolicyError::UnknownBuiltin(other.to_string())),
        };
        Ok(Policy {
            name: name.to_string(),
            description: description.to_string(),
            goal,
            power,
            placement,
            migrations,
        })
    }

    /// Parses a policy from TOML text and validates it.
    pub fn from_toml(text: &str) -> Result<Policy, PolicyError> {
        let p: Policy = toml::from_str(text)?;
        p.validate()?;
        Ok(p)
    }

    /// Parses a policy from JSON text and validates it.
    pub fn from_json(text: &str) -> Result<Policy, PolicyError> {
        let p: Policy = serde_json::from_str(text)?;
        p.validate()?;
        Ok(p)
    }

    /// Serialises to TOML (for `vine policy show` and for operators to start from).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a policy always serialises to TOML")
    }

    /// Checks every number; the error names the field.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let bad = |field, value, expected| PolicyError::Invalid {
            policy: self.name.clone(),
            field,
            value,
            expected,
        };
        let fraction = |field, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(bad(field, v, "a fraction between 0 and 1"))
            }
        };
        let positive =
            |field, v: f64| if v > 0.0 && v.is_finite() { Ok(()) } else { Err(bad(field, v, "> 0")) };
        match &self.migrations {
            Migrations::None => {}
            Migrations::Reactive(r) => {
                fraction("migrations.fallback_threshold", r.fallback_threshold)?;
                match r.overload {
                    OverloadRule::Thr { threshold } => fraction("migrations.overload.threshold", threshold)?,
                    OverloadRule::Iqr { safety }
                    | OverloadRule::Mad { safety }
                    | OverloadRule::Lr { safety }
                    | OverloadRule::Lrr { safety } => positive("migrations.overload.safety", safety)?,
                }
            }
            Migrations::Predictive(p) => {
                fraction("migrations.upper", p.upper)?;
                fraction("migrations.target_fill", p.target_fill)?;
                fraction("migrations.lower", p.lower)?;
                fraction("migrations.lower_memory", p.lower_memory)?;
                positive("migrations.consolidation_horizon", p.consolidation_horizon)?;
                if p.lower >= p.upper {
                    return Err(bad("migrations.lower", p.lower, "below migrations.upper"));
                }
                match p.prediction {
                    PredictionRule::Last => {}
                    PredictionRule::LocalRegression { window } | PredictionRule::Quantile { window, .. }
                        if !(2..=crate::model::HISTORY_LENGTH).contains(&window) =>
                    {
                        return Err(bad("migrations.prediction.window", window as f64, "between 2 and 30"));
                    }
                    PredictionRule::Quantile { q, .. } => fraction("migrations.prediction.q", q)?,
                    PredictionRule::LocalRegression { .. } => {}
                }
            }
        }
        Ok(())
    }
}
