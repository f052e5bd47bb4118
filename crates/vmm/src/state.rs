//! VM states and controls, with the one function that says which control is allowed when, and
//! what state it passes through and ends in. No wildcard arms: adding a state or a control
//! makes the compiler ask about every pair.

use serde::{Deserialize, Serialize};

/// Where a VM is. `vine vm show --json` reports it as the lower-case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum VmState {
    /// No process.
    Off,
    /// QEMU is starting; the guest has not run yet.
    Starting,
    /// The guest runs.
    Running,
    /// The guest is stopped in memory.
    Paused,
    /// Memory is being written to the saved-state file.
    Saving,
    /// No process; memory is in the saved-state file.
    Saved,
    /// A saved state is being loaded.
    Restoring,
    /// The guest was asked to shut down (ACPI) and has not yet.
    Stopping,
    /// QEMU ended without being asked to.
    Crashed,
    /// The guest runs here while a live migration copies it to another host.
    Migrating,
    /// A live migration brings the VM here: its emulator waits for the state (the guest runs on
    /// the source until switchover).
    Incoming,
    /// Not known: the VM's host is offline (a pool's listing says so of another host's VM;
    /// never the state of a VM on the host that answers).
    Unknown,
}

impl VmState {
    /// Every state, for tables and tests.
    pub const ALL: [VmState; 12] = [
        VmState::Off,
        VmState::Starting,
        VmState::Running,
        VmState::Paused,
        VmState::Saving,
        VmState::Saved,
        VmState::Restoring,
        VmState::Stopping,
        VmState::Crashed,
        VmState::Migrating,
        VmState::Incoming,
        VmState::Unknown,
    ];

    /// The name used in messages and JSON.
    pub fn name(self) -> &'static str {
        match self {
            VmState::Off => "off",
            VmState::Starting => "starting",
            VmState::Running => "running",
            VmState::Paused => "paused",
            VmState::Saving => "saving",
            VmState::Saved => "saved",
            VmState::Restoring => "restoring",
            VmState::Stopping => "stopping",
            VmState::Crashed => "crashed",
            VmState::Migrating => "migrating",
            VmState::Incoming => "incoming",
            VmState::Unknown => "unknown",
        }
    }

    /// Whether a QEMU process exists in this state.
    pub fn has_process(self) -> bool {
        match self {
            VmState::Starting
            | VmState::Running
            | VmState::Paused
            | VmState::Saving
            | VmState::Restoring
            | VmState::Stopping
            | VmState::Migrating
            | VmState::Incoming => true,
            VmState::Off | VmState::Saved | VmState::Crashed | VmState::Unknown => false,
        }
    }
}

/// The operator's controls (Virtual Server's set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Control {
    /// Turn on.
    Start,
    /// Stop the guest in memory.
    Pause,
    /// Continue a paused guest.
    Resume,
    /// Write memory to disk and stop.
    Save,
    /// Continue from a saved state.
    Restore,
    /// Throw a saved state away.
    DiscardState,
    /// Ask the guest OS to shut down (ACPI).
    Shutdown,
    /// Cut the power.
    Off,
    /// Press the reset button.
    Reset,
    /// Unregister the VM, keeping its files.
    Remove,
    /// Unregister the VM and delete its files.
    Delete,
}

impl Control {
    /// Every control, for tables and tests.
    pub const ALL: [Control; 11] = [
        Control::Start,
        Control::Pause,
        Control::Resume,
        Control::Save,
        Control::Restore,
        Control::DiscardState,
        Control::Shutdown,
        Control::Off,
        Control::Reset,
        Control::Remove,
        Control::Delete,
    ];

    /// The verb used in messages.
    pub fn verb(self) -> &'static str {
        match self {
            Control::Start => "start",
            Control::Pause => "pause",
            Control::Resume => "resume",
            Control::Save => "save",
            Control::Restore => "restore",
            Control::DiscardState => "discard the saved state of",
            Control::Shutdown => "shut down",
            Control::Off => "turn off",
            Control::Reset => "reset",
            Control::Remove => "remove",
            Control::Delete => "delete",
        }
    }
}

impl Control {
    /// The past tense used in events and confirmations ("paused 'web1'").
    pub fn past(self) -> &'static str {
        match self {
            Control::Start => "started",
            Control::Pause => "paused",
            Control::Resume => "resumed",
            Control::Save => "saved",
            Control::Restore => "restored",
            Control::DiscardState => "discarded the saved state of",
            Control::Shutdown => "shut down",
            Control::Off => "turned off",
            Control::Reset => "reset",
            Control::Remove => "removed",
            Control::Delete => "deleted",
        }
    }
}

/// An accepted control: the state while it runs and the state when it has succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// State while the control is carried out.
    pub during: VmState,
    /// State after success (`None` = the VM no longer exists).
    pub after: Option<VmState>,
}

/// A refused control, with the reason an operator reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {verb} '{vm}': {reason}")]
pub struct Refusal {
    /// The control's verb.
    pub verb: &'static str,
    /// The VM.
    pub vm: String,
    /// Why, e.g. "it is off".
    pub reason: String,
}

fn go(during: VmState, after: VmState) -> Result<Transition, String> {
    Ok(Transition { during, after: Some(after) })
}

fn gone(during: VmState) -> Result<Transition, String> {
    Ok(Transition { during, after: None })
}

/// Whether `control` is allowed in `state`, and the states it goes through.
pub fn transition(state: VmState, control: Control) -> Result<Transition, String> {
    use Control as C;
    use VmState as S;
    let busy = |s: VmState| Err(format!("it is {} (wait until that finishes)", s.name()));
    match (control, state) {
        (_, S::Unknown) => {
            Err("its host is offline, so no one can say what state it is in: wait until the host is back \
                 (vine host list)"
                .into())
        }
        (_, S::Migrating) => Err("it is migrating to another host (wait until that finishes, or cancel it: \
                                  vine vm migrate NAME --cancel)"
            .into()),
        (_, S::Incoming) => {
            Err("it is arriving from another host by live migration (wait until that finishes)".into())
        }
        (C::Start, S::Off | S::Crashed) => go(S::Starting, S::Running),
        (C::Start, S::Saved) => Err("it has a saved state: restore it, or discard the state first".into()),
        (C::Start, S::Running | S::Paused | S::Stopping) => Err(format!("it is already {}", state.name())),
        (C::Start, S::Starting | S::Saving | S::Restoring) => busy(state),

        (C::Pause, S::Running) => go(S::Running, S::Paused),
        (C::Pause, S::Paused) => Err("it is already paused".into()),
        (C::Pause, S::Off | S::Saved | S::Crashed) => Err(format!("it is {}", state.name())),
        (C::Pause, S::Starting | S::Saving | S::Restoring | S::Stopping) => busy(state),

        (C::Resume, S::Paused) => go(S::Paused, S::Running),
        (C::Resume, S::Running) => Err("it is not paused".into()),
        (C::Resume, S::Saved) => Err("it is saved: use restore".into()),
        (C::Resume, S::Off | S::Crashed) => Err(format!("it is {}", state.name())),
        (C::Resume, S::Starting | S::Saving | S::Restoring | S::Stopping) => busy(state),

        (C::Save, S::Running | S::Paused) => go(S::Saving, S::Saved),
        (C::Save, S::Saved) => Err("it is already saved".into()),
        (C::Save, S::Off | S::Crashed) => {
            Err(format!("it is {}: there is no running state to save", state.name()))
        }
        (C::Save, S::Starting | S::Saving | S::Restoring | S::Stopping) => busy(state),

        (C::Restore, S::Saved) => go(S::Restoring, S::Running),
        (C::Restore, S::Off | S::Crashed) => Err(format!("it is {} and has no saved state", state.name())),
        (C::Restore, S::Running | S::Paused) => Err(format!("it is {}", state.name())),
        (C::Restore, S::Starting | S::Saving | S::Restoring | S::Stopping) => busy(state),

        (C::DiscardState, S::Saved) => go(S::Saved, S::Off),
        (C::DiscardState, S::Off | S::Crashed | S::Running | S::Paused) => {
            Err(format!("it is {} and has no saved state", state.name()))
        }
        (C::DiscardState, S::Starting | S::Saving | S::Restoring | S::Stopping) => busy(state),

        (C::Shutdown, S::Running) => go(S::Stopping, S::Off),
        (C::Shutdown, S::Paused) => {
            Err("it is paused: the guest cannot answer; resume it or turn it off".into())
        }
        (C::Shutdown, S::Stopping) => Err("it is already shutting down".into()),
        (C::Shutdown, S::Off | S::Saved | S::Crashed) => Err(format!("it is {}", state.name())),
        (C::Shutdown, S::Starting | S::Saving | S::Restoring) => busy(state),

        (C::Off, S::Running | S::Paused | S::Stopping | S::Starting | S::Restoring) => go(state, S::Off),
        (C::Off, S::Saving) => busy(state),
        (C::Off, S::Off | S::Saved | S::Crashed) => Err(format!("it is {}", state.name())),

        (C::Reset, S::Running | S::Paused) => go(state, S::Running),
        (C::Reset, S::Off | S::Saved | S::Crashed) => Err(format!("it is {}", state.name())),
        (C::Reset, S::Starting | S::Saving | S::Restoring | S::Stopping) => busy(state),

        (C::Remove | C::Delete, S::Off | S::Crashed) => gone(state),
        (C::Remove | C::Delete, S::Saved) => Err("it has a saved state: discard it first".into()),
        (C::Remove | C::Delete, S::Running | S::Paused | S::Stopping) => {
            Err(format!("it is {}: turn it off first", state.name()))
        }
        (C::Remove | C::Delete, S::Starting | S::Saving | S::Restoring) => busy(state),
    }
}

/// [`transition`] with the refusal worded for `vm`.
pub fn check(vm: &str, state: VmState, control: Control) -> Result<Transition, Refusal> {
    transition(state, control).map_err(|reason| Refusal { verb: control.verb(), vm: vm.to_string(), reason })
}

#[cfg(test)]
mod tests {
    use super::*;
    use Control as C;
    use VmState as S;

    /// A control's row: the states it is allowed in, with the end state (`None` = VM gone).
    type Row = (Control, &'static [(VmState, Option<VmState>)]);

    /// The whole table: (control, state) → allowed end state, `None` = refused. Written out so a
    /// change to the rules is a visible change here.
    fn expected(c: Control, s: VmState) -> Option<Option<VmState>> {
        let table: &[Row] = &[
            (C::Start, &[(S::Off, Some(S::Running)), (S::Crashed, Some(S::Running))]),
            (C::Pause, &[(S::Running, Some(S::Paused))]),
            (C::Resume, &[(S::Paused, Some(S::Running))]),
            (C::Save, &[(S::Running, Some(S::Saved)), (S::Paused, Some(S::Saved))]),
            (C::Restore, &[(S::Saved, Some(S::Running))]),
            (C::DiscardState, &[(S::Saved, Some(S::Off))]),
            (C::Shutdown, &[(S::Running, Some(S::Off))]),
            (
                C::Off,
                &[
                    (S::Running, Some(S::Off)),
                    (S::Paused, Some(S::Off)),
                    (S::Stopping, Some(S::Off)),
                    (S::Starting, Some(S::Off)),
                    (S::Restoring, Some(S::Off)),
                ],
            ),
            (C::Reset, &[(S::Running, Some(S::Running)), (S::Paused, Some(S::Running))]),
            (C::Remove, &[(S::Off, None), (S::Crashed, None)]),
            (C::Delete, &[(S::Off, None), (S::Crashed, None)]),
        ];
        let (_, row) = table.iter().find(|(k, _)| *k == c).expect("every control has a row");
        row.iter().find(|(k, _)| *k == s).map(|(_, after)| *after)
    }

    #[test]
    fn every_state_control_pair_matches_the_table() {
        for c in Control::ALL {
            for s in VmState::ALL {
                let got = transition(s, c).map(|t| t.after).ok();
                assert_eq!(got, expected(c, s), "{c:?} in {s:?}");
            }
        }
    }

    #[test]
    fn refusals_read_as_sentences() {
        assert_eq!(
            check("web1", S::Off, C::Pause).unwrap_err().to_string(),
            "cannot pause 'web1': it is off"
        );
        assert_eq!(
            check("db", S::Saved, C::Start).unwrap_err().to_string(),
            "cannot start 'db': it has a saved state: restore it, or discard the state first"
        );
        assert_eq!(
            check("db", S::Running, C::Delete).unwrap_err().to_string(),
            "cannot delete 'db': it is running: turn it off first"
        );
        assert_eq!(
            check("x", S::Saving, C::Off).unwrap_err().to_string(),
            "cannot turn off 'x': it is saving (wait until that finishes)"
        );
    }

    #[test]
    fn controls_that_run_pass_through_a_busy_state() {
        assert_eq!(transition(S::Running, C::Save).unwrap().during, S::Saving);
        assert_eq!(transition(S::Saved, C::Restore).unwrap().during, S::Restoring);
        assert_eq!(transition(S::Running, C::Shutdown).unwrap().during, S::Stopping);
        assert_eq!(transition(S::Off, C::Start).unwrap().during, S::Starting);
    }

    #[test]
    fn states_serialise_as_the_names_the_cli_shows() {
        for s in VmState::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), serde_json::json!(s.name()));
        }
        assert_eq!(serde_json::to_value(C::DiscardState).unwrap(), serde_json::json!("discard-state"));
    }

    #[test]
    fn only_process_states_have_a_process() {
        assert!(S::Running.has_process() && S::Stopping.has_process());
        assert!(!S::Off.has_process() && !S::Saved.has_process() && !S::Crashed.has_process());
    }
}
