//! The host's TLS identity: a self-signed certificate made on first start (`<data>/tls/`), its
//! SHA-256 fingerprint (what `vine remote add` pins), and the rustls server configuration.

use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};

/// Errors loading or making the certificate.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The certificate or key is unusable.
    #[error("TLS: {0}")]
    Bad(String),
}

/// The server side: configuration and fingerprint.
pub struct Identity {
    /// For the acceptor.
    pub config: Arc<rustls::ServerConfig>,
    /// SHA-256 of the DER certificate, `AA:BB:…`.
    pub fingerprint: String,
    /// Whether it was made just now.
    pub created: bool,
}

/// `AA:BB:…` of SHA-256 over `der`.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// Loads `<dir>/cert.pem` and `<dir>/key.pem`, making them first if missing.
pub fn load_or_create(dir: &Path, hostname: &str) -> Result<Identity, TlsError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| TlsError::Io { path, source }
    };
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    let mut created = false;
    if !cert_path.exists() || !key_path.exists() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let names = vec![hostname.to_string(), "localhost".to_string(), "127.0.0.1".to_string()];
        let ck = rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::Bad(e.to_string()))?;
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut kf = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&key_path)
            .map_err(io(&key_path))?;
        kf.write_all(ck.key_pair.serialize_pem().as_bytes()).map_err(io(&key_path))?;
        std::fs::write(&cert_path, ck.cert.pem()).map_err(io(&cert_path))?;
        created = true;
    }
    let cert_pem = std::fs::read(&cert_path).map_err(io(&cert_path))?;
    let key_pem = std::fs::read(&key_path).map_err(io(&key_path))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut &cert_pem[..])
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Bad(format!("{}: {e}", cert_path.display())))?;
    let first =
        certs.first().ok_or_else(|| TlsError::Bad(format!("{}: no certificate", cert_path.display())))?;
    let fp = fingerprint(first.as_ref());
    let key = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(|e| TlsError::Bad(format!("{}: {e}", key_path.display())))?
        .ok_or_else(|| TlsError::Bad(format!("{}: no private key", key_path.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Bad(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Bad(e.to_string()))?;
    Ok(Identity { config: Arc::new(config), fingerprint: fp, created })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_then_loaded_with_the_same_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(dir.path(), "h").unwrap();
        assert!(a.created && a.fingerprint.len() == 95, "{}", a.fingerprint);
        let b = load_or_create(dir.path(), "h").unwrap();
        assert!(!b.created);
        assert_eq!(a.fingerprint, b.fingerprint);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("key.pem")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
