//! Where things live under the data directory:
//!
//! ```text
//! <data>/vine.db                    the state store (SQLite)
//! <data>/vms/<name>/<name>.vm.toml  the VM's definition (the file external tools read and edit)
//! <data>/vms/<name>/console.log     what the first serial port wrote
//! <data>/vms/<name>/console.sock    the first serial port, live (the web console attaches here)
//! <data>/vms/<name>/vnc.sock        the graphical console (VNC)
//! <data>/vms/<name>/qemu.log        QEMU's own output
//! <data>/vms/<name>/qmp.sock        QEMU's QMP socket
//! <data>/vms/<name>/state.bin       the saved state (memory and devices), while saved
//! <data>/vms/<name>/undo/diskN.vhd  undo (differencing) disks, while undo disks are on
//! <data>/disks/<id>.sock, .log      the NBD server of one disk image
//! ```

use std::path::{Path, PathBuf};

/// Paths of one VM.
#[derive(Debug, Clone)]
pub struct VmPaths {
    /// The VM's directory.
    pub dir: PathBuf,
    /// The definition file.
    pub definition: PathBuf,
    /// Serial console log.
    pub console: PathBuf,
    /// The live serial console (QEMU's socket chardev, logging to `console`).
    pub console_socket: PathBuf,
    /// The VNC server's socket.
    pub vnc: PathBuf,
    /// QEMU's stdout/stderr.
    pub qemu_log: PathBuf,
    /// QMP socket.
    pub qmp: PathBuf,
    /// Saved state.
    pub state: PathBuf,
    /// Undo disks directory.
    pub undo: PathBuf,
}

impl VmPaths {
    /// The paths of VM `name` under `data`.
    pub fn new(data: &Path, name: &str) -> VmPaths {
        let dir = data.join("vms").join(name);
        VmPaths {
            definition: dir.join(format!("{name}.vm.toml")),
            console: dir.join("console.log"),
            console_socket: dir.join("console.sock"),
            vnc: dir.join("vnc.sock"),
            qemu_log: dir.join("qemu.log"),
            qmp: dir.join("qmp.sock"),
            state: dir.join("state.bin"),
            undo: dir.join("undo"),
            dir,
        }
    }

    /// The undo disk of the VM's `index`th disk.
    pub fn undo_disk(&self, index: usize) -> PathBuf {
        self.undo.join(format!("disk{index}.vhd"))
    }
}

/// Directory of disk-server sockets and logs.
pub fn disks_dir(data: &Path) -> PathBuf {
    data.join("disks")
}

/// The store's database file.
pub fn database(data: &Path) -> PathBuf {
    data.join("vine.db")
}
