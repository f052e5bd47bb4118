//! Storage pools: named directories (registered in the store) that hold volumes — VHD disks,
//! ISOs, kernels and initrds — named `POOL/NAME`. A volume name is one path component of
//! letters, digits, `-`, `_` and `.` that starts with a letter or digit, so a reference can
//! never leave its pool's directory; only regular files are volumes (a symbolic link an
//! administrator left in a pool is not followed).
//!
//! The pool knows files, not users: who may use which pool, and whose VM holds which volume, is
//! decided by the API (rights) and the daemon (which VMs attach a volume); this module answers
//! what a reference resolves to, what a volume's parent chain is, and how much room is left.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use store::{PoolRecord, Store, StoreError};
use vhd::image::{FileOptions, VhdFile};

use crate::protocol::Failure;

/// A pool is low on space below this share of its file system free…
pub const LOW_SPACE_PCT: u64 = 10;
/// …or below this many bytes free, whichever is larger.
pub const LOW_SPACE_BYTES: u64 = 1 << 30;
/// Largest volume `vine volume create` makes (64 TiB).
pub const MAX_VOLUME_SIZE: u64 = 64 << 40;
/// Temporary files of uploads in progress start with this (never a volume name: volumes start
/// with a letter or digit).
const UPLOAD_PREFIX: &str = ".upload-";

/// A pool as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PoolInfo {
    /// Name.
    pub name: String,
    /// Its directory (shown to administrators only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Size of its file system, bytes.
    pub total_bytes: u64,
    /// Free space on it, bytes.
    pub free_bytes: u64,
    /// Whether free space is below the warning level.
    pub low_space: bool,
    /// Volumes in it.
    pub volumes: usize,
    /// A shared pool of a pool of hosts (every host mounts it; one writer per volume).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shared: bool,
}

/// What a volume holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum VolumeFormat {
    /// A fixed VHD.
    VhdFixed,
    /// A dynamically expanding VHD.
    VhdDynamic,
    /// A differencing VHD (over a parent).
    VhdDifferencing,
    /// An ISO 9660 image (CD/DVD).
    Iso,
    /// Anything else (raw disk image, kernel, initrd).
    Raw,
}

/// A volume as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VolumeInfo {
    /// `POOL/NAME`.
    pub volume: String,
    /// What it holds.
    pub format: VolumeFormat,
    /// Bytes on disk (the file's length).
    pub file_bytes: u64,
    /// The disk size a guest sees (VHDs), bytes.
    pub virtual_bytes: Option<u64>,
    /// A differencing disk's parent: a volume `POOL/NAME`, or a host path.
    pub parent: Option<String>,
    /// VMs whose definitions attach it, with `rw` or `ro`.
    #[serde(default)]
    pub used_by: Vec<String>,
}

/// One link of a disk's parent chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// A volume `POOL/NAME`.
    Volume(String),
    /// A file outside every pool.
    Host(PathBuf),
}

/// Every pool of this host.
pub struct Pools {
    store: Arc<dyn Store>,
    /// vine's data directory, which no pool may overlap (its store, keys and VMs' files).
    data: PathBuf,
    dirs: Mutex<BTreeMap<String, PathBuf>>,
    /// Pools reported low (warned once until they recover).
    low: Mutex<BTreeSet<String>>,
}

fn invalid(m: String) -> Failure {
    Failure::Invalid(m)
}

fn store_failure(e: StoreError) -> Failure {
    match e {
        StoreError::Duplicate { .. } => Failure::Refused(e.to_string()),
        StoreError::Missing { .. } => Failure::NotFound(e.to_string()),
        e => Failure::Failed(e.to_string()),
    }
}

/// (total, free) bytes of the file system holding `dir`.
pub fn space(dir: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "a NUL in the path"))?;
    // SAFETY: an all-zero statvfs is a valid value of this plain C struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a statvfs we own; statvfs(3) writes only it.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let unit = st.f_frsize as u64;
    Ok((st.f_blocks as u64 * unit, st.f_bavail as u64 * unit))
}

fn is_low(total: u64, free: u64) -> bool {
    free < LOW_SPACE_BYTES.max(total / 100 * LOW_SPACE_PCT).min(total / 2)
}

/// What a file holds, with a VHD's virtual size and parent path.
fn probe(path: &Path) -> (VolumeFormat, Option<u64>, Option<PathBuf>) {
    if vhd::ops::is_vhd(path).unwrap_or(false) {
        if let Ok(f) = VhdFile::open(path, FileOptions { writable: false, lock: false }) {
            let (format, parent) = match f.disk_type() {
                vhd::DiskType::Fixed => (VolumeFormat::VhdFixed, None),
                vhd::DiskType::Dynamic => (VolumeFormat::VhdDynamic, None),
                vhd::DiskType::Differencing => {
                    let parent = vhd::ops::parent_path(&f)
                        .ok()
                        .or_else(|| vhd::chain::parent_candidates(&f).into_iter().next());
                    // Canonical: a relative locator's `..` must not hide where the parent is.
                    (VolumeFormat::VhdDifferencing, parent.map(|p| std::fs::canonicalize(&p).unwrap_or(p)))
                }
            };
            return (format, Some(f.size()), parent);
        }
    }
    // ISO 9660: the primary volume descriptor's "CD001" at byte 0x8001 (ECMA-119 8.4).
    let mut magic = [0u8; 5];
    let iso = std::fs::File::open(path).is_ok_and(|f| {
        use std::os::unix::fs::FileExt;
        f.read_exact_at(&mut magic, 0x8001).is_ok() && &magic == b"CD001"
    });
    (if iso { VolumeFormat::Iso } else { VolumeFormat::Raw }, None, None)
}

impl Pools {
    /// The pools the store knows; none may overlap the data directory `data`.
    pub fn open(store: Arc<dyn Store>, data: &Path) -> Result<Pools, StoreError> {
        let dirs = store.list_pools()?.into_iter().map(|p| (p.name, PathBuf::from(p.path))).collect();
        let data = std::fs::canonicalize(data).unwrap_or_else(|_| data.to_path_buf());
        Ok(Pools { store, data, dirs: Mutex::new(dirs), low: Mutex::new(BTreeSet::new()) })
    }

    fn dirs(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, PathBuf>> {
        self.dirs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers pool `name` over directory `path` (made if missing). No pool may hold another.
    pub fn create(&self, name: &str, path: &str) -> Result<PoolInfo, Failure> {
        if !vmconfig::is_volume_name(name) {
            return Err(invalid(format!(
                "name: {:?} must be 1 to {} letters, digits, '-', '_', '.', starting with a letter or digit",
                crate::protocol::clip(name),
                vmconfig::MAX_VOLUME_NAME
            )));
        }
        if !path.starts_with('/') || path.len() > vmconfig::MAX_PATH || path.contains('\0') {
            return Err(invalid(format!("path: {:?} is not an absolute path", crate::protocol::clip(path))));
        }
        if std::fs::symlink_metadata(path).is_err() {
            // A directory vine makes is root's alone: QEMU and the disk servers, which run as the
            // emulator user, get its volumes only as descriptors vine opened.
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path)
                .map_err(|e| invalid(format!("path: cannot create {path}: {e}")))?;
        }
        let dir = std::fs::canonicalize(path).map_err(|e| invalid(format!("path: {path}: {e}")))?;
        if !dir.is_dir() {
            return Err(invalid(format!("path: {} is not a directory", dir.display())));
        }
        if dir == Path::new("/") {
            return Err(invalid("path: the root directory cannot be a pool".into()));
        }
        if dir.starts_with(&self.data) || self.data.starts_with(&dir) {
            // Its users could read the store (password and token hashes) or the VMs' files.
            return Err(Failure::Refused(format!(
                "{} overlaps vine's data directory {}; a pool must be a directory of its own",
                dir.display(),
                self.data.display()
            )));
        }
        for (other, d) in self.dirs().iter() {
            if d.starts_with(&dir) || dir.starts_with(d) {
                return Err(Failure::Refused(format!(
                    "pool '{other}' is at {}, which overlaps {}",
                    d.display(),
                    dir.display()
                )));
            }
        }
        let rec = PoolRecord {
            name: name.into(),
            path: dir.display().to_string(),
            created_ms: crate::since_epoch().as_millis() as i64,
        };
        self.store.create_pool(&rec).map_err(store_failure)?;
        self.dirs().insert(name.into(), dir);
        self.show(name, true)
    }

    /// Unregisters a pool; its files stay. `users` are the VMs whose definitions name one of its
    /// volumes: while there are any, it is refused.
    pub fn delete(&self, name: &str, users: &[String]) -> Result<(), Failure> {
        self.dir(name)?;
        if !users.is_empty() {
            return Err(Failure::Refused(format!(
                "pool '{name}' holds volumes of VM(s) {}; remove them from those VMs first",
                users.join(", ")
            )));
        }
        self.store.remove_pool(name).map_err(store_failure)?;
        self.dirs().remove(name);
        self.low.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
        Ok(())
    }

    /// Pool names.
    pub fn names(&self) -> Vec<String> {
        self.dirs().keys().cloned().collect()
    }

    /// The directory of pool `name`.
    pub fn dir(&self, name: &str) -> Result<PathBuf, Failure> {
        self.dirs()
            .get(name)
            .cloned()
            .ok_or_else(|| Failure::NotFound(format!("no storage pool named '{name}'")))
    }

    /// A pool's space and volume count (`with_path`: its directory too, for administrators).
    pub fn show(&self, name: &str, with_path: bool) -> Result<PoolInfo, Failure> {
        let dir = self.dir(name)?;
        let (total_bytes, free_bytes) = space(&dir).unwrap_or((0, 0));
        Ok(PoolInfo {
            name: name.into(),
            path: with_path.then(|| dir.display().to_string()),
            total_bytes,
            free_bytes,
            low_space: is_low(total_bytes, free_bytes),
            volumes: self.names_in(&dir).len(),
            shared: false,
        })
    }

    fn names_in(&self, dir: &Path) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
        let mut v: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| vmconfig::is_volume_name(n))
            .collect();
        v.sort();
        v
    }

    /// The pool and name of a reference, checked.
    fn split<'a>(&self, reference: &'a str) -> Result<(&'a str, &'a str), Failure> {
        vmconfig::volume_ref(reference).ok_or_else(|| {
            invalid(format!(
                "{:?} is not a volume: POOL/NAME, both of letters, digits, '-', '_', '.'",
                crate::protocol::clip(reference)
            ))
        })
    }

    /// Where volume `POOL/NAME` would be (whether it exists or not).
    pub fn path_of(&self, reference: &str) -> Result<PathBuf, Failure> {
        let (pool, name) = self.split(reference)?;
        Ok(self.dir(pool)?.join(name))
    }

    /// The file of an existing volume.
    pub fn resolve(&self, reference: &str) -> Result<PathBuf, Failure> {
        let p = self.path_of(reference)?;
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_file() => Ok(p),
            _ => Err(Failure::NotFound(format!("no volume '{reference}'"))),
        }
    }

    /// The volume a host file is, if it lies directly in a pool's directory.
    pub fn volume_at(&self, path: &Path) -> Option<String> {
        let path = std::fs::canonicalize(path).ok()?;
        let (dir, name) = (path.parent()?, path.file_name()?.to_str()?);
        let dirs = self.dirs();
        let pool = dirs.iter().find(|(_, d)| d.as_path() == dir)?.0;
        vmconfig::is_volume_name(name).then(|| format!("{pool}/{name}"))
    }

    /// A path as a definition may name it (a volume or a host path) resolved to its file.
    pub fn file_of(&self, path: &str) -> Result<PathBuf, Failure> {
        if path.starts_with('/') {
            Ok(PathBuf::from(path))
        } else {
            self.resolve(path)
        }
    }

    /// One volume (its users are filled in by the caller).
    pub fn volume(&self, reference: &str) -> Result<VolumeInfo, Failure> {
        let file = self.resolve(reference)?;
        let (format, virtual_bytes, parent) = probe(&file);
        Ok(VolumeInfo {
            volume: reference.into(),
            format,
            file_bytes: std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0),
            virtual_bytes,
            parent: parent.map(|p| self.volume_at(&p).unwrap_or_else(|| p.display().to_string())),
            used_by: Vec::new(),
        })
    }

    /// The volumes of a pool.
    pub fn volumes(&self, pool: &str) -> Result<Vec<VolumeInfo>, Failure> {
        let dir = self.dir(pool)?;
        Ok(self.names_in(&dir).into_iter().filter_map(|n| self.volume(&format!("{pool}/{n}")).ok()).collect())
    }

    /// The parent chain under a disk (not the disk itself), nearest first. A parent that cannot
    /// be found is a host path (and a user's disk with one is refused like any host path).
    pub fn chain(&self, file: &Path) -> Vec<Link> {
        let mut out = Vec::new();
        let mut at = file.to_path_buf();
        while out.len() < 64 {
            let (format, _, parent) = probe(&at);
            if format != VolumeFormat::VhdDifferencing {
                break;
            }
            let Some(parent) = parent else { break };
            out.push(match self.volume_at(&parent) {
                Some(v) => Link::Volume(v),
                None => Link::Host(parent.clone()),
            });
            at = parent;
        }
        out
    }

    /// Makes a dynamic VHD of `size` bytes, or a differencing child of `parent` (a volume).
    pub fn create_volume(
        &self,
        reference: &str,
        size: Option<u64>,
        parent: Option<&str>,
    ) -> Result<VolumeInfo, Failure> {
        let path = self.path_of(reference)?;
        if std::fs::symlink_metadata(&path).is_ok() {
            return Err(Failure::Refused(format!("volume '{reference}' already exists")));
        }
        if !reference.ends_with(".vhd") {
            return Err(invalid(format!("{reference}: a new disk volume's name ends in .vhd")));
        }
        let made = match (size, parent) {
            (Some(size), None) => {
                if size == 0 || size > MAX_VOLUME_SIZE {
                    return Err(invalid(format!(
                        "size: must be 1 byte to {} TiB, got {size}",
                        MAX_VOLUME_SIZE >> 40
                    )));
                }
                let img = vhd::create::NewImage { size, ..Default::default() };
                vhd::create::create(&path, img).map(|_| ())
            }
            (None, Some(parent)) => {
                let base = self.resolve(parent)?;
                vhd::create::create_differencing(&path, &base).map(|_| ())
            }
            _ => return Err(invalid("give either size or parent".into())),
        };
        made.map_err(|e| Failure::Refused(format!("cannot create volume '{reference}': {e}")))?;
        self.volume(reference)
    }

    /// Deletes a volume no VM attaches (`users`) and no other volume stands on.
    pub fn delete_volume(&self, reference: &str, users: &[String]) -> Result<(), Failure> {
        let file = self.resolve(reference)?;
        if !users.is_empty() {
            return Err(Failure::Refused(format!(
                "volume '{reference}' is attached to VM(s) {}",
                users.join(", ")
            )));
        }
        let children: Vec<String> = self
            .names()
            .iter()
            .flat_map(|p| self.volumes(p).unwrap_or_default())
            .filter(|v| v.parent.as_deref() == Some(reference))
            .map(|v| v.volume)
            .collect();
        if !children.is_empty() {
            return Err(Failure::Refused(format!(
                "volume '{reference}' is the parent of {}; delete those first",
                children.join(", ")
            )));
        }
        std::fs::remove_file(&file)
            .map_err(|e| Failure::Failed(format!("cannot delete {}: {e}", file.display())))
    }

    /// A new file for an upload into `reference`, written under a temporary name and moved into
    /// place by [`Upload::finish`]: a volume appears whole or not at all.
    pub fn upload(&self, reference: &str) -> Result<Upload, Failure> {
        let dest = self.path_of(reference)?;
        if std::fs::symlink_metadata(&dest).is_ok() {
            return Err(Failure::Refused(format!("volume '{reference}' already exists; delete it first")));
        }
        let dir = dest.parent().expect("a volume is in its pool's directory").to_path_buf();
        let mut r = [0u8; 8];
        getrandom::getrandom(&mut r).map_err(|e| Failure::Failed(format!("no random source: {e}")))?;
        let tmp = dir.join(format!("{UPLOAD_PREFIX}{}", u64::from_le_bytes(r)));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| Failure::Failed(format!("cannot create {}: {e}", tmp.display())))?;
        Ok(Upload { file: Some(file), tmp, dest, reference: reference.into() })
    }

    /// Pools whose free space fell below the warning level since the last call (each warned once
    /// until it recovers), with a message.
    pub fn newly_low(&self) -> Vec<(String, String)> {
        let mut low = self.low.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        for (name, dir) in self.dirs().clone() {
            let Ok((total, free)) = space(&dir) else { continue };
            if is_low(total, free) {
                if low.insert(name.clone()) {
                    out.push((
                        name.clone(),
                        format!(
                            "storage pool '{name}' is low on space: {} MiB free of {} MiB",
                            free >> 20,
                            total >> 20
                        ),
                    ));
                }
            } else {
                low.remove(&name);
            }
        }
        out
    }
}

/// An upload in progress (the temporary file is removed if it is dropped unfinished).
pub struct Upload {
    file: Option<std::fs::File>,
    tmp: PathBuf,
    dest: PathBuf,
    reference: String,
}

impl Upload {
    /// Appends bytes.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        use std::io::Write;
        let f = self.file.as_mut().expect("open until finished");
        f.write_all(bytes).map_err(|e| Failure::Failed(format!("writing {}: {e}", self.tmp.display())))
    }

    /// Syncs the file and moves it into place; refused if a volume of that name appeared
    /// meanwhile.
    pub fn finish(mut self) -> Result<String, Failure> {
        let f = self.file.take().expect("open until finished");
        f.sync_all().map_err(|e| Failure::Failed(format!("syncing {}: {e}", self.tmp.display())))?;
        drop(f);
        if std::fs::symlink_metadata(&self.dest).is_ok() {
            return Err(Failure::Refused(format!("volume '{}' already exists", self.reference)));
        }
        std::fs::rename(&self.tmp, &self.dest).map_err(|e| {
            Failure::Failed(format!("cannot move the upload to {}: {e}", self.dest.display()))
        })?;
        Ok(self.reference.clone())
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if self.file.is_some() || self.tmp.exists() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests;
