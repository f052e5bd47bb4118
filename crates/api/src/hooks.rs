//! Event scripts: for every logged event, the scripts registered for its kind (or `*`), and for
//! its VM if they name one, run with the event in their environment. Each runs in its own process
//! group and is killed with it at its timeout; its exit status and the start of its output go to
//! the event log (`hook.ran`, `hook.failed`, `hook.timeout`). Events of kind `hook.*` run no
//! scripts, so a script on `*` cannot feed itself. At most [`WORKERS`] scripts run at once and
//! [`QUEUE`] wait; a run past that is dropped with a `hook.dropped` warning.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use daemon::Daemon;
use store::EventRecord;

/// Output kept in the event log per run.
const OUTPUT_LIMIT: usize = 2000;
/// Scripts running at once; more wait in the queue.
pub const WORKERS: usize = 8;
/// Script runs waiting; past it a run is dropped (and the drop logged).
pub const QUEUE: usize = 256;

/// Starts the thread that runs scripts for events.
pub fn start(daemon: Arc<Daemon>) {
    let rx = daemon.ctx().subscribe();
    // A fixed pool of workers behind a bounded queue: a burst of events cannot start a
    // thread per script run.
    let (jobs, queue) = std::sync::mpsc::sync_channel::<(store::HookRecord, EventRecord)>(QUEUE);
    let queue = Arc::new(std::sync::Mutex::new(queue));
    for i in 0..WORKERS {
        let (d, queue) = (daemon.clone(), queue.clone());
        std::thread::Builder::new()
            .name(format!("hook-{i}"))
            .spawn(move || loop {
                let job = queue.lock().unwrap_or_else(|p| p.into_inner()).recv();
                match job {
                    Ok((h, e)) => run(&d, &h, &e),
                    Err(_) => return,
                }
            })
            .expect("threads can be started");
    }
    std::thread::Builder::new()
        .name("hooks".into())
        .spawn(move || {
            for e in rx {
                if e.kind.starts_with("hook.") {
                    continue;
                }
                let hooks = match daemon.ctx().store.list_hooks() {
                    Ok(h) => h,
                    Err(err) => {
                        tracing::error!(error = %err, "cannot read event scripts");
                        continue;
                    }
                };
                for h in hooks {
                    let kind_ok = h.event == "*" || h.event == e.kind;
                    let vm_ok = h.vm.is_none() || h.vm == e.vm;
                    if kind_ok && vm_ok {
                        if let Err(std::sync::mpsc::TrySendError::Full((h, e))) = jobs.try_send((h, e.clone())) {
                            daemon.ctx().event(
                                e.vm.as_deref(),
                                "warning",
                                "hook.dropped",
                                &format!(
                                    "event script {} (hook {}) not run for event {}: {QUEUE} runs are already waiting",
                                    h.script, h.id, e.id
                                ),
                            );
                        }
                    }
                }
            }
        })
        .expect("threads can be started");
}

/// Whether `path` may run as an event script: an absolute path to an executable regular file
/// owned by root and writable by no one else, in directories owned by root and writable by no
/// one else (as sshd's StrictModes). Otherwise anyone who can write it runs code as root.
pub fn check_script(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    if !path.is_absolute() {
        return Err(format!("{} is not an absolute path", path.display()));
    }
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    if meta.mode() & 0o111 == 0 {
        return Err(format!("{} is not executable", path.display()));
    }
    let mut at = Some(path);
    while let Some(p) = at {
        let m = std::fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
        if m.uid() != 0 {
            return Err(format!(
                "{} is owned by uid {}, not root: whoever owns it could run code as root",
                p.display(),
                m.uid()
            ));
        }
        // A sticky directory (like /tmp) lets others add files, not replace ours.
        let sticky = m.is_dir() && m.mode() & 0o1000 != 0;
        if m.mode() & 0o022 != 0 && !sticky {
            return Err(format!(
                "{} is writable by {} (mode {:o}): they could run code as root",
                p.display(),
                if m.mode() & 0o002 != 0 { "others" } else { "its group" },
                m.mode() & 0o7777
            ));
        }
        at = p.parent();
    }
    Ok(())
}

fn run(d: &Daemon, h: &store::HookRecord, e: &EventRecord) {
    let log = |level: &str, kind: &str, msg: String| d.ctx().event(e.vm.as_deref(), level, kind, &msg);
    if let Err(why) = check_script(Path::new(&h.script)) {
        log("error", "hook.refused", format!("event script {} (hook {}) not run: {why}", h.script, h.id));
        return;
    }
    let mut cmd = Command::new(&h.script);
    cmd.env("VINE_EVENT", &e.kind)
        .env("VINE_EVENT_ID", e.id.to_string())
        .env("VINE_VM", e.vm.clone().unwrap_or_default())
        .env("VINE_LEVEL", &e.level)
        .env("VINE_MESSAGE", &e.message)
        .env("VINE_TIME_MS", e.time_ms.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(err) => {
            log(
                "error",
                "hook.failed",
                format!("event script {} (hook {}) could not start: {err}", h.script, h.id),
            );
            return;
        }
    };
    // Read output on threads so a chatty script cannot block on a full pipe.
    let grab = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.by_ref().take(64 << 10).read_to_end(&mut buf);
                let _ = std::io::copy(&mut r, &mut std::io::sink());
            }
            buf
        })
    };
    let out = grab(child.stdout.take().map(|o| Box::new(o) as Box<dyn Read + Send>));
    let err = grab(child.stderr.take().map(|o| Box::new(o) as Box<dyn Read + Send>));
    let deadline = Instant::now() + Duration::from_secs(u64::from(h.timeout_s));
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => break None,
        }
    };
    let Some(status) = status else {
        // SAFETY: kill(2) on the process group of the script we started (its pid is the group id).
        unsafe {
            libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL);
        }
        let _ = child.wait();
        log(
            "warning",
            "hook.timeout",
            format!(
                "event script {} (hook {}) for {} was killed at its timeout of {} s",
                h.script, h.id, e.kind, h.timeout_s
            ),
        );
        return;
    };
    let mut text = String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned();
    text.push_str(&String::from_utf8_lossy(&err.join().unwrap_or_default()));
    let mut text = text.trim().to_string();
    if text.len() > OUTPUT_LIMIT {
        let mut cut = OUTPUT_LIMIT;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    let (level, kind) = if status.success() { ("info", "hook.ran") } else { ("warning", "hook.failed") };
    log(
        level,
        kind,
        format!(
            "event script {} (hook {}) for {} exited with {status}; output: {text}",
            h.script, h.id, e.kind
        ),
    );
}
