//! A container's root file system from an image: a root file system tarball (plain, gzip, xz
//! or zstd: GNU tar tells them apart) unpacked into a new directory, then every file shifted to
//! the container's ids (id `n` inside is `base + n` on the host). Device nodes are dropped: an
//! unprivileged container gets its devices from LXC (`lxc.autodev`), and a node the host made
//! would reach host devices.
//!
//! File capabilities (`security.capability`, e.g. `ping`'s `cap_net_raw`) and `user.*`
//! attributes come along: tar keeps them ([`XATTR_ARGS`]), and since a change of owner clears them, each is written back after the shift as a
//! namespaced capability (revision 3) whose root is the container's root, `base`: it holds for
//! processes of the container's user namespace, and gives nothing to a host process that runs the
//! file.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::idmap::IDS_PER_CONTAINER;

/// Why a root file system could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// The destination exists already.
    #[error("{0} exists already")]
    Exists(PathBuf),
    /// tar could not unpack the image.
    #[error("cannot unpack the image {image}: {why}")]
    Unpack {
        /// The image.
        image: PathBuf,
        /// tar's words.
        why: String,
    },
    /// A file's owner is outside the ids a container has.
    #[error("image {image}: {file} belongs to id {id}, outside the 0–65535 a container has")]
    ForeignId {
        /// The image.
        image: PathBuf,
        /// The file (inside the root).
        file: String,
        /// The id.
        id: u32,
    },
    /// A file's capabilities are in no format the kernel knows.
    #[error("image {image}: {file} has file capabilities in no format the kernel knows")]
    BadCaps {
        /// The image.
        image: PathBuf,
        /// The file (inside the root).
        file: String,
    },
    /// The image holds no `/sbin/init` (it would not boot).
    #[error("image {0} has no /sbin/init")]
    NoInit(PathBuf),
    /// A file could not be read or changed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

/// The extended attribute that holds a file's capabilities.
pub const CAPS: &str = "security.capability";

/// GNU tar's options that keep a root's extended attributes, packing and unpacking: its users'
/// (`user.*`) and its files' capabilities (no other `security.*`: those are the host's).
pub const XATTR_ARGS: [&str; 3] =
    ["--xattrs", "--xattrs-include=user.*", "--xattrs-include=security.capability"];

/// `security.capability` values (`linux/capability.h`): the revision in the top byte of the
/// first little-endian word, the effective flag in its lowest bit.
const CAP_REVISION_MASK: u32 = 0xff00_0000;
const CAP_REVISION_1: u32 = 0x0100_0000;
const CAP_REVISION_2: u32 = 0x0200_0000;
const CAP_REVISION_3: u32 = 0x0300_0000;
const CAP_FLAGS_EFFECTIVE: u32 = 0x0000_0001;

/// A file capability value made namespaced with `root` as its root id (revision 3: magic,
/// permitted/inheritable words ×2, root id), from revision 1, 2 or 3. `None` when it is none of
/// those.
pub fn namespaced_caps(raw: &[u8], root: u32) -> Option<Vec<u8>> {
    let word = |i: usize| raw.get(i * 4..i * 4 + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let magic = word(0)?;
    let words = match (magic & CAP_REVISION_MASK, raw.len()) {
        (CAP_REVISION_1, 12) => 2,
        (CAP_REVISION_2, 20) | (CAP_REVISION_3, 24) => 4,
        _ => return None,
    };
    let mut out = Vec::with_capacity(24);
    out.extend_from_slice(&(CAP_REVISION_3 | (magic & CAP_FLAGS_EFFECTIVE)).to_le_bytes());
    for i in 0..4 {
        let w = if i < words { word(1 + i)? } else { 0 };
        out.extend_from_slice(&w.to_le_bytes());
    }
    out.extend_from_slice(&root.to_le_bytes());
    Some(out)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RootfsError + '_ {
    move |source| RootfsError::Io { path: path.to_path_buf(), source }
}

/// What was unpacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    /// Files, directories and links made.
    pub entries: u64,
    /// Device nodes dropped.
    pub devices_dropped: u64,
    /// Where `/sbin/init` points, when it is a link.
    pub init_target: Option<String>,
}

/// Unpacks `image` into `dest` (which must not exist) owned by the container whose root is host
/// id `base`. The image's files are owned by ids 0–65535, or (a container's root moving between
/// hosts) by `from` … `from + 65535`. On failure nothing is left at `dest`.
pub fn unpack(image: &Path, dest: &Path, base: u32, from: u32) -> Result<Unpacked, RootfsError> {
    if dest.symlink_metadata().is_ok() {
        return Err(RootfsError::Exists(dest.to_path_buf()));
    }
    let r = unpack_inner(image, dest, base, from);
    if r.is_err() {
        let _ = std::fs::remove_dir_all(dest);
    }
    r
}

fn unpack_inner(image: &Path, dest: &Path, base: u32, from: u32) -> Result<Unpacked, RootfsError> {
    std::fs::create_dir_all(dest).map_err(io(dest))?;
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o755)).map_err(io(dest))?;
    let out = Command::new("tar")
        .args(["--numeric-owner", "--same-owner", "--same-permissions", "--no-overwrite-dir"])
        .args(XATTR_ARGS)
        .args(["-x", "-f"])
        .arg(image)
        .arg("-C")
        .arg(dest)
        .output()
        .map_err(|e| RootfsError::Unpack {
            image: image.to_path_buf(),
            why: format!("cannot run tar: {e}"),
        })?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr).lines().take(4).collect::<Vec<_>>().join("; ");
        return Err(RootfsError::Unpack { image: image.to_path_buf(), why });
    }
    let mut done = Unpacked { entries: 0, devices_dropped: 0, init_target: None };
    shift(image, dest, dest, (from, base), &mut done)?;
    let init = dest.join("sbin/init");
    let meta = init.symlink_metadata().map_err(|_| RootfsError::NoInit(image.to_path_buf()))?;
    if meta.file_type().is_symlink() {
        done.init_target = std::fs::read_link(&init).ok().map(|t| t.display().to_string());
    }
    Ok(done)
}

/// Shifts `path` (and below) from ids `from + n` to the container's `base + n` (`ids` is
/// `(from, base)`), dropping device nodes.
fn shift(
    image: &Path,
    root: &Path,
    path: &Path,
    ids: (u32, u32),
    done: &mut Unpacked,
) -> Result<(), RootfsError> {
    let (from, base) = ids;
    use std::os::unix::fs::FileTypeExt;
    let meta = path.symlink_metadata().map_err(io(path))?;
    let ft = meta.file_type();
    if ft.is_char_device() || ft.is_block_device() {
        std::fs::remove_file(path).map_err(io(path))?;
        done.devices_dropped += 1;
        return Ok(());
    }
    let inside = || format!("/{}", path.strip_prefix(root).unwrap_or(path).display());
    // The root directory itself is vine's (made before tar ran): the container's root owns it.
    let (uid, gid) = if path == root { (from, from) } else { (meta.uid(), meta.gid()) };
    // A regular file may meet here again through a hard link: its inode is shifted already.
    let mine = |id: u32| base >= IDS_PER_CONTAINER && id >= base && id - base < IDS_PER_CONTAINER;
    if path == root || !(mine(uid) && mine(gid)) {
        let own = |id: u32| id.checked_sub(from).filter(|n| *n < IDS_PER_CONTAINER);
        let (Some(u), Some(g)) = (own(uid), own(gid)) else {
            let id = if own(uid).is_none() { uid } else { gid };
            return Err(RootfsError::ForeignId { image: image.to_path_buf(), file: inside(), id });
        };
        // chown clears set-id bits and capabilities: read them first, put them back after.
        let caps = if ft.is_file() { xattr::get(path, CAPS).map_err(io(path))? } else { None };
        std::os::unix::fs::lchown(path, Some(base + u), Some(base + g)).map_err(io(path))?;
        if !ft.is_symlink() {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
                .map_err(io(path))?;
        }
        if let Some(raw) = caps {
            let Some(shifted) = namespaced_caps(&raw, base) else {
                return Err(RootfsError::BadCaps { image: image.to_path_buf(), file: inside() });
            };
            xattr::set(path, CAPS, &shifted).map_err(io(path))?;
        }
    }
    done.entries += 1;
    if ft.is_dir() {
        for e in std::fs::read_dir(path).map_err(io(path))? {
            let e = e.map_err(io(path))?;
            shift(image, root, &e.path(), ids, done)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tarball(dir: &Path, build: impl FnOnce(&Path)) -> PathBuf {
        let src = dir.join("src");
        std::fs::create_dir_all(src.join("sbin")).unwrap();
        build(&src);
        let t = dir.join("img.tar.gz");
        let ok = Command::new("tar")
            .args(["--numeric-owner", "-czf"])
            .arg(&t)
            .arg("-C")
            .arg(&src)
            .arg(".")
            .status()
            .unwrap();
        assert!(ok.success());
        t
    }

    /// cap_net_raw (bit 13) permitted and effective, revision 2 (what `setcap` writes on a host).
    fn net_raw_v2() -> Vec<u8> {
        [CAP_REVISION_2 | CAP_FLAGS_EFFECTIVE, 1 << 13, 0, 0, 0]
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect()
    }

    /// A scratch directory, for a test that needs root (`None`, said, otherwise).
    fn as_root(to: &str) -> Option<tempfile::TempDir> {
        if !nix_root() {
            eprintln!("skipped: needs root to {to}");
            return None;
        }
        Some(tempfile::tempdir().unwrap())
    }

    #[test]
    fn file_capabilities_become_the_container_root_s() {
        let v2 = net_raw_v2();
        let v3 = namespaced_caps(&v2, 2_000_000_000).unwrap();
        assert_eq!(v3.len(), 24);
        assert_eq!(&v3[..4], &(CAP_REVISION_3 | CAP_FLAGS_EFFECTIVE).to_le_bytes());
        assert_eq!(&v3[4..20], &v2[4..20]);
        assert_eq!(&v3[20..], &2_000_000_000u32.to_le_bytes());
        // A container's root moving on: the root id is replaced, nothing else.
        let again = namespaced_caps(&v3, 2_000_065_536).unwrap();
        assert_eq!((&again[..20], &again[20..]), (&v3[..20], &2_000_065_536u32.to_le_bytes()[..]));
        // Revision 1 has one word of each; not effective stays not effective.
        let mut v1 = Vec::new();
        for w in [CAP_REVISION_1, 1 << 13, 0] {
            v1.extend_from_slice(&u32::to_le_bytes(w));
        }
        let from1 = namespaced_caps(&v1, 7).unwrap();
        assert_eq!(&from1[..4], &CAP_REVISION_3.to_le_bytes());
        assert_eq!(&from1[4..8], &(1u32 << 13).to_le_bytes());
        assert_eq!(&from1[12..20], &[0; 8]);
        for bad in [&v2[..19], &[0u8; 20][..], &[], &v3[..20]] {
            assert_eq!(namespaced_caps(bad, 7), None, "{bad:?}");
        }
    }

    #[test]
    fn an_image_s_file_capabilities_hold_for_the_container_only() {
        let Some(dir) = as_root("set file capabilities") else { return };
        let v2 = net_raw_v2();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("sbin")).unwrap();
        std::os::unix::fs::symlink("/bin/busybox", src.join("sbin/init")).unwrap();
        std::fs::write(src.join("ping"), "x").unwrap();
        std::fs::set_permissions(src.join("ping"), std::fs::Permissions::from_mode(0o755)).unwrap();
        xattr::set(src.join("ping"), CAPS, &v2).unwrap();
        xattr::set(src.join("ping"), "user.note", b"kept").unwrap();
        let pack = |from: &Path, to: &Path| {
            let ok = Command::new("tar")
                .args(["--numeric-owner"])
                .args(XATTR_ARGS)
                .arg("-czf")
                .arg(to)
                .arg("-C")
                .arg(from)
                .arg(".")
                .status()
                .unwrap();
            assert!(ok.success());
        };
        let img = dir.path().join("img.tar.gz");
        pack(&src, &img);
        let dest = dir.path().join("root");
        unpack(&img, &dest, 2_000_000_000, 0).unwrap();
        let caps = xattr::get(dest.join("ping"), CAPS).unwrap().expect("capabilities kept");
        assert_eq!(caps, namespaced_caps(&v2, 2_000_000_000).unwrap());
        assert_eq!(xattr::get(dest.join("ping"), "user.note").unwrap().as_deref(), Some(&b"kept"[..]));
        // libcap reads it as the kernel will: cap_net_raw for the namespace whose root is the base.
        if let Ok(out) = Command::new("getcap").arg("-n").arg(dest.join("ping")).output() {
            let said = String::from_utf8_lossy(&out.stdout).to_string();
            assert!(said.contains("cap_net_raw=ep") && said.contains("rootid=2000000000"), "{said}");
        }
        // Moving to another slot: the capabilities follow the container's new root.
        let moved = dir.path().join("moved.tar.gz");
        pack(&dest, &moved);
        unpack(&moved, &dir.path().join("root2"), 2_000_065_536, 2_000_000_000).unwrap();
        let caps = xattr::get(dir.path().join("root2/ping"), CAPS).unwrap().unwrap();
        assert_eq!(&caps[20..], &2_000_065_536u32.to_le_bytes());
    }

    #[test]
    fn an_image_is_shifted_to_the_container_s_ids_with_its_modes_kept() {
        let Some(dir) = as_root("chown") else { return };
        let img = tarball(dir.path(), |s| {
            std::fs::write(s.join("sbin/tool"), "x").unwrap();
            std::os::unix::fs::lchown(s.join("sbin/tool"), Some(1000), Some(1000)).unwrap();
            std::fs::set_permissions(s.join("sbin/tool"), std::fs::Permissions::from_mode(0o4755)).unwrap();
            std::os::unix::fs::symlink("/bin/busybox", s.join("sbin/init")).unwrap();
            std::fs::hard_link(s.join("sbin/tool"), s.join("sbin/tool2")).unwrap();
        });
        let dest = dir.path().join("root");
        let u = unpack(&img, &dest, 2_000_000_000, 0).unwrap();
        assert_eq!(u.init_target.as_deref(), Some("/bin/busybox"));
        let m = std::fs::metadata(dest.join("sbin/tool")).unwrap();
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (2_000_001_000, 2_000_001_000, 0o4755));
        assert_eq!(std::fs::metadata(&dest).unwrap().uid(), 2_000_000_000);
        assert!(matches!(unpack(&img, &dest, 2_000_000_000, 0), Err(RootfsError::Exists(_))));
        // A root moving to another slot: ids from + n become base + n.
        let moved = dir.path().join("moved.tar.gz");
        let ok = Command::new("tar")
            .args(["--numeric-owner", "-czf"])
            .arg(&moved)
            .arg("-C")
            .arg(&dest)
            .arg(".")
            .status()
            .unwrap();
        assert!(ok.success());
        unpack(&moved, &dir.path().join("root3"), 2_000_131_072, 2_000_000_000).unwrap();
        let m = std::fs::metadata(dir.path().join("root3/sbin/tool")).unwrap();
        assert_eq!((m.uid(), m.mode() & 0o7777), (2_000_132_072, 0o4755));
        let e = unpack(&moved, &dir.path().join("root4"), 2_000_131_072, 0).unwrap_err().to_string();
        assert!(e.contains("belongs to id 2000000000"), "{e}");
        // An image with a file owned outside the container's ids is refused and leaves nothing.
        let dir2 = tempfile::tempdir().unwrap();
        let bad = tarball(dir2.path(), |s| {
            std::os::unix::fs::symlink("/bin/busybox", s.join("sbin/init")).unwrap();
            std::fs::write(s.join("f"), "x").unwrap();
            std::os::unix::fs::lchown(s.join("f"), Some(70000), None).unwrap();
        });
        let dest2 = dir2.path().join("root");
        let e = unpack(&bad, &dest2, 2_000_000_000, 0).unwrap_err().to_string();
        assert!(e.contains("/f belongs to id 70000"), "{e}");
        assert!(!dest2.exists());
        let e = unpack(&dir2.path().join("missing.tar"), &dest2, 2_000_000_000, 0).unwrap_err().to_string();
        assert!(e.starts_with("cannot unpack the image"), "{e}");
    }

    fn nix_root() -> bool {
        std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
    }
}
