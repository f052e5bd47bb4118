//! VM templates: read-only base disks in storage pools with the settings that VMs made from
//! them take, and the clones made from them.
//!
//! A template is made from a VM that is off (`--from-vm`: its settings, and a copy of each of
//! its disks, flattened) or from a volume (`--from-volume`: one disk, settings given). Each
//! base is a dynamic VHD in a storage pool named `TEMPLATE.base.vhd` (`TEMPLATE-N.base.vhd` for
//! the Nth disk after the first), made read-only on disk. The template's record lives in the
//! store's shared tables, so in a pool of hosts every host sees every template.
//!
//! A VM made from a template (`vine vm create NAME --template T`) gets, for each base, a
//! *linked clone*: a differencing VHD `NAME.vhd` (`NAME-N.vhd`) in the base's pool whose parent
//! is the base, so any number of clones share one base; `--full` makes a standalone copy
//! instead. The clones are the VM's own disks (deleted with it).
//!
//! **Invariants.** A base is never written: disk servers open parents read-only, and no VM may
//! attach a base read-write (checked at every create). A template is deleted only when no
//! volume stands on its bases (the refusal names the VMs that hold the clones); a base cannot
//! be deleted as a volume while its template exists.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use store::TemplateRecord;
use vmconfig::VmDefinition;

use serde_json::Value;

use crate::protocol::{Failure, Request};
use crate::server::Daemon;

/// How a template is made (`POST /api/templates`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateNew {
    /// Its name: letters, digits, '-', '_', '.'.
    pub name: String,
    /// A VM that is off: its settings, and a copy of each of its disks.
    #[serde(default)]
    pub from_vm: Option<String>,
    /// A volume `POOL/NAME`: the one disk (copied); settings from the fields below.
    #[serde(default)]
    pub from_volume: Option<String>,
    /// The storage pool the bases go to (default: the pool of the source's first disk).
    #[serde(default)]
    pub pool: Option<String>,
    /// vCPUs (with `from_volume`; default 1).
    #[serde(default)]
    pub cpus: Option<u32>,
    /// Memory, bytes (with `from_volume`; default 512 MiB).
    #[serde(default)]
    pub memory: Option<u64>,
    /// Networks of the NICs (with `from_volume`).
    #[serde(default)]
    pub networks: Vec<String>,
    /// A description.
    #[serde(default)]
    pub description: Option<String>,
}

/// Which template a new VM is made from, and how (`VmCreate`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateUse {
    /// The template.
    pub name: String,
    /// Full copies of the bases instead of linked clones.
    #[serde(default)]
    pub full: bool,
}

/// The record of a template (the store keeps it as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    /// The settings: a definition named after the template whose disks name the bases.
    definition: String,
    /// The base volumes, in the definition's disk order.
    bases: Vec<String>,
    /// What it was made from.
    source: String,
    /// A description.
    #[serde(default)]
    description: Option<String>,
    /// When it was made, ms since the epoch.
    created_ms: i64,
    /// In a pool of hosts, the host whose host-local pool holds the bases (none: a shared pool,
    /// or no pool of hosts). Other hosts get a copy of them on first use.
    #[serde(default)]
    host: Option<String>,
}

/// A base as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BaseInfo {
    /// `POOL/NAME`.
    pub volume: String,
    /// The disk size a guest sees, bytes.
    pub virtual_bytes: Option<u64>,
    /// Bytes on disk.
    pub file_bytes: u64,
    /// The volumes standing on it (linked clones), `POOL/NAME`.
    pub clones: Vec<String>,
}

/// A template as shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TemplateInfo {
    /// Its name.
    pub name: String,
    /// vCPUs of a VM made from it.
    pub cpus: u32,
    /// Memory, bytes.
    pub memory: u64,
    /// Its bases.
    pub bases: Vec<BaseInfo>,
    /// Networks of its NICs.
    pub networks: Vec<String>,
    /// What it was made from.
    pub source: String,
    /// A description.
    pub description: Option<String>,
    /// When it was made, ms since the epoch.
    pub created_ms: i64,
    /// The VMs whose disks stand on its bases (here, or on a shared pool).
    pub clones: Vec<String>,
    /// In a pool of hosts, the host holding the bases on a host-local pool (others copy them
    /// on first use); none for bases on a shared pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// A template's name is a volume name (its bases are named after it).
fn check_name(name: &str) -> Result<(), Failure> {
    if vmconfig::is_volume_name(name) && name.len() + ".base.vhd".len() + 4 <= vmconfig::MAX_VOLUME_NAME {
        Ok(())
    } else {
        Err(Failure::Invalid(format!(
            "name: {:?} must be 1 to {} letters, digits, '-', '_', '.', starting with a letter or digit",
            crate::protocol::clip(name),
            vmconfig::MAX_VOLUME_NAME - 13
        )))
    }
}

/// The volume name of disk `i` of `stem` with `suffix` (`web1.vhd`, `web1-2.vhd`).
fn disk_name(stem: &str, i: usize, suffix: &str) -> String {
    if i == 0 {
        format!("{stem}{suffix}")
    } else {
        format!("{stem}-{}{suffix}", i + 1)
    }
}

fn parse_spec(t: &TemplateRecord) -> Result<Spec, Failure> {
    serde_json::from_str(&t.spec)
        .map_err(|e| Failure::Failed(format!("the record of template '{}' is damaged: {e}", t.name)))
}

/// Copies `src` (flattening its chain) into a new dynamic VHD `dst`.
fn copy_disk(src: &Path, dst: &Path) -> Result<(), Failure> {
    vhd::ops::convert(
        src,
        dst,
        vhd::ops::Target::Dynamic(vhd::spec::DEFAULT_BLOCK_SIZE),
        vhd::create::SizeRule::default(),
        &mut |_, _| {},
    )
    .map_err(|e| {
        let _ = std::fs::remove_file(dst);
        Failure::Failed(format!("cannot copy {} to {}: {e}", src.display(), dst.display()))
    })
}

/// Makes a file read-only on disk (a sign to whoever looks; vine opens bases read-only anyway).
fn seal(file: &Path) -> Result<(), Failure> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o444))
        .map_err(|e| Failure::Failed(format!("cannot make {} read-only: {e}", file.display())))
}

/// Files made so far by a template or clone operation, removed unless it completes.
struct Made(Vec<PathBuf>);

impl Made {
    fn keep(mut self) {
        self.0.clear();
    }
}

impl Drop for Made {
    fn drop(&mut self) {
        for f in &self.0 {
            let _ = std::fs::remove_file(f);
        }
    }
}

impl Daemon {
    fn template_record(&self, name: &str) -> Result<(TemplateRecord, Spec), Failure> {
        let all = self.ctx().store.list_templates().map_err(|e| Failure::Failed(e.to_string()))?;
        let t = all
            .into_iter()
            .find(|t| t.name == name)
            .ok_or_else(|| Failure::NotFound(format!("no template named '{name}'")))?;
        let spec = parse_spec(&t)?;
        Ok((t, spec))
    }

    /// The template whose base is `file`, if any.
    pub(crate) fn template_of_base(&self, file: &Path) -> Option<String> {
        let file = std::fs::canonicalize(file).ok()?;
        let pools = &self.ctx().pools;
        self.ctx().store.list_templates().ok()?.into_iter().find_map(|t| {
            let spec = parse_spec(&t).ok()?;
            spec.bases
                .iter()
                .filter_map(|b| pools.resolve(b).ok())
                .any(|f| std::fs::canonicalize(f).ok().as_deref() == Some(file.as_path()))
                .then_some(t.name)
        })
    }

    /// `vine template create`.
    pub(crate) fn template_create(&self, new: &TemplateNew) -> Result<TemplateInfo, Failure> {
        check_name(&new.name)?;
        if self.template_record(&new.name).is_ok() {
            return Err(Failure::Refused(format!("a template named '{}' already exists", new.name)));
        }
        let pools = &self.ctx().pools;
        // The settings, and the files to copy.
        let (mut def, sources, source) = match (&new.from_vm, &new.from_volume) {
            (Some(vm), None) => {
                if new.cpus.is_some() || new.memory.is_some() || !new.networks.is_empty() {
                    return Err(Failure::Invalid(
                        "cpus, memory and networks come from the VM; give them only with from_volume".into(),
                    ));
                }
                // In a pool a VM of another host is sent there (`Request::vm_target`).
                let (_, view) = self.view_of(vm)?;
                let v = view.lock().unwrap_or_else(|p| p.into_inner()).clone();
                if v.state != vmm::state::VmState::Off {
                    return Err(Failure::Refused(format!(
                        "VM '{vm}' is {}: a template is made from a VM that is off (shut it down, or discard its saved state)",
                        v.state.name()
                    )));
                }
                let mut def = v.def.clone();
                let mut sources = Vec::new();
                for d in def.disks.iter().filter(|d| !d.cdrom) {
                    sources.push((d.path.clone(), pools.file_of(&d.path)?, d.bus));
                }
                def.disks.retain(|d| d.cdrom);
                (def, sources, format!("VM '{vm}'"))
            }
            (None, Some(volume)) => {
                let file = pools.resolve(volume)?;
                let mut def =
                    VmDefinition::new(&new.name, new.cpus.unwrap_or(1), new.memory.unwrap_or(512 << 20));
                def.nics =
                    new.networks.iter().map(|n| vmconfig::Nic { network: n.clone(), mac: None }).collect();
                (def, vec![(volume.clone(), file, vmconfig::Bus::Virtio)], format!("volume {volume}"))
            }
            _ => return Err(Failure::Invalid("give exactly one of from_vm and from_volume".into())),
        };
        if sources.is_empty() {
            return Err(Failure::Invalid(format!("{source} has no disk to make a base of")));
        }
        let pool = match &new.pool {
            Some(p) => p.clone(),
            None => vmconfig::volume_ref(&sources[0].0).map(|(p, _)| p.to_string()).ok_or_else(|| {
                Failure::Invalid(format!(
                    "pool: {} is not a volume of a storage pool; name the pool the base goes to",
                    sources[0].0
                ))
            })?,
        };
        pools.dir(&pool)?;
        // Every name is free before anything is copied.
        let bases: Vec<String> =
            (0..sources.len()).map(|i| format!("{pool}/{}", disk_name(&new.name, i, ".base.vhd"))).collect();
        for b in &bases {
            if pools.resolve(b).is_ok() {
                return Err(Failure::Refused(format!("volume '{b}' already exists")));
            }
        }
        let mut made = Made(Vec::new());
        let was = def.disks.clone();
        def.disks.clear();
        for ((_, file, bus), base) in sources.iter().zip(&bases) {
            let dst = pools.path_of(base)?;
            made.0.push(dst.clone());
            copy_disk(file, &dst)?;
            seal(&dst)?;
            def.disks.push(vmconfig::Disk {
                path: base.clone(),
                bus: *bus,
                cdrom: false,
                shared: false,
                read_only: false,
            });
        }
        def.disks.extend(was);
        def.name = new.name.clone();
        for n in &mut def.nics {
            n.mac = None;
        }
        def.ha = false;
        def.group = None;
        let host = match self.cluster() {
            Some(c) if !self.shared_pool_names().contains(&pool) => Some(c.config().host.clone()),
            _ => None,
        };
        let spec = Spec {
            definition: def.to_toml().map_err(|e| Failure::Failed(format!("definition: {e}")))?,
            bases,
            source: source.clone(),
            description: new.description.clone(),
            created_ms: crate::since_epoch().as_millis() as i64,
            host,
        };
        let rec = TemplateRecord {
            name: new.name.clone(),
            spec: serde_json::to_string(&spec).expect("a template's record serialises"),
        };
        self.ctx().store.create_template(&rec).map_err(|e| match e {
            store::StoreError::Duplicate { .. } => Failure::Refused(e.to_string()),
            e => Failure::Failed(e.to_string()),
        })?;
        made.keep();
        self.ctx().event(
            None,
            "info",
            "template.created",
            &format!("created template '{}' from {source}", new.name),
        );
        self.template_show(&new.name)
    }

    /// Every template.
    pub(crate) fn template_list(&self) -> Result<Vec<TemplateInfo>, Failure> {
        let all = self.ctx().store.list_templates().map_err(|e| Failure::Failed(e.to_string()))?;
        Ok(all.iter().filter_map(|t| self.info_of(t).ok()).collect())
    }

    /// One template.
    pub(crate) fn template_show(&self, name: &str) -> Result<TemplateInfo, Failure> {
        let (t, _) = self.template_record(name)?;
        self.info_of(&t)
    }

    fn info_of(&self, t: &TemplateRecord) -> Result<TemplateInfo, Failure> {
        let spec = parse_spec(t)?;
        let def = VmDefinition::parse(&spec.definition)
            .map_err(|e| Failure::Failed(format!("the settings of template '{}': {e}", t.name)))?;
        let pools = &self.ctx().pools;
        let users = self.volume_users();
        let mut clones = std::collections::BTreeSet::new();
        let mut bases = Vec::new();
        for b in &spec.bases {
            let v = pools.volume(b).ok();
            let children = self.children_of(b);
            for c in &children {
                if let Some(f) = pools.resolve(c).ok().and_then(|f| std::fs::canonicalize(f).ok()) {
                    clones.extend(users.get(&f).into_iter().flatten().map(|a| a.vm.clone()));
                }
            }
            bases.push(BaseInfo {
                volume: b.clone(),
                virtual_bytes: v.as_ref().and_then(|v| v.virtual_bytes),
                file_bytes: v.as_ref().map_or(0, |v| v.file_bytes),
                clones: children,
            });
        }
        Ok(TemplateInfo {
            name: t.name.clone(),
            cpus: def.cpus,
            memory: def.memory,
            bases,
            networks: def.nics.iter().map(|n| n.network.clone()).collect(),
            source: spec.source,
            description: spec.description,
            created_ms: spec.created_ms,
            clones: clones.into_iter().collect(),
            host: spec.host,
        })
    }

    /// The volumes whose parent is volume `base`.
    fn children_of(&self, base: &str) -> Vec<String> {
        let pools = &self.ctx().pools;
        let Some((pool, _)) = vmconfig::volume_ref(base) else { return Vec::new() };
        // Clones are made in the base's pool; a volume elsewhere may stand on it too.
        let mut names = vec![pool.to_string()];
        names.extend(pools.names().into_iter().filter(|p| p != pool));
        names
            .iter()
            .flat_map(|p| pools.volumes(p).unwrap_or_default())
            .filter(|v| v.parent.as_deref() == Some(base))
            .map(|v| v.volume)
            .collect()
    }

    /// `vine template delete`: refused while a volume stands on a base, on any host of the pool;
    /// the bases go with it, and every host's copies of them.
    pub(crate) fn template_delete(&self, name: &str) -> Result<(), Failure> {
        let info = self.template_show(name)?;
        let bases: Vec<String> = info.bases.iter().map(|b| b.volume.clone()).collect();
        let others = self.other_hosts()?;
        for h in &others {
            let req = Request::TemplateLocal { name: name.into(), bases: bases.clone(), drop: false };
            let v = self.peers()?.call(h, &req).map_err(|e| {
                Failure::Unavailable(format!("cannot check host '{h}' for clones of template '{name}': {e}"))
            })?;
            let theirs: Vec<String> = serde_json::from_value(v["clones"].clone()).unwrap_or_default();
            if !theirs.is_empty() {
                return Err(Failure::Refused(format!(
                    "template '{name}' has linked clones on host '{h}': {} stand on its base; delete them first",
                    theirs.join(", ")
                )));
            }
        }
        let children: Vec<String> = info.bases.iter().flat_map(|b| b.clones.clone()).collect();
        if !children.is_empty() {
            let who = if info.clones.is_empty() {
                format!("volume(s) {}", children.join(", "))
            } else {
                format!("VM(s) {}", info.clones.join(", "))
            };
            return Err(Failure::Refused(format!(
                "template '{name}' has linked clones: {who} stand on its base; delete them first"
            )));
        }
        self.ctx().store.remove_template(name).map_err(|e| match e {
            store::StoreError::Missing { .. } => Failure::NotFound(e.to_string()),
            e => Failure::Failed(e.to_string()),
        })?;
        for b in &info.bases {
            if let Ok(f) = self.ctx().pools.resolve(&b.volume) {
                if let Err(e) = std::fs::remove_file(&f) {
                    tracing::warn!("template '{name}' deleted, but not its base {}: {e}", f.display());
                }
            }
        }
        for h in &others {
            let req = Request::TemplateLocal { name: name.into(), bases: bases.clone(), drop: true };
            if let Err(e) = self.peers().and_then(|p| p.call(h, &req)) {
                tracing::warn!("template '{name}' deleted, but not the copies of its bases on '{h}': {e}");
            }
        }
        self.ctx().event(None, "info", "template.deleted", &format!("deleted template '{name}'"));
        Ok(())
    }

    /// The other hosts of this host's pool (none alone); refused while one is offline, whose
    /// copies of a template's bases could not be checked.
    fn other_hosts(&self) -> Result<Vec<String>, Failure> {
        let Some(c) = self.cluster() else { return Ok(Vec::new()) };
        let me = c.config().host.clone();
        let mut out = Vec::new();
        for h in c.hosts()?.into_iter().filter(|h| h.record.name != me) {
            if h.state == cluster::HostState::Offline {
                return Err(Failure::Unavailable(format!(
                    "host '{}' is offline: its copies of the template's bases cannot be checked",
                    h.record.name
                )));
            }
            out.push(h.record.name);
        }
        Ok(out)
    }

    /// On one host of a pool, for the host deleting template `name`: the VMs (or volumes) here
    /// standing on copies of its `bases`; with `drop` (the template is gone), the copies go
    /// when nothing stands on them.
    pub(crate) fn template_local(&self, name: &str, bases: &[String], drop: bool) -> Result<Value, Failure> {
        let pools = &self.ctx().pools;
        let users = self.volume_users();
        let mut clones = std::collections::BTreeSet::new();
        for b in bases {
            for c in self.children_of(b) {
                let vms: Vec<String> = pools
                    .resolve(&c)
                    .ok()
                    .and_then(|f| std::fs::canonicalize(f).ok())
                    .and_then(|f| users.get(&f).cloned())
                    .map(|a| a.into_iter().map(|a| a.vm).collect())
                    .unwrap_or_default();
                if vms.is_empty() {
                    clones.insert(format!("volume {c}"));
                }
                clones.extend(vms);
            }
        }
        if drop && clones.is_empty() {
            for b in bases {
                if let Ok(f) = pools.resolve(b) {
                    match std::fs::remove_file(&f) {
                        Ok(()) => self.ctx().event(
                            None,
                            "info",
                            "template.deleted",
                            &format!("deleted this host's copy {b} of the base of template '{name}'"),
                        ),
                        Err(e) => tracing::warn!("cannot delete {}: {e}", f.display()),
                    }
                }
            }
        }
        Ok(serde_json::json!({ "clones": clones }))
    }

    /// Sends template `name`'s bases to host `to` (this host holds them), each unless `to`
    /// has it already.
    pub(crate) fn template_ship(&self, name: &str, to: &str) -> Result<Value, Failure> {
        let (_, spec) = self.template_record(name)?;
        let peers = self.peers()?;
        let mut sent = Vec::new();
        for b in &spec.bases {
            let file = self.ctx().pools.resolve(b)?;
            let (pool, vol) = vmconfig::volume_ref(b).expect("a base is a volume");
            match peers.send(to, &format!("/api/pools/{pool}/volumes/{vol}/content"), &file) {
                Ok(()) => sent.push(b.clone()),
                Err(e) if e.is_already_there() => {}
                Err(e) => return Err(e),
            }
        }
        if !sent.is_empty() {
            self.ctx().event(
                None,
                "info",
                "template.copied",
                &format!("sent the base(s) {} of template '{name}' to host '{to}'", sent.join(", ")),
            );
        }
        Ok(serde_json::json!({ "sent": sent }))
    }

    /// Makes sure this host has template `name`'s bases: in a pool, bases on another host's
    /// host-local pool are copied here once, on first use, and sealed.
    fn fetch_bases(&self, name: &str, spec: &Spec) -> Result<(), Failure> {
        let pools = &self.ctx().pools;
        if spec.bases.iter().all(|b| pools.resolve(b).is_ok()) {
            return Ok(());
        }
        let (Some(holder), Some(c)) = (&spec.host, self.cluster()) else { return Ok(()) };
        let me = c.config().host.clone();
        if *holder == me {
            return Ok(());
        }
        let req = Request::TemplateShip { name: name.into(), to: me };
        self.peers()?.call(holder, &req).map_err(|e| {
            Failure::Failed(format!("cannot copy the bases of template '{name}' from host '{holder}': {e}"))
        })?;
        for b in &spec.bases {
            seal(&pools.resolve(b)?)?;
        }
        Ok(())
    }

    /// The definition of a new VM `vm` made from template `name`: the template's settings with
    /// a new UUID; its disks still name the bases ([`Daemon::clone_disks`] replaces them).
    pub fn template_definition(&self, name: &str, vm: &str) -> Result<(VmDefinition, Vec<String>), Failure> {
        let (_, spec) = self.template_record(name)?;
        let mut def = VmDefinition::parse(&spec.definition)
            .map_err(|e| Failure::Failed(format!("the settings of template '{name}': {e}")))?;
        def.name = vm.to_string();
        def.uuid = VmDefinition::new(vm, 1, 1).uuid;
        Ok((def, spec.bases))
    }

    /// Gives VM `def` its own disks from template `how`: each disk naming a base becomes a new
    /// linked clone (or full copy) in the base's pool. Returns the definition's new text and the
    /// files made (the caller removes them if the VM is not made).
    pub(crate) fn clone_disks(
        &self,
        text: &str,
        how: &TemplateUse,
    ) -> Result<(String, Vec<PathBuf>), Failure> {
        let mut def = VmDefinition::parse(text).map_err(|e| Failure::Invalid(format!("definition: {e}")))?;
        let (_, spec) = self.template_record(&how.name)?;
        self.fetch_bases(&how.name, &spec)?;
        let pools = &self.ctx().pools;
        let mut plan = Vec::new();
        for (i, d) in def.disks.iter().enumerate() {
            if let Some(k) = spec.bases.iter().position(|b| *b == d.path) {
                let (pool, _) = vmconfig::volume_ref(&d.path).expect("a base is a volume");
                let clone = format!("{pool}/{}", disk_name(&def.name, k, ".vhd"));
                if pools.resolve(&clone).is_ok() {
                    return Err(Failure::Refused(format!("volume '{clone}' already exists")));
                }
                plan.push((i, d.path.clone(), clone));
            }
        }
        if plan.len() != spec.bases.len() {
            return Err(Failure::Invalid(format!(
                "definition: a VM made from template '{}' has its {} base disk(s)",
                how.name,
                spec.bases.len()
            )));
        }
        let mut made = Made(Vec::new());
        for (i, base, clone) in &plan {
            let dst = pools.path_of(clone)?;
            made.0.push(dst.clone());
            let base_file = pools.resolve(base).map_err(|_| {
                Failure::Refused(format!(
                    "the base {base} of template '{}' is not on this host ('{}'); in a pool of hosts, make \
                     templates on a shared storage pool, or make the VM on the host that holds the base (--host)",
                    how.name,
                    self.pool_host_name().unwrap_or_else(|| self.ctx().host.hostname.clone())
                ))
            })?;
            if how.full {
                copy_disk(&base_file, &dst)?;
            } else {
                vhd::create::create_differencing(&dst, &base_file)
                    .map_err(|e| Failure::Failed(format!("cannot make linked clone '{clone}': {e}")))?;
            }
            def.disks[*i].path = clone.clone();
            def.disks[*i].read_only = false;
        }
        let text = def.to_toml().map_err(|e| Failure::Invalid(format!("definition: {e}")))?;
        let files = std::mem::take(&mut made.0);
        Ok((text, files))
    }

    /// Refuses a definition that would write a template's base.
    pub(crate) fn check_no_base_written(&self, def: &VmDefinition) -> Result<(), Failure> {
        for (i, d) in def.disks.iter().enumerate().filter(|(_, d)| !d.cdrom && !d.read_only) {
            let Ok(file) = self.ctx().pools.file_of(&d.path) else { continue };
            if let Some(t) = self.template_of_base(&file) {
                return Err(Failure::Refused(format!(
                    "definition: field `disk[{i}].path`: {} is the base of template '{t}', which is never written; \
                     make a VM from the template instead (vine vm create NAME --template {t})",
                    d.path
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disks_are_named_after_their_vm_or_template() {
        assert_eq!(disk_name("web1", 0, ".vhd"), "web1.vhd");
        assert_eq!(disk_name("web1", 1, ".vhd"), "web1-2.vhd");
        assert_eq!(disk_name("deb", 0, ".base.vhd"), "deb.base.vhd");
        assert!(check_name("debian-12").is_ok());
        assert!(check_name("../x").is_err());
        assert!(check_name(&"a".repeat(200)).is_err());
    }
}
