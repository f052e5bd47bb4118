//! The guest kit: finding or building it (through `scripts/guest-kit.sh`) and reading its
//! `kit.json`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use serde::Deserialize;

/// Where [`Kit::ensure`] builds the kit unless [`KIT_DIR_ENV`] says otherwise.
pub const DEFAULT_KIT_DIR: &str = "/var/lib/vine/kit";

/// Environment variable naming another kit directory (a per-user cache, a CI volume).
pub const KIT_DIR_ENV: &str = "VINE_KIT_DIR";

/// The script that builds the kit, relative to this crate.
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/guest-kit.sh");
const BOOTDISK_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/guest-bootdisk.sh");

/// The kit [`Kit::ensure`] has built or checked in this process.
static ENSURED: Mutex<Option<Kit>> = Mutex::new(None);

/// Why the kit could not be provided.
#[derive(Debug, thiserror::Error)]
pub enum KitError {
    /// The build script could not be started.
    #[error("cannot run {script}")]
    Spawn {
        /// Path of `guest-kit.sh`.
        script: PathBuf,
        /// The spawn failure.
        #[source]
        source: std::io::Error,
    },
    /// The build script ran and failed.
    #[error("{script} {dir} failed ({status}):\n{output}")]
    Script {
        /// Path of `guest-kit.sh`.
        script: PathBuf,
        /// The kit directory it was asked to fill.
        dir: PathBuf,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed (stdout, then stderr).
        output: String,
    },
    /// `kit.json` could not be read.
    #[error("cannot read {path}")]
    Read {
        /// Path of `kit.json`.
        path: PathBuf,
        /// The read failure.
        #[source]
        source: std::io::Error,
    },
    /// `kit.json` is not what the script writes.
    #[error("{path} is not a kit description")]
    Parse {
        /// Path of `kit.json`.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// `kit.json` names a file that is not there.
    #[error("{path}, named by the kit description, does not exist")]
    Missing {
        /// The missing file.
        path: PathBuf,
    },
}

/// `kit.json` as `scripts/guest-kit.sh` writes it (fields tests do not need are ignored).
#[derive(Debug, Deserialize)]
struct KitJson {
    recipe: u32,
    kernel_package: String,
    kernel_package_version: String,
    kernel_release: String,
    vmlinuz: String,
    initrd: String,
    cmdline: String,
}

/// A built guest kit: what `-kernel`, `-initrd` and `-append` need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kit {
    /// The kit directory.
    pub dir: PathBuf,
    /// The kernel image (`-kernel`).
    pub vmlinuz: PathBuf,
    /// The initramfs (`-initrd`).
    pub initrd: PathBuf,
    /// The base kernel command line (`console=ttyS0 panic=-1 …`); see [`Kit::cmdline_with`].
    pub cmdline: String,
    /// Version of the build recipe that made the kit.
    pub recipe: u32,
    /// The Debian kernel package, e.g. `linux-image-6.1.0-56-amd64-unsigned`.
    pub kernel_package: String,
    /// That package's version.
    pub kernel_package_version: String,
    /// The kernel release (`uname -r` in the guest).
    pub kernel_release: String,
}

impl Kit {
    /// The kit in [`KIT_DIR_ENV`] or [`DEFAULT_KIT_DIR`], built by `scripts/guest-kit.sh` if it is
    /// missing or stale. The script runs at most once per process (it is quick when the kit is
    /// current, and serialises concurrent builds from several processes on a lock file).
    pub fn ensure() -> Result<Kit, KitError> {
        let mut ensured = ENSURED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(kit) = ensured.as_ref() {
            return Ok(kit.clone());
        }
        let dir = std::env::var_os(KIT_DIR_ENV).map_or_else(|| PathBuf::from(DEFAULT_KIT_DIR), PathBuf::from);
        let kit = Self::build(&dir)?;
        *ensured = Some(kit.clone());
        Ok(kit)
    }

    /// Runs `scripts/guest-kit.sh DIR` (a no-op when the kit there is current) and loads the result.
    pub fn build(dir: &Path) -> Result<Kit, KitError> {
        let script = PathBuf::from(SCRIPT);
        let output = Command::new("bash")
            .arg(&script)
            .arg(dir)
            .output()
            .map_err(|source| KitError::Spawn { script: script.clone(), source })?;
        if !output.status.success() {
            let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&output.stderr));
            return Err(KitError::Script {
                script,
                dir: dir.to_owned(),
                status: output.status,
                output: text,
            });
        }
        Self::load(dir)
    }

    /// Reads the kit described by `DIR/kit.json` without building anything.
    pub fn load(dir: &Path) -> Result<Kit, KitError> {
        let path = dir.join("kit.json");
        let text =
            std::fs::read_to_string(&path).map_err(|source| KitError::Read { path: path.clone(), source })?;
        let json: KitJson = serde_json::from_str(&text).map_err(|source| KitError::Parse { path, source })?;
        let kit = Kit {
            dir: dir.to_owned(),
            vmlinuz: dir.join(json.vmlinuz),
            initrd: dir.join(json.initrd),
            cmdline: json.cmdline,
            recipe: json.recipe,
            kernel_package: json.kernel_package,
            kernel_package_version: json.kernel_package_version,
            kernel_release: json.kernel_release,
        };
        for file in [&kit.vmlinuz, &kit.initrd] {
            if !file.is_file() {
                return Err(KitError::Missing { path: file.clone() });
            }
        }
        Ok(kit)
    }

    /// Writes a BIOS-bootable raw disk (MBR, syslinux, this kit's kernel and initramfs; see
    /// `scripts/guest-bootdisk.sh`) whose kernel command line ends with `options`.
    pub fn boot_disk(&self, out: &Path, options: &[&str]) -> Result<(), KitError> {
        let script = PathBuf::from(BOOTDISK_SCRIPT);
        let dir = self.vmlinuz.parent().unwrap_or(Path::new(".")).to_path_buf();
        let output = Command::new("bash")
            .arg(&script)
            .arg(&dir)
            .arg(out)
            .args(options)
            .output()
            .map_err(|source| KitError::Spawn { script: script.clone(), source })?;
        if !output.status.success() {
            let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&output.stderr));
            return Err(KitError::Script { script, dir, status: output.status, output: text });
        }
        Ok(())
    }

    /// The base command line followed by `options` (e.g. `["vine.counter=1"]`).
    pub fn cmdline_with(&self, options: &[&str]) -> String {
        let mut cmdline = self.cmdline.clone();
        for option in options {
            cmdline.push(' ');
            cmdline.push_str(option);
        }
        cmdline
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_kit(dir: &Path, json: &str) {
        std::fs::write(dir.join("kit.json"), json).expect("write kit.json");
    }

    const JSON: &str = r#"{
  "recipe": 1,
  "kernel_package": "linux-image-6.1.0-56-amd64-unsigned",
  "kernel_package_version": "6.1.192-2",
  "kernel_release": "6.1.0-56-amd64",
  "busybox_version": "1:1.35.0-4+deb12u1+b1",
  "modules": ["virtio"],
  "vmlinuz": "vmlinuz",
  "vmlinuz_sha256": "00",
  "initrd": "initrd.img",
  "initrd_sha256": "00",
  "cmdline": "console=ttyS0 panic=-1"
}"#;

    #[test]
    fn load_reads_the_description_the_script_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_kit(dir.path(), JSON);
        std::fs::write(dir.path().join("vmlinuz"), b"k").expect("write vmlinuz");
        std::fs::write(dir.path().join("initrd.img"), b"i").expect("write initrd");
        let kit = Kit::load(dir.path()).expect("load");
        assert_eq!(kit.vmlinuz, dir.path().join("vmlinuz"));
        assert_eq!(kit.initrd, dir.path().join("initrd.img"));
        assert_eq!(kit.kernel_release, "6.1.0-56-amd64");
        assert_eq!(
            kit.cmdline_with(&["vine.counter=1", "vine.net=1"]),
            "console=ttyS0 panic=-1 vine.counter=1 vine.net=1"
        );
    }

    #[test]
    fn load_names_a_missing_initrd() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_kit(dir.path(), JSON);
        std::fs::write(dir.path().join("vmlinuz"), b"k").expect("write vmlinuz");
        let err = Kit::load(dir.path()).unwrap_err();
        assert!(matches!(&err, KitError::Missing { path } if path.ends_with("initrd.img")), "{err:?}");
    }

    #[test]
    fn load_rejects_a_description_without_a_kernel() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_kit(dir.path(), r#"{"recipe": 1}"#);
        let err = Kit::load(dir.path()).unwrap_err();
        assert!(matches!(err, KitError::Parse { .. }), "{err:?}");
    }
}
