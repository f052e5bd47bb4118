//! How this host reaches its pool: `<data>/cluster.toml`, written when the host initialises or
//! joins a pool, read at every daemon start.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ClusterError;

/// Longest host name.
pub const MAX_NAME: usize = 63;

/// TLS client files for etcd.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EtcdTls {
    /// CA certificate (PEM) that signed etcd's server certificates.
    #[schema(value_type = String)]
    pub ca: PathBuf,
    /// This host's client certificate (PEM).
    #[schema(value_type = String)]
    pub cert: PathBuf,
    /// Its key (PEM).
    #[schema(value_type = String)]
    pub key: PathBuf,
}

/// The SHA-256 (hex) of the first certificate in the PEM file `ca` (its DER bytes), as a join
/// token names the pool's etcd CA.
pub fn ca_fingerprint(ca: &Path) -> Result<String, ClusterError> {
    use base64::Engine as _;
    use sha2::Digest as _;
    let bad = |why: String| ClusterError::Invalid(format!("etcd CA {}: {why}", ca.display()));
    let text = std::fs::read_to_string(ca).map_err(|e| bad(e.to_string()))?;
    let body: String = text
        .lines()
        .skip_while(|l| l.trim() != "-----BEGIN CERTIFICATE-----")
        .skip(1)
        .take_while(|l| l.trim() != "-----END CERTIFICATE-----")
        .map(str::trim)
        .collect();
    if body.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    let der =
        base64::engine::general_purpose::STANDARD.decode(body).map_err(|e| bad(format!("not PEM: {e}")))?;
    Ok(sha2::Sha256::digest(der).iter().map(|b| format!("{b:02x}")).collect())
}

/// The pool this host belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterConfig {
    /// The pool's id (from `/vine/pool`).
    pub pool_id: String,
    /// This host's name in the pool.
    pub host: String,
    /// etcd client URLs.
    pub etcd: Vec<String>,
    /// TLS to etcd, if its endpoints are `https://`.
    #[serde(default)]
    pub tls: Option<EtcdTls>,
}

/// The file in a data directory.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("cluster.toml")
}

/// Checks a host name: 1 to 63 of `A-Z a-z 0-9 - _ .`, not starting with `.` or `-`.
pub fn check_name(name: &str) -> Result<(), ClusterError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with(['.', '-'])
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ClusterError::Invalid(format!(
            "host name {name:?}: use 1 to {MAX_NAME} letters, digits, '-', '_' or '.', not starting with '.' or '-'"
        )))
    }
}

/// Checks and normalises etcd endpoints: `http://HOST:PORT` or `https://HOST:PORT`, at most 16.
pub fn check_endpoints(list: &[String]) -> Result<Vec<String>, ClusterError> {
    if list.is_empty() || list.len() > 16 {
        return Err(ClusterError::Invalid(format!(
            "etcd endpoints: give 1 to 16 URLs (http://HOST:2379, …), got {}",
            list.len()
        )));
    }
    list.iter()
        .map(|e| {
            let e = e.trim().trim_end_matches('/');
            let rest = e.strip_prefix("http://").or_else(|| e.strip_prefix("https://"));
            match rest {
                Some(r) if !r.is_empty() && r.len() <= 255 && !r.contains(['/', ' ', '@']) => {
                    Ok(e.to_string())
                }
                _ => Err(ClusterError::Invalid(format!(
                    "etcd endpoint {e:?}: expected http://HOST:PORT or https://HOST:PORT"
                ))),
            }
        })
        .collect()
}

impl ClusterConfig {
    /// Reads the configuration, if this host belongs to a pool.
    pub fn load(data_dir: &Path) -> Result<Option<ClusterConfig>, ClusterError> {
        let p = path(data_dir);
        let text = match std::fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ClusterError::Config { path: p, problem: e.to_string() }),
        };
        let c: ClusterConfig = toml::from_str(&text)
            .map_err(|e| ClusterError::Config { path: p.clone(), problem: e.to_string() })?;
        check_name(&c.host).map_err(|e| ClusterError::Config { path: p.clone(), problem: e.to_string() })?;
        check_endpoints(&c.etcd).map_err(|e| ClusterError::Config { path: p, problem: e.to_string() })?;
        Ok(Some(c))
    }

    /// Writes it (atomically: a temporary file renamed over the old one).
    pub fn save(&self, data_dir: &Path) -> Result<(), ClusterError> {
        let p = path(data_dir);
        let err = |e: String| ClusterError::Config { path: p.clone(), problem: e };
        let text = toml::to_string(self).map_err(|e| err(e.to_string()))?;
        let tmp = p.with_extension("toml.new");
        std::fs::write(&tmp, text).map_err(|e| err(e.to_string()))?;
        std::fs::rename(&tmp, &p).map_err(|e| err(e.to_string()))
    }

    /// Removes it (the host leaves its pool).
    pub fn remove(data_dir: &Path) -> Result<(), ClusterError> {
        let p = path(data_dir);
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(ClusterError::Config { path: p, problem: e.to_string() })
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_endpoints_are_checked() {
        assert!(check_name("h1").is_ok());
        assert!(check_name("rack-2.host_7").is_ok());
        for bad in ["", "-x", ".x", "a b", "a/b", &"x".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            check_endpoints(&["http://10.0.0.1:2379/".into(), "https://e2:2379".into()]).unwrap(),
            vec!["http://10.0.0.1:2379".to_string(), "https://e2:2379".to_string()]
        );
        assert!(check_endpoints(&[]).is_err());
        let e = check_endpoints(&["10.0.0.1:2379".into()]).unwrap_err().to_string();
        assert!(e.contains("expected http://HOST:PORT"), "{e}");
    }

    #[test]
    fn the_file_round_trips_and_goes() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(ClusterConfig::load(d.path()).unwrap(), None);
        let c = ClusterConfig {
            pool_id: "p".into(),
            host: "h1".into(),
            etcd: vec!["http://10.0.0.1:2379".into()],
            tls: None,
        };
        c.save(d.path()).unwrap();
        assert_eq!(ClusterConfig::load(d.path()).unwrap(), Some(c));
        ClusterConfig::remove(d.path()).unwrap();
        assert_eq!(ClusterConfig::load(d.path()).unwrap(), None);
    }

    #[test]
    fn a_bad_file_names_itself() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(path(d.path()), "host = 3").unwrap();
        let e = ClusterConfig::load(d.path()).unwrap_err().to_string();
        assert!(e.contains("cluster.toml"), "{e}");
    }
}
