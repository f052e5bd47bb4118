//! schemathesis (from PyPI, installed by scripts/setup.sh) against the daemon's own OpenAPI
//! document, authenticated as an administrator over HTTPS: no 5xx, every status, content type,
//! header and body as documented (streams and websockets excepted). A VM and a user exist so some generated requests reach them.

mod vmhost;

use std::process::Command;

use vmhost::VmHost;

const SCHEMATHESIS: &str = "/var/lib/vine/venv/bin/schemathesis";

#[test]
fn schemathesis_finds_no_server_error_and_no_schema_violation() {
    assert!(std::path::Path::new(SCHEMATHESIS).exists(), "{SCHEMATHESIS} is missing: run scripts/setup.sh");
    let h = VmHost::start();
    h.create_kit_vm("m1", &["vine.counter=1"], &[]);
    h.ok(&["user", "add", "someone", "--password", "someone-password"]);
    let admin = h.login("admin", &h.admin_password());
    let (code, doc) = h.https("GET", "/api/openapi.json", Some(&admin), None);
    assert_eq!(code, 200);
    let schema = h.dir.path().join("openapi.json");
    std::fs::write(&schema, doc).unwrap();
    let out = Command::new(SCHEMATHESIS)
        .arg("run")
        .arg(&schema)
        .args(["--url", &format!("https://127.0.0.1:{}", h.https_port())])
        .args(["-H", &format!("Authorization: Bearer {admin}")])
        .args(["--tls-verify", "false"])
        .args([
            "-c",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance,negative_data_rejection",
        ])
        // Valid requests and, in negative mode, requests the document says are invalid: these
        // must be refused with a 4xx (negative_data_rejection).
        .args(["--mode", "all"])
        .args(["-n", "25", "--seed", "20261122"])
        // Logging out would end the session the run uses; the event stream and the console
        // websockets are long-lived streams, not request/answer operations. Making or joining
        // a pool reaches out to the etcd endpoints given: generated ones could name any address
        // or host name, and a test sends no traffic outside the machine (the pool's own tests
        // and crates/vine/tests/api_hostile.rs cover those endpoints).
        .args(["--exclude-path", "/api/logout"])
        .args(["--exclude-path-regex", "/(stream|ws)$|^/api/cluster|^/api/pool/"])
        .env("NO_COLOR", "1")
        // Its cache goes to the test's own directory, not into the source tree.
        .current_dir(h.dir.path())
        .output()
        .unwrap();
    let text = vmhost::text(&out);
    assert!(out.status.success(), "schemathesis found problems:\n{text}\ndaemon log:\n{}", h.daemon_log());
    let summary = text.lines().find(|l| l.contains("generated,")).unwrap_or_default().to_string();
    assert!(summary.contains("passed") && !summary.contains("failed"), "{summary}\n{text}");
    eprintln!("schemathesis: {}", summary.trim());
}
