//! What vine's real-guest tests stand on.
//!
//! - [`Kit`]: the guest kit built by `scripts/guest-kit.sh` — a Debian kernel and a busybox
//!   initramfs whose `/init` obeys `vine.*` kernel command-line options (print a counter, burn
//!   CPU, read and write a disk, DHCP, power off on the ACPI power button).
//! - [`SerialLog`]: waits for marker lines in the file QEMU writes the guest's serial console to.
//! - [`QemuGuard`]: owns a spawned QEMU and kills it when dropped, so a failing test leaves no
//!   guest behind; [`tcg_command`] builds the plain-QEMU command line that boots the kit.
//! - [`Burner`]: busy processes on every core, for tests that must hold on a loaded machine.
//!
//! Guests run under TCG (`-accel tcg`): the tests must not depend on KVM being usable.
#![warn(missing_docs)]

mod burner;
mod kit;
mod qemu;
mod serial;

pub use burner::Burner;
pub use kit::{Kit, KitError, DEFAULT_KIT_DIR, KIT_DIR_ENV};
pub use qemu::{tcg_command, QemuError, QemuGuard};
pub use serial::{SerialError, SerialLog};
