//! Sender: delivers prescribed commands to the hosts. A trait, so the live daemon and the
//! trace-driven simulator (which applies commands to its simulated data centre) plug in alike.

use crate::prescriber::Command;

/// Errors a sender reports.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// A host refused or could not run a command.
    #[error("host {host} refused '{command}': {why}")]
    Refused {
        /// Host id.
        host: u32,
        /// The command, as printed for operators.
        command: String,
        /// Why.
        why: String,
    },
}

/// Delivers commands, in order.
pub trait Sender {
    /// Sends every command; stops at the first refusal.
    fn send(&mut self, commands: &[Command]) -> Result<(), SendError>;
}

/// A sender that only records what it was given (for dry runs and tests).
#[derive(Debug, Default)]
pub struct Recorder {
    /// Everything sent so far.
    pub sent: Vec<Command>,
}

impl Sender for Recorder {
    fn send(&mut self, commands: &[Command]) -> Result<(), SendError> {
        self.sent.extend_from_slice(commands);
        Ok(())
    }
}
