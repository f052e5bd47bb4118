//! `vine vm import`: appliances whose descriptors VMware's tools wrote (../shared/ref/ovf/), with
//! their disks rebuilt as that directory's README says (`qemu-img convert -O vmdk -o
//! subformat=streamOptimized`, a pattern written into each so its contents can be compared),
//! packed as an OVA with a SHA-256 manifest:
//!
//! - the vCloud vApp's VM imports with its CPUs, memory, an IDE and a SCSI disk whose contents are
//!   byte for byte the appliance's (`qemu-img compare`), and its NIC with its MAC on the network
//!   it is mapped to;
//! - exported again (`vine vm export`), the archive holds the descriptor, the manifest and the
//!   disks in that order, and imported from it the VM is the same, its disks byte-identical;
//! - a damaged manifest digest, a missing disk, a disk larger than the pool's free space, an
//!   unmapped network, a hostile descriptor (entity expansion), and a failure after the disks
//!   were uploaded are each refused with a sentence, and leave no VM and no volume behind.

mod vmhost;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use vmhost::VmHost;

fn reference(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/ref/ovf").join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A raw disk of `capacity` bytes with `tag` written at its start and at its middle, and the
/// streamOptimized VMDK of it named `href` in `dir`. Returns the raw file.
fn disk(dir: &Path, href: &str, capacity: u64, tag: &str) -> PathBuf {
    let raw = dir.join(format!("{href}.raw"));
    let f = std::fs::File::create(&raw).unwrap();
    f.set_len(capacity).unwrap();
    use std::os::unix::fs::FileExt;
    let pattern: Vec<u8> = tag.bytes().cycle().take(64 << 10).collect();
    f.write_all_at(&pattern, 0).unwrap();
    f.write_all_at(&pattern, capacity / 2).unwrap();
    drop(f);
    run(Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized"])
        .arg(&raw)
        .arg(dir.join(href)));
    raw
}

/// An OVA `label.ova` of `descriptor` (as `name`) and `files` from `dir`, with a SHA-256
/// manifest; `damage` changes one digit of the manifest's digest of that file.
fn ova(
    dir: &Path,
    label: &str,
    name: &str,
    descriptor: &str,
    files: &[&str],
    damage: Option<&str>,
) -> PathBuf {
    let stem = name.trim_end_matches(".ovf");
    std::fs::write(dir.join(name), descriptor).unwrap();
    let mut lines = String::new();
    for f in std::iter::once(name).chain(files.iter().copied()) {
        let out = Command::new("sha256sum").arg(dir.join(f)).output().unwrap();
        let mut hex = String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string();
        if damage == Some(f) {
            let last = if hex.ends_with('0') { '1' } else { '0' };
            hex.pop();
            hex.push(last);
        }
        lines.push_str(&format!("SHA256({f})= {hex}\n"));
    }
    std::fs::write(dir.join(format!("{stem}.mf")), lines).unwrap();
    let out = dir.join(format!("{label}.ova"));
    let mut tar = Command::new("tar");
    tar.args(["--format=ustar", "-cf"]).arg(&out).arg("-C").arg(dir).arg(name).arg(format!("{stem}.mf"));
    tar.args(files);
    run(&mut tar);
    out
}

/// The VMs and pool `p`'s volumes, to compare before and after a refusal.
fn inventory(h: &VmHost, pool: &str) -> (Vec<String>, Vec<String>) {
    let names = |v: Value, key: &str| -> Vec<String> {
        let mut n: Vec<String> =
            v.as_array().unwrap().iter().filter_map(|x| x[key].as_str().map(str::to_string)).collect();
        n.sort();
        n
    };
    let vms: Value = serde_json::from_str(&h.ok(&["vm", "list", "--json"])).unwrap();
    let vols: Value = serde_json::from_str(&h.ok(&["volume", "list", pool, "--json"])).unwrap();
    (names(vms, "name"), names(vols, "volume"))
}

/// A tmpfs of `size` mounted at a new directory, unmounted when dropped.
struct SmallFs(tempfile::TempDir);

impl SmallFs {
    fn new(size: &str) -> SmallFs {
        let d = tempfile::tempdir().unwrap();
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(d.path()));
        SmallFs(d)
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

/// VM `vm` is the vCloud vApp's VM: 1 vCPU, 256 MiB, an IDE and a SCSI disk holding exactly
/// `raws`, its NIC on n1 with the appliance's MAC.
fn is_the_vapp(h: &VmHost, vm: &str, pool: &Path, raws: [&Path; 2]) {
    let show = h.show(vm);
    assert_eq!((show["cpus"].as_u64(), show["memory"].as_u64()), (Some(1), Some(256 << 20)));
    let disks = [format!("p1/{vm}-disk0.vhd"), format!("p1/{vm}-disk1.vhd")];
    assert_eq!(show["disks"], serde_json::json!(disks));
    assert_eq!(show["nics"][0]["network"], "n1");
    assert_eq!(show["nics"][0]["mac"], "00:50:56:0e:00:fa");
    let buses: Vec<&str> =
        show["drives"].as_array().unwrap().iter().filter_map(|d| d["bus"].as_str()).collect();
    assert_eq!(buses, ["ide", "scsi"]);
    for (raw, vol) in raws.iter().zip(&disks) {
        let file = pool.join(vol.trim_start_matches("p1/"));
        let out = Command::new("qemu-img")
            .args(["compare", "-f", "raw", "-F", "vpc"])
            .arg(raw)
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{vol} differs from the appliance's disk: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn appliances_import_with_their_hardware_and_bad_ones_leave_nothing_behind() {
    let h = VmHost::start();
    let work = tempfile::tempdir().unwrap();
    let pool = work.path().join("p1");
    h.ok(&["pool", "create", "p1", "--path", pool.to_str().unwrap()]);
    h.ok(&["network", "create", "n1", "--kind", "internal", "--subnet", "10.233.92.0/24"]);
    let pkg = work.path().join("pkg");
    std::fs::create_dir(&pkg).unwrap();

    // The vCloud vApp: an IDE and a SCSI disk of 8 MiB, a NIC with a MAC.
    let idesas = reference("vmware-ovftool-vcloud-idesas.ovf");
    let raw1 = disk(&pkg, "IdeSas-disk1.vmdk", 8 << 20, "first disk, on IDE ");
    let raw2 = disk(&pkg, "IdeSas-disk2.vmdk", 8 << 20, "second disk, on SAS ");
    let files = ["IdeSas-disk1.vmdk", "IdeSas-disk2.vmdk"];
    let good = ova(&pkg, "good", "IdeSas.ovf", &idesas, &files, None);
    let before = inventory(&h, "p1");

    // Refusals first: each leaves the inventory as it was.
    let refused = |args: &[&str], says: &str| {
        let e = h.fails(args);
        assert!(e.contains(says), "vine {args:?} should say {says:?}: {e}");
        assert_eq!(inventory(&h, "p1"), before, "vine {args:?} left something behind");
    };
    let g = good.to_str().unwrap();
    refused(&["vm", "import", g, "--pool", "p1"], "NIC 0 is on 'VappNetworks'");
    let damaged = ova(&pkg, "damaged", "IdeSas.ovf", &idesas, &files, Some("IdeSas-disk2.vmdk"));
    refused(
        &["vm", "import", damaged.to_str().unwrap(), "--pool", "p1", "--map-network", "VappNetworks=n1"],
        "IdeSas-disk2.vmdk: its SHA256 is",
    );
    let missing = ova(&pkg, "missing", "IdeSas.ovf", &idesas, &files[..1], None);
    refused(
        &["vm", "import", missing.to_str().unwrap(), "--pool", "p1", "--map-network", "VappNetworks=n1"],
        "which the package does not hold",
    );
    let laughs = "<?xml version=\"1.0\"?><!DOCTYPE l [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\"><!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\">]><Envelope xmlns=\"http://schemas.dmtf.org/ovf/envelope/1\">&c;</Envelope>";
    let hostile = ova(&pkg, "hostile", "IdeSas.ovf", laughs, &[], None);
    refused(&["vm", "import", hostile.to_str().unwrap(), "--pool", "p1"], "not XML vine reads");
    // A 2 GiB disk for a pool with 64 MiB free.
    let small = SmallFs::new("64m");
    h.ok(&["pool", "create", "small", "--path", small.0.path().to_str().unwrap()]);
    disk(&pkg, "TinyCoreLinux-disk1.vmdk", 2 << 30, "tiny core ");
    let tiny = ova(
        &pkg,
        "tiny",
        "TinyCoreLinux.ovf",
        &reference("vmware-ovftool-tinycorelinux.ovf"),
        &["TinyCoreLinux-disk1.vmdk"],
        None,
    );
    let e = h.fails(&["vm", "import", tiny.to_str().unwrap(), "--pool", "small", "--map-network", "nat=n1"]);
    assert!(e.contains("2048 MiB, more than pool 'small' has free"), "{e}");
    assert_eq!(inventory(&h, "small").1, Vec::<String>::new());
    // A failure after the disks were uploaded (the VM's name is taken): the volumes go again.
    h.create_kit_vm("taken", &[], &[]);
    let e =
        h.fails(&["vm", "import", g, "--pool", "p1", "--map-network", "VappNetworks=n1", "--name", "taken"]);
    assert!(e.contains("a VM named 'taken' already exists"), "{e}");
    let (_, vols) = inventory(&h, "p1");
    assert!(vols.iter().all(|v| !v.contains("taken-disk")), "volumes left after a failed import: {vols:?}");

    // The import itself.
    let out = h.ok(&["vm", "import", g, "--pool", "p1", "--map-network", "VappNetworks=n1", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["name"], "Vm1");
    is_the_vapp(&h, "Vm1", &pool, [&raw1, &raw2]);

    // Export, then import again: the same VM, byte-identical disks.
    let exported = work.path().join("Vm1.ova");
    let e = h.fails(&["vm", "export", "taken", exported.to_str().unwrap()]);
    assert!(e.contains("boots the kernel") && e.contains("directly"), "{e}");
    h.ok(&["vm", "export", "Vm1", exported.to_str().unwrap()]);
    let listed = Command::new("tar").arg("-tf").arg(&exported).output().unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout).to_string();
    assert_eq!(listed.lines().collect::<Vec<_>>(), ["Vm1.ovf", "Vm1.mf", "Vm1-disk1.vmdk", "Vm1-disk2.vmdk"]);
    let e = h.fails(&["vm", "export", "Vm1", exported.to_str().unwrap()]);
    assert!(e.contains("not overwritten"), "{e}");
    h.ok(&["vm", "delete", "Vm1"]);
    h.ok(&["vm", "import", exported.to_str().unwrap(), "--pool", "p1", "--name", "again"]);
    is_the_vapp(&h, "again", &pool, [&raw1, &raw2]);
    h.ok(&["vm", "delete", "again"]);
    h.ok(&["vm", "delete", "taken"]);
    h.ok(&["pool", "delete", "small"]);
}
