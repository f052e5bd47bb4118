//! A new container's root file system: its id slot on this host (no two containers of a host
//! share a host id) and its root unpacked from its image before the registry is locked.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use vmconfig::VmDefinition;

use super::Daemon;
use crate::protocol::Failure;

/// A root file system unpacked for a container being created, with its slot held; whatever is
/// left of both goes when it is dropped.
pub(super) struct Staged {
    dir: PathBuf,
    slot: u32,
    pending: Arc<Mutex<BTreeSet<u32>>>,
}

impl Staged {
    /// Moves the root into the container's directory (`DIR/rootfs`).
    pub(super) fn move_into(&self, dir: &Path) -> Result<(), String> {
        let to = dir.join("rootfs");
        std::fs::rename(self.dir.join("rootfs"), &to)
            .map_err(|e| format!("cannot move the root file system to {}: {e}", to.display()))
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.slot);
    }
}

impl Daemon {
    /// Gives `def` (a container) a free id slot and unpacks its image (or `moved`, the tarball
    /// of its root another host sent, owned by the ids of the definition's old `id_base`) into a
    /// staging directory owned by that slot's ids; `def` gets the slot's base and its init's
    /// halt signal.
    pub(super) fn stage_rootfs(
        &self,
        def: &mut VmDefinition,
        moved: Option<&Path>,
    ) -> Result<Staged, Failure> {
        let c = def
            .container
            .as_mut()
            .ok_or_else(|| Failure::Invalid("definition: a container needs [container]".into()))?;
        let (image, from) = match moved {
            Some(tarball) => (tarball.to_path_buf(), c.id_base),
            None => {
                let image = self
                    .ctx
                    .pools
                    .resolve(&c.image)
                    .map_err(|e| Failure::Invalid(format!("definition: field `container.image`: {e}")))?;
                (image, 0)
            }
        };
        let slot = {
            let vms = self.read();
            let mut pending = self.pending_slots.lock().unwrap_or_else(|p| p.into_inner());
            let used = vms
                .values()
                .filter_map(|h| {
                    let v = h.view.lock().unwrap_or_else(|p| p.into_inner());
                    v.def.container.as_ref().and_then(|c| lxc::idmap::slot_of(c.id_base))
                })
                .chain(pending.iter().copied())
                .collect::<Vec<_>>();
            let slot = lxc::idmap::free_slot(used).ok_or_else(|| {
                Failure::Refused(format!("this host holds {} containers, the most it can", lxc::idmap::SLOTS))
            })?;
            pending.insert(slot);
            slot
        };
        let staged = Staged {
            dir: self.ctx.data.join("lxc").join(".staging").join(format!("{}-{slot}", def.name)),
            slot,
            pending: self.pending_slots.clone(),
        };
        let _ = std::fs::remove_dir_all(&staged.dir);
        std::fs::create_dir_all(&staged.dir)
            .map_err(|e| Failure::Failed(format!("cannot create {}: {e}", staged.dir.display())))?;
        let base = lxc::idmap::base_of(slot);
        let unpacked =
            lxc::rootfs::unpack(&image, &staged.dir.join("rootfs"), base, from).map_err(|e| match e {
                lxc::rootfs::RootfsError::Io { .. } => Failure::Failed(e.to_string()),
                _ => Failure::Invalid(format!("definition: field `container.image`: {e}")),
            })?;
        c.id_base = base;
        c.halt_signal = lxc::config::halt_signal_for(unpacked.init_target.as_deref()).to_string();
        tracing::info!(
            container = def.name,
            image = %image.display(),
            entries = unpacked.entries,
            devices_dropped = unpacked.devices_dropped,
            "unpacked a container's root file system"
        );
        Ok(staged)
    }
}
