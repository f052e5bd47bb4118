//! Join tokens: what a new host needs to join a pool, printed by `vine cluster token NEWHOST` on
//! a member and given to `vine cluster join TOKEN` on the new host.
//!
//! A token is `vine1.` and the URL-safe base64 of a JSON object: the pool's id, the host name it
//! admits, the etcd endpoints and a random secret. etcd keeps only the secret's SHA-256, under
//! `/vine/join/HOST` with a lease of [`TOKEN_TTL_S`]; a join spends it (it is deleted in the same
//! transaction that admits the host), so a token admits one host, once, within the hour.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::ClusterError;

/// How long a token stays valid.
pub const TOKEN_TTL_S: i64 = 3600;
const PREFIX: &str = "vine1.";

/// `n` random bytes from the OS, as hex.
pub(crate) fn random_hex(n: usize) -> String {
    let mut s = vec![0u8; n];
    getrandom::getrandom(&mut s).expect("the OS random source is available");
    s.iter().map(|b| format!("{b:02x}")).collect()
}

/// A token's contents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinToken {
    /// The pool's id.
    pub pool: String,
    /// The host it admits.
    pub host: String,
    /// etcd client URLs.
    pub etcd: Vec<String>,
    /// The secret (hex).
    pub secret: String,
    /// When the pool's etcd uses TLS: the SHA-256 (hex) of the CA certificate that signed its
    /// server certificates, which the joining host's `--etcd-ca` must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd_ca_sha256: Option<String>,
}

impl JoinToken {
    /// A token with a new random secret.
    pub fn new(pool: &str, host: &str, etcd: &[String]) -> JoinToken {
        JoinToken {
            pool: pool.into(),
            host: host.into(),
            etcd: etcd.to_vec(),
            secret: random_hex(24),
            etcd_ca_sha256: None,
        }
    }

    /// The token as text.
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).expect("tokens serialise");
        format!("{PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json))
    }

    /// Reads a token, saying what is wrong with a bad one.
    pub fn decode(text: &str) -> Result<JoinToken, ClusterError> {
        let bad = |why: &str| {
            ClusterError::Invalid(format!("join token: {why} (copy it whole from `vine cluster token`)"))
        };
        let body = text.trim().strip_prefix(PREFIX).ok_or_else(|| bad("it does not start with 'vine1.'"))?;
        if body.len() > 8192 {
            return Err(bad("it is too long"));
        }
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| bad("it is not valid base64"))?;
        let t: JoinToken =
            serde_json::from_slice(&json).map_err(|e| bad(&format!("its contents do not parse: {e}")))?;
        crate::config::check_name(&t.host)?;
        crate::config::check_endpoints(&t.etcd)?;
        Ok(t)
    }

    /// What etcd keeps of the secret.
    pub fn secret_hash(&self) -> String {
        sha2::Sha256::digest(self.secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Whatever is pasted as a token, and whatever its base64 body holds, the answer is a
        /// token or an error that says what is wrong, never a panic.
        #[test]
        fn any_text_is_a_token_or_a_sentence(text in ".{0,300}", body in proptest::collection::vec(0u8..=255, 0..300)) {
            for t in [text.clone(), format!("vine1.{text}"),
                      format!("vine1.{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&body))] {
                if let Err(e) = JoinToken::decode(&t) {
                    proptest::prop_assert!(e.to_string().contains("join token") || e.to_string().contains("etcd") || e.to_string().contains("host name"));
                }
            }
        }
    }

    #[test]
    fn tokens_round_trip_and_bad_ones_say_why() {
        let t = JoinToken::new("pool-1", "h2", &["http://10.0.0.1:2379".into()]);
        assert_eq!(t.secret.len(), 48);
        let text = t.encode();
        assert!(text.starts_with("vine1."));
        assert_eq!(JoinToken::decode(&format!(" {text}\n")).unwrap(), t);
        assert_ne!(JoinToken::new("pool-1", "h2", &t.etcd).secret, t.secret);
        assert_eq!(t.secret_hash().len(), 64);
        for (bad, why) in
            [("xyz", "does not start with"), ("vine1.!!!", "not valid base64"), ("vine1.e30", "do not parse")]
        {
            let e = JoinToken::decode(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
