//! Confinement: what a user who is not the administrator may name in a VM. They name disks,
//! CD/DVDs, kernels and initrds only as volumes (`POOL/NAME`) of storage pools they may use,
//! never a host path; a volume's parent chain stays inside such pools; a volume that a VM they
//! may not configure attaches is not theirs to attach (unless both sides only read it); and
//! NICs go only to networks they may use. Each refusal is a 403 whose sentence names the field.
//! The administrator may name anything. These run on the blocking pool (store and file reads).

use std::path::{Path, PathBuf};

use axum::http::StatusCode;
use daemon::pools::Link;
use daemon::server::attachments;
use vmconfig::VmDefinition;

use super::{has_right, ApiError, ApiResult, AppState};
use crate::auth::Principal;

/// The key a pool's rights are stored under (VM names never hold a `/`).
pub fn pool_object(pool: &str) -> String {
    format!("pool/{pool}")
}

/// The key a network's rights are stored under.
pub fn network_object(network: &str) -> String {
    format!("network/{network}")
}

/// The key a template's rights are stored under.
pub fn template_object(template: &str) -> String {
    format!("template/{template}")
}

fn forbidden(message: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, message)
}

/// Refuses a volume that a VM `p` may not configure attaches (for a download or a delete: the
/// volume's own bytes, whatever it stands on).
pub fn check_not_anothers(state: &AppState, p: &Principal, field: &str, path: &str) -> ApiResult<()> {
    if p.admin {
        return Ok(());
    }
    let Ok(file) = state.daemon.ctx().pools.resolve(path) else { return Ok(()) };
    not_anothers(p, &state.daemon.volume_users(), field, path, &file, true, None)
}

/// Refuses `file` (volume `path`, or one it stands on) when a VM other than `vm` that `p` may
/// not configure attaches it and either side writes it.
#[allow(clippy::too_many_arguments)]
fn not_anothers(
    p: &Principal,
    users: &std::collections::BTreeMap<PathBuf, Vec<daemon::server::Attachment>>,
    field: &str,
    path: &str,
    file: &Path,
    me_writes: bool,
    vm: Option<&str>,
) -> ApiResult<()> {
    let Ok(f) = std::fs::canonicalize(file) else { return Ok(()) };
    for theirs in users.get(&f).into_iter().flatten() {
        if Some(theirs.vm.as_str()) == vm || !(me_writes || theirs.writable) {
            continue;
        }
        if !has_right(p, &theirs.vm, "configure") {
            return Err(forbidden(format!(
                "{field}: volume {path} is a disk of VM '{}', which user '{}' may not configure",
                theirs.vm, p.user
            )));
        }
    }
    Ok(())
}

/// Whether `p` may use storage pool `pool`.
pub fn may_use_pool(p: &Principal, pool: &str) -> bool {
    has_right(p, &pool_object(pool), "use")
}

/// Whether `p` may attach NICs to `network`.
pub fn may_use_network(p: &Principal, network: &str) -> bool {
    has_right(p, &network_object(network), "use")
}

/// The field names of a definition's files, in the order [`attachments`] gives them.
fn fields(d: &VmDefinition) -> Vec<String> {
    let mut f: Vec<String> = (0..d.disks.len()).map(|i| format!("disks[{i}]")).collect();
    if let Some(k) = &d.kernel {
        f.push("kernel".into());
        if k.initrd.is_some() {
            f.push("initrd".into());
        }
    }
    f
}

/// Checks a new VM's files and networks for `p`.
pub fn check_vm(state: &AppState, p: &Principal, def: &VmDefinition) -> ApiResult<()> {
    if p.admin {
        return Ok(());
    }
    for (field, (path, mine)) in fields(def).into_iter().zip(attachments(def)) {
        check_volume(state, p, &field, &path, mine.writable, Some(&def.name))?;
    }
    if let Some(c) = &def.container {
        // The image is only read (the container's root is a copy).
        check_volume(state, p, "image", &c.image, false, Some(&def.name))?;
    }
    for (i, n) in def.nics.iter().enumerate() {
        if !may_use_network(p, &n.network) {
            return Err(forbidden(format!(
                "user '{}' may not use network '{}' (nics[{i}]): an administrator grants it with \
                 `vine acl grant {} use --network {}`",
                p.user, n.network, p.user, n.network
            )));
        }
    }
    Ok(())
}

/// Checks that `p` may attach `path` (`writable` or not) in `field` of VM `vm` (a new one).
pub fn check_volume(
    state: &AppState,
    p: &Principal,
    field: &str,
    path: &str,
    writable: bool,
    vm: Option<&str>,
) -> ApiResult<()> {
    if p.admin {
        return Ok(());
    }
    let Some((pool, _)) = vmconfig::volume_ref(path) else {
        return Err(forbidden(format!(
            "user '{}' may not name host paths ({field}: {}): only the administrator may; name a volume \
             POOL/NAME of a storage pool you may use",
            p.user,
            daemon::protocol::clip(path)
        )));
    };
    if !may_use_pool(p, pool) {
        return Err(forbidden(format!(
            "user '{}' may not use storage pool '{pool}' ({field}: {path})",
            p.user
        )));
    }
    // No VM `p` may not configure attaches the file or its parents while either side writes,
    // and its parents are volumes of pools `p` may use.
    let pools = &state.daemon.ctx().pools;
    // A missing volume is the daemon's 400, after the rights.
    let Ok(file) = pools.resolve(path) else { return Ok(()) };
    let users = state.daemon.volume_users();
    let others = |f: &Path, me_writes: bool| not_anothers(p, &users, field, path, f, me_writes, vm);
    others(&file, writable)?;
    for link in pools.chain(&file) {
        match link {
            Link::Host(_) => {
                return Err(forbidden(format!(
                    "{field}: volume {path} stands on a file outside every storage pool; user '{}' may not use it",
                    p.user
                )));
            }
            Link::Volume(v) => {
                let (parent_pool, _) = vmconfig::volume_ref(&v).expect("a pool volume");
                if !may_use_pool(p, parent_pool) {
                    return Err(forbidden(format!(
                        "{field}: volume {path} stands on {v}, in storage pool '{parent_pool}', which user '{}' may not use",
                        p.user
                    )));
                }
                let parent: PathBuf = pools.resolve(&v).map_err(ApiError::from)?;
                // Reading a disk that another VM writes is reading that VM's data.
                others(&parent, false)?;
            }
        }
    }
    Ok(())
}
