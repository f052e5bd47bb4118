//! The policy engine acting on the live pool: the coordinator's loop (MISSION C6, C7).
//!
//! Every host runs the loop's thread; only the pool's coordinator (`cluster::coordinator`) plans.
//! Each round (every `interval_s` of the pool's [`Automation`]) it gathers every host's metrics
//! (the Receiver), makes one policy `Snapshot` with ids that stay the same from round to round
//! (so the Validator's evidence follows each VM), has the planner plan a step and the pool's
//! rules ([`policy::Constraints`]: VMs whose automation is off, pins, hosts that take no VMs,
//! anti-affinity and affinity groups, the migration threshold) take out what they forbid, and
//! prescribes commands. Then, the Sender:
//!
//! - `advise`: each command is recorded as an event (`policy.advice`, when the advice changed
//!   since the round before) and in the round's record; nothing is done.
//! - `automatic`: migrations run live (at most `parallel` at once), a standby host a VM goes to
//!   is woken first (`host.wake`), and a host the plan empties goes to standby once it has no
//!   VM left (`host.standby`), its power program run if the pool has one. Every action is an
//!   event with the plan's reason.
//!
//! Before each action the coordinator checks it still is one, so a coordinator cut off from
//! etcd stops acting before its successor can start (the coordinator module's timing
//! invariant). Every round is written to `<data>/policy/START.jsonl` (the snapshot, the rules,
//! the commands) and `vine policy simulate --replay` plans the same rounds again.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use cluster::{Automation, Cluster, HostState, Mode, VmRules};
use policy::model::{HostId, VmId};
use policy::replay::{RecordHeader, RecordedRound};
use policy::{Command, Constraints, Planner};
use serde_json::Value;

use crate::advice::{advice, Ids};
use crate::protocol::{Changes, ControlOptions, Failure, MigrateOptions, Request};
use crate::Daemon;
use vmm::Control;

/// How often the loop looks whether it is the coordinator and a round is due.
const TICK: Duration = Duration::from_secs(1);
/// The longest a power program may take.
const POWER_TIMEOUT: Duration = Duration::from_secs(60);

/// The coordinator's run: what it keeps between rounds. A host that stops being the
/// coordinator, or a change of policy, starts a new one.
struct Run {
    policy: policy::Policy,
    planner: Planner,
    ids: Ids,
    round: u64,
    started: Instant,
    record: PathBuf,
    /// The advice of the round before (what, not why), so unchanged advice is not an event again.
    last_advice: Vec<String>,
    next: Instant,
}

/// The loop's state on this host.
#[derive(Default)]
pub(crate) struct Pilot {
    run: Mutex<Option<Run>>,
}

impl Daemon {
    /// Starts the loop's thread (once, when the host enters a pool).
    pub(crate) fn start_pilot(&self) {
        let weak: Weak<Daemon> = self.weak_self();
        std::thread::Builder::new()
            .name("pool-policy".into())
            .spawn(move || loop {
                std::thread::sleep(TICK);
                let Some(d) = weak.upgrade() else { return };
                if d.is_stopping() {
                    return;
                }
                d.pilot_tick();
            })
            .expect("threads can be started");
    }

    fn pilot_tick(&self) {
        let Some(c) = self.cluster() else { return };
        let mut slot = self.membership.pilot.run.lock().unwrap_or_else(|p| p.into_inner());
        if !c.is_coordinator() {
            *slot = None;
            return;
        }
        // HA restarts do not wait for the policy's mode or interval.
        self.ha_round(&c);
        let (auto, rules) = match (c.automation(), c.vm_rules()) {
            (Ok(a), Ok(r)) => (a, r),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!("policy: cannot read the pool's automation: {e}");
                return;
            }
        };
        if auto.mode == Mode::Off && rules.values().all(|r| r.mode.is_none_or(|m| m == Mode::Off)) {
            *slot = None;
            return;
        }
        if slot.as_ref().is_some_and(|r| r.policy != auto.policy) {
            *slot = None;
        }
        let run = match slot.as_mut() {
            Some(r) => r,
            None => match self.new_run(&c, &auto) {
                Ok(r) => slot.insert(r),
                Err(e) => {
                    tracing::warn!("policy: cannot start recording rounds: {e}");
                    return;
                }
            },
        };
        if Instant::now() < run.next {
            return;
        }
        run.next = Instant::now() + Duration::from_secs(u64::from(auto.interval_s));
        self.round(&c, run, &auto, &rules);
    }

    fn new_run(&self, c: &Cluster, auto: &Automation) -> std::io::Result<Run> {
        let started_ms = cluster::now_ms();
        let dir = self.ctx().data.join("policy");
        std::fs::create_dir_all(&dir)?;
        let record = dir.join(format!("{started_ms}.jsonl"));
        let header = RecordHeader { policy: auto.policy.clone(), host: c.config().host.clone(), started_ms };
        let mut f = std::fs::File::create(&record)?;
        writeln!(f, "{}", serde_json::to_string(&header).expect("headers serialise"))?;
        self.ctx().event(
            None,
            "info",
            "policy.coordinating",
            &format!(
                "this host coordinates the pool's policy '{}' ({}); rounds are recorded in {}",
                auto.policy.name,
                auto.mode.as_str(),
                record.display()
            ),
        );
        Ok(Run {
            policy: auto.policy.clone(),
            planner: Planner::new(auto.policy.clone()),
            ids: Ids::default(),
            round: 0,
            started: Instant::now(),
            record,
            last_advice: Vec::new(),
            next: Instant::now(),
        })
    }

    /// One round: gather, plan, keep the rules, record, then advise or act.
    fn round(&self, c: &Cluster, run: &mut Run, auto: &Automation, rules: &BTreeMap<String, VmRules>) {
        let hosts = match c.hosts() {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!("policy: cannot list the pool's hosts: {e}");
                return;
            }
        };
        let (metrics, unreachable) = self.gather_metrics(c);
        let mut snap = crate::advice::snapshot_with(&metrics, &mut run.ids);
        snap.time = run.started.elapsed().as_secs_f64();
        // Hosts the snapshot has but this round could not read, or that take no VMs.
        let mut closed: BTreeMap<HostId, String> = BTreeMap::new();
        for (i, name) in run.ids.hosts.iter().enumerate() {
            let why = match hosts.iter().find(|h| &h.record.name == name) {
                None => Some("it left the pool".to_string()),
                Some(h) if h.state == HostState::Offline => Some("it is offline".to_string()),
                Some(h) if h.state == HostState::Maintenance => Some("it is in maintenance".to_string()),
                Some(_) if !metrics.iter().any(|(n, _)| n == name) => {
                    Some("its metrics could not be read".to_string())
                }
                Some(_) => None,
            };
            if let Some(w) = why {
                closed.insert(HostId(i as u32), w);
            }
        }
        let constraints = self.constraints(&run.ids, &snap, auto, rules, closed);
        let sizing = sizing(&metrics, &run.ids, auto, rules);
        let step = policy::replay::step(&mut run.planner, &snap, &constraints, &sizing);
        run.round += 1;
        let names = |c: &Command| advice(c, &run.ids.hosts, &run.ids.vms);
        let held_back: Vec<String> = step
            .dropped
            .iter()
            .map(|d| {
                let planned = Command::Migrate {
                    vm: d.migration.vm,
                    from: d.migration.from,
                    to: d.migration.to,
                    why: String::new(),
                };
                format!("{} is not done: {}", names(&planned).text, run.ids.name_ids(&d.why))
            })
            .collect();
        let record = RecordedRound {
            round: run.round,
            hosts: run.ids.hosts.clone(),
            vms: run.ids.vms.clone(),
            snapshot: snap.clone(),
            constraints,
            sizing,
            commands: step.commands.clone(),
        };
        if let Err(e) = append(&run.record, &record) {
            tracing::warn!("policy: cannot record round {}: {e}", run.round);
        }
        // The Sender.
        let mode_of = |vm: VmId| {
            let name = run.ids.vms.get(vm.0 as usize).map(String::as_str).unwrap_or("");
            rules.get(name).and_then(|r| r.mode).unwrap_or(auto.mode)
        };
        let mut actions: Vec<cluster::automation::Action> = Vec::new();
        let mut migrations = Vec::new();
        for (i, cmd) in step.commands.iter().enumerate() {
            let a = names(cmd);
            let why = run.ids.name_ids(&a.why);
            let act = match cmd {
                Command::Migrate { vm, .. } | Command::Cap { vm, .. } | Command::Balloon { vm, .. } => {
                    mode_of(*vm) == Mode::Automatic
                }
                Command::SwitchOff { .. } => auto.mode == Mode::Automatic,
            };
            if act {
                if let Command::Migrate { vm, from, to, .. } = cmd {
                    migrations.push((i, *vm, *from, *to));
                }
            }
            actions.push(cluster::automation::Action {
                text: a.text,
                why,
                outcome: if act { "pending".into() } else { "advised".into() },
            });
        }
        // Advice that was given the round before (its figures may have moved) is not an event again.
        let advised: Vec<&cluster::automation::Action> =
            actions.iter().filter(|a| a.outcome == "advised").collect();
        for a in advised.iter().filter(|a| !run.last_advice.contains(&a.text)) {
            self.ctx().event(
                None,
                "info",
                "policy.advice",
                &format!("the policy advises: {}: {}", a.text, a.why),
            );
        }
        run.last_advice = advised.iter().map(|a| a.text.clone()).collect();
        self.carry_out(c, run, auto, &step.commands, &migrations, &mut actions);
        let last = cluster::automation::Round {
            host: c.config().host.clone(),
            round: run.round,
            at_ms: cluster::now_ms(),
            policy: run.policy.name.clone(),
            mode: auto.mode,
            actions,
            held_back,
            unreachable: unreachable.iter().map(|(h, why)| format!("{h}: {why}")).collect(),
            record: run.record.display().to_string(),
        };
        if let Err(e) = c.set_last_round(&last) {
            tracing::warn!("policy: cannot publish round {}: {e}", run.round);
        }
    }

    /// The pool's rules in the snapshot's ids.
    fn constraints(
        &self,
        ids: &Ids,
        snap: &policy::Snapshot,
        auto: &Automation,
        rules: &BTreeMap<String, VmRules>,
        closed: BTreeMap<HostId, String>,
    ) -> Constraints {
        let mut c = Constraints { closed, threshold: auto.threshold, ..Default::default() };
        let defs = self.pool_definitions();
        for v in &snap.vms {
            let name = &ids.vms[v.id.0 as usize];
            let r = rules.get(name).cloned().unwrap_or_default();
            if r.mode.unwrap_or(auto.mode) == Mode::Off {
                c.fixed.insert(v.id, "automation is off for it".into());
            }
            if let Some(pin) = &r.pin {
                match ids.hosts.iter().position(|h| h == pin) {
                    Some(h) => {
                        c.pins.insert(v.id, HostId(h as u32));
                    }
                    None => {
                        c.fixed.insert(v.id, format!("it is pinned to host '{pin}', which the pool lacks"));
                    }
                }
            }
            if let Some(g) = &r.together {
                c.together.entry(g.clone()).or_default().insert(v.id);
            }
            if let Some(g) = defs.get(name) {
                c.apart.entry(g.clone()).or_default().insert(v.id);
            }
        }
        c
    }

    /// The anti-affinity group of every VM of the pool that has one, from what owners publish.
    fn pool_definitions(&self) -> BTreeMap<String, String> {
        let Some(c) = self.cluster() else { return BTreeMap::new() };
        c.vms()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|v: Value| Some((v["name"].as_str()?.to_string(), v["group"].as_str()?.to_string())))
            .collect()
    }

    /// Runs the round's automatic commands: wakes, migrations (`parallel` at once), standby.
    fn carry_out(
        &self,
        c: &Cluster,
        run: &Run,
        auto: &Automation,
        commands: &[Command],
        migrations: &[(usize, VmId, HostId, HostId)],
        actions: &mut [cluster::automation::Action],
    ) {
        let host = |h: HostId| run.ids.hosts.get(h.0 as usize).cloned().unwrap_or_default();
        let vm = |v: VmId| run.ids.vms.get(v.0 as usize).cloned().unwrap_or_default();
        // Targets in standby are woken first.
        let standby: BTreeSet<String> = c
            .hosts()
            .unwrap_or_default()
            .into_iter()
            .filter(|h| h.state == HostState::Standby)
            .map(|h| h.record.name)
            .collect();
        let mut woken = BTreeSet::new();
        for (_, v, _, to) in migrations {
            let to = host(*to);
            if standby.contains(&to) && woken.insert(to.clone()) {
                if !c.is_coordinator() {
                    return;
                }
                let why = format!("VM '{}' is to move there and no host already on has room for it", vm(*v));
                if let Err(e) = self.wake_host(c, &to, auto, &why) {
                    tracing::warn!("policy: waking host '{to}': {e}");
                }
            }
        }
        let queue = Order::new(migrations);
        let done: Mutex<Vec<(usize, Result<(), String>)>> = Mutex::default();
        std::thread::scope(|s| {
            for _ in 0..auto.parallel.min(migrations.len() as u32) {
                s.spawn(|| {
                    while let Some((i, v, from, to)) = queue.next() {
                        let outcome = if c.is_coordinator() {
                            let (name, from, to) = (vm(v), host(from), host(to));
                            let why = run.ids.name_ids(commands[i].why());
                            self.ctx().event(
                                Some(&name),
                                "info",
                                "policy.migrate",
                                &format!(
                                    "the policy migrates '{name}' from host '{from}' to host '{to}': {why}"
                                ),
                            );
                            self.policy_migrate(c, &name, &from, &to).map_err(|e| e.to_string())
                        } else {
                            Err("this host stopped being the coordinator".to_string())
                        };
                        queue.finished(i);
                        done.lock().unwrap_or_else(|p| p.into_inner()).push((i, outcome));
                    }
                });
            }
        });
        let done = done.into_inner().unwrap_or_else(|p| p.into_inner());
        let mut failed_from = BTreeSet::new();
        for (i, r) in &done {
            actions[*i].outcome = match r {
                Ok(()) => "done".into(),
                Err(e) => {
                    if let Command::Migrate { vm: v, from, .. } = &commands[*i] {
                        failed_from.insert(*from);
                        self.ctx().event(
                            Some(&vm(*v)),
                            "warning",
                            "policy.failed",
                            &format!("the policy's migration of '{}' failed: {e}", vm(*v)),
                        );
                    }
                    format!("failed: {e}")
                }
            };
        }
        for (i, cmd) in commands.iter().enumerate() {
            let Command::SwitchOff { host: h, why } = cmd else { continue };
            if actions[i].outcome == "advised" {
                continue;
            }
            let name = host(*h);
            let outcome = if failed_from.contains(h) {
                "not done: a migration from it failed".to_string()
            } else if !c.is_coordinator() {
                "not done: this host stopped being the coordinator".to_string()
            } else {
                match self.standby_host(c, &name, auto, &run.ids.name_ids(why)) {
                    Ok(()) => "done".into(),
                    Err(e) => format!("not done: {e}"),
                }
            };
            actions[i].outcome = outcome;
        }
        // Resizes last: a VM the round migrated is resized where it went.
        for (i, cmd) in commands.iter().enumerate() {
            let (Command::Cap { vm: v, .. } | Command::Balloon { vm: v, .. }) = cmd else { continue };
            if actions[i].outcome == "advised" {
                continue;
            }
            let name = vm(*v);
            let mut changes = Changes::default();
            match cmd {
                Command::Cap { pct: Some(p), .. } => changes.allocated_cpu_max = Some(*p),
                Command::Cap { pct: None, .. } => changes.no_allocated_cpu_max = true,
                Command::Balloon { bytes, .. } => changes.balloon = Some(*bytes),
                _ => {}
            }
            actions[i].outcome = if !c.is_coordinator() {
                "not done: this host stopped being the coordinator".to_string()
            } else {
                let what = &actions[i].text;
                let why = run.ids.name_ids(cmd.why());
                self.ctx().event(
                    Some(&name),
                    "info",
                    "policy.resize",
                    &format!("the policy resizes: {what}: {why}"),
                );
                match self.call_owner(Request::VmSet { name: name.clone(), changes }) {
                    Ok(_) => "done".into(),
                    Err(e) => {
                        let m = format!("the policy's resizing of '{name}' failed: {e}");
                        self.ctx().event(Some(&name), "warning", "policy.failed", &m);
                        format!("failed: {e}")
                    }
                }
            };
        }
    }

    /// Carries out `req` here, or on the host that owns its VM.
    fn call_owner(&self, req: Request) -> Result<Value, Failure> {
        match self.call(req.clone()) {
            Err(Failure::Elsewhere { host, .. }) => self.peers()?.call(&host, &req),
            r => r,
        }
    }

    /// Migrates `vm` from `from` to `to` live, on the host that owns it; a container, which
    /// cannot move live, moves cold ([`Daemon::policy_move_container`]).
    fn policy_migrate(&self, c: &Cluster, vm: &str, from: &str, to: &str) -> Result<(), Failure> {
        let container = c.vms()?.iter().any(|v| v["name"] == vm && v["kind"] == "container");
        if container {
            return self.policy_move_container(c, vm, from, to);
        }
        let options = MigrateOptions::default();
        if from == c.config().host {
            return self.migrate_vm(vm, to, options).map(|_| ());
        }
        let req = Request::VmMigrate { name: vm.into(), to: to.into(), options };
        self.peers()?.call(from, &req).map(|_| ())
    }

    /// A container the plan moves: it shuts down (its init powers off; cut off if it does not
    /// within its timeout), moves cold with its root file system, and starts on `to`. The
    /// event log says so before it stops.
    fn policy_move_container(&self, c: &Cluster, vm: &str, from: &str, to: &str) -> Result<(), Failure> {
        let at = |host: &str, req: Request| -> Result<Value, Failure> {
            if host == c.config().host {
                self.call(req)
            } else {
                self.peers()?.call(host, &req)
            }
        };
        let control = |host: &str, control: Control| {
            at(host, Request::VmControl { name: vm.into(), control, options: ControlOptions::default() })
        };
        self.ctx().event(
            Some(vm),
            "info",
            "policy.cold-move",
            &format!(
                "the policy moves container '{vm}' cold from host '{from}' to host '{to}': a container cannot \
                 move live, so it shuts down, moves with its root file system and starts there"
            ),
        );
        if let Err(e) = control(from, Control::Shutdown) {
            tracing::warn!("policy: shutting '{vm}' down for its cold move: {e}; cutting it off");
            control(from, Control::Off)?;
        }
        at(from, Request::VmMove { name: vm.into(), to: to.into() })?;
        control(to, Control::Start).map(|_| ())
    }

    /// Puts `host` in standby once it has no VM left, and runs the power program.
    pub(crate) fn standby_host(
        &self,
        c: &Cluster,
        host: &str,
        auto: &Automation,
        why: &str,
    ) -> Result<(), Failure> {
        let left: Vec<String> = c
            .vms()?
            .into_iter()
            .filter(|v| v["host"] == host && matches!(v["state"].as_str(), Some("running" | "paused")))
            .filter_map(|v| v["name"].as_str().map(String::from))
            .collect();
        if !left.is_empty() {
            return Err(Failure::Refused(format!("host '{host}' still runs {}", left.join(", "))));
        }
        c.set_standby(host, true)?;
        let power = power(auto, "off", host);
        self.ctx().event(
            None,
            "info",
            "host.standby",
            &format!("host '{host}' is in standby (it takes no VMs and counts as powered off): {why}{power}"),
        );
        Ok(())
    }

    /// Wakes `host` from standby: the power program first, then the pool gives it VMs again.
    pub(crate) fn wake_host(
        &self,
        c: &Cluster,
        host: &str,
        auto: &Automation,
        why: &str,
    ) -> Result<(), Failure> {
        let power = power(auto, "on", host);
        c.set_standby(host, false)?;
        self.ctx().event(None, "info", "host.wake", &format!("host '{host}' is woken: {why}{power}"));
        Ok(())
    }
}

/// Runs the pool's power program (`PROGRAM on|off HOST`), if it has one; what it did, for the
/// event (", power program: …").
/// What the resizer needs of each running VM whose rules let it be resized and whose automation
/// is not off, from the hosts' metrics.
fn sizing(
    metrics: &[(String, Value)],
    ids: &Ids,
    auto: &Automation,
    rules: &BTreeMap<String, VmRules>,
) -> Vec<policy::resizer::Sizing> {
    let mut out = Vec::new();
    for (_, m) in metrics {
        for v in m["vms"].as_array().into_iter().flatten() {
            let Some(name) = v["name"].as_str() else { continue };
            let Some(r) = rules.get(name).filter(|r| r.resize) else { continue };
            if r.mode.unwrap_or(auto.mode) == Mode::Off {
                continue;
            }
            let Some(id) = ids.vms.iter().position(|n| n == name) else { continue };
            if out.iter().any(|s: &policy::resizer::Sizing| s.vm.0 as usize == id) {
                continue;
            }
            let pct = |k: &str| v[k].as_u64().map(|x| x.min(u64::from(u32::MAX)) as u32);
            let b = &v["balloon"];
            out.push(policy::resizer::Sizing {
                vm: VmId(id as u32),
                vcpus: pct("vcpus").unwrap_or(1),
                history: v["history"].as_array().into_iter().flatten().filter_map(Value::as_f64).collect(),
                reserve_pct: pct("cpu_reserve").unwrap_or(0),
                max_pct: pct("cpu_max"),
                allocated_pct: pct("allocated_cpu_max"),
                memory: v["memory"].as_u64().unwrap_or(0),
                balloon: b["balloon"].as_u64(),
                guest_total: b["guest_total"].as_u64(),
                guest_available: b["guest_available"].as_u64(),
            });
        }
    }
    out
}

/// A round's migrations in the order they may run, several at once: a host gives before it
/// takes. A migration to host X waits while a migration from X of the same round has not
/// finished, since the plan's checks (memory, anti-affinity) hold for the round's end, not for
/// every order: a VM of an anti-affinity group must leave X before another of its group arrives.
/// When every migration left waits on another and none runs (a swap), the first goes anyway.
struct Order {
    state: Mutex<OrderState>,
    changed: Condvar,
}

struct OrderState {
    /// Not started yet, in the plan's order: (index, vm, from, to).
    pending: Vec<(usize, VmId, HostId, HostId)>,
    /// Started and not finished: index and the host it leaves.
    running: Vec<(usize, HostId)>,
}

impl Order {
    fn new(migrations: &[(usize, VmId, HostId, HostId)]) -> Self {
        Order {
            state: Mutex::new(OrderState { pending: migrations.to_vec(), running: Vec::new() }),
            changed: Condvar::new(),
        }
    }

    /// The next migration to run, waiting while all that are left must wait; `None` when none is left.
    fn next(&self) -> Option<(usize, VmId, HostId, HostId)> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if st.pending.is_empty() {
                return None;
            }
            let leaving = |h: HostId, me: usize, st: &OrderState| {
                st.running.iter().any(|(_, from)| *from == h)
                    || st.pending.iter().any(|(j, _, from, _)| *j != me && *from == h)
            };
            let ready = st.pending.iter().position(|(i, _, _, to)| !leaving(*to, *i, &st));
            let pick = match ready {
                Some(k) => Some(k),
                None if st.running.is_empty() => Some(0),
                None => None,
            };
            if let Some(k) = pick {
                let m = st.pending.remove(k);
                st.running.push((m.0, m.2));
                return Some(m);
            }
            st = self.changed.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Migration `i` has finished (done or failed).
    fn finished(&self, i: usize) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.running.retain(|(j, _)| *j != i);
        self.changed.notify_all();
    }
}

fn power(auto: &Automation, action: &str, host: &str) -> String {
    let Some(program) = &auto.power_program else { return String::new() };
    let run = || -> Result<String, String> {
        let mut child = std::process::Command::new(program)
            .args([action, host])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {program}: {e}"))?;
        let deadline = Instant::now() + POWER_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                return if status.success() {
                    Ok(format!("{program} {action} {host}"))
                } else {
                    let mut err = String::new();
                    if let Some(mut s) = child.stderr.take() {
                        let _ = std::io::Read::read_to_string(&mut s, &mut err);
                    }
                    Err(format!("{program} {action} {host}: {status}: {}", err.trim()))
                };
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{program} {action} {host}: no answer within {} s",
                    POWER_TIMEOUT.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    match run() {
        Ok(done) => format!("; power program: {done}"),
        Err(e) => format!("; the power program failed: {e}"),
    }
}

/// Appends one round to the record file.
fn append(path: &PathBuf, round: &RecordedRound) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new().append(true).open(path)?;
    writeln!(f, "{}", serde_json::to_string(round).expect("rounds serialise"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(i: usize, from: u32, to: u32) -> (usize, VmId, HostId, HostId) {
        (i, VmId(i as u32), HostId(from), HostId(to))
    }

    #[test]
    fn a_host_gives_before_it_takes() {
        // 0: h3 -> h1 must wait for 1: h1 -> h2.
        let o = Order::new(&[m(0, 3, 1), m(1, 1, 2)]);
        assert_eq!(o.next().map(|x| x.0), Some(1));
        // Nothing else may start while 1 runs.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            s.spawn(|| tx.send(o.next().map(|x| x.0)).unwrap());
            assert!(rx.recv_timeout(Duration::from_millis(200)).is_err(), "0 started before 1 finished");
            o.finished(1);
            assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), Some(0));
        });
        o.finished(0);
        assert_eq!(o.next(), None);
    }

    #[test]
    fn independent_migrations_run_at_once_and_a_swap_still_runs() {
        let o = Order::new(&[m(0, 1, 2), m(1, 3, 4)]);
        assert_eq!(o.next().map(|x| x.0), Some(0));
        assert_eq!(o.next().map(|x| x.0), Some(1), "unrelated migrations do not wait");
        let swap = Order::new(&[m(0, 1, 2), m(1, 2, 1)]);
        assert_eq!(swap.next().map(|x| x.0), Some(0), "a swap does not wait forever");
        swap.finished(0);
        assert_eq!(swap.next().map(|x| x.0), Some(1));
    }
}
