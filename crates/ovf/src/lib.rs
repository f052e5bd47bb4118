//! OVF descriptors (DMTF DSP0243, the envelope of OVF 1.x and 2.x) read into what vine makes of
//! them: one virtual system's CPUs, memory, disks on their controllers, CD/DVD drives and NICs,
//! the files the disks come from, and a sentence for each piece of hardware vine does not make.
//! Also the manifest (`.mf`: one `SHA1(file)= hex` or `SHA256(file)= hex` line per file).
//!
//! The descriptor is parsed by `roxmltree` with DTDs refused (so entity expansion and external
//! entities never happen), a node limit and a size limit; every number is checked against vine's
//! bounds before use. Every error names the problem and where it is (the element and its line).
//!
//! What is read, as exporters write it (VMware's vCenter, ESXi and ovftool, VirtualBox): elements
//! are matched by their local name in the OVF envelope namespace (unprefixed or `ovf:`), the
//! settings in an `Item` (or OVF 2's `StorageItem`, `EthernetPortItem`) by their local name
//! whatever their prefix (`rasd:`, `sasd:`, `epasd:`), attributes with or without `ovf:`.
#![warn(missing_docs)]

use std::collections::BTreeMap;

use roxmltree::{Document, Node, ParsingOptions};

pub mod manifest;
pub mod write;

pub use manifest::{Digest, Manifest};
pub use write::{write, Export, ExportDisk, ExportNic};

/// The OVF envelope namespaces (1.x and 2.x).
const OVF_NS: [&str; 2] =
    ["http://schemas.dmtf.org/ovf/envelope/1", "http://schemas.dmtf.org/ovf/envelope/2"];

/// The largest descriptor read (the real ones are a few tens of KiB).
pub const MAX_DESCRIPTOR: usize = 4 << 20;
/// The most XML nodes a descriptor may have.
pub const MAX_NODES: u32 = 100_000;
/// The most vCPUs an appliance may ask for (vine's own bound).
pub const MAX_CPUS: u32 = 64;
/// The most memory an appliance may ask for, in bytes (vine's own bound: 4 TiB).
pub const MAX_MEMORY: u64 = 4 << 40;
/// The largest disk, in bytes (a VHD's limit is just under 2 TiB).
pub const MAX_DISK: u64 = 2040 << 30;
/// The most disks, CD/DVD drives or NICs of each kind.
pub const MAX_DEVICES: usize = 64;

/// What is wrong with a descriptor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OvfError {
    /// It is not XML vine reads (malformed, a DTD, too many nodes).
    #[error("the descriptor is not XML vine reads: {0}")]
    Xml(String),
    /// It is larger than [`MAX_DESCRIPTOR`].
    #[error("the descriptor is {0} bytes; vine reads descriptors of up to {MAX_DESCRIPTOR} bytes")]
    TooLarge(usize),
    /// Something required is missing.
    #[error("{what} is missing ({place})")]
    Missing {
        /// What.
        what: String,
        /// Where it was looked for.
        place: String,
    },
    /// A value vine cannot use.
    #[error("{what} {value:?} {problem} ({place})")]
    Invalid {
        /// What the value is.
        what: String,
        /// The value as written.
        value: String,
        /// What is wrong with it.
        problem: String,
        /// Where.
        place: String,
    },
}

/// A file the envelope references (`References/File`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRef {
    /// Its id (`ovf:id`).
    pub id: String,
    /// Its name, relative to the descriptor (`ovf:href`).
    pub href: String,
    /// Its size in bytes, when given.
    pub size: Option<u64>,
}

/// The bus a disk or CD/DVD drive is attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bus {
    /// IDE (ResourceType 5).
    Ide,
    /// SCSI (6), SAS included.
    Scsi,
    /// SATA (20).
    Sata,
    /// VirtIO block devices (vine exports their controller as ResourceType 6 with subtype
    /// `virtio-blk`; other readers take it for SCSI).
    Virtio,
    /// A controller vine does not know (another ResourceType); vine attaches the disk as virtio.
    Other,
}

/// A virtual disk of the appliance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskItem {
    /// The disk's id in the `DiskSection` (`ovf:diskId`).
    pub disk_id: String,
    /// The file its contents come from (none: a blank disk of `capacity`).
    pub file: Option<FileRef>,
    /// Its virtual size, in bytes.
    pub capacity: u64,
    /// Its format URL (`ovf:format`), e.g. `…vmdk.html#streamOptimized`.
    pub format: String,
    /// The controller's bus.
    pub bus: Bus,
    /// The controller's name as the exporter wrote it.
    pub controller: String,
    /// Its unit on the controller (`rasd:AddressOnParent`).
    pub unit: u32,
}

/// A NIC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicItem {
    /// The network it is connected to (`rasd:Connection`), as the appliance names it.
    pub network: String,
    /// Its MAC address, when the exporter kept one.
    pub mac: Option<String>,
    /// Its model (`rasd:ResourceSubType`, e.g. `PCNet32`, `E1000`).
    pub model: Option<String>,
}

/// One virtual system, as vine can make it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appliance {
    /// Its name (`Name`, else its `ovf:id`).
    pub name: String,
    /// Its guest OS as described (`OperatingSystemSection`: `Description`, else `vmw:osType`).
    pub os: Option<String>,
    /// vCPUs.
    pub cpus: u32,
    /// Memory, in bytes.
    pub memory: u64,
    /// Disks, in the order of their items (exporters write them in the VM's own order).
    pub disks: Vec<DiskItem>,
    /// CD/DVD drives (vine makes each an empty drive).
    pub cdroms: usize,
    /// NICs, in the order of their items.
    pub nics: Vec<NicItem>,
    /// The networks the envelope declares (`NetworkSection`).
    pub networks: Vec<String>,
    /// Every file the envelope references.
    pub files: Vec<FileRef>,
    /// What vine does not make, a sentence each (a floppy drive, a sound card, …).
    pub unmapped: Vec<String>,
}

/// Parses a descriptor.
pub fn parse(text: &str) -> Result<Appliance, OvfError> {
    if text.len() > MAX_DESCRIPTOR {
        return Err(OvfError::TooLarge(text.len()));
    }
    let opts = ParsingOptions { allow_dtd: false, nodes_limit: MAX_NODES };
    let doc = Document::parse_with_options(text, opts).map_err(|e| OvfError::Xml(e.to_string()))?;
    Reader { doc: &doc }.appliance()
}

/// A `DiskSection` disk: the file it comes from, its capacity in bytes, its format URL.
type SectionDisk = (Option<FileRef>, u64, String);

struct Reader<'a, 'input> {
    doc: &'a Document<'input>,
}

fn is_ovf(n: &Node, name: &str) -> bool {
    n.is_element()
        && n.tag_name().name() == name
        && n.tag_name().namespace().is_some_and(|ns| OVF_NS.contains(&ns))
}

/// An attribute in the OVF namespace, or without one.
fn attr<'a>(n: &Node<'a, '_>, name: &str) -> Option<&'a str> {
    n.attributes()
        .find(|a| a.name() == name && a.namespace().is_none_or(|ns| OVF_NS.contains(&ns)))
        .map(|a| a.value())
}

/// The text of the child element whose local name is `name` (any namespace), trimmed.
fn child_text<'a>(n: &Node<'a, '_>, name: &str) -> Option<&'a str> {
    n.children().find(|c| c.is_element() && c.tag_name().name() == name).and_then(|c| c.text()).map(str::trim)
}

/// A hardware item: its settings by local name, and where it is.
struct Item {
    fields: BTreeMap<String, String>,
    line: u32,
}

impl Item {
    fn get(&self, k: &str) -> Option<&str> {
        self.fields.get(k).map(String::as_str).filter(|v| !v.is_empty())
    }
    fn name(&self) -> String {
        self.get("ElementName").or(self.get("Caption")).unwrap_or("(unnamed)").to_string()
    }
    fn place(&self) -> String {
        format!("Item '{}' at line {}", self.name(), self.line)
    }
}

impl<'a, 'input> Reader<'a, 'input> {
    fn line(&self, n: &Node) -> u32 {
        self.doc.text_pos_at(n.range().start).row
    }

    fn place(&self, n: &Node, what: &str) -> String {
        format!("{what} at line {}", self.line(n))
    }

    fn appliance(&self) -> Result<Appliance, OvfError> {
        let root = self.doc.root_element();
        if !is_ovf(&root, "Envelope") {
            return Err(OvfError::Missing {
                what: "the OVF Envelope element".into(),
                place: format!(
                    "the root element is '{}' in namespace {}",
                    root.tag_name().name(),
                    root.tag_name().namespace().unwrap_or("(none)")
                ),
            });
        }
        let files = self.references(&root)?;
        let disks = self.disk_section(&root, &files)?;
        let networks: Vec<String> = root
            .children()
            .filter(|c| is_ovf(c, "NetworkSection"))
            .flat_map(|s| s.children().filter(|c| is_ovf(c, "Network")))
            .filter_map(|n| attr(&n, "name").map(str::to_string))
            .collect();
        let systems: Vec<Node> = root.descendants().filter(|n| is_ovf(n, "VirtualSystem")).collect();
        let system = match systems.as_slice() {
            [one] => *one,
            [] => {
                return Err(OvfError::Missing {
                    what: "a VirtualSystem".into(),
                    place: "the envelope describes no virtual machine".into(),
                })
            }
            many => {
                return Err(OvfError::Invalid {
                    what: "the envelope".into(),
                    value: format!("{} VirtualSystem elements", many.len()),
                    problem: "describes several virtual machines; vine imports one VM per descriptor".into(),
                    place: self.place(&many[1], "the second VirtualSystem"),
                })
            }
        };
        let name = child_text(&system, "Name")
            .filter(|n| !n.is_empty())
            .or(attr(&system, "id"))
            .ok_or_else(|| OvfError::Missing {
                what: "the virtual system's Name and ovf:id".into(),
                place: self.place(&system, "VirtualSystem"),
            })?
            .to_string();
        let os = system.children().find(|c| is_ovf(c, "OperatingSystemSection")).and_then(|s| {
            child_text(&s, "Description")
                .filter(|d| !d.is_empty())
                .map(str::to_string)
                .or_else(|| s.attributes().find(|a| a.name() == "osType").map(|a| a.value().to_string()))
        });
        let hw = system.children().find(|c| is_ovf(c, "VirtualHardwareSection")).ok_or_else(|| {
            OvfError::Missing {
                what: "the VirtualHardwareSection".into(),
                place: self.place(&system, &format!("VirtualSystem '{name}'")),
            }
        })?;
        let items: Vec<Item> = hw
            .children()
            .filter(|c| {
                c.is_element() && ["Item", "StorageItem", "EthernetPortItem"].contains(&c.tag_name().name())
            })
            .map(|c| Item {
                fields: c
                    .children()
                    .filter(|f| f.is_element())
                    .map(|f| (f.tag_name().name().to_string(), f.text().unwrap_or("").trim().to_string()))
                    .collect(),
                line: self.line(&c),
            })
            .collect();
        self.hardware(name, os, &items, disks, networks, files)
    }

    fn references(&self, root: &Node) -> Result<Vec<FileRef>, OvfError> {
        let mut files = Vec::new();
        for f in root.children().filter(|c| is_ovf(c, "References")).flat_map(|r| r.children()) {
            if !is_ovf(&f, "File") {
                continue;
            }
            let place = self.place(&f, "References/File");
            let id = attr(&f, "id")
                .ok_or_else(|| OvfError::Missing { what: "ovf:id".into(), place: place.clone() })?;
            let href = attr(&f, "href")
                .ok_or_else(|| OvfError::Missing { what: "ovf:href".into(), place: place.clone() })?;
            check_href(href, &place)?;
            let size = attr(&f, "size").map(|s| number("ovf:size", s, &place)).transpose()?;
            if files.iter().any(|x: &FileRef| x.id == id) {
                return Err(OvfError::Invalid {
                    what: "ovf:id".into(),
                    value: id.into(),
                    problem: "names two files".into(),
                    place,
                });
            }
            files.push(FileRef { id: id.into(), href: href.into(), size });
        }
        Ok(files)
    }

    /// The `DiskSection`'s disks by id: (file, capacity, format).
    fn disk_section(
        &self,
        root: &Node,
        files: &[FileRef],
    ) -> Result<BTreeMap<String, SectionDisk>, OvfError> {
        let mut out = BTreeMap::new();
        let sections =
            root.children().filter(|c| is_ovf(c, "DiskSection") || is_ovf(c, "VirtualDiskDescSection"));
        for d in sections.flat_map(|s| s.children()).filter(|c| is_ovf(c, "Disk")) {
            let place = self.place(&d, "DiskSection/Disk");
            let id = attr(&d, "diskId")
                .ok_or_else(|| OvfError::Missing { what: "ovf:diskId".into(), place: place.clone() })?;
            let cap = attr(&d, "capacity")
                .ok_or_else(|| OvfError::Missing { what: "ovf:capacity".into(), place: place.clone() })?;
            let unit = match attr(&d, "capacityAllocationUnits") {
                Some(u) => units("ovf:capacityAllocationUnits", u, &place)?,
                None => 1,
            };
            let capacity = number("ovf:capacity", cap, &place)?
                .checked_mul(unit)
                .filter(|c| *c <= MAX_DISK)
                .ok_or_else(|| OvfError::Invalid {
                    what: "ovf:capacity".into(),
                    value: cap.into(),
                    problem: format!("is more than vine's largest disk ({} GiB)", MAX_DISK >> 30),
                    place: place.clone(),
                })?;
            if capacity == 0 {
                return Err(OvfError::Invalid {
                    what: "ovf:capacity".into(),
                    value: cap.into(),
                    problem: "is zero".into(),
                    place,
                });
            }
            let file = match attr(&d, "fileRef") {
                Some(r) => {
                    Some(files.iter().find(|f| f.id == r).cloned().ok_or_else(|| OvfError::Invalid {
                        what: "ovf:fileRef".into(),
                        value: r.into(),
                        problem: "names no file of the References section".into(),
                        place: place.clone(),
                    })?)
                }
                None => None,
            };
            let format = attr(&d, "format").unwrap_or("").to_string();
            out.insert(id.to_string(), (file, capacity, format));
        }
        Ok(out)
    }

    fn hardware(
        &self,
        name: String,
        os: Option<String>,
        items: &[Item],
        disks: BTreeMap<String, SectionDisk>,
        networks: Vec<String>,
        files: Vec<FileRef>,
    ) -> Result<Appliance, OvfError> {
        let mut cpus = None;
        let mut memory = None;
        let mut unmapped = Vec::new();
        // Controllers by InstanceID: (bus, name, address).
        let mut controllers: BTreeMap<String, (Bus, String, u32)> = BTreeMap::new();
        for it in items {
            let kind = it.get("ResourceType").unwrap_or("");
            let sub = it.get("ResourceSubType").unwrap_or("").to_ascii_lowercase();
            let virtio = sub.contains("virtio") && !sub.contains("scsi");
            let bus = match kind {
                "5" => Some(Bus::Ide),
                "6" if virtio => Some(Bus::Virtio),
                "6" => Some(Bus::Scsi),
                "20" => Some(Bus::Sata),
                "7" | "8" | "9" | "12" => Some(Bus::Other),
                _ => None,
            };
            if let (Some(b), Some(id)) = (bus, it.get("InstanceID")) {
                let address = it.get("Address").and_then(|a| a.parse().ok()).unwrap_or(0);
                controllers.insert(id.to_string(), (b, it.name(), address));
            }
        }
        let mut disk_items: Vec<DiskItem> = Vec::new();
        let mut cdroms = 0;
        let mut nics = Vec::new();
        for it in items {
            let kind = it.get("ResourceType").unwrap_or("");
            match kind {
                "3" => {
                    let q = it.get("VirtualQuantity").ok_or_else(|| OvfError::Missing {
                        what: "rasd:VirtualQuantity of the CPU item".into(),
                        place: it.place(),
                    })?;
                    let n = number("rasd:VirtualQuantity", q, &it.place())?;
                    if n == 0 || n > u64::from(MAX_CPUS) {
                        return Err(OvfError::Invalid {
                            what: "the number of vCPUs".into(),
                            value: q.into(),
                            problem: format!("is not 1 to {MAX_CPUS}"),
                            place: it.place(),
                        });
                    }
                    cpus = Some(n as u32);
                }
                "4" => {
                    let q = it.get("VirtualQuantity").ok_or_else(|| OvfError::Missing {
                        what: "rasd:VirtualQuantity of the memory item".into(),
                        place: it.place(),
                    })?;
                    let unit = units(
                        "rasd:AllocationUnits",
                        it.get("AllocationUnits").unwrap_or("byte * 2^20"),
                        &it.place(),
                    )?;
                    let bytes = number("rasd:VirtualQuantity", q, &it.place())?
                        .checked_mul(unit)
                        .filter(|b| (16 << 20..=MAX_MEMORY).contains(b))
                        .ok_or_else(|| OvfError::Invalid {
                            what: "the memory size".into(),
                            value: format!("{q} × {unit} bytes"),
                            problem: format!("is not 16 MiB to {} GiB", MAX_MEMORY >> 30),
                            place: it.place(),
                        })?;
                    // vine sizes memory in whole MiB.
                    memory = Some(bytes.div_ceil(1 << 20) << 20);
                }
                "17" => {
                    let res = it.get("HostResource").ok_or_else(|| OvfError::Missing {
                        what: "rasd:HostResource of the disk".into(),
                        place: it.place(),
                    })?;
                    let id = disk_ref(res).ok_or_else(|| OvfError::Invalid {
                        what: "rasd:HostResource".into(),
                        value: res.into(),
                        problem: "is not ovf:/disk/ID".into(),
                        place: it.place(),
                    })?;
                    let (file, capacity, format) =
                        disks.get(id).cloned().ok_or_else(|| OvfError::Invalid {
                            what: "rasd:HostResource".into(),
                            value: res.into(),
                            problem: "names no disk of the DiskSection".into(),
                            place: it.place(),
                        })?;
                    let (bus, controller, _) = self.controller(it, &controllers)?;
                    let unit = it.get("AddressOnParent").and_then(|a| a.parse().ok()).unwrap_or(0);
                    disk_items.push(DiskItem {
                        disk_id: id.to_string(),
                        file,
                        capacity,
                        format,
                        bus,
                        controller,
                        unit,
                    });
                }
                "15" | "16" => cdroms += 1,
                "10" => {
                    let network = it.get("Connection").ok_or_else(|| OvfError::Missing {
                        what: "rasd:Connection (the NIC's network)".into(),
                        place: it.place(),
                    })?;
                    let mac = it.get("Address").map(str::to_string).filter(|m| is_mac(m));
                    nics.push(NicItem {
                        network: network.to_string(),
                        mac,
                        model: it.get("ResourceSubType").map(str::to_string),
                    });
                }
                "5" | "6" | "20" | "7" | "8" | "9" | "12" => {}
                "14" | "21" | "23" | "24" | "35" => {
                    let (what, why) = match kind {
                        "14" => ("floppy drive", "vine VMs have none"),
                        "21" => ("serial port", "vine gives every VM its own two serial ports"),
                        "23" => ("USB controller", "not made"),
                        "24" => ("video card", "vine gives every VM its own standard VGA"),
                        _ => ("sound card", "vine VMs have none"),
                    };
                    unmapped.push(format!("{what} '{}' (line {}): {why}", it.name(), it.line));
                }
                other => unmapped.push(format!(
                    "device '{}' (ResourceType {}{}, line {}): not made",
                    it.name(),
                    if other.is_empty() { "missing" } else { other },
                    it.get("ResourceSubType").map(|s| format!(", {s}")).unwrap_or_default(),
                    it.line
                )),
            }
        }
        let hw_place = format!("the VirtualHardwareSection of '{name}'");
        let cpus = cpus.ok_or_else(|| OvfError::Missing {
            what: "the CPU item (ResourceType 3)".into(),
            place: hw_place.clone(),
        })?;
        let memory = memory.ok_or_else(|| OvfError::Missing {
            what: "the memory item (ResourceType 4)".into(),
            place: hw_place.clone(),
        })?;
        let disks = disk_items;
        for (what, n) in [("disks", disks.len()), ("CD/DVD drives", cdroms), ("NICs", nics.len())] {
            if n > MAX_DEVICES {
                return Err(OvfError::Invalid {
                    what: format!("the number of {what}"),
                    value: n.to_string(),
                    problem: format!("is more than {MAX_DEVICES}"),
                    place: hw_place,
                });
            }
        }
        Ok(Appliance { name, os, cpus, memory, disks, cdroms, nics, networks, files, unmapped })
    }

    fn controller(
        &self,
        it: &Item,
        controllers: &BTreeMap<String, (Bus, String, u32)>,
    ) -> Result<(Bus, String, u32), OvfError> {
        match it.get("Parent") {
            Some(p) => controllers.get(p).cloned().ok_or_else(|| OvfError::Invalid {
                what: "rasd:Parent".into(),
                value: p.into(),
                problem: "names no controller item".into(),
                place: it.place(),
            }),
            None => Ok((Bus::Other, String::new(), 0)),
        }
    }
}

/// The disk id of a `HostResource` (`ovf:/disk/ID`, or `/disk/ID` as VirtualBox writes it).
fn disk_ref(res: &str) -> Option<&str> {
    let id = res.strip_prefix("ovf:").unwrap_or(res).strip_prefix("/disk/")?;
    (!id.is_empty()).then_some(id)
}

fn is_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6 && parts.iter().all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

fn number(what: &str, v: &str, place: &str) -> Result<u64, OvfError> {
    v.trim().parse::<u64>().map_err(|_| OvfError::Invalid {
        what: what.into(),
        value: v.into(),
        problem: "is not a whole number vine can hold (0 to 2^64-1)".into(),
        place: place.into(),
    })
}

/// Bytes per unit of an allocation-units string: `byte`, `byte * 2^N` (N up to 40), and the
/// names VirtualBox writes (`KiloBytes`, `MegaBytes`, `GigaBytes`, and `KB`, `MB`, `GB`, which
/// it means as powers of two).
fn units(what: &str, v: &str, place: &str) -> Result<u64, OvfError> {
    let compact: String = v.chars().filter(|c| !c.is_whitespace()).collect();
    let bad = |problem: &str| OvfError::Invalid {
        what: what.into(),
        value: v.into(),
        problem: problem.into(),
        place: place.into(),
    };
    match compact.to_ascii_lowercase().as_str() {
        "byte" | "bytes" => return Ok(1),
        "kilobytes" | "kb" => return Ok(1 << 10),
        "megabytes" | "mb" => return Ok(1 << 20),
        "gigabytes" | "gb" => return Ok(1 << 30),
        _ => {}
    }
    let exp = compact
        .strip_prefix("byte*2^")
        .ok_or_else(|| bad("is not an allocation unit vine knows (byte, byte * 2^N, MegaBytes, …)"))?;
    let n: u32 = exp.parse().map_err(|_| bad("has an exponent that is not a number"))?;
    if n > 40 {
        return Err(bad("has an exponent above 40"));
    }
    Ok(1u64 << n)
}

/// Refuses a file name that would leave the appliance's directory (absolute, `..`, a URL).
fn check_href(href: &str, place: &str) -> Result<(), OvfError> {
    let bad = |problem: &str| OvfError::Invalid {
        what: "ovf:href".into(),
        value: href.into(),
        problem: problem.into(),
        place: place.into(),
    };
    if href.is_empty() || href.contains('\0') {
        return Err(bad("is empty or holds a NUL"));
    }
    if href.contains("://") {
        return Err(bad("is a URL; vine imports only files that come with the descriptor"));
    }
    if href.starts_with('/') || href.split(['/', '\\']).any(|p| p == "..") {
        return Err(bad("leads out of the appliance's directory"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
