//! The client against a real QEMU 10 (`-machine none`, no guest): negotiation, status, stop and
//! continue with their events, an error from a bad command, quit.

use std::process::{Command, Stdio};
use std::time::Duration;

use qmp::{Client, QmpError, UnixTransport};

struct Qemu(std::process::Child);
impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn controls_a_real_qemu() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("qmp.sock");
    let mut qemu = Qemu(
        Command::new("qemu-system-x86_64")
            .args(["-machine", "none", "-nodefaults", "-display", "none", "-qmp"])
            .arg(format!("unix:{},server=on,wait=off", sock.display()))
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    for _ in 0..100 {
        if sock.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut c = Client::negotiate(UnixTransport::connect(&sock, Duration::from_secs(10)).unwrap()).unwrap();
    assert_eq!(c.version.0, 10);
    assert_eq!(c.status().unwrap(), "running");
    c.execute("stop", None).unwrap();
    assert_eq!(c.wait_event("STOP").unwrap().name, "STOP");
    assert_eq!(c.status().unwrap(), "paused");
    c.execute("cont", None).unwrap();
    c.wait_event("RESUME").unwrap();
    let err = c.execute("no-such-command", None).unwrap_err();
    assert!(matches!(err, QmpError::Command { ref class, .. } if class == "CommandNotFound"), "{err}");
    c.execute("quit", None).unwrap();
    let status = qemu.0.wait().unwrap();
    assert!(status.success(), "{status}");
}
