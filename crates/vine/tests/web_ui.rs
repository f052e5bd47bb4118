//! The web admin site end to end: a real daemon and a real guest, driven through the real UI by
//! Debian's Chromium (headless, playwright-core from `web/`; `web/tests/e2e.mjs` says what it
//! does). `scripts/setup.sh` installs chromium, the npm packages and the built pages.
//!
//! `VINE_UPDATE_SCREENSHOTS=1` writes the screenshots to docs/screenshots instead of a temporary
//! directory.

mod vmhost;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use vmhost::VmHost;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

#[test]
fn the_web_ui_logs_in_boots_a_vm_shows_its_console_controls_it_and_lists_the_events() {
    let web = repo().join("web");
    for need in ["dist/index.html", "dist/vendor/vendor.js", "node_modules/playwright-core/package.json"] {
        assert!(web.join(need).is_file(), "{} is missing: run scripts/setup.sh (or scripts/web.sh)", need);
    }
    assert!(Path::new("/usr/bin/chromium").is_file(), "Debian's chromium is missing: run scripts/setup.sh");

    let h = VmHost::start();
    let shots = match std::env::var_os("VINE_UPDATE_SCREENSHOTS") {
        Some(_) => repo().join("docs/screenshots"),
        None => h.dir.path().join("screenshots"),
    };
    std::fs::create_dir_all(&shots).unwrap();

    // The daemon serves the UI's page at / (without a login: it is only the application).
    let (code, page) = h.https("GET", "/", None, None);
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("app.js"), "{page}");

    h.ok(&["pool", "create", "webpool", "--path", h.dir.path().join("webpool").to_str().unwrap()]);
    h.ok(&["volume", "create", "webpool/tsrc.vhd", "--size", "16M"]);
    h.ok(&["template", "create", "webtpl", "--from-volume", "webpool/tsrc.vhd", "--memory", "64M"]);
    // A container beside the VMs (scripts/ct-image.sh's busybox image).
    let script = repo().join("scripts/ct-image.sh");
    let out = Command::new("bash").arg(&script).arg("busybox").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let image = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().trim().to_string();
    h.ok(&["ct", "image", "import", "webpool/busybox", &image]);
    h.ok(&["ct", "create", "webct", "--image", "webpool/busybox", "--memory", "64M", "--start"]);
    let out = Command::new("node")
        .arg(web.join("tests/e2e.mjs"))
        .current_dir(&web)
        .env("VINE_URL", format!("https://127.0.0.1:{}/", h.https_port()))
        .env("VINE_USER", "admin")
        .env("VINE_PASSWORD", h.admin_password())
        .env("VINE_VM", "webvm")
        .env("VINE_KERNEL", &h.kit.vmlinuz)
        .env("VINE_INITRD", &h.kit.initrd)
        .env("VINE_APPEND", h.kit.cmdline_with(&["vine.counter=1"]))
        .env("VINE_SCREENSHOTS", &shots)
        .env("VINE_POOL", "webpool")
        .env("VINE_TEMPLATE", "webtpl")
        .env("VINE_CONTAINER", "webct")
        .output()
        .expect("node runs (scripts/setup.sh installs nodejs)");
    let text = vmhost::text(&out);
    println!("{text}");
    assert!(
        out.status.success() && text.contains("E2E-OK"),
        "the browser test failed ({}):\n{text}\ndaemon log:\n{}",
        out.status,
        h.daemon_log()
    );

    // What the browser did, seen from the daemon's side.
    let clone = h.show("webclone");
    assert_eq!(clone["drives"][0]["path"], "webpool/webclone.vhd", "{clone}");
    assert_eq!(clone["cloud_init"]["hostname"], "clone-host", "{clone}");
    let vol = h.ok(&["volume", "show", "webpool/webclone.vhd", "--json"]);
    assert!(vol.contains("\"parent\": \"webpool/webtpl.base.vhd\""), "not a linked clone: {vol}");
    assert_eq!(h.state("webvm"), "off");
    let show = h.show("webvm");
    assert_eq!(show["cpu"]["weight"], 150, "the last PATCH the page sent: {show}");
    let log = h.console("webvm").contents().unwrap();
    assert!(log.contains("VINE-BOOT-OK"), "console.log still logs everything: {log}");
    assert!(log.contains("VINE-TYPED-42"), "what the page typed ran in the guest: {log}");
    let acl = h.ok(&["acl", "list", "--json"]);
    assert!(!acl.contains("webpool"), "the right the page revoked is still there: {acl}");
    assert!(h.ok(&["user", "list"]).contains("pooluser"), "the user the page added is missing");
    let events = h.ok(&["vm", "events", "webvm", "--json"]);
    for kind in ["vm.start", "vm.pause", "vm.resume", "vm.off"] {
        assert!(events.contains(kind), "{kind} missing from {events}");
    }
    for name in ["login", "vms", "vm", "events", "users"] {
        let png = std::fs::read(shots.join(format!("{name}.png"))).unwrap();
        assert!(png.starts_with(b"\x89PNG") && png.len() > 5000, "{name}.png is no screenshot");
    }
    let ct_log = std::fs::read_to_string(h.data.join("vms/webct/run/console.log")).unwrap_or_default();
    assert!(ct_log.contains("CT-TYPED-42"), "what the page typed did not reach the container: {ct_log}");
    h.ok(&["ct", "off", "webct"]);
    vmhost::eventually("the VM's processes end", Duration::from_secs(30), || h.cgroup_pids().is_empty());
}
