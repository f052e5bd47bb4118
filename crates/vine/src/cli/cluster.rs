//! `vine cluster …`: this host's pool of hosts, whose shared state lives in etcd.

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::{json, Value};

use super::vm::rest;

/// TLS client files for etcd, for `init` and `join`.
#[derive(Debug, clap::Args)]
pub struct TlsArgs {
    /// CA certificate (PEM) of etcd's server certificates (with --etcd-cert and --etcd-key).
    #[arg(long, requires_all = ["etcd_cert", "etcd_key"])]
    etcd_ca: Option<PathBuf>,
    /// This host's client certificate (PEM) for etcd.
    #[arg(long, requires = "etcd_ca")]
    etcd_cert: Option<PathBuf>,
    /// The client certificate's key (PEM).
    #[arg(long, requires = "etcd_ca")]
    etcd_key: Option<PathBuf>,
}

/// Pool subcommands.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Makes the running daemon the first host of a new pool whose shared state lives in etcd.
    Init {
        /// etcd client URLs, comma-separated (http://HOST:2379 or https://…).
        #[arg(long, value_delimiter = ',', required = true)]
        etcd: Vec<String>,
        /// This host's name in the pool (default: its host name).
        #[arg(long)]
        name: Option<String>,
        /// TLS to etcd.
        #[command(flatten)]
        tls: TlsArgs,
    },
    /// Prints a one-time join token (valid for an hour) admitting a new host to this pool.
    Token {
        /// The new host's name in the pool.
        host: String,
    },
    /// Joins the running daemon to the pool a token from one of its hosts names.
    Join {
        /// The token `vine cluster token NEWHOST` printed on a member.
        token: String,
        /// TLS to etcd (the token names the pool's etcd CA by its SHA-256; --etcd-ca must match).
        #[command(flatten)]
        tls: TlsArgs,
    },
    /// Takes this host out of its pool: it is a host on its own again.
    Leave,
    /// The pool: its id, etcd endpoints and members, and its hosts.
    Show {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn absolute(p: PathBuf) -> anyhow::Result<String> {
    let p = if p.is_absolute() { p } else { std::env::current_dir()?.join(p) };
    Ok(p.display().to_string())
}

/// Runs a cluster subcommand.
pub fn run(cmd: ClusterCommand) -> anyhow::Result<i32> {
    match cmd {
        ClusterCommand::Init { etcd, name, tls } => {
            let tls = tls_files(tls)?;
            let body = json!({ "etcd": etcd, "name": name, "tls": tls });
            let v = rest("POST", "/api/cluster", Some(&body))?;
            println!("{}", v["message"].as_str().unwrap_or("done"));
            Ok(0)
        }
        ClusterCommand::Token { host } => {
            let v = rest("POST", "/api/cluster/tokens", Some(&json!({ "host": host })))?;
            println!("{}", v["token"].as_str().unwrap_or(""));
            eprintln!("on the new host: vine cluster join TOKEN (valid for an hour, once)");
            Ok(0)
        }
        ClusterCommand::Join { token, tls } => {
            let tls = tls_files(tls)?;
            let v = rest("POST", "/api/cluster/join", Some(&json!({ "token": token, "tls": tls })))?;
            println!("{}", v["message"].as_str().unwrap_or("done"));
            Ok(0)
        }
        ClusterCommand::Leave => {
            let v = rest("DELETE", "/api/cluster", None)?;
            println!("{}", v["message"].as_str().unwrap_or("done"));
            Ok(0)
        }
        ClusterCommand::Show { json } => {
            let v = rest("GET", "/api/cluster", None)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(0);
            }
            print_pool(&v);
            Ok(0)
        }
    }
}

fn print_pool(v: &Value) {
    println!("pool:       {}", v["pool"]["id"].as_str().unwrap_or(""));
    println!("this host:  {}", v["this_host"].as_str().unwrap_or(""));
    match v["coordinator"].as_str() {
        Some(c) => println!("coordinator: {c}"),
        None => println!("coordinator: none (one is being elected)"),
    }
    if let Some(problem) = v["membership_problem"].as_str() {
        println!("warning:    this host is not registered in the pool yet: {problem}");
    }
    let etcd: Vec<&str> = v["etcd"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    println!("etcd:       {}", etcd.join(", "));
    for m in v["etcd_members"].as_array().into_iter().flatten() {
        let urls: Vec<&str> =
            m["client_urls"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        println!("  member    {:<12} {}", m["name"].as_str().unwrap_or(""), urls.join(", "));
    }
    println!("hosts:");
    for h in v["hosts"].as_array().into_iter().flatten() {
        println!(
            "  {:<20} {:<12} {}",
            h["name"].as_str().unwrap_or(""),
            h["state"].as_str().unwrap_or(""),
            h["url"].as_str().unwrap_or("")
        );
    }
}

/// The TLS client files for etcd as the API takes them (absolute paths), if given.
fn tls_files(t: TlsArgs) -> anyhow::Result<Value> {
    Ok(match (t.etcd_ca, t.etcd_cert, t.etcd_key) {
        (Some(ca), Some(cert), Some(key)) => {
            json!({ "ca": absolute(ca)?, "cert": absolute(cert)?, "key": absolute(key)? })
        }
        _ => Value::Null,
    })
}
