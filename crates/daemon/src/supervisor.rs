//! The supervisor of VM actors. Each actor runs on its own thread under [`supervise`], which
//! catches a panic (a bug, or a fault a test injects), rebuilds the actor from the store — the
//! recorded state and runtime record, the same path a daemon restart takes, so a running QEMU is
//! found again — records an event, and runs the new actor on the same channel. Requests queued
//! meanwhile are answered by the new actor; the one being worked on when the actor failed gets a
//! failure. No input can leave a VM listed but unmanaged.
//!
//! A panic on an actor's thread is reported after the restart, not before: the process-wide panic
//! hook only notes where it happened (and captures a backtrace when `RUST_BACKTRACE` asks for
//! one), and the supervisor logs both once the new actor is in place, so resolving a debug
//! build's symbols never delays the VM's controls. Panics on other threads print as usual.

use std::backtrace::{Backtrace, BacktraceStatus};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::Receiver;
use std::sync::Once;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use vmconfig::VmDefinition;
use vmm::VmState;

use crate::actor::{Actor, Ctx, Msg, View};

/// Failures within [`WINDOW`] after which restarts are delayed (a fault that repeats at once must
/// not spin a core).
const QUICK_RESTARTS: usize = 5;
/// The window in which failures count as repeated.
const WINDOW: Duration = Duration::from_secs(60);
/// The longest delay before a restart.
const MAX_DELAY: Duration = Duration::from_secs(30);

thread_local! {
    /// Whether this thread runs actors under [`supervise`] (its panics are reported by it).
    static SUPERVISED: Cell<bool> = const { Cell::new(false) };
    /// Where the last panic on this thread happened, and its backtrace if one was asked for.
    static LAST_PANIC: RefCell<Option<(String, Backtrace)>> = const { RefCell::new(None) };
}

/// Installs (once per process) the panic hook that leaves the report of an actor's panic to its
/// supervisor and hands every other panic to the hook that was there before.
fn install_panic_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let before = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if SUPERVISED.with(Cell::get) {
                let place = info.location().map(|l| l.to_string()).unwrap_or_default();
                LAST_PANIC.with(|p| *p.borrow_mut() = Some((place, Backtrace::capture())));
            } else {
                before(info);
            }
        }));
    });
}

/// Runs `first`, then any actor rebuilt after a failure, until one ends normally (the VM was
/// removed or the daemon detaches) or the VM is gone from the store.
pub fn supervise(name: &str, ctx: &Arc<Ctx>, view: &Arc<Mutex<View>>, first: Actor, rx: &Receiver<Msg>) {
    install_panic_hook();
    SUPERVISED.with(|s| s.set(true));
    let mut next = Some(first);
    let mut report: Option<(String, String, Backtrace)> = None;
    let mut failures: VecDeque<Instant> = VecDeque::new();
    let mut why: Option<String> = None;
    loop {
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let actor = match next.take() {
                Some(a) => a,
                None => {
                    match rebuild(name, ctx, view) {
                        Some(a) => {
                            let reason = why.take().unwrap_or_default();
                            ctx.event(
                                Some(name),
                                "error",
                                "vm.actor-restarted",
                                &format!("the actor of '{name}' failed ({reason}); it was restarted from the store"),
                            );
                            // Now that the VM is managed again, say where it failed.
                            if let Some((message, place, trace)) = report.take() {
                                let trace = match trace.status() {
                                    BacktraceStatus::Captured => format!("; backtrace:\n{trace}"),
                                    _ => String::new(),
                                };
                                tracing::error!(
                                    vm = name,
                                    panic = message,
                                    "the failed actor panicked at {place}{trace}"
                                );
                            }
                            a
                        }
                        None => return false,
                    }
                }
            };
            actor.run(rx);
            true
        }));
        match outcome {
            Ok(true) => return,
            Ok(false) => {
                tracing::warn!(vm = name, "the VM is no longer in the store; its actor ends");
                return;
            }
            Err(payload) => {
                let message = panic_message(payload.as_ref());
                tracing::error!(vm = name, panic = message, "a VM's actor failed; restarting it");
                if let Some((place, trace)) = LAST_PANIC.with(|p| p.borrow_mut().take()) {
                    report = Some((message.clone(), place, trace));
                }
                why = Some(message);
                let now = Instant::now();
                failures.push_back(now);
                while failures.front().is_some_and(|t| now.duration_since(*t) > WINDOW) {
                    failures.pop_front();
                }
                if failures.len() > QUICK_RESTARTS {
                    let extra = (failures.len() - QUICK_RESTARTS).min(5) as u32;
                    std::thread::sleep((Duration::from_secs(1) * 2u32.pow(extra)).min(MAX_DELAY));
                }
            }
        }
    }
}

/// A new actor for `name` from what the store holds, reattached to its processes. `None` when the
/// store no longer has the VM.
fn rebuild(name: &str, ctx: &Arc<Ctx>, view: &Arc<Mutex<View>>) -> Option<Actor> {
    let rec = match ctx.store.get_vm(name) {
        Ok(Some(rec)) => rec,
        Ok(None) => return None,
        Err(e) => {
            // The store is the source of truth; without it, keep what the view says.
            tracing::error!(vm = name, error = %e, "cannot read the VM's record to restart its actor");
            let mut a = Actor::new(name, ctx.clone(), view.clone());
            let state = view.lock().unwrap_or_else(|p| p.into_inner()).state;
            a.reattach(state, None);
            return Some(a);
        }
    };
    let recorded = serde_json::from_value::<VmState>(json!(rec.state)).unwrap_or(VmState::Off);
    {
        let mut v = view.lock().unwrap_or_else(|p| p.into_inner());
        if let Ok(def) = VmDefinition::parse(&rec.definition) {
            v.def = def;
        }
        v.state = recorded;
        v.pid = rec.pid;
    }
    let mut a = Actor::new(name, ctx.clone(), view.clone());
    a.reattach(recorded, rec.runtime.as_deref());
    Some(a)
}

/// The text a panic was raised with.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_messages_are_read_from_either_payload_kind() {
        let a = catch_unwind(|| panic!("static text")).unwrap_err();
        assert_eq!(panic_message(a.as_ref()), "static text");
        let b = catch_unwind(|| panic!("formatted {}", 7)).unwrap_err();
        assert_eq!(panic_message(b.as_ref()), "formatted 7");
        let c = catch_unwind(|| std::panic::panic_any(3u8)).unwrap_err();
        assert_eq!(panic_message(c.as_ref()), "a panic without a message");
    }
}
