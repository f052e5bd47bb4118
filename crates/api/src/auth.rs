//! Who is asking: passwords (argon2id), login sessions (cookie) and API tokens (bearer), and the
//! local socket's peer (root is the administrator). Secrets are random 32 bytes shown once; the
//! store keeps only their SHA-256, so a stolen database does not yield working tokens.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use sha2::{Digest, Sha256};
use store::{Store, TokenRecord, UserRecord};

/// Web sessions last this long.
pub const SESSION_MS: i64 = 12 * 3600 * 1000;
/// Cookie carrying the session.
pub const COOKIE: &str = "vine_session";

/// Longest user name a login may present (names are at most 63 bytes; see `vmconfig::MAX_NAME`).
pub const MAX_USER_NAME: usize = 64;
/// Longest password (hashing cost grows with it).
pub const MAX_PASSWORD: usize = 1024;

static STAND_IN: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// A hash of a random password with the same parameters as every stored one: an unknown user's
/// login is verified against it, so it costs the same time as a wrong password and the answer's
/// timing does not tell which user names exist.
pub fn stand_in_hash() -> &'static str {
    STAND_IN.get_or_init(|| hash_password(&random_hex(16)))
}

/// Computes the stand-in hash ahead of the first login.
pub fn warm_up() {
    stand_in_hash();
}

/// Ends every login session of `user` but `keep` (the caller's own, when they changed their own
/// password). API tokens stay: they are credentials of their own, revoked one by one.
pub fn end_sessions(store: &dyn Store, user: &str, keep: Option<&str>) -> Result<usize, store::StoreError> {
    let mut ended = 0;
    for t in store.list_tokens(user)? {
        if t.kind == "session" && Some(t.id.as_str()) != keep {
            store.delete_token(&t.id)?;
            ended += 1;
        }
    }
    Ok(ended)
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// User name (`root` for the local socket's root peer).
    pub user: String,
    /// Every right.
    pub admin: bool,
    /// May create VMs.
    pub can_create: bool,
    /// The token id this request came with (for logout).
    pub token: Option<String>,
    /// The user's rights on VMs, pools and networks, read with the token (none for
    /// administrators, who have them all), so checking them touches no database.
    pub rights: Vec<store::AclEntry>,
    /// Another host of this host's pool, forwarding a request it checked (it presented the
    /// pool's secret).
    pub pool_peer: bool,
}

/// The name a forwarding pool host goes by.
pub const POOL_PEER: &str = "pool-peer";
/// How a pool host presents the pool's secret: `Authorization: Bearer pool.SECRET`.
pub const POOL_TOKEN_PREFIX: &str = "pool.";

/// Now, ms since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `n` random bytes as lower-case hex.
pub fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    getrandom::getrandom(&mut b).expect("the OS has a random source");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// SHA-256 of `data`, hex.
pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|x| format!("{x:02x}")).collect()
}

/// An argon2id hash (PHC string) of `password`.
pub fn hash_password(password: &str) -> String {
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).expect("the OS has a random source");
    let salt = SaltString::encode_b64(&salt).expect("16 bytes is a valid salt");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashes any password")
        .to_string()
}

/// Whether `password` matches the PHC string `hash`.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// Whether two secrets (or their hashes) are equal, in time that does not depend on where they differ.
pub fn equal(a: &str, b: &str) -> bool {
    // Constant time in the length of the (fixed-length) hashes.
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Issues a token for `user`: stores its record, returns `id.secret` (shown once).
pub fn issue(
    store: &dyn Store,
    user: &str,
    kind: &str,
    label: &str,
) -> Result<(String, TokenRecord), store::StoreError> {
    let id = random_hex(8);
    let secret = random_hex(32);
    let created = now_ms();
    let rec = TokenRecord {
        id: id.clone(),
        user: user.to_string(),
        secret_sha256: sha256_hex(secret.as_bytes()),
        kind: kind.to_string(),
        label: label.to_string(),
        created_ms: created,
        expires_ms: (kind == "session").then_some(created + SESSION_MS),
    };
    store.put_token(&rec)?;
    Ok((format!("{id}.{secret}"), rec))
}

/// The principal of a presented token (`id.secret`), if it is valid and not expired.
pub fn check_token(store: &dyn Store, presented: &str) -> Option<Principal> {
    check_token_until(store, presented).map(|(p, _)| p)
}

/// [`check_token`], with when the token expires (ms since the epoch; `None`: never).
pub fn check_token_until(store: &dyn Store, presented: &str) -> Option<(Principal, Option<i64>)> {
    let (id, secret) = presented.trim().split_once('.')?;
    if id.len() > 64 || secret.len() > 128 {
        return None;
    }
    let rec = store.get_token(id).ok()??;
    if !equal(&rec.secret_sha256, &sha256_hex(secret.as_bytes())) {
        return None;
    }
    if rec.expires_ms.is_some_and(|e| e < now_ms()) {
        let _ = store.delete_token(id);
        return None;
    }
    principal_of(store, &rec.user, Some(rec.id)).map(|p| (p, rec.expires_ms))
}

/// Principals of tokens checked lately, so that most requests need not read the store. An
/// entry holds the store's [`Store::auth_generation`] as it was before the token was read and
/// serves only while that is unchanged (any write to users, tokens or rights ends every entry
/// at once: a revoked token or right stops working with the very write) and the token has not
/// expired. Keyed by the SHA-256 of the presented token; at most [`PrincipalCache::MAX`]
/// entries.
#[derive(Debug, Default)]
pub struct PrincipalCache {
    entries: std::sync::Mutex<std::collections::HashMap<String, Cached>>,
}

#[derive(Debug)]
struct Cached {
    principal: Principal,
    generation: u64,
    expires_ms: Option<i64>,
}

impl PrincipalCache {
    /// Entries kept at most (past this the cache starts again empty).
    pub const MAX: usize = 4096;

    /// The principal of `presented` if it was checked at the store's generation `now`.
    pub fn get(&self, now: u64, presented: &str) -> Option<Principal> {
        let key = sha256_hex(presented.trim().as_bytes());
        let mut m = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let hit = m.get(&key)?;
        if hit.generation != now || hit.expires_ms.is_some_and(|e| e < now_ms()) {
            m.remove(&key);
            return None;
        }
        Some(hit.principal.clone())
    }

    /// Keeps what checking `presented` gave, read at the store's generation `generation`.
    pub fn put(&self, generation: u64, presented: &str, principal: &Principal, expires_ms: Option<i64>) {
        let key = sha256_hex(presented.trim().as_bytes());
        let mut m = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= Self::MAX {
            m.clear();
        }
        m.insert(key, Cached { principal: principal.clone(), generation, expires_ms });
    }
}

/// The principal of stored user `user` (with their rights), authenticated by token `token` or,
/// with `None`, by their password on this request; `None` if there is no such user.
pub fn principal_of(store: &dyn Store, user: &str, token: Option<String>) -> Option<Principal> {
    let u = store.get_user(user).ok()??;
    let rights = if u.admin { Vec::new() } else { store.acl(Some(&u.name), None).ok()? };
    Some(Principal {
        user: u.name,
        admin: u.admin,
        can_create: u.can_create || u.admin,
        token,
        rights,
        pool_peer: false,
    })
}

/// Creates the `admin` user with a random password on first start; returns the password when it
/// did (to be written once to the data directory and printed once).
pub fn ensure_admin(store: &dyn Store) -> Result<Option<String>, store::StoreError> {
    if !store.list_users()?.is_empty() {
        return Ok(None);
    }
    let password = random_hex(12);
    store.create_user(&UserRecord {
        name: "admin".into(),
        password_hash: hash_password(&password),
        admin: true,
        can_create: true,
        created_ms: now_ms(),
    })?;
    Ok(Some(password))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let h = hash_password("s3cret");
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("s3cret", &h));
        assert!(!verify_password("s3cre", &h));
        assert!(!verify_password("s3cret", "not a hash"));
        assert_ne!(hash_password("s3cret"), h, "salted");
    }

    #[test]
    fn tokens_check_secret_expiry_and_user() {
        let dir = tempfile::tempdir().unwrap();
        let s = store::SqliteStore::open(&dir.path().join("db")).unwrap();
        assert!(ensure_admin(&s).unwrap().is_some());
        assert!(ensure_admin(&s).unwrap().is_none(), "only on first start");
        let (tok, rec) = issue(&s, "admin", "api", "test").unwrap();
        let p = check_token(&s, &tok).unwrap();
        assert!(p.admin && p.user == "admin" && p.token.as_deref() == Some(rec.id.as_str()));
        let forged = format!("{}.{}", rec.id, random_hex(32));
        assert!(check_token(&s, &forged).is_none());
        assert!(check_token(&s, "garbage").is_none());
        assert!(check_token(&s, "").is_none());
        let (old, rec) = issue(&s, "admin", "session", "web").unwrap();
        s.delete_token(&rec.id).unwrap();
        s.put_token(&TokenRecord { expires_ms: Some(1), ..rec }).unwrap();
        assert!(check_token(&s, &old).is_none(), "expired sessions are refused");
    }

    #[test]
    fn kept_principals_serve_only_while_users_tokens_and_rights_are_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let s = store::SqliteStore::open(&dir.path().join("db")).unwrap();
        ensure_admin(&s).unwrap();
        let cache = PrincipalCache::default();
        let (tok, rec) = issue(&s, "admin", "api", "test").unwrap();
        let keep = |presented: &str| {
            let g = s.auth_generation().unwrap();
            let (p, until) = check_token_until(&s, presented).unwrap();
            cache.put(g, presented, &p, until);
            p
        };
        let p = keep(&tok);
        let now = s.auth_generation().unwrap();
        assert_eq!(cache.get(now, &tok), Some(p.clone()));
        assert_eq!(cache.get(now, &format!("{}.{}", rec.id, random_hex(32))), None, "another secret");
        // Any write to users, tokens or rights ends every entry, even one about someone else.
        s.create_user(&UserRecord {
            name: "ann".into(),
            password_hash: hash_password("ann"),
            admin: false,
            can_create: false,
            created_ms: now_ms(),
        })
        .unwrap();
        let after = s.auth_generation().unwrap();
        assert_ne!(after, now);
        assert_eq!(cache.get(after, &tok), None);
        keep(&tok);
        s.delete_token(&rec.id).unwrap();
        assert_eq!(cache.get(s.auth_generation().unwrap(), &tok), None, "a revoked token is not kept");
        // A write that fails still counts (it may have been partly done): never stale.
        let g = s.auth_generation().unwrap();
        let _ = s.delete_user("nobody");
        assert_ne!(s.auth_generation().unwrap(), g);
        // An expired session is not served, whatever the generation.
        let (old, _) = issue(&s, "admin", "session", "web").unwrap();
        let g = s.auth_generation().unwrap();
        let p = check_token(&s, &old).unwrap();
        cache.put(g, &old, &p, Some(now_ms() - 1));
        assert_eq!(cache.get(g, &old), None, "expired");
        // Writes that do not touch who anyone is leave the entries alone: a new token (a login)
        // and an event.
        let (tok, _) = issue(&s, "admin", "api", "test").unwrap();
        keep(&tok);
        let g = s.auth_generation().unwrap();
        let (other, _) = issue(&s, "admin", "session", "web login").unwrap();
        assert_eq!(s.auth_generation().unwrap(), g, "a login ends no kept entry");
        assert!(cache.get(g, &tok).is_some());
        assert!(check_token(&s, &other).is_some());
        s.append_event(&store::EventRecord {
            id: 0,
            time_ms: now_ms(),
            vm: None,
            host: None,
            level: "info".into(),
            kind: "test".into(),
            message: "m".into(),
        })
        .unwrap();
        assert_eq!(s.auth_generation().unwrap(), g);
        assert!(cache.get(g, &tok).is_some());
    }

    #[test]
    fn a_password_change_ends_other_sessions_but_not_api_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let s = store::SqliteStore::open(&dir.path().join("db")).unwrap();
        ensure_admin(&s).unwrap();
        let (mine, me) = issue(&s, "admin", "session", "web").unwrap();
        let (other, _) = issue(&s, "admin", "session", "web").unwrap();
        let (api, _) = issue(&s, "admin", "api", "script").unwrap();
        assert_eq!(end_sessions(&s, "admin", Some(&me.id)).unwrap(), 1);
        assert!(check_token(&s, &mine).is_some());
        assert!(check_token(&s, &other).is_none());
        assert!(check_token(&s, &api).is_some());
        assert_eq!(end_sessions(&s, "admin", None).unwrap(), 1);
        assert!(check_token(&s, &mine).is_none());
    }

    #[test]
    fn the_stand_in_hash_verifies_nothing_and_has_the_stored_parameters() {
        let h = stand_in_hash();
        assert!(!verify_password("", h) && !verify_password("admin", h));
        let stored = hash_password("x");
        let params = |h: &str| h.rsplitn(3, '$').nth(2).unwrap().to_string();
        assert_eq!(params(h), params(&stored));
    }
}
