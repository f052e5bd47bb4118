//! What every host of a pool shares besides its VMs: the users, their sessions and API tokens,
//! their rights and the event scripts (the *shared tables*, under `/vine/shared/`), and the
//! pool's event log (`/vine/events/`).
//!
//! **Shared tables.** etcd is their one truth; each host keeps a copy in its own store, so a
//! login or a rights check never waits for etcd and keeps working while etcd is down. A change
//! is written to etcd first (where a transaction decides whether it may be made: a user name
//! taken, a hook number) and reaches every host's copy through [`Cluster::mirror_shared`]: one
//! etcd watch, started from the revision of a full read, so no change between the two is
//! missed; any failure (etcd away, a compacted revision, a copy refusing a change) starts over
//! with a full read.
//!
//! **Event log.** Each host journals its events in its own store first, so none is lost while
//! etcd is away; [`Cluster::ship_events`] copies them to `/vine/events/TIME/HOST/ID` together
//! with how far it has shipped (`/vine/shipped/HOST`), in one transaction, so an event is
//! shipped exactly once however the shipper stops. The key sorts the log by time; an event's
//! number in the pool is the etcd revision that created it, so "events after N" never misses
//! one that arrived late. [`Cluster::trim_events`] keeps the newest [`EVENTS_KEPT`].

use std::sync::Arc;

use etcd_client::{
    Compare, CompareOp, DeleteOptions, EventType, GetOptions, SortOrder, SortTarget, Txn, TxnOp, WatchOptions,
};
use store::{
    AclEntry, EventRecord, HookRecord, SharedChange, SharedTables, TemplateRecord, TokenRecord, UserRecord,
};

use crate::client::{json, parse, timed};
use crate::{Cluster, ClusterError};

/// Prefix of the shared tables.
pub const SHARED: &str = "/vine/shared/";
const USERS: &str = "/vine/shared/users/";
const TOKENS: &str = "/vine/shared/tokens/";
const ACL: &str = "/vine/shared/acl/";
const HOOKS: &str = "/vine/shared/hooks/";
const TEMPLATES: &str = "/vine/shared/templates/";
/// The last hook number given out.
const HOOK_SEQ: &str = "/vine/hook-seq";
/// Prefix of the pool's event log.
pub const EVENTS: &str = "/vine/events/";
/// Prefix of each host's shipping mark (the last local event id shipped).
const SHIPPED: &str = "/vine/shipped/";
/// How many events the pool's log keeps.
pub const EVENTS_KEPT: usize = 20_000;
/// Operations per transaction (etcd refuses more than 128 by default).
const BATCH: usize = 100;

fn user_key(name: &str) -> String {
    format!("{USERS}{name}")
}

fn user_tokens(name: &str) -> String {
    format!("{TOKENS}{name}/")
}

fn token_key(t: &TokenRecord) -> String {
    format!("{TOKENS}{}/{}", t.user, t.id)
}

fn user_acl(name: &str) -> String {
    format!("{ACL}{name}/")
}

fn acl_key(e: &AclEntry) -> String {
    format!("{ACL}{}/{}/{}", e.user, e.vm, e.right)
}

fn hook_key(id: u64) -> String {
    format!("{HOOKS}{id:020}")
}

fn template_key(name: &str) -> String {
    format!("{TEMPLATES}{name}")
}

fn event_key(host: &str, e: &EventRecord) -> String {
    format!("{EVENTS}{:013}/{host}/{:012}", e.time_ms.max(0), e.id)
}

fn shipped_key(host: &str) -> String {
    format!("{SHIPPED}{host}")
}

/// What the mirror hands a host's copy of the shared tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MirrorUpdate {
    /// Everything, to replace the copy with.
    Snapshot(SharedTables),
    /// One change, in etcd's order.
    Change(SharedChange),
}

/// Where the mirror delivers: the host's store. An error makes the mirror start over.
pub type MirrorSink = Arc<dyn Fn(MirrorUpdate) -> Result<(), String> + Send + Sync>;

/// The shared tables read from a range of keys (users before what depends on them).
fn tables(kvs: &[etcd_client::KeyValue]) -> Result<SharedTables, ClusterError> {
    let mut t = SharedTables::default();
    for kv in kvs {
        let key = kv.key_str().unwrap_or_default();
        if key.starts_with(USERS) {
            t.users.push(parse(key, kv.value())?);
        } else if key.starts_with(TOKENS) {
            t.tokens.push(parse(key, kv.value())?);
        } else if key.starts_with(ACL) {
            t.acl.push(parse(key, kv.value())?);
        } else if key.starts_with(HOOKS) {
            t.hooks.push(parse(key, kv.value())?);
        } else if key.starts_with(TEMPLATES) {
            t.templates.push(parse(key, kv.value())?);
        }
    }
    Ok(t)
}

/// A change read from one watch event. A deletion is read from the key (the value is gone).
fn change(kind: EventType, kv: &etcd_client::KeyValue) -> Result<Option<SharedChange>, ClusterError> {
    let key = kv.key_str().unwrap_or_default().to_string();
    let put = kind == EventType::Put;
    let bad = |problem: &str| ClusterError::Record { key: key.clone(), problem: problem.into() };
    Ok(Some(if let Some(name) = key.strip_prefix(USERS) {
        if put {
            SharedChange::User(parse(&key, kv.value())?)
        } else {
            SharedChange::UserGone(name.to_string())
        }
    } else if let Some(rest) = key.strip_prefix(TOKENS) {
        if put {
            SharedChange::Token(parse(&key, kv.value())?)
        } else {
            let (_, id) = rest.split_once('/').ok_or_else(|| bad("a token key is USER/ID"))?;
            SharedChange::TokenGone(id.to_string())
        }
    } else if let Some(rest) = key.strip_prefix(ACL) {
        if put {
            SharedChange::Grant(parse(&key, kv.value())?)
        } else {
            let (user, rest) =
                rest.split_once('/').ok_or_else(|| bad("a right's key is USER/OBJECT/RIGHT"))?;
            let (vm, right) =
                rest.rsplit_once('/').ok_or_else(|| bad("a right's key is USER/OBJECT/RIGHT"))?;
            SharedChange::Revoke(AclEntry { user: user.into(), vm: vm.into(), right: right.into() })
        }
    } else if let Some(id) = key.strip_prefix(HOOKS) {
        if put {
            SharedChange::Hook(parse(&key, kv.value())?)
        } else {
            SharedChange::HookGone(id.parse().map_err(|_| bad("a hook's key is its number"))?)
        }
    } else if let Some(name) = key.strip_prefix(TEMPLATES) {
        if put {
            SharedChange::Template(parse(&key, kv.value())?)
        } else {
            SharedChange::TemplateGone(name.to_string())
        }
    } else {
        return Ok(None);
    }))
}

impl Cluster {
    /// Makes the shared tables in etcd exactly `t` (the first host of a new pool brings its own).
    pub fn upload_shared(&self, t: &SharedTables) -> Result<(), ClusterError> {
        let mut ops = Vec::new();
        ops.extend(t.users.iter().map(|u| TxnOp::put(user_key(&u.name), json(u), None)));
        ops.extend(t.tokens.iter().map(|x| TxnOp::put(token_key(x), json(x), None)));
        ops.extend(t.acl.iter().map(|e| TxnOp::put(acl_key(e), json(e), None)));
        ops.extend(t.hooks.iter().map(|h| TxnOp::put(hook_key(h.id), json(h), None)));
        ops.extend(t.templates.iter().map(|x| TxnOp::put(template_key(&x.name), json(x), None)));
        let seq = t.hooks.iter().map(|h| h.id).max().unwrap_or(0);
        ops.push(TxnOp::put(HOOK_SEQ, seq.to_string(), None));
        let mut c = self.client();
        let e = self.endpoints().to_string();
        self.block_on(async move {
            // etcd refuses a deletion and puts in its range in one transaction: what was there
            // goes first (a partial upload then only lacks entries).
            timed!(
                &e,
                "clearing users, rights and hooks",
                c.delete(SHARED, Some(DeleteOptions::new().with_prefix())),
            )
            .await?;
            let mut ops = ops.into_iter().peekable();
            while ops.peek().is_some() {
                let batch: Vec<TxnOp> = ops.by_ref().take(BATCH).collect();
                timed!(
                    &e,
                    "copying users, rights and hooks to the pool",
                    c.txn(Txn::new().and_then(batch.clone()))
                )
                .await?;
            }
            Ok(())
        })
    }

    /// Runs one transaction: `ops` if every comparison holds. Returns whether it did.
    fn txn_if(&self, what: String, when: Vec<Compare>, ops: Vec<TxnOp>) -> Result<bool, ClusterError> {
        let mut c = self.client();
        let e = self.endpoints().to_string();
        self.block_on(async move {
            Ok(timed!(&e, &what, c.txn(Txn::new().when(when.clone()).and_then(ops.clone())))
                .await?
                .succeeded())
        })
    }

    /// Adds a user; false if the name is taken.
    pub fn create_user(&self, u: &UserRecord) -> Result<bool, ClusterError> {
        let key = user_key(&u.name);
        self.txn_if(
            format!("adding user '{}'", u.name),
            vec![Compare::version(key.as_str(), CompareOp::Equal, 0)],
            vec![TxnOp::put(key.as_str(), json(u), None)],
        )
    }

    /// Changes a user; false if there is none of that name.
    pub fn update_user(&self, u: &UserRecord) -> Result<bool, ClusterError> {
        let key = user_key(&u.name);
        self.txn_if(
            format!("changing user '{}'", u.name),
            vec![Compare::version(key.as_str(), CompareOp::Greater, 0)],
            vec![TxnOp::put(key.as_str(), json(u), None)],
        )
    }

    /// Removes a user with their tokens and rights; false if there is none of that name.
    pub fn delete_user(&self, name: &str) -> Result<bool, ClusterError> {
        let key = user_key(name);
        let prefix = || Some(DeleteOptions::new().with_prefix());
        self.txn_if(
            format!("removing user '{name}'"),
            vec![Compare::version(key.as_str(), CompareOp::Greater, 0)],
            vec![
                TxnOp::delete(user_tokens(name), prefix()),
                TxnOp::delete(user_acl(name), prefix()),
                TxnOp::delete(key.as_str(), None),
            ],
        )
    }

    /// Stores a session or API token, if its user still exists.
    pub fn put_token(&self, t: &TokenRecord) -> Result<bool, ClusterError> {
        self.txn_if(
            format!("storing a token of user '{}'", t.user),
            vec![Compare::version(user_key(&t.user), CompareOp::Greater, 0)],
            vec![TxnOp::put(token_key(t), json(t), None)],
        )
    }

    /// Removes a token; false if it was not there.
    pub fn delete_token(&self, user: &str, id: &str) -> Result<bool, ClusterError> {
        let key = format!("{TOKENS}{user}/{id}");
        self.txn_if(
            format!("removing a token of user '{user}'"),
            vec![Compare::version(key.as_str(), CompareOp::Greater, 0)],
            vec![TxnOp::delete(key.as_str(), None)],
        )
    }

    /// Grants a right, if its user still exists.
    pub fn grant(&self, e: &AclEntry) -> Result<bool, ClusterError> {
        self.txn_if(
            format!("granting '{}' {} on {}", e.user, e.right, e.vm),
            vec![Compare::version(user_key(&e.user), CompareOp::Greater, 0)],
            vec![TxnOp::put(acl_key(e), json(e), None)],
        )
    }

    /// Revokes a right; false if it was not granted.
    pub fn revoke(&self, e: &AclEntry) -> Result<bool, ClusterError> {
        let key = acl_key(e);
        self.txn_if(
            format!("revoking '{}' {} on {}", e.user, e.right, e.vm),
            vec![Compare::version(key.as_str(), CompareOp::Greater, 0)],
            vec![TxnOp::delete(key.as_str(), None)],
        )
    }

    /// Revokes every right on one object (a VM that is gone), whoever holds it.
    pub fn revoke_object(&self, entries: &[AclEntry]) -> Result<(), ClusterError> {
        for chunk in entries.chunks(BATCH) {
            let ops = chunk.iter().map(|e| TxnOp::delete(acl_key(e), None)).collect();
            self.txn_if(format!("revoking the rights on {}", chunk[0].vm), vec![], ops)?;
        }
        Ok(())
    }

    /// Adds an event script under the next free number, which it returns.
    pub fn add_hook(&self, h: &HookRecord) -> Result<u64, ClusterError> {
        let mut c = self.client();
        let e = self.endpoints().to_string();
        let h = h.clone();
        self.block_on(async move {
            loop {
                let r = timed!(&e, "numbering a hook", c.get(HOOK_SEQ, None)).await?;
                let (last, rev) = match r.kvs().first() {
                    Some(kv) => (
                        kv.value_str().ok().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0),
                        kv.mod_revision(),
                    ),
                    None => (0, 0),
                };
                let id = last + 1;
                let hook = HookRecord { id, ..h.clone() };
                let txn =
                    Txn::new().when([Compare::mod_revision(HOOK_SEQ, CompareOp::Equal, rev)]).and_then([
                        TxnOp::put(HOOK_SEQ, id.to_string(), None),
                        TxnOp::put(hook_key(id), json(&hook), None),
                    ]);
                if timed!(&e, "adding a hook", c.txn(txn.clone())).await?.succeeded() {
                    return Ok(id);
                }
            }
        })
    }

    /// Removes an event script; false if there is none of that number.
    pub fn delete_hook(&self, id: u64) -> Result<bool, ClusterError> {
        let key = hook_key(id);
        self.txn_if(
            format!("removing hook {id}"),
            vec![Compare::version(key.as_str(), CompareOp::Greater, 0)],
            vec![TxnOp::delete(key.as_str(), None)],
        )
    }

    /// Records a template; false if the name is taken.
    pub fn create_template(&self, t: &TemplateRecord) -> Result<bool, ClusterError> {
        let key = template_key(&t.name);
        self.txn_if(
            format!("adding template '{}'", t.name),
            vec![Compare::version(key.as_str(), CompareOp::Equal, 0)],
            vec![TxnOp::put(key.as_str(), json(t), None)],
        )
    }

    /// Removes a template; false if there is none of that name.
    pub fn remove_template(&self, name: &str) -> Result<bool, ClusterError> {
        let key = template_key(name);
        self.txn_if(
            format!("removing template '{name}'"),
            vec![Compare::version(key.as_str(), CompareOp::Greater, 0)],
            vec![TxnOp::delete(key.as_str(), None)],
        )
    }

    /// Keeps `sink` (the host's copy) equal to the shared tables until the connection stops:
    /// a full read, then every change from the revision after it.
    pub fn mirror_shared(&self, sink: MirrorSink) {
        let client = self.client();
        let e = self.endpoints().to_string();
        self.spawn(move |mut stop| async move {
            let mut last_problem = String::new();
            loop {
                let r = tokio::select! {
                    r = mirror(client.clone(), &e, &sink) => r,
                    _ = stop.changed() => return,
                };
                if let Err(problem) = r {
                    let problem = problem.to_string();
                    if problem != last_problem {
                        tracing::warn!("copying the pool's users and rights: {problem}; starting over");
                        last_problem = problem;
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(crate::client::RETRY) => {}
                    _ = stop.changed() => return,
                }
            }
        });
    }

    /// Copies this host's events (its own log, from its store, in order) to the pool's log,
    /// with the mark of how far it got, in one transaction per batch.
    pub fn ship_events(&self, events: &[EventRecord]) -> Result<(), ClusterError> {
        let host = self.config().host.clone();
        let mut c = self.client();
        let e = self.endpoints().to_string();
        let batches: Vec<Vec<TxnOp>> = events
            .chunks(BATCH)
            .map(|chunk| {
                let mut ops: Vec<TxnOp> = chunk
                    .iter()
                    .map(|ev| {
                        let rec = EventRecord { host: Some(host.clone()), ..ev.clone() };
                        TxnOp::put(event_key(&host, ev), json(&rec), None)
                    })
                    .collect();
                let last = chunk.last().map_or(0, |ev| ev.id);
                ops.push(TxnOp::put(shipped_key(&host), last.to_string(), None));
                ops
            })
            .collect();
        self.block_on(async move {
            for ops in batches {
                timed!(&e, "copying events to the pool's log", c.txn(Txn::new().and_then(ops.clone())))
                    .await?;
            }
            Ok(())
        })
    }

    /// Records that this host's events up to local id `id` are in the pool's log (a host
    /// entering a pool keeps its history to itself).
    pub fn mark_shipped(&self, id: u64) -> Result<(), ClusterError> {
        let key = shipped_key(&self.config().host);
        let mut c = self.client();
        let e = self.endpoints().to_string();
        self.block_on(async move {
            timed!(&e, "marking where this host's events start", c.put(key.as_str(), id.to_string(), None))
                .await?;
            Ok(())
        })
    }

    /// The last of this host's events in the pool's log (its local id; 0 for none).
    pub fn shipped(&self) -> Result<u64, ClusterError> {
        let key = shipped_key(&self.config().host);
        let mut c = self.client();
        let e = self.endpoints().to_string();
        self.block_on(async move {
            let r = timed!(&e, "reading how far events were copied", c.get(key.as_str(), None)).await?;
            Ok(r.kvs().first().and_then(|kv| kv.value_str().ok()?.parse().ok()).unwrap_or(0))
        })
    }

    /// The pool's events that reached its log after number `after` (about `vm` only, if
    /// given), at most `limit`, in the order they reached it; each numbered by its etcd
    /// revision and naming its host.
    pub fn pool_events(
        &self,
        vm: Option<&str>,
        after: u64,
        limit: usize,
    ) -> Result<Vec<EventRecord>, ClusterError> {
        let mut c = self.client();
        let e = self.endpoints().to_string();
        let vm = vm.map(str::to_string);
        self.block_on(async move {
            // In pages of at most 1,000 (one answer stays far below gRPC's 4 MiB), each after
            // the last event of the one before.
            let mut out = Vec::new();
            let mut after = after.min(i64::MAX as u64 - 1) as i64;
            loop {
                let page = if vm.is_some() { 1000 } else { (limit - out.len()).clamp(1, 1000) as i64 };
                let o = GetOptions::new()
                    .with_prefix()
                    .with_sort(SortTarget::Create, SortOrder::Ascend)
                    .with_min_create_revision(after + 1)
                    .with_limit(page);
                let r = timed!(&e, "reading the pool's events", c.get(EVENTS, Some(o.clone()))).await?;
                for kv in r.kvs() {
                    after = kv.create_revision();
                    let key = kv.key_str().unwrap_or_default();
                    let mut ev: EventRecord = parse(key, kv.value())?;
                    if vm.as_ref().is_some_and(|v| ev.vm.as_ref() != Some(v)) {
                        continue;
                    }
                    ev.id = kv.create_revision().max(0) as u64;
                    out.push(ev);
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
                if (r.kvs().len() as i64) < page {
                    return Ok(out);
                }
            }
        })
    }

    /// Drops the oldest events beyond [`EVENTS_KEPT`]; returns how many went.
    pub fn trim_events(&self) -> Result<usize, ClusterError> {
        let mut c = self.client();
        let e = self.endpoints().to_string();
        self.block_on(async move {
            let count = timed!(
                &e,
                "counting events",
                c.get(EVENTS, Some(GetOptions::new().with_prefix().with_count_only())),
            )
            .await?
            .count()
            .max(0) as usize;
            if count <= EVENTS_KEPT {
                return Ok(0);
            }
            let extra = count - EVENTS_KEPT;
            let oldest = timed!(
                &e,
                "finding old events",
                c.get(
                    EVENTS,
                    Some(GetOptions::new().with_prefix().with_keys_only().with_limit(extra as i64)),
                ),
            )
            .await?;
            let Some(last) = oldest.kvs().last() else { return Ok(0) };
            let mut end = last.key().to_vec();
            end.push(0);
            let gone = timed!(
                &e,
                "dropping old events",
                c.delete(EVENTS, Some(DeleteOptions::new().with_range(end.clone()))),
            )
            .await?;
            Ok(gone.deleted().max(0) as usize)
        })
    }
}

/// One pass of the mirror: a full read, then changes until the watch fails.
async fn mirror(mut c: etcd_client::Client, e: &str, sink: &MirrorSink) -> Result<(), ClusterError> {
    let r =
        timed!(e, "reading users, rights and hooks", c.get(SHARED, Some(GetOptions::new().with_prefix())))
            .await?;
    let rev = r.header().map_or(0, |h| h.revision());
    sink(MirrorUpdate::Snapshot(tables(r.kvs())?)).map_err(ClusterError::Conflict)?;
    let mut stream = timed!(
        e,
        "watching users, rights and hooks",
        c.watch(SHARED, Some(WatchOptions::new().with_prefix().with_start_revision(rev + 1))),
    )
    .await?;
    loop {
        let msg = stream.message().await.map_err(|source| ClusterError::Etcd {
            endpoints: e.into(),
            what: "watching users and rights".into(),
            source,
        })?;
        let Some(resp) = msg else {
            return Err(ClusterError::Conflict("etcd ended the watch of users and rights".into()));
        };
        if resp.canceled() {
            return Err(ClusterError::Conflict(format!(
                "etcd cancelled the watch of users and rights ({})",
                resp.cancel_reason()
            )));
        }
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            if let Some(ch) = change(ev.event_type(), kv)? {
                sink(MirrorUpdate::Change(ch)).map_err(ClusterError::Conflict)?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_users_apart_and_events_in_time_order() {
        let t = TokenRecord {
            id: "abc".into(),
            user: "bob".into(),
            secret_sha256: String::new(),
            kind: "api".into(),
            label: String::new(),
            created_ms: 0,
            expires_ms: None,
        };
        assert_eq!(token_key(&t), "/vine/shared/tokens/bob/abc");
        assert!(!token_key(&t).starts_with(&user_tokens("bo")));
        let e = AclEntry { user: "bob".into(), vm: "pool/fast".into(), right: "use".into() };
        assert_eq!(acl_key(&e), "/vine/shared/acl/bob/pool/fast/use");
        let ev = |t: i64, id: u64| EventRecord {
            id,
            time_ms: t,
            vm: None,
            host: None,
            level: "info".into(),
            kind: "k".into(),
            message: String::new(),
        };
        assert!(event_key("h2", &ev(999, 7)) < event_key("h1", &ev(1000, 1)));
        assert!(hook_key(9) < hook_key(10));
    }
}
