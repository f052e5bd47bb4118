//! `vine vm export VM FILE.ova`: a VM that is off becomes an appliance other platforms import
//! (DSP0243: a USTAR archive of the descriptor, then its SHA-256 manifest, then the disks as
//! streamOptimized VMDK files), through the API like any client.
//!
//! Each disk (a volume) is downloaded, converted by `qemu-img` into a streamOptimized VMDK and
//! described with its bus; the VM's CPUs, memory and NICs (network and MAC) go into the
//! descriptor (`ovf::write`). The archive is written beside FILE under a temporary name and
//! renamed into place only when whole, so a failed export leaves nothing.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use clap::Args;
use daemon::protocol::VmInfo;

use super::vm::{client, rest};
use api::client::encode;

/// Options of `vine vm export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The VM (off).
    pub name: String,
    /// The appliance to write (.ova; not overwritten).
    pub file: PathBuf,
}

/// Runs `vine vm export`.
pub fn run(a: ExportArgs) -> anyhow::Result<i32> {
    if a.file.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() != Some("ova") {
        bail!("{}: vine exports an appliance as an .ova file", a.file.display());
    }
    if a.file.exists() {
        bail!("{} exists; not overwritten", a.file.display());
    }
    let v = rest("GET", &format!("/api/vms/{}", encode(&a.name)), None)?;
    let vm: VmInfo = serde_json::from_value(v).context("reading the VM's description")?;
    if !matches!(vm.state, vmm::VmState::Off) {
        bail!(
            "'{}' is {}; export a VM that is off (its disks are then consistent)",
            vm.name,
            vm.state.name()
        );
    }
    if let Some(k) = &vm.kernel {
        bail!("'{}' boots the kernel {k} directly; an appliance carries only disks, so it would not boot elsewhere", vm.name);
    }
    if !vm.drives.iter().any(|d| !d.cdrom) {
        bail!("'{}' has no disk; an appliance is made of its VM's disks", vm.name);
    }
    let dir = a.file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let work = tempfile::Builder::new()
        .prefix(".vine-export-")
        .tempdir_in(dir)
        .with_context(|| format!("making a working directory in {}", dir.display()))?;
    let mut disks = Vec::new();
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    for (i, d) in vm.drives.iter().filter(|d| !d.cdrom).enumerate() {
        let Some((pool, volume)) = vmconfig::volume_ref(&d.path) else {
            bail!(
                "disk {i} of '{}' is the host path {}; vine exports disks that are volumes",
                vm.name,
                d.path
            );
        };
        let vhd = work.path().join(format!("disk{i}.vhd"));
        let t = format!("/api/pools/{}/volumes/{}/content", encode(pool), encode(volume));
        let mut out = std::fs::File::create(&vhd).with_context(|| format!("creating {}", vhd.display()))?;
        let (bar, mut tick) = super::disk::progress(&format!("downloading {}", d.path));
        let tick = std::cell::RefCell::new(&mut tick);
        let got = client().download(&t, &mut out, &|done, total| (tick.borrow_mut())(done, total));
        bar.finish_and_clear();
        got.with_context(|| format!("downloading {}", d.path))?;
        drop(out);
        let href = format!("{}-disk{}.vmdk", vm.name, i + 1);
        let vmdk = work.path().join(&href);
        let out = Command::new("qemu-img")
            .args(["convert", "-f", "vpc", "-O", "vmdk", "-o", "subformat=streamOptimized"])
            .arg(&vhd)
            .arg(&vmdk)
            .output()
            .context("running qemu-img (is it installed?)")?;
        if !out.status.success() {
            bail!(
                "disk {i} ({}): qemu-img cannot convert it: {}",
                d.path,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        std::fs::remove_file(&vhd).ok();
        let capacity = virtual_size(&vmdk)?;
        let bus = match d.bus.as_str() {
            "ide" => ovf::Bus::Ide,
            "scsi" => ovf::Bus::Scsi,
            _ => ovf::Bus::Virtio,
        };
        let file_size = std::fs::metadata(&vmdk)?.len();
        disks.push(ovf::ExportDisk { href: href.clone(), file_size, capacity, bus });
        files.push((href, vmdk));
    }
    let desc = ovf::Export {
        name: vm.name.clone(),
        cpus: vm.cpus,
        memory: vm.memory,
        disks,
        nics: vm
            .nics
            .iter()
            .map(|n| ovf::ExportNic { network: n.network.clone(), mac: n.mac.clone() })
            .collect(),
    };
    let ovf_name = format!("{}.ovf", vm.name);
    let ovf_path = work.path().join(&ovf_name);
    std::fs::write(&ovf_path, ovf::write(&desc))?;
    let mut manifest = String::new();
    for (name, path) in std::iter::once((ovf_name.clone(), ovf_path.clone())).chain(files.iter().cloned()) {
        let f = std::fs::File::open(&path)?;
        let d = ovf::Digest::of(ovf::manifest::Algorithm::Sha256, &name, std::io::BufReader::new(f))?;
        manifest.push_str(&d.line());
        manifest.push('\n');
    }
    let mf_name = format!("{}.mf", vm.name);
    let mf_path = work.path().join(&mf_name);
    std::fs::write(&mf_path, manifest)?;
    // The descriptor first, then the manifest, then the disks (DSP0243 § 5.3).
    let partial = work.path().join("appliance.ova");
    {
        let f = std::fs::File::create_new(&partial)?;
        let mut tar = tar::Builder::new(std::io::BufWriter::new(f));
        for (name, path) in [(ovf_name, ovf_path), (mf_name, mf_path)].into_iter().chain(files) {
            let mut src = std::fs::File::open(&path)?;
            let mut h = tar::Header::new_ustar();
            h.set_size(src.metadata()?.len());
            h.set_mode(0o644);
            h.set_mtime(
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            );
            h.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut h, &name, &mut src)
                .with_context(|| format!("adding {name} to the archive"))?;
        }
        let mut w = tar.into_inner()?;
        w.flush()?;
        w.get_ref().sync_all()?;
    }
    std::fs::hard_link(&partial, &a.file)
        .or_else(|_| std::fs::rename(&partial, &a.file))
        .with_context(|| format!("writing {}", a.file.display()))?;
    println!(
        "exported '{}' to {} ({} disk(s), {} NIC(s))",
        vm.name,
        a.file.display(),
        desc.disks.len(),
        desc.nics.len()
    );
    Ok(0)
}

/// A disk image's virtual size as qemu-img reads it.
fn virtual_size(file: &Path) -> anyhow::Result<u64> {
    let out = Command::new("qemu-img").args(["info", "--output=json"]).arg(file).output()?;
    if !out.status.success() {
        bail!("qemu-img info {}: {}", file.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    v["virtual-size"].as_u64().with_context(|| format!("qemu-img info {}: no virtual-size", file.display()))
}
