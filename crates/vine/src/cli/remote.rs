//! `vine remote …`: remote daemons reached over HTTPS. `add` shows the certificate's SHA-256
//! fingerprint and trusts it (on the terminal's confirmation or `--accept-fingerprint`), logs in
//! once and keeps an API token; `--remote NAME` (or VINE_REMOTE) then sends any command there.
//! Stored in `$XDG_CONFIG_HOME/vine/remotes.json` (default `~/.config`), mode 0600.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Subcommand;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// `vine remote …`.
#[derive(Debug, Subcommand)]
pub enum RemoteCommand {
    /// Trust a remote daemon and log in to it once (an API token is kept).
    Add {
        /// A name for it.
        name: String,
        /// host:port of its HTTPS API (e.g. 10.0.0.5:8443).
        addr: String,
        /// User to log in as.
        #[arg(long)]
        user: String,
        /// Password (or VINE_PASSWORD).
        #[arg(long, env = "VINE_PASSWORD")]
        password: String,
        /// Trust this fingerprint without asking (AA:BB:…).
        #[arg(long)]
        accept_fingerprint: Option<String>,
    },
    /// Known remotes.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Forget one (its token stays valid on the daemon until revoked there).
    Remove {
        /// Its name.
        name: String,
    },
}

/// A trusted remote.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Remote {
    /// host:port.
    pub addr: String,
    /// Pinned certificate fingerprint.
    pub fingerprint: String,
    /// API token.
    pub token: String,
}

fn file() -> anyhow::Result<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .context("neither XDG_CONFIG_HOME nor HOME is set")?;
    Ok(base.join("vine").join("remotes.json"))
}

/// The stored remotes.
pub fn load() -> anyhow::Result<BTreeMap<String, Remote>> {
    let f = file()?;
    match std::fs::read_to_string(&f) {
        Ok(t) => serde_json::from_str(&t).with_context(|| format!("{} is not a remotes file", f.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", f.display())),
    }
}

fn save(all: &BTreeMap<String, Remote>) -> anyhow::Result<()> {
    let f = file()?;
    std::fs::create_dir_all(f.parent().expect("has a parent"))?;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut out = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&f)?;
    out.write_all(serde_json::to_string_pretty(all)?.as_bytes())?;
    Ok(())
}

/// Runs `vine remote …`.
pub fn run(cmd: RemoteCommand) -> anyhow::Result<i32> {
    match cmd {
        RemoteCommand::Add { name, addr, user, password, accept_fingerprint } => {
            let fp = api::client::fetch_fingerprint(&addr)?;
            println!("{addr} presents a certificate with SHA-256 fingerprint\n  {fp}");
            match accept_fingerprint {
                Some(want) if want.eq_ignore_ascii_case(&fp) => {}
                Some(want) => {
                    bail!("the certificate's fingerprint is {fp}, not the expected {want}: not trusted")
                }
                None if std::io::stdin().is_terminal() => {
                    eprint!("Compare it with the one the daemon printed at its start. Trust it? [y/N] ");
                    let mut answer = String::new();
                    std::io::stdin().read_line(&mut answer)?;
                    if !matches!(answer.trim(), "y" | "Y" | "yes") {
                        bail!("not trusted");
                    }
                }
                None => bail!("not a terminal: pass --accept-fingerprint {fp} to trust it"),
            }
            let c = api::client::Client::https(&addr, &fp, None);
            let session = c.call("POST", "/api/login", Some(&json!({"user": user, "password": password})))?;
            let session = session["token"].as_str().context("no session token in the answer")?;
            let c = api::client::Client::https(&addr, &fp, Some(session));
            let token =
                c.call("POST", "/api/tokens", Some(&json!({"label": format!("vine remote {name}")})))?;
            let token = token["token"].as_str().context("no token in the answer")?.to_string();
            let _ = c.call("POST", "/api/logout", None);
            let mut all = load()?;
            all.insert(name.clone(), Remote { addr, fingerprint: fp, token });
            save(&all)?;
            println!("added remote '{name}'; use it with --remote {name}");
        }
        RemoteCommand::List { json } => {
            let all = load()?;
            if json {
                let list: Vec<_> = all
                    .iter()
                    .map(|(n, r)| json!({"name": n, "addr": r.addr, "fingerprint": r.fingerprint}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for (n, r) in &all {
                    println!("{n:<16} {:<24} {}", r.addr, r.fingerprint);
                }
            }
        }
        RemoteCommand::Remove { name } => {
            let mut all = load()?;
            if all.remove(&name).is_none() {
                bail!("no remote named '{name}'");
            }
            save(&all)?;
            println!("removed remote '{name}'");
        }
    }
    Ok(0)
}
