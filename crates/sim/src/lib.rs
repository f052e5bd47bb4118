//! Trace-driven simulator for vine's policies.
//!
//! * [`trace`]: loading PlanetLab day directories (errors name file and line).
//! * [`datacenter`]: the simulated data centre, a faithful model of CloudSim 3.0.3's power package.
//! * [`metrics`]: energy, SLATAH, PDM, SLAV, ESV.
//! * [`run`]: one simulated day under one policy; its Sender applies the policy's commands.
//! * [`plot`]: an SVG of energy and SLA violation over the day for several policies.
#![warn(missing_docs)]

pub mod bench;
pub mod datacenter;
pub mod metrics;
pub mod plot;
pub mod run;
pub mod trace;

pub use datacenter::MemoryModel;
pub use metrics::Metrics;
pub use run::{simulate, Report, Setup, DEFAULT_HOSTS};
pub use trace::{load_day, Trace, TraceError};
