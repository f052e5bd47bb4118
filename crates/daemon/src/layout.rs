//! Where things live under the data directory:
//!
//! ```text
//! <data>/vine.db                    the state store (SQLite)
//! <data>/vms/<name>/<name>.vm.toml  the VM's definition (the file external tools read and edit)
//! <data>/vms/<name>/qemu.log        QEMU's own output
//! <data>/vms/<name>/undo/diskN.vhd  undo (differencing) disks, while undo disks are on
//! <data>/incoming/<name>.state      a saved state another host sent in a cold move, until the
//!                                   VM is registered here
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
    /// A live migration from here that has not ended yet (`crate::migrate`).
    pub outgoing: PathBuf,
    /// A live migration to here that has not ended yet.
    pub incoming: PathBuf,
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
            outgoing: dir.join("migration-out.json"),
            incoming: dir.join("migration-in.json"),
            run,
            dir,
        }
    }

    /// The undo disk of the VM's `index`th disk.
    pub fn undo_disk(&self, index: usize) -> PathBuf {
        self.undo.join(format!("disk{index}.vhd"))
    }
}

/// Where a saved state sent by another host (a cold move of VM `name`) waits.
pub fn incoming_state(data: &Path, name: &str) -> PathBuf {
    data.join("incoming").join(format!("{name}.state"))
}

/// Directory of disk-server sockets and logs.
pub fn disks_dir(data: &Path) -> PathBuf {
    data.join("disks")
}

/// The store's database file.
pub fn database(data: &Path) -> PathBuf {
    data.join("vine.db")
}

/// Makes a VM's QEMU directory, the emulator user's alone (sockets, console log, saved state),
/// inside the VM's directory, which it may cross but not list.
pub(crate) fn run_dir(paths: &VmPaths, emulator: &sandbox::User) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let run = &paths.run;
    std::fs::create_dir_all(run).map_err(|e| format!("cannot create {}: {e}", run.display()))?;
    std::os::unix::fs::chown(run, Some(emulator.uid), Some(emulator.gid))
        .map_err(|e| format!("cannot give {} to {}: {e}", run.display(), emulator.name))?;
    for (dir, mode) in [(run, 0o700), (&paths.dir, 0o711)] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("cannot set the mode of {}: {e}", dir.display()))?;
    }
    Ok(())
}

/// Makes `file` (a saved state another host wrote, received here) the VM's saved state, the
/// emulator user's as if its QEMU had written it.
pub(crate) fn take_saved_state(paths: &VmPaths, emulator: &sandbox::User, file: &Path) -> Result<(), String> {
    run_dir(paths, emulator)?;
    std::fs::rename(file, &paths.state)
        .map_err(|e| format!("cannot move {} to {}: {e}", file.display(), paths.state.display()))?;
    std::os::unix::fs::chown(&paths.state, Some(emulator.uid), Some(emulator.gid))
        .map_err(|e| format!("cannot give {} to {}: {e}", paths.state.display(), emulator.name))?;
    std::fs::File::open(&paths.state)
        .and_then(|f| f.sync_all())
        .map_err(|e| format!("cannot make {} durable: {e}", paths.state.display()))
}
