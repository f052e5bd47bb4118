//! The VM definition file (`<name>.vm.toml`), vine's counterpart of Virtual Server's `.vmc`:
//! everything needed to start a VM, in a documented, versioned TOML format (docs/vm-definition.md)
//! that external tools may read and edit. Parsing rejects unknown fields; [`VmDefinition::validate`]
//! names the field at fault. Limits and defaults are the named constants below.
#![warn(missing_docs)]

use serde::{Deserialize, Serialize};

/// The format version this vine writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Most vCPUs per VM.
pub const MAX_CPUS: u32 = 64;
/// Least memory per VM (16 MiB).
pub const MIN_MEMORY: u64 = 16 << 20;
/// Most IDE devices (disks and CD/DVD) per VM, as on the original's IDE bus.
pub const MAX_IDE: usize = 4;
/// Most NICs per VM.
pub const MAX_NICS: usize = 8;
/// Longest VM name.
pub const MAX_NAME: usize = 63;
/// Most memory per VM (4 TiB): well past any host vine runs on, and far below the 2^63 bytes
/// a definition file (TOML integers are signed 64-bit) can hold.
pub const MAX_MEMORY: u64 = 4 << 40;
/// Most disks and CD/DVDs per VM, all buses together.
pub const MAX_DISKS: usize = 32;
/// Longest path (disk image, kernel, initrd, serial file or socket), in bytes: Linux's PATH_MAX.
pub const MAX_PATH: usize = 4096;
/// Longest kernel command line, in bytes (x86's COMMAND_LINE_SIZE).
pub const MAX_APPEND: usize = 2048;
/// Longest network name a NIC can name, in bytes.
pub const MAX_NETWORK_NAME: usize = 63;
/// Longest ACPI shutdown wait, in seconds (one day).
pub const MAX_SHUTDOWN_TIMEOUT: u32 = 86_400;
/// Highest CPU weight.
pub const MAX_CPU_WEIGHT: u32 = 10_000;

/// A VM definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmDefinition {
    /// Format version; must be [`FORMAT_VERSION`].
    pub format: u32,
    /// Name: letters, digits, `-`, `_`, `.`; starts with a letter or digit.
    pub name: String,
    /// What it is: a virtual machine (the default) or a system container.
    #[serde(default, skip_serializing_if = "Kind::is_vm")]
    pub kind: Kind,
    /// Unique id (RFC 4122 text form).
    pub uuid: String,
    /// vCPUs.
    pub cpus: u32,
    /// Memory in bytes.
    pub memory: u64,
    /// CPU controls.
    #[serde(default)]
    pub cpu: CpuControls,
    /// Disks, in bus order.
    #[serde(default, rename = "disk")]
    pub disks: Vec<Disk>,
    /// Network interfaces.
    #[serde(default, rename = "nic")]
    pub nics: Vec<Nic>,
    /// Direct kernel boot.
    #[serde(default)]
    pub kernel: Option<KernelBoot>,
    /// The two serial ports.
    #[serde(default)]
    pub serial: [SerialPort; 2],
    /// The device behind the serial port set to `console` (vine's console log and live
    /// console): a 16550 UART (the default) or a virtio console.
    #[serde(default, skip_serializing_if = "ConsoleDevice::is_uart")]
    pub console: ConsoleDevice,
    /// Boot order, e.g. `["disk", "cdrom", "network"]`.
    #[serde(default = "default_boot")]
    pub boot: Vec<BootDevice>,
    /// Write every disk's changes to undo (differencing) children, committed or discarded at
    /// the end of the session.
    #[serde(default)]
    pub undo_disks: bool,
    /// Seconds a guest gets to shut down through ACPI before it is reported as not responding.
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout: u32,
    /// What the daemon does with this VM when the host stops and starts.
    #[serde(default)]
    pub host: HostActions,
    /// Anti-affinity group: in a pool of hosts, no two VMs of one group are placed or moved onto
    /// the same host (letters, digits, `-`, `_`, `.`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// A memory balloon (virtio-balloon): the running guest's memory can be shrunk and grown
    /// back, up to `memory`, without a restart (`vine vm set NAME --balloon SIZE`). On unless
    /// set to false.
    #[serde(default = "default_balloon", skip_serializing_if = "is_default_balloon")]
    pub balloon: bool,
    /// High availability: in a pool of hosts, when the host running this VM dies, the pool's
    /// coordinator starts it again on another host (`vine vm set NAME --ha on`). Only for a VM
    /// whose disks are all volumes of shared storage pools.
    #[serde(default, skip_serializing_if = "is_false")]
    pub ha: bool,
    /// First-boot configuration for cloud-init's NoCloud data source: vine builds a seed (a
    /// CD/DVD labelled `cidata`) from it at every start (docs/provisioning.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_init: Option<CloudInit>,
    /// A container's own settings (only with `kind = "container"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Container>,
}

/// The two kinds of virtual node vine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A virtual machine (QEMU).
    #[default]
    Vm,
    /// A system container (LXC): its own root file system, host name, processes and users on
    /// the host's kernel.
    Container,
}

impl Kind {
    /// Whether this is a VM.
    pub fn is_vm(&self) -> bool {
        *self == Kind::Vm
    }

    /// The name used in messages and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Vm => "vm",
            Kind::Container => "container",
        }
    }
}

/// Most arguments of a container's init.
pub const MAX_INIT_ARGS: usize = 16;
/// Ids each container has (0–65535 inside, mapped onto as many host ids from `id_base`).
pub const CONTAINER_IDS: u32 = 65_536;

/// A container's settings: where its root came from, the host ids its ids map onto, and how
/// its init runs and stops. Its root file system is `rootfs/` in its directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Container {
    /// The image (`POOL/NAME`, a root file system tarball) its root was made from.
    pub image: String,
    /// The host id its root (id 0) maps to; ids 0–65535 map onto `id_base` and up. vine gives
    /// each container of a host a range of its own.
    pub id_base: u32,
    /// Its init with arguments.
    #[serde(default = "default_init")]
    pub init: Vec<String>,
    /// The signal that asks its init to power off (`SIGRTMIN+3` for systemd, `SIGUSR2` for
    /// busybox, `SIGPWR` for sysvinit).
    #[serde(default = "default_halt_signal")]
    pub halt_signal: String,
}

fn default_init() -> Vec<String> {
    vec!["/sbin/init".into()]
}

fn default_halt_signal() -> String {
    "SIGPWR".into()
}

impl Container {
    /// A container made from `image` with ids from `id_base`.
    pub fn new(image: &str, id_base: u32, halt_signal: &str) -> Container {
        Container { image: image.into(), id_base, init: default_init(), halt_signal: halt_signal.into() }
    }

    /// Checks every field; the error names the first one at fault.
    pub fn validate(&self) -> Result<(), DefinitionError> {
        if volume_ref(&self.image).is_none() {
            return Err(bad("container.image", format!("{:?} is not a volume POOL/NAME", clip(&self.image))));
        }
        if self.id_base < CONTAINER_IDS || self.id_base.checked_add(CONTAINER_IDS).is_none() {
            return Err(bad(
                "container.id_base",
                format!(
                    "{} would map the container's root onto a host user or past the last id",
                    self.id_base
                ),
            ));
        }
        if self.init.is_empty() || self.init.len() > MAX_INIT_ARGS {
            return Err(bad(
                "container.init",
                format!("needs 1 to {MAX_INIT_ARGS} words, got {}", self.init.len()),
            ));
        }
        if !self.init[0].starts_with('/') {
            return Err(bad("container.init", format!("{:?} is not an absolute path", clip(&self.init[0]))));
        }
        for (i, w) in self.init.iter().enumerate() {
            if w.is_empty() || w.len() > MAX_PATH || w.contains(['\n', '\r', '\0', ' ']) {
                return Err(bad(
                    format!("container.init[{i}]"),
                    "must be 1 to 4096 bytes without spaces, line breaks or NUL",
                ));
            }
        }
        let sig = self.halt_signal.as_str();
        let sig_ok = sig.len() <= 16
            && sig.starts_with("SIG")
            && sig.len() > 3
            && sig[3..].chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '+' || c == '-');
        if !sig_ok {
            return Err(bad(
                "container.halt_signal",
                format!("{:?} is not a signal name like SIGPWR", clip(sig)),
            ));
        }
        Ok(())
    }
}

/// Longest cloud-init user-data or network-config vine keeps (bytes).
pub const MAX_CLOUD_INIT_DATA: usize = 256 << 10;
/// Most SSH keys in one VM's cloud-init data.
pub const MAX_SSH_KEYS: usize = 64;
/// Longest SSH public key line (bytes).
pub const MAX_SSH_KEY: usize = 16 << 10;

/// A VM's cloud-init data (NoCloud): what goes into its seed's `meta-data`, `user-data` and
/// `network-config`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CloudInit {
    /// The guest's host name (`local-hostname`; default: the VM's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// SSH public keys for the image's default user (`public-keys`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ssh_keys: Vec<String>,
    /// `user-data`, verbatim (`#cloud-config …`, a script, a MIME multipart). Default: an empty
    /// `#cloud-config`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
    /// `network-config` (version 1 or 2), verbatim. Default: version 2, DHCP on each NIC, matched
    /// by its MAC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_config: Option<String>,
}

impl CloudInit {
    /// Checks every field; the error names the first one at fault.
    pub fn validate(&self) -> Result<(), DefinitionError> {
        if let Some(h) = &self.hostname {
            let label_ok = |l: &str| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            };
            if h.len() > 253 || !h.split('.').all(label_ok) {
                return Err(bad(
                    "cloud_init.hostname",
                    format!(
                        "{:?} is not a host name (labels of letters, digits and '-', joined by '.')",
                        clip(h)
                    ),
                ));
            }
        }
        if self.ssh_keys.len() > MAX_SSH_KEYS {
            return Err(bad(
                "cloud_init.ssh_keys",
                format!("{} keys; at most {MAX_SSH_KEYS}", self.ssh_keys.len()),
            ));
        }
        for (i, k) in self.ssh_keys.iter().enumerate() {
            let kind = k.split_whitespace().next().unwrap_or("");
            let known = kind.starts_with("ssh-") || kind.starts_with("ecdsa-") || kind.starts_with("sk-");
            if !known
                || k.split_whitespace().count() < 2
                || k.len() > MAX_SSH_KEY
                || k.contains(['\n', '\r', '\0'])
            {
                return Err(bad(
                    format!("cloud_init.ssh_keys[{i}]"),
                    format!("{:?} is not one SSH public key line (TYPE BASE64 [COMMENT])", clip(k)),
                ));
            }
        }
        for (field, text) in [("user_data", &self.user_data), ("network_config", &self.network_config)] {
            if let Some(t) = text {
                if t.len() > MAX_CLOUD_INIT_DATA || t.contains('\0') {
                    return Err(bad(
                        format!("cloud_init.{field}"),
                        format!("must be at most {MAX_CLOUD_INIT_DATA} bytes with no NUL, got {}", t.len()),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn default_balloon() -> bool {
    true
}

fn is_default_balloon(b: &bool) -> bool {
    *b
}

/// The default actions on host stop and start (Virtual Server's automatic stop and start).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostActions {
    /// When the daemon stops for a host shutdown.
    #[serde(default)]
    pub on_stop: StopAction,
    /// When the daemon starts.
    #[serde(default)]
    pub on_start: StartAction,
}

/// What happens to a running VM when the host stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StopAction {
    /// Leave it running (its processes outlive the daemon).
    #[default]
    Keep,
    /// Save its state.
    Save,
    /// Shut the guest down through ACPI (turned off if it does not within its timeout).
    Shutdown,
    /// Turn it off.
    Off,
}

/// What happens to a VM when the daemon starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartAction {
    /// Nothing (a VM still running is found again).
    #[default]
    Nothing,
    /// Start it: restore it when it has a saved state, else boot it when it is off or crashed.
    Start,
}

fn default_boot() -> Vec<BootDevice> {
    vec![BootDevice::Disk, BootDevice::Cdrom]
}
fn default_shutdown_timeout() -> u32 {
    60
}

/// CPU weight, reservation and cap (see the `cgroups` crate for their meaning).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuControls {
    /// Relative weight 1–10000.
    pub weight: u32,
    /// Guaranteed minimum, % of one host CPU.
    pub reserve: u32,
    /// Cap, % of one host CPU (absent = none).
    pub max: Option<u32>,
}

impl Default for CpuControls {
    fn default() -> Self {
        Self { weight: 100, reserve: 0, max: None }
    }
}

/// The bus a disk sits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bus {
    /// IDE (at most 4 devices, CD/DVD included).
    Ide,
    /// virtio-blk.
    Virtio,
    /// virtio-scsi.
    Scsi,
}

/// A disk or CD/DVD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    /// Image path (VHD, or ISO for a CD/DVD).
    pub path: String,
    /// Bus.
    #[serde(default = "default_bus")]
    pub bus: Bus,
    /// A CD/DVD (read-only ISO).
    #[serde(default)]
    pub cdrom: bool,
    /// Shared with another VM on this host (guest clustering).
    #[serde(default)]
    pub shared: bool,
    /// Read-only.
    #[serde(default)]
    pub read_only: bool,
}

fn default_bus() -> Bus {
    Bus::Virtio
}

/// A network interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nic {
    /// The virtual network.
    pub network: String,
    /// MAC address, `xx:xx:xx:xx:xx:xx` (allocated by vine when absent).
    #[serde(default)]
    pub mac: Option<String>,
}

/// Direct kernel boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelBoot {
    /// Kernel image.
    pub kernel: String,
    /// Initial ramdisk.
    #[serde(default)]
    pub initrd: Option<String>,
    /// Kernel command line.
    #[serde(default)]
    pub append: String,
}

/// Where a serial port goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "to", rename_all = "lowercase", deny_unknown_fields)]
pub enum SerialPort {
    /// Not connected.
    #[default]
    None,
    /// Appended to a file.
    File {
        /// The file.
        path: String,
    },
    /// A Unix socket (a pipe to another program).
    Socket {
        /// The socket path.
        path: String,
    },
    /// vine's console log and live console.
    Console,
}

/// The device vine's console is on in the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ConsoleDevice {
    /// The serial port itself, a 16550 UART (Linux: `ttyS0` for the first port). Every guest
    /// has a driver for it; QEMU hands its output on a byte at a time, well under 1 MiB/s
    /// without KVM.
    #[default]
    Uart,
    /// A virtio console (Linux: `hvc0`, driver `virtio_console`) on a virtio-serial bus; the
    /// serial port stays in the machine, unconnected. Output goes out a page at a time.
    Virtio,
}

impl ConsoleDevice {
    /// Whether this is the default, the UART.
    pub fn is_uart(&self) -> bool {
        *self == ConsoleDevice::Uart
    }
}

/// Boot devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BootDevice {
    /// The first disk.
    Disk,
    /// The first CD/DVD.
    Cdrom,
    /// PXE from the first NIC.
    Network,
}

/// What is wrong with a definition; names the file's field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DefinitionError {
    /// TOML syntax, a wrong type or an unknown field (the parser's message has line and column).
    #[error("{0}")]
    Parse(String),
    /// A field holds a value that is not allowed.
    #[error("field `{field}`: {problem}")]
    Field {
        /// The field, e.g. `disk[2].path`.
        field: String,
        /// What is wrong.
        problem: String,
    },
}

fn bad(field: impl Into<String>, problem: impl Into<String>) -> DefinitionError {
    DefinitionError::Field { field: field.into(), problem: problem.into() }
}

/// Checks a VM name.
pub fn validate_name(name: &str) -> Result<(), DefinitionError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(bad("name", format!("must be 1 to {MAX_NAME} characters, got {}", name.len())));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) || !name.chars().all(ok_char) {
        return Err(bad("name", format!("{name:?} may hold only letters, digits, '-', '_' and '.', and must start with a letter or digit")));
    }
    Ok(())
}

/// Longest storage pool or volume name.
pub const MAX_VOLUME_NAME: usize = 128;

/// Whether `name` may name a storage pool or a volume: 1 to [`MAX_VOLUME_NAME`] letters, digits,
/// `-`, `_`, `.`, starting with a letter or digit (so never `.` or `..`, never a path).
pub fn is_volume_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_VOLUME_NAME
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// The pool and volume a `POOL/NAME` reference names, or `None` when `s` is not one (an absolute
/// path is a host path; anything else is malformed).
pub fn volume_ref(s: &str) -> Option<(&str, &str)> {
    let (pool, name) = s.split_once('/')?;
    (is_volume_name(pool) && is_volume_name(name)).then_some((pool, name))
}

/// A path field: a volume (`POOL/NAME`) or an absolute host path of at most [`MAX_PATH`] bytes
/// with no NUL (which no system call takes).
fn validate_path(field: &str, path: &str) -> Result<(), DefinitionError> {
    if path.is_empty() {
        return Err(bad(field, "is empty"));
    }
    if path.len() > MAX_PATH || path.contains('\0') {
        return Err(bad(field, format!("must be at most {MAX_PATH} bytes with no NUL, got {}", path.len())));
    }
    if !path.starts_with('/') && volume_ref(path).is_none() {
        return Err(bad(
            field,
            format!(
                "{:?} is neither a volume (POOL/NAME: letters, digits, '-', '_', '.') nor an absolute path",
                clip(path)
            ),
        ));
    }
    Ok(())
}

/// At most the first 64 characters of a value someone sent, for an error message (a huge value
/// is not echoed back whole).
pub fn clip(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

fn validate_mac(field: &str, mac: &str) -> Result<(), DefinitionError> {
    let parts: Vec<&str> = mac.split(':').collect();
    let hex = parts.len() == 6 && parts.iter().all(|p| p.len() == 2 && u8::from_str_radix(p, 16).is_ok());
    if !hex {
        return Err(bad(field, format!("{mac:?} is not a MAC address like 52:54:00:12:34:56")));
    }
    let first = u8::from_str_radix(parts[0], 16).expect("checked");
    if first & 1 == 1 {
        return Err(bad(field, format!("{mac} is a multicast address; a NIC needs a unicast one")));
    }
    Ok(())
}

impl VmDefinition {
    /// A definition with defaults for `name`.
    pub fn new(name: &str, cpus: u32, memory: u64) -> Self {
        Self {
            format: FORMAT_VERSION,
            name: name.into(),
            uuid: new_uuid(),
            cpus,
            memory,
            cpu: CpuControls::default(),
            disks: Vec::new(),
            nics: Vec::new(),
            kernel: None,
            serial: [SerialPort::Console, SerialPort::None],
            console: ConsoleDevice::Uart,
            boot: default_boot(),
            undo_disks: false,
            shutdown_timeout: default_shutdown_timeout(),
            host: HostActions::default(),
            group: None,
            balloon: default_balloon(),
            ha: false,
            cloud_init: None,
            kind: Kind::Vm,
            container: None,
        }
    }

    /// A container's definition with defaults for `name`.
    pub fn new_container(name: &str, cpus: u32, memory: u64, container: Container) -> Self {
        Self {
            kind: Kind::Container,
            container: Some(container),
            serial: [SerialPort::None, SerialPort::None],
            balloon: false,
            ..Self::new(name, cpus, memory)
        }
    }

    /// Whether this is a container.
    pub fn is_container(&self) -> bool {
        self.kind == Kind::Container
    }

    /// Parses and validates a definition file's text.
    pub fn parse(text: &str) -> Result<Self, DefinitionError> {
        let d: VmDefinition =
            toml::from_str(text).map_err(|e| DefinitionError::Parse(e.to_string().trim_end().to_string()))?;
        d.validate()?;
        Ok(d)
    }

    /// The file's text. A definition that passed [`VmDefinition::validate`] always has one; one
    /// that did not may not (a number past what TOML holds), and that is an error, not a panic.
    pub fn to_toml(&self) -> Result<String, DefinitionError> {
        self.validate()?;
        toml::to_string_pretty(self).map_err(|e| DefinitionError::Parse(format!("cannot write as TOML: {e}")))
    }

    /// Checks every field; the error names the first one at fault.
    pub fn validate(&self) -> Result<(), DefinitionError> {
        if self.format != FORMAT_VERSION {
            return Err(bad(
                "format",
                format!(
                    "version {} is not supported (this vine reads version {FORMAT_VERSION})",
                    self.format
                ),
            ));
        }
        validate_name(&self.name)?;
        if let Some(g) = &self.group {
            if !is_volume_name(g) || g.len() > MAX_NAME {
                return Err(bad(
                    "group",
                    format!("{g:?}: use 1 to {MAX_NAME} letters, digits, '-', '_' or '.', starting with a letter or digit"),
                ));
            }
        }
        let u = self.uuid.as_bytes();
        let uuid_ok = u.len() == 36
            && u.iter().enumerate().all(|(i, &c)| {
                if [8, 13, 18, 23].contains(&i) {
                    c == b'-'
                } else {
                    c.is_ascii_hexdigit()
                }
            });
        if !uuid_ok {
            return Err(bad(
                "uuid",
                format!("{:?} is not a UUID like 0f8fad5b-d9cb-469f-a165-70867728950e", self.uuid),
            ));
        }
        if self.cpus == 0 || self.cpus > MAX_CPUS {
            return Err(bad("cpus", format!("must be 1 to {MAX_CPUS}, got {}", self.cpus)));
        }
        if self.memory < MIN_MEMORY || self.memory > MAX_MEMORY || !self.memory.is_multiple_of(1 << 20) {
            return Err(bad(
                "memory",
                format!(
                    "must be a whole number of MiB from 16 MiB to {} GiB, got {} bytes",
                    MAX_MEMORY >> 30,
                    self.memory
                ),
            ));
        }
        if !(1..=MAX_CPU_WEIGHT).contains(&self.cpu.weight) {
            return Err(bad("cpu.weight", format!("must be 1 to {MAX_CPU_WEIGHT}, got {}", self.cpu.weight)));
        }
        if self.cpu.reserve > self.cpus * 100 {
            return Err(bad(
                "cpu.reserve",
                format!("{}% is more than {} vCPU(s) can use", self.cpu.reserve, self.cpus),
            ));
        }
        if let Some(max) = self.cpu.max {
            if max == 0 || max < self.cpu.reserve {
                return Err(bad(
                    "cpu.max",
                    format!("{max}% must be at least 1% and not below cpu.reserve ({}%)", self.cpu.reserve),
                ));
            }
            if max > self.cpus * 100 {
                return Err(bad("cpu.max", format!("{max}% is more than {} vCPU(s) can use", self.cpus)));
            }
        }
        if self.shutdown_timeout > MAX_SHUTDOWN_TIMEOUT {
            return Err(bad(
                "shutdown_timeout",
                format!("must be at most {MAX_SHUTDOWN_TIMEOUT} seconds, got {}", self.shutdown_timeout),
            ));
        }
        if self.boot.len() > 3 || (1..self.boot.len()).any(|i| self.boot[..i].contains(&self.boot[i])) {
            return Err(bad("boot", "names each of disk, cdrom and network at most once"));
        }
        if self.disks.len() > MAX_DISKS {
            return Err(bad("disk", format!("{} disks; at most {MAX_DISKS}", self.disks.len())));
        }
        let ide = self.disks.iter().filter(|d| d.bus == Bus::Ide).count();
        if ide > MAX_IDE {
            return Err(bad("disk", format!("{ide} IDE devices; the IDE bus holds at most {MAX_IDE}")));
        }
        for (i, d) in self.disks.iter().enumerate() {
            validate_path(&format!("disk[{i}].path"), &d.path)?;
            if d.cdrom && d.bus != Bus::Ide && d.bus != Bus::Scsi {
                return Err(bad(format!("disk[{i}].bus"), "a CD/DVD sits on the ide or scsi bus"));
            }
        }
        if self.nics.len() > MAX_NICS {
            return Err(bad("nic", format!("{} NICs; at most {MAX_NICS}", self.nics.len())));
        }
        for (i, n) in self.nics.iter().enumerate() {
            if n.network.is_empty() || n.network.len() > MAX_NETWORK_NAME {
                return Err(bad(
                    format!("nic[{i}].network"),
                    format!("must be 1 to {MAX_NETWORK_NAME} bytes, got {}", n.network.len()),
                ));
            }
            if let Some(mac) = &n.mac {
                validate_mac(&format!("nic[{i}].mac"), mac)?;
            }
        }
        if let Some(k) = &self.kernel {
            validate_path("kernel.kernel", &k.kernel)?;
            if let Some(initrd) = &k.initrd {
                validate_path("kernel.initrd", initrd)?;
            }
            if k.append.len() > MAX_APPEND || k.append.contains('\0') {
                return Err(bad(
                    "kernel.append",
                    format!("must be at most {MAX_APPEND} bytes with no NUL, got {}", k.append.len()),
                ));
            }
        }
        for (i, s) in self.serial.iter().enumerate() {
            if let SerialPort::File { path } | SerialPort::Socket { path } = s {
                validate_path(&format!("serial[{i}].path"), path)?;
                if !path.starts_with('/') {
                    return Err(bad(format!("serial[{i}].path"), "must be an absolute path"));
                }
            }
        }
        if let Some(c) = &self.cloud_init {
            c.validate()?;
            // The seed is one more CD/DVD on the IDE bus.
            if ide >= MAX_IDE {
                return Err(bad(
                    "cloud_init",
                    format!("the seed needs an IDE slot; {ide} of {MAX_IDE} are taken"),
                ));
            }
        }
        if self.kind == Kind::Container {
            let Some(c) = &self.container else {
                return Err(bad("container", "a container needs its [container] settings (image, id_base)"));
            };
            c.validate()?;
            let vm_only = [
                ("disk", !self.disks.is_empty()),
                ("kernel", self.kernel.is_some()),
                ("cloud_init", self.cloud_init.is_some()),
                ("ha", self.ha),
                ("undo_disks", self.undo_disks),
                ("console", !self.console.is_uart()),
            ];
            if let Some((field, _)) = vm_only.iter().find(|(_, set)| *set) {
                return Err(bad(*field, "is a VM's setting; a container has its root file system instead"));
            }
            return Ok(());
        }
        if self.container.is_some() {
            return Err(bad("container", "only a container (kind = \"container\") has these settings"));
        }
        if self.disks.is_empty() && self.kernel.is_none() && !self.boot.contains(&BootDevice::Network) {
            return Err(bad("disk", "a VM needs a disk, a CD/DVD, a kernel to boot or network boot"));
        }
        Ok(())
    }
}

/// A new random (version 4) UUID in text form.
pub fn new_uuid() -> String {
    uuid::Uuid::new_v4().hyphenated().to_string()
}

#[cfg(test)]
mod tests;
