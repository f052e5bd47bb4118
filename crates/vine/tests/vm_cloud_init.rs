//! cloud-init, for real: a Debian bookworm cloud guest built from Debian's packages
//! (`scripts/cloud-image.sh`, cached) becomes a template; a VM made from it with `--hostname`, an
//! SSH key and user-data whose `runcmd` prints a marker boots under TCG, and its own cloud-init
//! consumes vine's NoCloud seed:
//!
//! - on the serial console cloud-init reports that it finished, the marker appears, the host
//!   name is the one given, and the key is in the default user's `authorized_keys`;
//! - a second boot with the same data runs no first-boot step again (no new marker);
//! - changed data (a new host name) gives a new instance id, and the next boot runs them again.

mod vmhost;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use test_infra::SerialLog;
use vmhost::VmHost;

/// A systemd guest under TCG on a loaded 2-core machine: boot to cloud-init's end.
const CLOUD_BOOT: Duration = Duration::from_secs(420);

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ3aV2gv0dPz1dcbVHk6nFvq7YlK5dNq0bQ0pJ1vY8mF vine-test@host";

/// The cached cloud image (built on first use).
fn cloud_image() -> std::path::PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/cloud-image.sh");
    let out = Command::new("bash").arg(&script).output().unwrap();
    assert!(
        out.status.success(),
        "{}: {}\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let path = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().trim().to_string();
    assert!(Path::new(&path).is_file(), "the script named no image: {path:?}");
    path.into()
}

/// Lines of the console log holding `what`.
fn count(log: &SerialLog, what: &str) -> usize {
    log.contents().unwrap().lines().filter(|l| l.contains(what)).count()
}

/// Waits for the `n`th line holding `what`.
fn wait_nth(h: &VmHost, log: &SerialLog, what: &str, n: usize) {
    let start = std::time::Instant::now();
    while count(log, what) < n {
        if start.elapsed() > CLOUD_BOOT {
            panic!(
                "no {n}th {what:?} within {CLOUD_BOOT:?}\n--- console ---\n{}\n--- daemon ---\n{}",
                log.contents().unwrap(),
                h.daemon_log()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn a_debian_cloud_guest_is_configured_once_per_instance() {
    let image = cloud_image();
    let h = VmHost::start();
    let pool = h.dir.path().join("p1");
    h.ok(&["pool", "create", "p1", "--path", pool.to_str().unwrap()]);
    let out =
        Command::new("cp").arg("--sparse=always").arg(&image).arg(pool.join("debian.vhd")).output().unwrap();
    assert!(out.status.success(), "{}", vmhost::text(&out));
    h.ok(&["network", "create", "n1", "--kind", "internal", "--subnet", "10.233.94.0/24"]);
    h.ok(&[
        "template",
        "create",
        "debian",
        "--from-volume",
        "p1/debian.vhd",
        "--cpus",
        "1",
        "--memory",
        "512M",
        "--nic",
        "n1",
    ]);
    std::fs::remove_file(pool.join("debian.vhd")).unwrap();

    let user_data = h.dir.path().join("user-data.yaml");
    std::fs::write(
        &user_data,
        "#cloud-config\nruncmd:\n  - [sh, -c, 'echo VINE-CI-MARKER $(hostname) > /dev/ttyS0']\n  \
         - [sh, -c, 'for f in /home/*/.ssh/authorized_keys; do echo \"VINE-CI-KEY $f $(cat $f)\"; done > /dev/ttyS0']\n",
    )
    .unwrap();
    h.ok(&[
        "vm",
        "create",
        "ci1",
        "--template",
        "debian",
        "--hostname",
        "cloudy",
        "--ssh-key",
        KEY,
        "--user-data",
        user_data.to_str().unwrap(),
    ]);
    let show = h.show("ci1");
    let first_id = show["cloud_init_instance"].as_str().unwrap().to_string();
    assert!(first_id.starts_with("iid-"), "{show}");

    // First boot: cloud-init configures the guest.
    h.ok(&["vm", "start", "ci1"]);
    let log = h.console("ci1");
    wait_nth(&h, &log, "VINE-CI-MARKER", 1);
    wait_nth(&h, &log, "finished at", 1);
    let text = log.contents().unwrap();
    assert!(text.contains("VINE-CI-MARKER cloudy"), "the host name is not cloudy:\n{text}");
    let key_line =
        text.lines().find(|l| l.contains("VINE-CI-KEY")).unwrap_or_else(|| panic!("no key line:\n{text}"));
    assert!(key_line.contains(KEY), "the key is not in authorized_keys: {key_line}");
    assert!(
        text.lines().any(|l| l.contains("Cloud-init v.") && l.contains("finished at")),
        "cloud-init did not report its end:\n{text}"
    );
    assert!(!text.contains("Traceback"), "cloud-init failed:\n{text}");
    h.ok(&["vm", "shutdown", "ci1"]);

    // Second boot, same data: the same instance, no first-boot step again.
    assert_eq!(h.show("ci1")["cloud_init_instance"].as_str(), Some(first_id.as_str()));
    h.ok(&["vm", "start", "ci1"]);
    wait_nth(&h, &log, "finished at", 2);
    assert_eq!(count(&log, "VINE-CI-MARKER"), 1, "runcmd ran again for the same instance");
    h.ok(&["vm", "shutdown", "ci1"]);

    // Changed data: a new instance, configured again.
    h.ok(&["vm", "set", "ci1", "--hostname", "cloudy2"]);
    let second_id = h.show("ci1")["cloud_init_instance"].as_str().unwrap().to_string();
    assert_ne!(second_id, first_id, "changed data kept the instance id");
    h.ok(&["vm", "start", "ci1"]);
    wait_nth(&h, &log, "VINE-CI-MARKER", 2);
    let text = log.contents().unwrap();
    assert!(text.contains("VINE-CI-MARKER cloudy2"), "the new host name was not set:\n{text}");
    h.ok(&["vm", "off", "ci1"]);
}
