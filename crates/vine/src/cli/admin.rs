//! Management commands through the daemon's REST API: `vine events`, `vine user`, `vine acl`,
//! `vine hook`, `vine token`. Every list has `--json`.

use anyhow::{bail, Context};
use api::client::encode;
use clap::Subcommand;
use serde_json::{json, Value};

use super::vm::rest;

/// `vine user …`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user.
    Add {
        /// Login name.
        name: String,
        /// Password (at least 8 characters).
        #[arg(long)]
        password: String,
        /// Administrator.
        #[arg(long)]
        admin: bool,
        /// May create VMs.
        #[arg(long)]
        can_create: bool,
    },
    /// Users.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a user with their tokens and rights.
    Delete {
        /// Login name.
        name: String,
    },
    /// Set a user's password.
    Passwd {
        /// Login name.
        name: String,
        /// The new password.
        #[arg(long)]
        password: String,
    },
}

/// What a right is on: a VM, a storage pool or a network.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct AclObject {
    /// The VM (rights `configure`, `use`).
    vm: Option<String>,
    /// A storage pool (right `use`: make, upload and attach its volumes).
    #[arg(long)]
    pool: Option<String>,
    /// A network (right `use`: attach NICs to it).
    #[arg(long)]
    network: Option<String>,
    /// A template (right `use`: make VMs from it; `configure`: delete it).
    #[arg(long)]
    template: Option<String>,
}

impl AclObject {
    fn json(&self) -> Value {
        json!({ "vm": self.vm, "pool": self.pool, "network": self.network, "template": self.template })
    }
    fn path(&self) -> String {
        match (&self.vm, &self.pool, &self.network, &self.template) {
            (Some(vm), ..) => encode(vm),
            (_, Some(p), ..) => format!("pools/{}", encode(p)),
            (_, _, Some(n), _) => format!("networks/{}", encode(n)),
            (.., Some(t)) => format!("templates/{}", encode(t)),
            _ => unreachable!("clap requires one"),
        }
    }
    fn describe(&self) -> String {
        match (&self.vm, &self.pool, &self.network, &self.template) {
            (Some(vm), ..) => format!("'{vm}'"),
            (_, Some(p), ..) => format!("storage pool '{p}'"),
            (_, _, Some(n), _) => format!("network '{n}'"),
            (.., Some(t)) => format!("template '{t}'"),
            _ => unreachable!("clap requires one"),
        }
    }
}

/// `vine acl …`: rights on VMs (configure, use), storage pools and networks (use).
#[derive(Debug, Subcommand)]
pub enum AclCommand {
    /// Grant USER the RIGHT (configure or use) on a VM or --template, or use on --pool or --network.
    Grant {
        /// User.
        user: String,
        /// `configure` or `use`.
        right: String,
        /// On what.
        #[command(flatten)]
        on: AclObject,
    },
    /// Revoke it.
    Revoke {
        /// User.
        user: String,
        /// `configure` or `use`.
        right: String,
        /// On what.
        #[command(flatten)]
        on: AclObject,
    },
    /// Every right.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `vine hook …`: event scripts.
#[derive(Debug, Subcommand)]
pub enum HookCommand {
    /// Run SCRIPT on every EVENT (e.g. vm.crashed, or * for all); the event is in its environment
    /// (VINE_EVENT, VINE_VM, VINE_LEVEL, VINE_MESSAGE, VINE_EVENT_ID, VINE_TIME_MS).
    Add {
        /// Event kind.
        event: String,
        /// Executable (absolute path).
        script: String,
        /// Only for this VM.
        #[arg(long)]
        vm: Option<String>,
        /// Kill it after this long (e.g. 30s, 2m; default 30s).
        #[arg(long, value_parser = parse_duration_s)]
        timeout: Option<u32>,
    },
    /// Event scripts.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove one.
    Remove {
        /// Its id.
        id: u64,
    },
}

/// `vine token …`: API tokens for scripts.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issue a token for the current user (printed once).
    Create {
        /// What it is for.
        #[arg(long, default_value = "")]
        label: String,
    },
    /// The current user's tokens.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke one.
    Revoke {
        /// Its id.
        id: String,
    },
}

/// Seconds in `30s`, `2m`, `1h` or a plain number of seconds.
pub fn parse_duration_s(text: &str) -> Result<u32, String> {
    let t = text.trim();
    let (num, mult) = match t.chars().last() {
        Some('s') => (&t[..t.len() - 1], 1),
        Some('m') => (&t[..t.len() - 1], 60),
        Some('h') => (&t[..t.len() - 1], 3600),
        Some('d') => (&t[..t.len() - 1], 86400),
        _ => (t, 1),
    };
    num.parse::<u32>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("{text:?} is not a duration like 30s, 10m, 2h or 1d"))
}

fn print_json(v: &Value) -> anyhow::Result<i32> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(0)
}

/// Runs `vine user …`.
pub fn user(cmd: UserCommand) -> anyhow::Result<i32> {
    match cmd {
        UserCommand::Add { name, password, admin, can_create } => {
            rest(
                "POST",
                "/api/users",
                Some(&json!({"name": name, "password": password, "admin": admin, "can_create": can_create})),
            )?;
            println!("added user '{name}'");
        }
        UserCommand::List { json } => {
            let v = rest("GET", "/api/users", None)?;
            if json {
                return print_json(&v);
            }
            for u in v.as_array().into_iter().flatten() {
                let mut flags = Vec::new();
                if u["admin"] == true {
                    flags.push("administrator");
                }
                if u["can_create"] == true {
                    flags.push("may create VMs");
                }
                println!("{:<20} {}", u["name"].as_str().unwrap_or(""), flags.join(", "));
            }
        }
        UserCommand::Delete { name } => {
            rest("DELETE", &format!("/api/users/{}", encode(&name)), None)?;
            println!("deleted user '{name}'");
        }
        UserCommand::Passwd { name, password } => {
            rest(
                "PUT",
                &format!("/api/users/{}/password", encode(&name)),
                Some(&json!({"password": password})),
            )?;
            println!("set the password of '{name}'");
        }
    }
    Ok(0)
}

fn check_right(right: &str) -> anyhow::Result<()> {
    if right != "configure" && right != "use" {
        bail!("right {right:?}: must be `configure` or `use`");
    }
    Ok(())
}

/// Runs `vine acl …`.
pub fn acl(cmd: AclCommand) -> anyhow::Result<i32> {
    match cmd {
        AclCommand::Grant { user, right, on } => {
            check_right(&right)?;
            let mut body = on.json();
            body["user"] = json!(user);
            body["right"] = json!(right);
            rest("POST", "/api/acl", Some(&body))?;
            println!("'{user}' may now {right} {}", on.describe());
        }
        AclCommand::Revoke { user, right, on } => {
            check_right(&right)?;
            rest("DELETE", &format!("/api/acl/{}/{}/{}", encode(&user), on.path(), right), None)?;
            println!("'{user}' may no longer {right} {}", on.describe());
        }
        AclCommand::List { json } => {
            let v = rest("GET", "/api/acl", None)?;
            if json {
                return print_json(&v);
            }
            for r in v.as_array().into_iter().flatten() {
                let on = match (
                    r["vm"].as_str(),
                    r["pool"].as_str(),
                    r["network"].as_str(),
                    r["template"].as_str(),
                ) {
                    (Some(vm), ..) => vm.to_string(),
                    (_, Some(p), ..) => format!("pool {p}"),
                    (_, _, Some(n), _) => format!("network {n}"),
                    (.., Some(t)) => format!("template {t}"),
                    _ => String::new(),
                };
                println!(
                    "{:<20} {:<10} {on}",
                    r["user"].as_str().unwrap_or(""),
                    r["right"].as_str().unwrap_or("")
                );
            }
        }
    }
    Ok(0)
}

/// Runs `vine hook …`.
pub fn hook(cmd: HookCommand) -> anyhow::Result<i32> {
    match cmd {
        HookCommand::Add { event, script, vm, timeout } => {
            let script = std::path::Path::new(&script);
            let script = if script.is_absolute() {
                script.to_path_buf()
            } else {
                std::env::current_dir()?.join(script)
            };
            let v = rest(
                "POST",
                "/api/hooks",
                Some(&json!({"event": event, "script": script, "vm": vm, "timeout_s": timeout})),
            )?;
            println!("added hook {} on {event}: {}", v["id"], script.display());
        }
        HookCommand::List { json } => {
            let v = rest("GET", "/api/hooks", None)?;
            if json {
                return print_json(&v);
            }
            for h in v.as_array().into_iter().flatten() {
                println!(
                    "{:>4} {:<16} {:<10} {:>5}s {}",
                    h["id"],
                    h["event"].as_str().unwrap_or(""),
                    h["vm"].as_str().unwrap_or("*"),
                    h["timeout_s"],
                    h["script"].as_str().unwrap_or("")
                );
            }
        }
        HookCommand::Remove { id } => {
            rest("DELETE", &format!("/api/hooks/{id}"), None)?;
            println!("removed hook {id}");
        }
    }
    Ok(0)
}

/// Runs `vine token …`.
pub fn token(cmd: TokenCommand) -> anyhow::Result<i32> {
    match cmd {
        TokenCommand::Create { label } => {
            let v = rest("POST", "/api/tokens", Some(&json!({"label": label})))?;
            println!("{}", v["token"].as_str().context("no token in the answer")?);
        }
        TokenCommand::List { json } => {
            let v = rest("GET", "/api/tokens", None)?;
            if json {
                return print_json(&v);
            }
            for t in v.as_array().into_iter().flatten() {
                println!(
                    "{} {:<8} {}",
                    t["id"].as_str().unwrap_or(""),
                    t["kind"].as_str().unwrap_or(""),
                    t["label"].as_str().unwrap_or("")
                );
            }
        }
        TokenCommand::Revoke { id } => {
            rest("DELETE", &format!("/api/tokens/{}", encode(&id)), None)?;
            println!("revoked token {id}");
        }
    }
    Ok(0)
}

/// One event as a line: time, level, kind, message (`vine events`, `vine vm events`).
pub fn print_event(e: &Value) {
    let secs = e["time_ms"].as_i64().unwrap_or(0) / 1000;
    let t = format_time(secs);
    // In a pool each event names its host.
    let host = e["host"].as_str().map(|h| format!("{h:<10} ")).unwrap_or_default();
    println!(
        "{t} {host}{:<7} {:<20} {}",
        e["level"].as_str().unwrap_or(""),
        e["kind"].as_str().unwrap_or(""),
        e["message"].as_str().unwrap_or("")
    );
}

/// UTC `YYYY-MM-DDTHH:MM:SSZ` from seconds since the epoch.
pub fn format_time(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|d| d.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| format!("{secs} s after 1970"))
}

/// Runs `vine events`.
pub fn events(vm: Option<String>, since: Option<u32>, follow: bool, json: bool) -> anyhow::Result<i32> {
    let since_ms = since.map(|s| api::auth::now_ms() - i64::from(s) * 1000);
    let mut after = 0u64;
    loop {
        let mut q = format!("/api/events?after={after}");
        if let Some(vm) = &vm {
            q.push_str(&format!("&vm={}", encode(vm)));
        }
        if let Some(t) = since_ms {
            q.push_str(&format!("&since_ms={t}"));
        }
        let v = rest("GET", &q, None)?;
        let mut list = v.as_array().cloned().unwrap_or_default();
        // A pool's log numbers events in the order they reached it; they are shown in time order.
        list.sort_by_key(|e| (e["time_ms"].as_i64().unwrap_or(0), e["id"].as_u64().unwrap_or(0)));
        for e in &list {
            if json {
                println!("{}", serde_json::to_string(e)?);
            } else {
                print_event(e);
            }
            after = after.max(e["id"].as_u64().unwrap_or(0));
        }
        if !follow {
            return Ok(0);
        }
        use std::io::Write;
        std::io::stdout().flush().ok();
        if list.is_empty() {
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_times() {
        assert_eq!(parse_duration_s("30s"), Ok(30));
        assert_eq!(parse_duration_s("2m"), Ok(120));
        assert_eq!(parse_duration_s("45"), Ok(45));
        assert!(parse_duration_s("soon").unwrap_err().contains("not a duration"));
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_time(1_795_305_600), "2026-11-22T00:00:00Z");
    }
}
