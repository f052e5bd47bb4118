//! Writing a descriptor for `vine vm export` (OVF 1.0 envelope, as VMware's and VirtualBox's
//! readers expect): References, DiskSection, NetworkSection, and one VirtualSystem whose
//! VirtualHardwareSection has the CPUs, the memory, one controller per bus in use, the disks
//! (streamOptimized VMDK files) and the NICs. The XML is written by `quick-xml`, which escapes
//! every name and value.

use std::io;

use quick_xml::events::{BytesDecl, BytesText, Event};
use quick_xml::Writer;

use crate::Bus;

const OVF: &str = "http://schemas.dmtf.org/ovf/envelope/1";
const RASD: &str = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData";
const VSSD: &str = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData";
/// The format URL of the disks vine exports.
pub const STREAM_OPTIMIZED: &str =
    "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized";

/// A disk to describe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportDisk {
    /// Its file in the package.
    pub href: String,
    /// The file's size, in bytes.
    pub file_size: u64,
    /// Its virtual size, in bytes.
    pub capacity: u64,
    /// The bus it is on.
    pub bus: Bus,
}

/// A NIC to describe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportNic {
    /// The network it is on (its vine network's name).
    pub network: String,
    /// Its MAC address.
    pub mac: Option<String>,
}

/// What an exported VM is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// Its name.
    pub name: String,
    /// vCPUs.
    pub cpus: u32,
    /// Memory, in bytes (a whole number of MiB).
    pub memory: u64,
    /// Disks, in order.
    pub disks: Vec<ExportDisk>,
    /// NICs, in order.
    pub nics: Vec<ExportNic>,
}

fn controller(bus: Bus) -> Option<(&'static str, &'static str, &'static str)> {
    // (ResourceType, ResourceSubType, name)
    match bus {
        Bus::Ide => Some(("5", "PIIX4", "IDE Controller")),
        Bus::Scsi => Some(("6", "virtio-scsi", "SCSI Controller")),
        Bus::Sata => Some(("20", "AHCI", "SATA Controller")),
        Bus::Virtio => Some(("6", "virtio-blk", "VirtIO Block Controller")),
        Bus::Other => None,
    }
}

type W = Writer<Vec<u8>>;

fn text(w: &mut W, name: &str, value: &str) -> io::Result<()> {
    w.create_element(name).write_text_content(BytesText::new(value))?;
    Ok(())
}

fn item(w: &mut W, fields: &[(&str, String)]) -> io::Result<()> {
    w.create_element("Item").write_inner_content(|w| {
        // rasd's schema orders an Item's elements alphabetically.
        let mut sorted: Vec<&(&str, String)> = fields.iter().collect();
        sorted.sort_by_key(|(k, _)| *k);
        for (k, v) in sorted {
            text(w, &format!("rasd:{k}"), v)?;
        }
        Ok(())
    })?;
    Ok(())
}

/// The descriptor of `e`.
pub fn write(e: &Export) -> String {
    build(e).expect("writing to memory cannot fail")
}

fn build(e: &Export) -> io::Result<String> {
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    w.create_element("Envelope")
        .with_attribute(("xmlns", OVF))
        .with_attribute(("xmlns:ovf", OVF))
        .with_attribute(("xmlns:rasd", RASD))
        .with_attribute(("xmlns:vssd", VSSD))
        .with_attribute(("ovf:version", "1.0"))
        .write_inner_content(|w| {
            w.create_element("References").write_inner_content(|w| {
                for (i, d) in e.disks.iter().enumerate() {
                    w.create_element("File")
                        .with_attribute(("ovf:href", d.href.as_str()))
                        .with_attribute(("ovf:id", format!("file{}", i + 1).as_str()))
                        .with_attribute(("ovf:size", d.file_size.to_string().as_str()))
                        .write_empty()?;
                }
                Ok(())
            })?;
            w.create_element("DiskSection").write_inner_content(|w| {
                text(w, "Info", "Virtual disk information")?;
                for (i, d) in e.disks.iter().enumerate() {
                    w.create_element("Disk")
                        .with_attribute(("ovf:capacity", d.capacity.to_string().as_str()))
                        .with_attribute(("ovf:capacityAllocationUnits", "byte"))
                        .with_attribute(("ovf:diskId", format!("vmdisk{}", i + 1).as_str()))
                        .with_attribute(("ovf:fileRef", format!("file{}", i + 1).as_str()))
                        .with_attribute(("ovf:format", STREAM_OPTIMIZED))
                        .write_empty()?;
                }
                Ok(())
            })?;
            let mut networks: Vec<&str> = e.nics.iter().map(|n| n.network.as_str()).collect();
            networks.sort_unstable();
            networks.dedup();
            w.create_element("NetworkSection").write_inner_content(|w| {
                text(w, "Info", "The logical networks")?;
                for n in &networks {
                    w.create_element("Network")
                        .with_attribute(("ovf:name", *n))
                        .write_inner_content(|w| text(w, "Description", &format!("The {n} network")))?;
                }
                Ok(())
            })?;
            w.create_element("VirtualSystem")
                .with_attribute(("ovf:id", e.name.as_str()))
                .write_inner_content(|w| {
                    text(w, "Info", "A virtual machine exported by vine")?;
                    text(w, "Name", &e.name)?;
                    w.create_element("VirtualHardwareSection").write_inner_content(|w| hardware(w, e))?;
                    Ok(())
                })?;
            Ok(())
        })?;
    let mut out = String::from_utf8(w.into_inner()).map_err(io::Error::other)?;
    out.push('\n');
    Ok(out)
}

fn hardware(w: &mut W, e: &Export) -> io::Result<()> {
    text(w, "Info", "Virtual hardware requirements")?;
    w.create_element("System").write_inner_content(|w| {
        text(w, "vssd:ElementName", "Virtual Hardware Family")?;
        text(w, "vssd:InstanceID", "0")?;
        text(w, "vssd:VirtualSystemIdentifier", &e.name)?;
        text(w, "vssd:VirtualSystemType", "vmx-07")
    })?;
    let mut id = 0u32;
    let mut next = || {
        id += 1;
        id.to_string()
    };
    item(
        w,
        &[
            ("AllocationUnits", "hertz * 10^6".into()),
            ("Description", "Number of Virtual CPUs".into()),
            ("ElementName", format!("{} virtual CPU(s)", e.cpus)),
            ("InstanceID", next()),
            ("ResourceType", "3".into()),
            ("VirtualQuantity", e.cpus.to_string()),
        ],
    )?;
    item(
        w,
        &[
            ("AllocationUnits", "byte * 2^20".into()),
            ("Description", "Memory Size".into()),
            ("ElementName", format!("{} MB of memory", e.memory >> 20)),
            ("InstanceID", next()),
            ("ResourceType", "4".into()),
            ("VirtualQuantity", (e.memory >> 20).to_string()),
        ],
    )?;
    // One controller per bus in use, in the order the disks first use them.
    let mut controllers: Vec<(Bus, String, u32)> = Vec::new();
    for d in &e.disks {
        if controllers.iter().any(|(b, _, _)| *b == d.bus) {
            continue;
        }
        if let Some((kind, sub, name)) = controller(d.bus) {
            let address =
                controllers.iter().filter(|(b, _, _)| controller(*b).map(|c| c.0) == Some(kind)).count();
            let iid = next();
            item(
                w,
                &[
                    ("Address", address.to_string()),
                    ("Description", name.into()),
                    ("ElementName", format!("{name} {address}")),
                    ("InstanceID", iid.clone()),
                    ("ResourceSubType", sub.into()),
                    ("ResourceType", kind.into()),
                ],
            )?;
            controllers.push((d.bus, iid, 0));
        }
    }
    for (i, d) in e.disks.iter().enumerate() {
        let mut fields = vec![
            ("ElementName", format!("Hard disk {}", i + 1)),
            ("HostResource", format!("ovf:/disk/vmdisk{}", i + 1)),
            ("InstanceID", next()),
            ("ResourceType", "17".into()),
        ];
        if let Some(c) = controllers.iter_mut().find(|(b, _, _)| *b == d.bus) {
            fields.push(("AddressOnParent", c.2.to_string()));
            fields.push(("Parent", c.1.clone()));
            c.2 += 1;
        }
        item(w, &fields)?;
    }
    for (i, n) in e.nics.iter().enumerate() {
        let mut fields = vec![
            ("AutomaticAllocation", "true".into()),
            ("Connection", n.network.clone()),
            ("ElementName", format!("Network adapter {}", i + 1)),
            ("InstanceID", next()),
            ("ResourceSubType", "virtio-net".into()),
            ("ResourceType", "10".into()),
        ];
        if let Some(m) = &n.mac {
            fields.push(("Address", m.clone()));
        }
        item(w, &fields)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_descriptor_reads_back_the_same() {
        let e = Export {
            name: "web <1> & co".into(),
            cpus: 2,
            memory: 384 << 20,
            disks: vec![
                ExportDisk {
                    href: "web-disk1.vmdk".into(),
                    file_size: 65536,
                    capacity: 1 << 30,
                    bus: Bus::Virtio,
                },
                ExportDisk {
                    href: "web-disk2.vmdk".into(),
                    file_size: 512,
                    capacity: 8 << 20,
                    bus: Bus::Ide,
                },
                ExportDisk {
                    href: "web-disk3.vmdk".into(),
                    file_size: 512,
                    capacity: 16 << 20,
                    bus: Bus::Virtio,
                },
                ExportDisk {
                    href: "web-disk4.vmdk".into(),
                    file_size: 512,
                    capacity: 4 << 20,
                    bus: Bus::Scsi,
                },
            ],
            nics: vec![
                ExportNic { network: "lan".into(), mac: Some("52:54:00:12:34:56".into()) },
                ExportNic { network: "dmz".into(), mac: None },
            ],
        };
        let text = write(&e);
        let a = crate::parse(&text).unwrap_or_else(|err| panic!("{err}\n{text}"));
        assert_eq!(a.name, e.name);
        assert_eq!((a.cpus, a.memory), (2, 384 << 20));
        // Read back in the VM's order, each on its bus with its unit there.
        let disks: Vec<(&str, u64, Bus, u32)> = a
            .disks
            .iter()
            .map(|d| (d.file.as_ref().unwrap().href.as_str(), d.capacity, d.bus, d.unit))
            .collect();
        assert_eq!(
            disks,
            [
                ("web-disk1.vmdk", 1 << 30, Bus::Virtio, 0),
                ("web-disk2.vmdk", 8 << 20, Bus::Ide, 0),
                ("web-disk3.vmdk", 16 << 20, Bus::Virtio, 1),
                ("web-disk4.vmdk", 4 << 20, Bus::Scsi, 0),
            ]
        );
        assert!(a.disks.iter().all(|d| d.format == STREAM_OPTIMIZED));
        let nics: Vec<(&str, Option<&str>)> =
            a.nics.iter().map(|n| (n.network.as_str(), n.mac.as_deref())).collect();
        assert_eq!(nics, [("lan", Some("52:54:00:12:34:56")), ("dmz", None)]);
        assert_eq!(a.networks, ["dmz", "lan"]);
        assert!(a.unmapped.is_empty(), "{:?}", a.unmapped);
    }
}
