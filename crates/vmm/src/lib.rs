//! The VM lifecycle: states, the controls an operator can apply, and which control is allowed
//! in which state ([`state::check`]). Every way in (CLI, REST, scripts) is refused or accepted
//! here, before anything touches QEMU.
#![warn(missing_docs)]

pub mod process;
pub mod qemu_args;
pub mod state;

pub use state::{Control, Refusal, VmState};
