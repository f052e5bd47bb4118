//! `vine vm import FILE.ova|FILE.ovf`: an appliance another platform exported becomes a vine VM,
//! through the API like any client (so a user's rights apply as they would to `vine vm create`).
//!
//! 1. The package is opened: an OVA (a USTAR archive whose first file is the descriptor) is
//!    unpacked into a private directory; an OVF is read where it is, its files beside it.
//! 2. The descriptor is read (`ovf`): CPUs, memory, disks on their controllers, NICs; hardware
//!    vine does not make is reported, a line each.
//! 3. Every file used is checked against the manifest's digest, when there is one; a disk file the
//!    package does not hold, a disk larger than the pool's free space, and a network with no vine
//!    network to map it to are refused — all before anything is made.
//! 4. Each disk is converted to a dynamic VHD (`qemu-img convert`, which reads VMDK and the other
//!    formats exporters write) and uploaded as a volume `POOL/VM-diskN.vhd`; the VM is created on
//!    them. If any step fails, the volumes made so far are deleted: nothing is left behind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use clap::Args;
use serde_json::{json, Value};

use super::vm::rest;
use api::client::encode;

/// Options of `vine vm import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The appliance: an .ova file, or an .ovf descriptor with its files beside it.
    pub file: PathBuf,
    /// The storage pool its disks go to.
    #[arg(long)]
    pub pool: String,
    /// The VM's name (default: the appliance's).
    #[arg(long)]
    pub name: Option<String>,
    /// Connects the appliance's network SRC to vine network DST (repeatable); a network with no
    /// mapping goes to the vine network of the same name, if there is one.
    #[arg(long = "map-network", value_name = "SRC=DST")]
    pub map_network: Vec<String>,
    /// Print the new VM as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The largest OVA vine unpacks (a tar of disks; the disks are bounded by the pool besides).
const MAX_ENTRIES: usize = 256;

/// An opened package: its descriptor's text, and where its files are.
struct Package {
    descriptor: String,
    descriptor_name: String,
    dir: PathBuf,
    manifest: Option<ovf::Manifest>,
    /// The private directory an OVA was unpacked into (removed when dropped).
    _unpacked: Option<tempfile::TempDir>,
}

fn open(file: &Path) -> anyhow::Result<Package> {
    let ext = file.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let (dir, descriptor_name, unpacked) = match ext.as_str() {
        "ova" => {
            let tmp = tempfile::Builder::new()
                .prefix("vine-import-")
                .tempdir()
                .context("making a directory to unpack the OVA into")?;
            let first = unpack(file, tmp.path())?;
            (tmp.path().to_path_buf(), first, Some(tmp))
        }
        "ovf" => {
            let dir = file.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
            let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            (dir, name, None)
        }
        _ => bail!("{}: an appliance is an .ova file or an .ovf descriptor", file.display()),
    };
    let path = dir.join(&descriptor_name);
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() > ovf::MAX_DESCRIPTOR {
        bail!("{descriptor_name}: {}", ovf::OvfError::TooLarge(bytes.len()));
    }
    let descriptor = String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{descriptor_name}: the descriptor is not UTF-8 (byte {})",
            e.utf8_error().valid_up_to()
        )
    })?;
    let mf = dir.join(Path::new(&descriptor_name).with_extension("mf"));
    let manifest = match std::fs::read_to_string(&mf) {
        Ok(text) => Some(ovf::Manifest::parse(&text).with_context(|| format!("{}", mf.display()))?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", mf.display())),
    };
    Ok(Package { descriptor, descriptor_name, dir, manifest, _unpacked: unpacked })
}

/// Unpacks an OVA into `into`; returns the descriptor's name (the first file, DSP0243 § 5.3).
fn unpack(file: &Path, into: &Path) -> anyhow::Result<String> {
    let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let mut archive = tar::Archive::new(f);
    let mut first = None;
    for (i, entry) in
        archive.entries().with_context(|| format!("reading {} as a tar archive", file.display()))?.enumerate()
    {
        if i >= MAX_ENTRIES {
            bail!("{}: more than {MAX_ENTRIES} files; not an appliance vine imports", file.display());
        }
        let mut entry =
            entry.with_context(|| format!("{}: file {} of the archive", file.display(), i + 1))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path().context("a file name in the archive")?.to_string_lossy().into_owned();
        // Only plain names: an OVA holds its files side by side.
        if name.is_empty() || name.contains('/') || name == ".." || name.starts_with('.') {
            bail!("{}: the archive holds {name:?}, which is not a plain file name", file.display());
        }
        if first.is_none() {
            if !name.to_ascii_lowercase().ends_with(".ovf") {
                bail!(
                    "{}: the first file of an OVA must be its .ovf descriptor (DSP0243 § 5.3), not {name:?}",
                    file.display()
                );
            }
            first = Some(name.clone());
        }
        let to = into.join(&name);
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&to)
            .with_context(|| format!("unpacking {name} (twice in the archive?)"))?;
        std::io::copy(&mut entry, &mut out).with_context(|| format!("unpacking {name}"))?;
    }
    first.with_context(|| format!("{}: the archive holds no file", file.display()))
}

/// Checks `name` (a file of the package) against the manifest, if there is one.
fn check_digest(p: &Package, name: &str) -> anyhow::Result<()> {
    let Some(m) = &p.manifest else { return Ok(()) };
    let Some(d) = m.digest_of(name) else {
        bail!("{name}: the package's manifest gives no digest for it, so it cannot be trusted");
    };
    let f = std::fs::File::open(p.dir.join(name)).with_context(|| format!("opening {name}"))?;
    d.check(std::io::BufReader::new(f))?;
    Ok(())
}

/// Maps the appliance's networks to vine's: `--map-network`, else a vine network of the same name.
fn networks(
    a: &ovf::Appliance,
    maps: &[String],
    vine_nets: &[String],
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for m in maps {
        let (src, dst) =
            m.split_once('=').with_context(|| format!("--map-network {m:?}: expected SRC=DST"))?;
        if !vine_nets.iter().any(|n| n == dst) {
            bail!("--map-network {m}: there is no vine network '{dst}' (vine network list)");
        }
        map.insert(src.to_string(), dst.to_string());
    }
    let mut missing = Vec::new();
    for (i, nic) in a.nics.iter().enumerate() {
        if map.contains_key(&nic.network) {
            continue;
        }
        if vine_nets.contains(&nic.network) {
            map.insert(nic.network.clone(), nic.network.clone());
        } else {
            missing.push(format!("NIC {i} is on '{}'", nic.network));
        }
    }
    if !missing.is_empty() {
        bail!(
            "the appliance's networks have no vine network: {}; map each with --map-network SRC=DST",
            missing.join(", ")
        );
    }
    Ok(map)
}

/// Runs `vine vm import`.
pub fn run(a: ImportArgs) -> anyhow::Result<i32> {
    let p = open(&a.file)?;
    let app = ovf::parse(&p.descriptor).with_context(|| p.descriptor_name.clone())?;
    check_digest(&p, &p.descriptor_name)?;
    let name = a.name.clone().unwrap_or_else(|| sanitize(&app.name));
    vmconfig::validate_name(&name)
        .map_err(|e| anyhow::anyhow!("the VM's name {name:?}: {e}; give one with --name"))?;
    // Everything that can be checked before anything is made.
    for (i, d) in app.disks.iter().enumerate() {
        let Some(f) = &d.file else {
            bail!("disk {i} ('{}') has no file: vine imports disks with contents", d.disk_id);
        };
        let path = p.dir.join(&f.href);
        if !path.is_file() {
            bail!("disk {i} ('{}') is the file {:?}, which the package does not hold", d.disk_id, f.href);
        }
        check_digest(&p, &f.href)?;
    }
    let pool = rest("GET", &format!("/api/pools/{}", encode(&a.pool)), None)?;
    let free = pool["free_bytes"].as_u64().unwrap_or(0);
    for (i, d) in app.disks.iter().enumerate() {
        if d.capacity > free {
            bail!(
                "disk {i} ('{}') is {} MiB, more than pool '{}' has free ({} MiB)",
                d.disk_id,
                d.capacity >> 20,
                a.pool,
                free >> 20
            );
        }
    }
    let vine_nets: Vec<String> = rest("GET", "/api/networks", None)?
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["name"].as_str().map(str::to_string))
        .collect();
    let nets = networks(&app, &a.map_network, &vine_nets)?;
    for u in &app.unmapped {
        eprintln!("vine vm import: not made: {u}");
    }
    if app.cdroms > 0 {
        eprintln!(
            "vine vm import: not made: {} empty CD/DVD drive(s) (attach an ISO volume later)",
            app.cdroms
        );
    }
    // Disks become volumes; whatever fails, the volumes made so far go.
    let mut made: Vec<String> = Vec::new();
    let r = make(&a, &p, &app, &name, &nets, &mut made);
    if r.is_err() {
        for v in &made {
            if let Some((pl, vol)) = vmconfig::volume_ref(v) {
                let _ = rest("DELETE", &format!("/api/pools/{}/volumes/{}", encode(pl), encode(vol)), None);
            }
        }
    }
    let v = r?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "imported '{}' as VM '{name}': {} vCPU(s), {} MiB, disks {}",
            app.name,
            app.cpus,
            app.memory >> 20,
            made.join(", ")
        );
    }
    Ok(0)
}

fn make(
    a: &ImportArgs,
    p: &Package,
    app: &ovf::Appliance,
    name: &str,
    nets: &BTreeMap<String, String>,
    made: &mut Vec<String>,
) -> anyhow::Result<Value> {
    let work = tempfile::Builder::new().prefix("vine-import-").tempdir().context("a working directory")?;
    let mut disks = Vec::new();
    for (i, d) in app.disks.iter().enumerate() {
        let src = p.dir.join(&d.file.as_ref().expect("checked").href);
        let vhd = work.path().join(format!("disk{i}.vhd"));
        let out = Command::new("qemu-img")
            .args(["convert", "-O", "vpc", "-o", "subformat=dynamic,force_size=on"])
            .arg(&src)
            .arg(&vhd)
            .output()
            .context("running qemu-img (is it installed?)")?;
        if !out.status.success() {
            bail!(
                "disk {i} ('{}'): qemu-img cannot convert {}: {}",
                d.disk_id,
                d.file.as_ref().expect("checked").href,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let volume = format!("{}/{name}-disk{i}.vhd", a.pool);
        super::pool::upload(&volume, &vhd).with_context(|| format!("disk {i}: uploading {volume}"))?;
        made.push(volume.clone());
        let _ = std::fs::remove_file(&vhd);
        let bus = match d.bus {
            ovf::Bus::Ide | ovf::Bus::Sata => "ide",
            ovf::Bus::Scsi => "scsi",
            ovf::Bus::Virtio | ovf::Bus::Other => "virtio",
        };
        disks.push(json!({ "path": volume, "bus": bus }));
    }
    let nics: Vec<Value> = app
        .nics
        .iter()
        .map(|n| {
            let mut v = json!({ "network": nets[&n.network] });
            if let Some(m) = &n.mac {
                v["mac"] = json!(m.to_ascii_lowercase());
            }
            v
        })
        .collect();
    let body = json!({
        "name": name,
        "cpus": app.cpus,
        "memory": app.memory,
        "disks": disks,
        "nics": nics,
    });
    rest("POST", "/api/vms", Some(&body))
}

/// A vine VM name from an appliance's (spaces and other characters become `-`).
fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '-' })
        .take(63)
        .collect();
    s.trim_start_matches(['-', '_', '.']).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_networks() {
        assert_eq!(sanitize("Windows 5.1 XP 1"), "Windows-5.1-XP-1");
        assert_eq!(sanitize("..x"), "x");
        let a = ovf::Appliance {
            name: "t".into(),
            os: None,
            cpus: 1,
            memory: 1 << 27,
            disks: vec![],
            cdroms: 0,
            nics: vec![
                ovf::NicItem { network: "nat".into(), mac: None, model: None },
                ovf::NicItem { network: "lan".into(), mac: None, model: None },
            ],
            networks: vec![],
            files: vec![],
            unmapped: vec![],
        };
        let nets = vec!["lan".to_string(), "n1".to_string()];
        let e = networks(&a, &[], &nets).unwrap_err().to_string();
        assert!(e.contains("NIC 0 is on 'nat'") && !e.contains("'lan'"), "{e}");
        let m = networks(&a, &["nat=n1".into()], &nets).unwrap();
        assert_eq!((m["nat"].as_str(), m["lan"].as_str()), ("n1", "lan"));
        assert!(networks(&a, &["nat=nope".into()], &nets)
            .unwrap_err()
            .to_string()
            .contains("no vine network 'nope'"));
        assert!(networks(&a, &["nat".into()], &nets).unwrap_err().to_string().contains("SRC=DST"));
    }
}
