//! vine's policy-based workload manager (MISSION C7), one module per pipeline stage:
//!
//! * [`receiver`]: periodic measurements → per-VM utilisation histories.
//! * [`profiler`]: host and VM usage profiles and the statistics over them.
//! * [`validator`]: scores past forecasts and re-fits the forecast margin.
//! * [`ledger`]: energy used and CPU lost to migrations so far, to weigh a consolidation.
//! * [`predictor`]: each VM's demand over the next interval.
//! * [`optimizer`]: upper/lower thresholds (THR, IQR, MAD, local regression).
//! * [`migrator`]: which VMs move, in what order, to where (MMT, PABFD, CloudSim's loop).
//! * [`allocator`]: per-VM CPU grants on a host (time-shared, oversubscribable).
//! * [`prescriber`]: plan → commands, each with its reason in sentences.
//! * [`sender`]: the trait that delivers commands (live hosts or the simulator).
//!
//! [`replay`] is one live round (plan, rules, commands) and its record, replayed.
//! [`constraints`] holds the operator's rules every live plan keeps (pins, groups, threshold).
//! [`spec`] holds policies as data (built-in baselines included), [`planner`] runs one step,
//! [`vine`] is vine's own predictive planner.
//!
//! **Invariant:** this crate does no I/O and is deterministic: the same snapshot and policy state
//! give the same plan.
#![warn(missing_docs)]

pub mod allocator;
pub mod constraints;
pub mod ledger;
pub mod migrator;
pub mod model;
pub mod optimizer;
pub mod planner;
pub mod predictor;
pub mod prescriber;
pub mod profiler;
pub mod receiver;
pub mod replay;
pub mod resizer;
pub mod sender;
pub mod spec;
pub mod state;
pub mod validator;
pub mod vine;

pub use constraints::Constraints;
pub use model::{HostId, HostSpec, HostView, Migration, Plan, PowerCurve, Reason, Snapshot, VmId, VmView};
pub use planner::Planner;
pub use prescriber::{prescribe, Command};
pub use sender::Sender;
pub use spec::{Policy, PolicyError};
