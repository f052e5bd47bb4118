//! cloud-init's NoCloud data source, as its documentation specifies: a seed is a file system
//! labelled `cidata` holding `meta-data` (the `instance-id` and `local-hostname`, and the SSH
//! keys as `public-keys`), `user-data` (the operator's, verbatim) and `network-config` (the
//! operator's, or version 2 with DHCP on each NIC matched by its MAC). vine attaches it to the
//! guest as a CD/DVD.
//!
//! [`seed`] makes the three files (pure; meta-data and the generated documents are JSON, which
//! YAML reads as it is, so no value needs hand quoting). The `instance-id` is a digest of the VM's
//! UUID and of everything in the seed: the same data gives the same id on every boot (cloud-init
//! runs its per-instance steps once), changed data a new id (they run again). [`write_iso`]
//! writes the seed as an ISO 9660 image with Debian's `genisoimage`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use vmconfig::CloudInit;

/// The volume label cloud-init looks for.
pub const LABEL: &str = "cidata";

/// A seed's three documents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seed {
    /// `iid-` and 16 hex digits of the seed's digest.
    pub instance_id: String,
    /// `meta-data`.
    pub meta_data: String,
    /// `user-data`.
    pub user_data: String,
    /// `network-config` (none for a VM without NICs: cloud-init's fallback is harmless there).
    pub network_config: Option<String>,
}

/// Errors writing a seed image.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// A file of the seed could not be written.
    #[error("cloud-init seed: cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// genisoimage is missing or failed.
    #[error("cloud-init seed: genisoimage {problem} (Debian package genisoimage builds vine's seeds)")]
    Tool {
        /// What went wrong.
        problem: String,
    },
}

/// The seed of VM `name` (UUID `uuid`) whose NICs have `macs`, from its cloud-init data.
pub fn seed(uuid: &str, name: &str, ci: &CloudInit, macs: &[String]) -> Seed {
    let user_data = ci.user_data.clone().unwrap_or_else(|| "#cloud-config\n{}\n".to_string());
    let network_config = match (&ci.network_config, macs.is_empty()) {
        (Some(text), _) => Some(text.clone()),
        (None, true) => None,
        (None, false) => {
            let mut ethernets = Map::new();
            for (i, mac) in macs.iter().enumerate() {
                ethernets.insert(
                    format!("nic{i}"),
                    json!({ "match": { "macaddress": mac.to_ascii_lowercase() }, "dhcp4": true }),
                );
            }
            Some(format!("{:#}\n", json!({ "version": 2, "ethernets": ethernets })))
        }
    };
    let hostname = ci.hostname.clone().unwrap_or_else(|| name.to_string());
    let mut h = Sha256::new();
    for part in [uuid, &hostname, &user_data, network_config.as_deref().unwrap_or("")] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    for k in &ci.ssh_keys {
        h.update((k.len() as u64).to_le_bytes());
        h.update(k.as_bytes());
    }
    let digest = h.finalize();
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let instance_id = format!("iid-{hex}");
    let mut meta = Map::new();
    meta.insert("instance-id".into(), Value::String(instance_id.clone()));
    meta.insert("local-hostname".into(), Value::String(hostname));
    if !ci.ssh_keys.is_empty() {
        meta.insert("public-keys".into(), json!(ci.ssh_keys));
    }
    Seed { instance_id, meta_data: format!("{:#}\n", Value::Object(meta)), user_data, network_config }
}

/// Writes `seed` as an ISO 9660 image (Joliet and Rock Ridge, label `cidata`) at `out`, whole
/// or not at all; `work` is a directory of the caller's for the files it is made from.
pub fn write_iso(seed: &Seed, work: &Path, out: &Path) -> Result<(), SeedError> {
    let write = |name: &str, text: &str| -> Result<PathBuf, SeedError> {
        let p = work.join(name);
        std::fs::write(&p, text).map_err(|source| SeedError::Write { path: p.clone(), source })?;
        Ok(p)
    };
    std::fs::create_dir_all(work).map_err(|source| SeedError::Write { path: work.into(), source })?;
    let mut files = vec![write("meta-data", &seed.meta_data)?, write("user-data", &seed.user_data)?];
    let stale = work.join("network-config");
    match &seed.network_config {
        Some(n) => files.push(write("network-config", n)?),
        None => {
            let _ = std::fs::remove_file(&stale);
        }
    }
    let tmp = out.with_extension("iso.part");
    let r = Command::new("genisoimage")
        .args(["-quiet", "-input-charset", "utf-8", "-volid", LABEL, "-joliet", "-rock", "-output"])
        .arg(&tmp)
        .args(&files)
        .output()
        .map_err(|e| SeedError::Tool { problem: format!("cannot run: {e}") })?;
    if !r.status.success() {
        let _ = std::fs::remove_file(&tmp);
        return Err(SeedError::Tool {
            problem: format!("failed ({}): {}", r.status, String::from_utf8_lossy(&r.stderr).trim()),
        });
    }
    std::fs::rename(&tmp, out).map_err(|source| SeedError::Write { path: out.into(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";

    fn data() -> CloudInit {
        CloudInit {
            hostname: Some("web1".into()),
            ssh_keys: vec!["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB test@host".into()],
            user_data: Some("#cloud-config\nruncmd:\n  - [sh, -c, 'echo hi']\n".into()),
            network_config: None,
        }
    }

    #[test]
    fn the_instance_id_follows_the_data() {
        let macs = vec!["52:54:00:12:34:56".to_string()];
        let a = seed(UUID, "web1", &data(), &macs);
        assert_eq!(a, seed(UUID, "web1", &data(), &macs), "the same data gives the same seed");
        assert!(a.instance_id.starts_with("iid-") && a.instance_id.len() == 20);
        let changed = CloudInit { user_data: Some("#cloud-config\n{}\n".into()), ..data() };
        assert_ne!(seed(UUID, "web1", &changed, &macs).instance_id, a.instance_id);
        let other_key = CloudInit { ssh_keys: vec!["ssh-rsa AAAA x".into()], ..data() };
        assert_ne!(seed(UUID, "web1", &other_key, &macs).instance_id, a.instance_id);
        let other_mac = vec!["52:54:00:12:34:57".to_string()];
        assert_ne!(seed(UUID, "web1", &data(), &other_mac).instance_id, a.instance_id);
        let other_vm = "1f8fad5b-d9cb-469f-a165-70867728950e";
        assert_ne!(seed(other_vm, "web1", &data(), &macs).instance_id, a.instance_id);
    }

    #[test]
    fn documents_say_what_nocloud_reads() {
        let macs = vec!["52:54:00:AB:CD:EF".to_string(), "52:54:00:00:00:02".to_string()];
        let s = seed(UUID, "web1", &data(), &macs);
        let meta: Value = serde_json::from_str(&s.meta_data).unwrap();
        assert_eq!(meta["instance-id"], s.instance_id.as_str());
        assert_eq!(meta["local-hostname"], "web1");
        assert_eq!(meta["public-keys"][0], "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB test@host");
        assert_eq!(s.user_data, data().user_data.unwrap(), "user-data is the operator's, verbatim");
        let net: Value = serde_json::from_str(s.network_config.as_deref().unwrap()).unwrap();
        assert_eq!(net["version"], 2);
        assert_eq!(net["ethernets"]["nic0"]["match"]["macaddress"], "52:54:00:ab:cd:ef");
        assert_eq!(net["ethernets"]["nic1"]["dhcp4"], true);
        // Defaults: the VM's name, an empty cloud-config, no network-config without NICs.
        let d = seed(UUID, "db2", &CloudInit::default(), &[]);
        let meta: Value = serde_json::from_str(&d.meta_data).unwrap();
        assert_eq!(meta["local-hostname"], "db2");
        assert!(meta.get("public-keys").is_none());
        assert!(d.user_data.starts_with("#cloud-config\n"));
        assert_eq!(d.network_config, None);
        // An operator's network-config is kept as given.
        let own =
            CloudInit { network_config: Some("version: 1\nconfig: []\n".into()), ..CloudInit::default() };
        assert_eq!(seed(UUID, "x", &own, &macs).network_config.as_deref(), Some("version: 1\nconfig: []\n"));
    }

    #[test]
    fn the_image_is_labelled_cidata_and_holds_the_files() {
        if Command::new("genisoimage").arg("-version").output().is_err() {
            panic!("genisoimage is not installed (scripts/setup.sh installs it)");
        }
        let dir = tempfile::tempdir().unwrap();
        let s = seed(UUID, "web1", &data(), &["52:54:00:12:34:56".to_string()]);
        let iso = dir.path().join("seed.iso");
        write_iso(&s, &dir.path().join("work"), &iso).unwrap();
        let bytes = std::fs::read(&iso).unwrap();
        // ISO 9660's primary volume descriptor: "CD001" at 0x8001, the volume id at 0x8028.
        assert_eq!(&bytes[0x8001..0x8006], b"CD001");
        assert_eq!(&bytes[0x8028..0x8028 + LABEL.len()], LABEL.as_bytes());
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains(&s.instance_id), "meta-data is in the image");
        assert!(text.contains("echo hi"), "user-data is in the image");
        assert!(!dir.path().join("seed.iso.part").exists());
    }
}
