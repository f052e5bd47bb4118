//! Power as Redfish and vine each see it: a VM's state as `PowerState` and `Status`, a host's
//! state as `Status`, and a `ResetType` as the vine controls that carry it out from a VM's state
//! (pure, table-tested over every pair).

use cluster::HostState;
use serde::Serialize;
use vmm::{Control, VmState};

/// `Status.State` (Resource schema).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum State {
    /// Working.
    Enabled,
    /// Enabled, but waits for an action to run (a VM that is off).
    StandbyOffline,
    /// Enabled, doing only a restricted set of things (a paused VM, a host in maintenance).
    Quiesced,
    /// Coming up.
    Starting,
    /// Not reachable (an offline host).
    UnavailableOffline,
}

/// `Status.Health` (Resource schema).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Health {
    /// Normal.
    OK,
    /// Needs attention.
    Warning,
    /// Needs attention now.
    Critical,
}

/// `Status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Status {
    /// Its state.
    pub state: State,
    /// Its health.
    pub health: Health,
}

/// `PowerState` (Resource schema; `Paused` is the schema's own value for a paused VM).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PowerState {
    /// On.
    On,
    /// Off (a VM with a saved state included: no process runs it).
    Off,
    /// Between off and on.
    PoweringOn,
    /// Between on and off.
    PoweringOff,
    /// Stopped in memory.
    Paused,
}

/// A VM's power state; none (`null`, as the schema allows) while its host is offline.
pub fn power_state(s: VmState) -> Option<PowerState> {
    Some(match s {
        VmState::Off | VmState::Saved | VmState::Crashed => PowerState::Off,
        VmState::Starting | VmState::Restoring | VmState::Incoming => PowerState::PoweringOn,
        VmState::Running | VmState::Migrating => PowerState::On,
        VmState::Paused => PowerState::Paused,
        VmState::Saving | VmState::Stopping => PowerState::PoweringOff,
        VmState::Unknown => return None,
    })
}

/// A VM's status: a crash is critical, a VM whose last control failed needs attention.
pub fn vm_status(s: VmState, last_error: bool) -> Status {
    let state = match s {
        VmState::Off | VmState::Saved | VmState::Crashed => State::StandbyOffline,
        VmState::Starting | VmState::Restoring | VmState::Incoming => State::Starting,
        VmState::Running | VmState::Saving | VmState::Stopping | VmState::Migrating => State::Enabled,
        VmState::Paused => State::Quiesced,
        VmState::Unknown => State::UnavailableOffline,
    };
    let health = match (s, last_error) {
        (VmState::Crashed | VmState::Unknown, _) => Health::Critical,
        (_, true) => Health::Warning,
        (_, false) => Health::OK,
    };
    Status { state, health }
}

/// A host's status.
pub fn host_status(s: HostState) -> Status {
    match s {
        HostState::Online => Status { state: State::Enabled, health: Health::OK },
        HostState::Maintenance => Status { state: State::Quiesced, health: Health::OK },
        HostState::Offline => Status { state: State::UnavailableOffline, health: Health::Critical },
        HostState::Standby => Status { state: State::StandbyOffline, health: Health::OK },
    }
}

/// `ResetType` values this service accepts (Resource schema).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ResetType {
    /// Turn on (a paused VM resumes, a saved one is restored).
    On,
    /// The same as `On`.
    ForceOn,
    /// Cut the power.
    ForceOff,
    /// Ask the guest to shut down (ACPI).
    GracefulShutdown,
    /// Shut the guest down, then turn it on.
    GracefulRestart,
    /// Press the reset button.
    ForceRestart,
    /// Press the power button: on if off, an ACPI shutdown if on.
    PushPowerButton,
    /// Stop the guest in memory.
    Pause,
    /// Continue a paused guest.
    Resume,
    /// Write memory to disk and stop (vine's save); `On` restores it.
    Suspend,
}

impl ResetType {
    /// Every value, as `ResetType@Redfish.AllowableValues` lists them.
    pub const ALL: [ResetType; 10] = [
        ResetType::On,
        ResetType::ForceOn,
        ResetType::ForceOff,
        ResetType::GracefulShutdown,
        ResetType::GracefulRestart,
        ResetType::ForceRestart,
        ResetType::PushPowerButton,
        ResetType::Pause,
        ResetType::Resume,
        ResetType::Suspend,
    ];

    /// The value by its name.
    pub fn parse(name: &str) -> Option<ResetType> {
        ResetType::ALL.into_iter().find(|r| r.name() == name)
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            ResetType::On => "On",
            ResetType::ForceOn => "ForceOn",
            ResetType::ForceOff => "ForceOff",
            ResetType::GracefulShutdown => "GracefulShutdown",
            ResetType::GracefulRestart => "GracefulRestart",
            ResetType::ForceRestart => "ForceRestart",
            ResetType::PushPowerButton => "PushPowerButton",
            ResetType::Pause => "Pause",
            ResetType::Resume => "Resume",
            ResetType::Suspend => "Suspend",
        }
    }
}

/// The vine controls that carry out `reset` on a VM in state `s`, in order. Empty when the VM
/// already is where the reset leads (turning on a VM that is on, off one that is off), so a
/// client may repeat a reset. Where the reset cannot apply (a graceful shutdown of a paused
/// VM, a restart of one that is off, anything during a transition) the natural control is
/// returned anyway, for vine's own check to refuse with its reason (409).
pub fn plan(reset: ResetType, s: VmState) -> Vec<Control> {
    use Control as C;
    use VmState as S;
    // A VM whose host is offline (`Unknown`) gets the reset's main control, which vine refuses
    // saying the host is offline.
    match reset {
        ResetType::On | ResetType::ForceOn => match s {
            S::Off | S::Crashed | S::Unknown => vec![C::Start],
            S::Saved => vec![C::Restore],
            S::Paused => vec![C::Resume],
            S::Running | S::Starting | S::Restoring => vec![],
            S::Stopping | S::Saving | S::Migrating | S::Incoming => vec![C::Start],
        },
        ResetType::ForceOff => match s {
            S::Running
            | S::Paused
            | S::Starting
            | S::Restoring
            | S::Stopping
            | S::Saving
            | S::Migrating
            | S::Incoming
            | S::Unknown => {
                vec![C::Off]
            }
            S::Off | S::Saved | S::Crashed => vec![],
        },
        ResetType::GracefulShutdown => match s {
            S::Off | S::Saved | S::Crashed => vec![],
            S::Running
            | S::Paused
            | S::Starting
            | S::Restoring
            | S::Stopping
            | S::Saving
            | S::Migrating
            | S::Incoming
            | S::Unknown => {
                vec![C::Shutdown]
            }
        },
        ResetType::GracefulRestart => match s {
            S::Running => vec![C::Shutdown, C::Start],
            S::Off
            | S::Saved
            | S::Crashed
            | S::Paused
            | S::Starting
            | S::Restoring
            | S::Stopping
            | S::Saving
            | S::Migrating
            | S::Incoming
            | S::Unknown => {
                vec![C::Shutdown]
            }
        },
        ResetType::ForceRestart => match s {
            S::Running
            | S::Paused
            | S::Off
            | S::Saved
            | S::Crashed
            | S::Starting
            | S::Restoring
            | S::Stopping
            | S::Saving
            | S::Migrating
            | S::Incoming
            | S::Unknown => vec![C::Reset],
        },
        ResetType::PushPowerButton => match s {
            S::Off | S::Crashed | S::Unknown => vec![C::Start],
            S::Saved => vec![C::Restore],
            S::Running
            | S::Paused
            | S::Starting
            | S::Restoring
            | S::Stopping
            | S::Saving
            | S::Migrating
            | S::Incoming => {
                vec![C::Shutdown]
            }
        },
        ResetType::Pause => match s {
            S::Paused => vec![],
            S::Running
            | S::Off
            | S::Saved
            | S::Crashed
            | S::Starting
            | S::Restoring
            | S::Stopping
            | S::Saving
            | S::Migrating
            | S::Incoming
            | S::Unknown => {
                vec![C::Pause]
            }
        },
        ResetType::Resume => match s {
            S::Running => vec![],
            S::Paused
            | S::Off
            | S::Saved
            | S::Crashed
            | S::Starting
            | S::Restoring
            | S::Stopping
            | S::Saving
            | S::Migrating
            | S::Incoming
            | S::Unknown => {
                vec![C::Resume]
            }
        },
        ResetType::Suspend => match s {
            S::Saved => vec![],
            S::Running
            | S::Paused
            | S::Off
            | S::Crashed
            | S::Starting
            | S::Restoring
            | S::Stopping
            | S::Saving
            | S::Migrating
            | S::Incoming
            | S::Unknown => {
                vec![C::Save]
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_vm_state_has_a_power_state_and_a_status() {
        let want = [
            (VmState::Off, PowerState::Off, State::StandbyOffline, Health::OK),
            (VmState::Starting, PowerState::PoweringOn, State::Starting, Health::OK),
            (VmState::Running, PowerState::On, State::Enabled, Health::OK),
            (VmState::Paused, PowerState::Paused, State::Quiesced, Health::OK),
            (VmState::Saving, PowerState::PoweringOff, State::Enabled, Health::OK),
            (VmState::Saved, PowerState::Off, State::StandbyOffline, Health::OK),
            (VmState::Restoring, PowerState::PoweringOn, State::Starting, Health::OK),
            (VmState::Stopping, PowerState::PoweringOff, State::Enabled, Health::OK),
            (VmState::Crashed, PowerState::Off, State::StandbyOffline, Health::Critical),
            (VmState::Migrating, PowerState::On, State::Enabled, Health::OK),
            (VmState::Incoming, PowerState::PoweringOn, State::Starting, Health::OK),
        ];
        assert_eq!(want.len() + 1, VmState::ALL.len());
        assert_eq!(
            power_state(VmState::Unknown),
            None,
            "a VM whose host is offline has no known power state"
        );
        assert_eq!(vm_status(VmState::Unknown, false).state, State::UnavailableOffline);
        for (s, power, state, health) in want {
            assert_eq!(power_state(s), Some(power), "{s:?}");
            assert_eq!(vm_status(s, false), Status { state, health }, "{s:?}");
        }
        assert_eq!(vm_status(VmState::Running, true).health, Health::Warning, "a failed control shows");
        assert_eq!(vm_status(VmState::Crashed, true).health, Health::Critical, "a crash outranks it");
    }

    /// Each reset from each state: the controls, and whether vine's own check accepts each.
    #[test]
    fn every_reset_from_every_state_maps_to_controls_vine_accepts_or_refuses_with_a_reason() {
        use Control as C;
        use VmState as S;
        let cases: &[(ResetType, S, &[Control])] = &[
            (ResetType::On, S::Off, &[C::Start]),
            (ResetType::On, S::Crashed, &[C::Start]),
            (ResetType::On, S::Saved, &[C::Restore]),
            (ResetType::On, S::Paused, &[C::Resume]),
            (ResetType::On, S::Running, &[]),
            (ResetType::ForceOn, S::Off, &[C::Start]),
            (ResetType::ForceOff, S::Running, &[C::Off]),
            (ResetType::ForceOff, S::Paused, &[C::Off]),
            (ResetType::ForceOff, S::Off, &[]),
            (ResetType::ForceOff, S::Saved, &[]),
            (ResetType::GracefulShutdown, S::Running, &[C::Shutdown]),
            (ResetType::GracefulShutdown, S::Off, &[]),
            (ResetType::GracefulRestart, S::Running, &[C::Shutdown, C::Start]),
            (ResetType::ForceRestart, S::Running, &[C::Reset]),
            (ResetType::ForceRestart, S::Paused, &[C::Reset]),
            (ResetType::PushPowerButton, S::Off, &[C::Start]),
            (ResetType::PushPowerButton, S::Running, &[C::Shutdown]),
            (ResetType::PushPowerButton, S::Saved, &[C::Restore]),
            (ResetType::Pause, S::Running, &[C::Pause]),
            (ResetType::Pause, S::Paused, &[]),
            (ResetType::Resume, S::Paused, &[C::Resume]),
            (ResetType::Resume, S::Running, &[]),
            (ResetType::Suspend, S::Running, &[C::Save]),
            (ResetType::Suspend, S::Saved, &[]),
        ];
        for (reset, s, controls) in cases {
            assert_eq!(plan(*reset, *s), controls.to_vec(), "{reset:?} from {s:?}");
        }
        // Over every pair: the first control is one vine accepts from that state, or one it
        // refuses with a sentence; a reset that does nothing leaves the VM on or off as asked.
        for reset in ResetType::ALL {
            for s in VmState::ALL {
                let p = plan(reset, s);
                assert!(p.len() <= 2, "{reset:?} from {s:?}: {p:?}");
                if let Some(first) = p.first() {
                    if let Err(reason) = vmm::state::transition(s, *first) {
                        assert!(!reason.is_empty(), "{reset:?} from {s:?}");
                    }
                }
                if p.is_empty() {
                    let power = power_state(s);
                    let ok = match reset {
                        ResetType::On | ResetType::ForceOn => {
                            matches!(power, Some(PowerState::On | PowerState::PoweringOn))
                        }
                        ResetType::ForceOff | ResetType::GracefulShutdown | ResetType::Suspend => {
                            power == Some(PowerState::Off)
                        }
                        ResetType::Pause => power == Some(PowerState::Paused),
                        ResetType::Resume => power == Some(PowerState::On),
                        ResetType::GracefulRestart | ResetType::ForceRestart | ResetType::PushPowerButton => {
                            false
                        }
                    };
                    assert!(ok, "{reset:?} from {s:?} does nothing, yet the VM is {power:?}");
                }
            }
        }
    }

    #[test]
    fn reset_types_parse_by_their_schema_names_only() {
        for r in ResetType::ALL {
            assert_eq!(ResetType::parse(r.name()), Some(r));
            assert_eq!(serde_json::to_value(r).unwrap(), r.name());
        }
        assert_eq!(ResetType::parse("on"), None);
        assert_eq!(ResetType::parse("Nmi"), None, "no NMI control in vine");
        assert_eq!(ResetType::parse(""), None);
    }
}
