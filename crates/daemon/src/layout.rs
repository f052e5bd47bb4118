//! Where things live under the data directory:
//!
//! ```text
//! <data>/vine.db                    the state store (SQLite)
//! <data>/vms/<name>/<name>.vm.toml  the VM's definition (the file external tools read and edit)
//! <data>/vms/<name>/qemu.log        QEMU's own output
//! <data>/vms/<name>/undo/diskN.vhd  undo (differencing) disks, while undo disks are on
//! <data>/vms/<name>/run/            QEMU's own directory, owned by the emulator user (0700):
//!     console.log                   what the first serial port wrote
//!     console.sock                  keystrokes for the first serial port (the web console's)
//!     console-feed.sock             the console logger's socket QEMU's serial ports connect to
//!     vnc.sock                      the graphical console (VNC)
//!     qmp.sock                      QEMU's QMP socket
//!     state.bin                     the saved state (memory and devices), while saved
//! <data>/disks/<id>.sock, .log      the NBD server of one disk image (the socket the emulator
//!                                   user's)
//! ```
//!
//! QEMU runs as the unprivileged emulator user and may write only `run/`: the definition, the
//! undo disks and everything else stay root's, so an escaped guest cannot rewrite its VM.

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
    /// Where viewers send keystrokes (the console logger's socket).
    pub console_socket: PathBuf,
    /// The console logger's socket QEMU's serial ports connect to.
    pub console_feed: PathBuf,
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
    /// QEMU's directory (sockets, console log, saved state), the emulator user's.
    pub run: PathBuf,
}

impl VmPaths {
    /// The paths of VM `name` under `data`.
    pub fn new(data: &Path, name: &str) -> VmPaths {
        let dir = data.join("vms").join(name);
        let run = dir.join("run");
        VmPaths {
            definition: dir.join(format!("{name}.vm.toml")),
            console: run.join("console.log"),
            console_socket: run.join("console.sock"),
            console_feed: run.join("console-feed.sock"),
            vnc: run.join("vnc.sock"),
            qemu_log: dir.join("qemu.log"),
            qmp: run.join("qmp.sock"),
            state: run.join("state.bin"),
            undo: dir.join("undo"),
            run,
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
