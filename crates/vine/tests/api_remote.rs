//! `vine remote add` trusts a daemon's certificate by its fingerprint (a wrong one is refused),
//! logs in once and keeps an API token; `--remote` then sends commands there over HTTPS, with
//! that user's rights.

mod vmhost;

use std::process::Command;

use vmhost::VmHost;

#[test]
fn remote_add_pins_the_fingerprint_and_commands_use_the_users_rights() {
    let h = VmHost::start();
    let config = h.dir.path().join("config");
    let fp = {
        let log = h.daemon_log();
        let at =
            log.find("certificate SHA-256 ").expect("fingerprint printed") + "certificate SHA-256 ".len();
        log[at..at + 95].to_string()
    };
    h.create_kit_vm("rm1", &["vine.counter=1"], &[]);
    h.ok(&["user", "add", "ops", "--password", "ops-password"]);
    h.ok(&["acl", "grant", "ops", "use", "rm1"]);
    let addr = format!("127.0.0.1:{}", h.https_port());
    let vine = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_vine"))
            .args(args)
            .env("XDG_CONFIG_HOME", &config)
            .env("VINE_SOCKET", "/nonexistent/so-only-remote-works.sock")
            .env_remove("VINE_REMOTE")
            .output()
            .unwrap();
        (out.status.success(), vmhost::text(&out))
    };
    let add = |password: &str, fingerprint: &str| {
        vine(&[
            "remote",
            "add",
            "r1",
            &addr,
            "--user",
            "ops",
            "--password",
            password,
            "--accept-fingerprint",
            fingerprint,
        ])
    };
    // The same fingerprint with its first digit changed.
    let first = if fp.starts_with('0') { '1' } else { '0' };
    let wrong = format!("{first}{}", &fp[1..]);
    let (ok, text) = add("ops-password", &wrong);
    assert!(!ok && text.contains("not trusted") && text.contains(&fp), "{text}");
    let (ok, text) = add("wrong-password", &fp);
    assert!(!ok && text.contains("wrong user name or password"), "{text}");
    let (ok, text) = add("ops-password", &fp);
    assert!(ok, "{text}");
    let stored = std::fs::read_to_string(config.join("vine/remotes.json")).unwrap();
    assert!(stored.contains(&fp) && !stored.contains("ops-password"), "{stored}");

    let (ok, text) = vine(&["--remote", "r1", "vm", "list", "--json"]);
    assert!(ok && text.contains("\"rm1\""), "{text}");
    let (ok, text) = vine(&["--remote", "r1", "vm", "console", "rm1", "--log"]);
    assert!(ok, "{text}");
    let (ok, text) = vine(&["--remote", "r1", "user", "list"]);
    assert!(!ok && text.contains("user 'ops' may not be an administrator"), "{text}");
    let (ok, text) = vine(&["vm", "list"]);
    assert!(
        !ok && text.contains("cannot reach the vine daemon"),
        "without --remote the local socket is used: {text}"
    );
    let (ok, text) = vine(&["remote", "list", "--json"]);
    assert!(ok && text.contains("\"r1\"") && !text.contains("token"), "{text}");
    let (ok, _) = vine(&["remote", "remove", "r1"]);
    assert!(ok);
    let (ok, text) = vine(&["--remote", "r1", "vm", "list"]);
    assert!(!ok && text.contains("no remote named 'r1'"), "{text}");
}
