//! A container's root file system from an image: a root file system tarball (plain, gzip, xz
//! or zstd: GNU tar tells them apart) unpacked into a new directory, then every file shifted to
//! the container's ids (id `n` inside is `base + n` on the host). Device nodes are dropped: an
//! unprivileged container gets its devices from LXC (`lxc.autodev`), and a node the host made
//! would reach host devices.

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
        .args(["--numeric-owner", "--same-owner", "--same-permissions", "--no-overwrite-dir", "-x", "-f"])
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
        std::os::unix::fs::lchown(path, Some(base + u), Some(base + g)).map_err(io(path))?;
        if !ft.is_symlink() {
            // chown clears set-id bits; put the mode back as the image had it.
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
                .map_err(io(path))?;
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

    #[test]
    fn an_image_is_shifted_to_the_container_s_ids_with_its_modes_kept() {
        if !nix_root() {
            eprintln!("skipped: needs root to chown");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
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
