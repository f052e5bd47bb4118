//! The five real descriptors in `../shared/ref/ovf/` (VMware vCenter, ovftool, vCloud; VirtualBox
//! 2.2 and 3.x), read as the README there describes them; and hostile or broken descriptors,
//! each refused with a sentence that says what and where.

use super::*;

fn real(name: &str) -> Appliance {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/ref/ovf").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

fn caps(a: &Appliance) -> Vec<(u64, Bus, u32)> {
    a.disks.iter().map(|d| (d.capacity, d.bus, d.unit)).collect()
}

#[test]
fn vcenter_three_scsi_disks_two_nics() {
    let a = real("vmware-vcenter-xp-deltadisk.ovf");
    assert_eq!(a.name, "xp_deltaDisk");
    assert_eq!(a.os.as_deref(), Some("Microsoft Windows XP Professional (32-bit)"));
    assert_eq!((a.cpus, a.memory), (2, 512 * MIB));
    assert_eq!(caps(&a), vec![(1536 * MIB, Bus::Scsi, 0), (2 * GIB, Bus::Scsi, 1), (GIB, Bus::Scsi, 2)]);
    assert_eq!(a.disks[0].file.as_ref().unwrap().href, "xp_deltaDisk-disk1.vmdk");
    assert!(a.disks.iter().all(|d| d.format.ends_with("#streamOptimized")));
    assert_eq!(a.cdroms, 1);
    let nets: Vec<&str> = a.nics.iter().map(|n| n.network.as_str()).collect();
    assert_eq!(nets, ["dvportgroup-4590", "dvportgroup-4591"]);
    assert_eq!(a.nics[0].model.as_deref(), Some("PCNet32"));
    assert_eq!(a.networks, ["dvportgroup-4590", "dvportgroup-4591"]);
    assert!(a.unmapped.iter().any(|u| u.starts_with("floppy drive")), "{:?}", a.unmapped);
}

#[test]
fn ovftool_tinycore_disk_on_ide() {
    let a = real("vmware-ovftool-tinycorelinux.ovf");
    assert_eq!(a.name, "TinyCoreLinux");
    assert_eq!(a.os.as_deref(), Some("ubuntuGuest"));
    assert_eq!((a.cpus, a.memory), (1, 256 * MIB));
    assert_eq!(caps(&a), vec![(2 * GIB, Bus::Ide, 0)]);
    assert_eq!(a.disks[0].controller, "ideController0");
    assert_eq!(a.cdroms, 1);
    assert_eq!(a.nics.len(), 1);
    assert_eq!(a.nics[0].network, "nat");
    let u = a.unmapped.join("\n");
    for what in [
        "serial port 'serial0'",
        "USB controller",
        "video card",
        "vmware.soundcard.ensoniq1371",
        "vmware.vmci",
    ] {
        assert!(u.contains(what), "{what} not reported:\n{u}");
    }
}

#[test]
fn vcloud_vapp_one_ide_and_one_sas_disk_and_a_mac() {
    let a = real("vmware-ovftool-vcloud-idesas.ovf");
    assert_eq!(a.name, "Vm1");
    assert_eq!(a.os.as_deref(), Some("Red Hat Enterprise Linux 6 (32-bit)"));
    assert_eq!((a.cpus, a.memory), (1, 256 * MIB));
    assert_eq!(caps(&a), vec![(8 * MIB, Bus::Ide, 1), (8 * MIB, Bus::Scsi, 1)]);
    assert_eq!(a.disks[0].file.as_ref().unwrap().href, "IdeSas-disk1.vmdk");
    assert_eq!(a.disks[1].file.as_ref().unwrap().href, "IdeSas-disk2.vmdk");
    assert_eq!(a.cdroms, 1);
    assert_eq!(a.nics.len(), 1);
    assert_eq!(a.nics[0].network, "VappNetworks");
    assert_eq!(a.nics[0].mac.as_deref(), Some("00:50:56:0e:00:fa"));
    assert_eq!(a.networks, ["VappNetworks", "OrgVdcNW"]);
}

#[test]
fn virtualbox_two_ide_disks_in_megabytes() {
    let a = real("virtualbox-winxp-two-disks.ovf");
    assert_eq!(a.name, "Windows 5.1 XP 1");
    assert_eq!(a.os.as_deref(), Some("WindowsXP"));
    assert_eq!((a.cpus, a.memory), (1, 895 * MIB));
    assert_eq!(caps(&a), vec![(10_485_760_000, Bus::Ide, 0), (2 * GIB, Bus::Ide, 1)]);
    assert_eq!(a.disks[0].file.as_ref().unwrap().href, "Windows 5.1 XP 1 merged.vmdk");
    assert_eq!(a.cdroms, 1);
    assert_eq!(a.nics.iter().map(|n| n.network.as_str()).collect::<Vec<_>>(), ["NAT"]);
    assert_eq!(a.networks, ["NAT"]);
}

#[test]
fn virtualbox22_ide_and_sata_with_two_floppies() {
    let a = real("virtualbox22-vbox5-ide-sata.ovf");
    assert_eq!(a.name, "vbox5");
    assert_eq!((a.cpus, a.memory), (1, 384 * MIB));
    assert_eq!(caps(&a), vec![(4 * MIB, Bus::Ide, 0), (10 * GIB, Bus::Sata, 1)]);
    assert!(a.disks[0].format.ends_with("#sparse"));
    assert_eq!(a.cdroms, 0);
    assert_eq!(a.unmapped.iter().filter(|u| u.starts_with("floppy drive")).count(), 2, "{:?}", a.unmapped);
}

/// A minimal envelope with `hw` as its hardware items.
fn envelope(extra_top: &str, hw: &str) -> String {
    format!(
        r#"<?xml version="1.0"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
  xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData">
  <References><File ovf:href="d.vmdk" ovf:id="f1"/></References>
  <DiskSection><Disk ovf:capacity="1" ovf:capacityAllocationUnits="byte * 2^30" ovf:diskId="d1" ovf:fileRef="f1"/></DiskSection>
  {extra_top}
  <VirtualSystem ovf:id="t"><VirtualHardwareSection>{hw}</VirtualHardwareSection></VirtualSystem>
</Envelope>"#
    )
}

const CPU1: &str = "<Item><rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>1</rasd:VirtualQuantity></Item>";
const MEM128: &str = "<Item><rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits><rasd:InstanceID>2</rasd:InstanceID><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>128</rasd:VirtualQuantity></Item>";

fn err(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn a_minimal_envelope_is_read() {
    let a = parse(&envelope("", &format!("{CPU1}{MEM128}"))).unwrap();
    assert_eq!((a.cpus, a.memory, a.disks.len()), (1, 128 * MIB, 0));
}

#[test]
fn hostile_xml_is_refused_before_anything_is_expanded() {
    let laughs = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]><Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1">&lol2;</Envelope>"#;
    assert!(err(laughs).contains("not XML vine reads"), "{}", err(laughs));
    let external = r#"<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/shadow">]><Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1">&x;</Envelope>"#;
    assert!(err(external).contains("not XML vine reads"), "{}", err(external));
    let huge = format!(
        "<Envelope xmlns=\"http://schemas.dmtf.org/ovf/envelope/1\">{}</Envelope>",
        "<a/>".repeat(150_000)
    );
    assert!(err(&huge).contains("not XML vine reads"), "too many nodes");
    let too_big = " ".repeat(MAX_DESCRIPTOR + 1);
    assert!(err(&too_big).contains("vine reads descriptors of up to"));
    assert!(err("<Envelope").contains("not XML vine reads"));
    assert!(err("<Other xmlns=\"urn:x\"/>").contains("the OVF Envelope element is missing"));
}

#[test]
fn huge_or_missing_numbers_are_refused_naming_the_item() {
    let cpu = |q: &str| {
        format!("<Item><rasd:ElementName>cpus</rasd:ElementName><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>{q}</rasd:VirtualQuantity></Item>{MEM128}")
    };
    let e = err(&envelope("", &cpu("18446744073709551616")));
    assert!(
        e.contains("\"18446744073709551616\" is not a whole number") && e.contains("Item 'cpus' at line"),
        "{e}"
    );
    assert!(err(&envelope("", &cpu("65"))).contains("is not 1 to 64"));
    assert!(err(&envelope("", &cpu("0"))).contains("is not 1 to 64"));
    let mem = "<Item><rasd:AllocationUnits>byte * 2^40</rasd:AllocationUnits><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>4096</rasd:VirtualQuantity></Item>";
    assert!(err(&envelope("", &format!("{CPU1}{mem}"))).contains("is not 16 MiB to"));
    let odd = "<Item><rasd:AllocationUnits>parsecs</rasd:AllocationUnits><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>4</rasd:VirtualQuantity></Item>";
    assert!(err(&envelope("", &format!("{CPU1}{odd}"))).contains("not an allocation unit vine knows"));
    assert!(err(&envelope("", MEM128)).contains("the CPU item (ResourceType 3) is missing"));
}

#[test]
fn broken_references_are_refused_naming_the_place() {
    let disk = |res: &str, parent: &str| {
        format!("{CPU1}{MEM128}<Item><rasd:ElementName>hd</rasd:ElementName><rasd:HostResource>{res}</rasd:HostResource><rasd:Parent>{parent}</rasd:Parent><rasd:ResourceType>17</rasd:ResourceType></Item>")
    };
    let ide = "<Item><rasd:InstanceID>9</rasd:InstanceID><rasd:ResourceType>5</rasd:ResourceType></Item>";
    let ok = parse(&envelope("", &format!("{ide}{}", disk("ovf:/disk/d1", "9")))).unwrap();
    assert_eq!(caps(&ok), vec![(GIB, Bus::Ide, 0)]);
    assert!(err(&envelope("", &format!("{ide}{}", disk("ovf:/disk/nope", "9"))))
        .contains("names no disk of the DiskSection"));
    assert!(err(&envelope("", &disk("ovf:/disk/d1", "42"))).contains("names no controller item"));
    assert!(err(&envelope("", &disk("somewhere", "9"))).contains("is not ovf:/disk/ID"));
    let out = envelope("", &format!("{CPU1}{MEM128}"))
        .replace("ovf:href=\"d.vmdk\"", "ovf:href=\"../../etc/shadow\"");
    assert!(err(&out).contains("leads out of the appliance's directory"));
    let url = envelope("", &format!("{CPU1}{MEM128}"))
        .replace("ovf:href=\"d.vmdk\"", "ovf:href=\"http://example.invalid/d.vmdk\"");
    assert!(err(&url).contains("is a URL"));
    let big =
        envelope("", &format!("{CPU1}{MEM128}")).replace("ovf:capacity=\"1\"", "ovf:capacity=\"99999999\"");
    assert!(err(&big).contains("more than vine's largest disk"));
    let two = envelope("<VirtualSystem ovf:id=\"u\"/>", &format!("{CPU1}{MEM128}"));
    assert!(err(&two).contains("several virtual machines"));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
    /// Whatever the bytes, parsing answers (a value or an error), never panics.
    #[test]
    fn any_text_parses_or_is_refused(s in "\\PC{0,400}") {
        let _ = parse(&s);
        let _ = Manifest::parse(&s);
    }

    /// Whatever the item's numbers, the hardware is read or refused, never a panic.
    #[test]
    fn any_numbers_are_read_or_refused(q in "[0-9]{0,25}", unit in "(byte|byte \\* 2\\^[0-9]{1,3}|MegaBytes|GB|[a-z]{0,6})") {
        let mem = format!("<Item><rasd:AllocationUnits>{unit}</rasd:AllocationUnits><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>{q}</rasd:VirtualQuantity></Item>");
        let _ = parse(&envelope("", &format!("{CPU1}{mem}")));
    }
}
