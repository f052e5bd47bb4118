//! [`Burner`]: other programs keeping every core busy, so a test can show that what it measures
//! holds on a loaded machine and not only on an idle one.

use std::process::{Child, Command, Stdio};

/// Busy-looping `sh` processes, killed and reaped when dropped.
pub struct Burner {
    children: Vec<Child>,
}

impl Burner {
    /// One busy process pinned to each core (with `taskset`), so no core is left idle whatever
    /// the scheduler would prefer.
    pub fn every_core() -> std::io::Result<Burner> {
        let n = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let mut b = Burner { children: Vec::with_capacity(n) };
        for cpu in 0..n {
            let child = Command::new("taskset")
                .args(["-c", &cpu.to_string(), "sh", "-c", "while :; do :; done"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            b.children.push(child);
        }
        Ok(b)
    }
}

impl Drop for Burner {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
