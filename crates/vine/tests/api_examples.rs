//! The scripting example of docs/examples (save the state of every running VM) works against
//! the API: the shell version over the local socket, the Python version over HTTPS with an API
//! token and the host's certificate.

mod vmhost;

use std::path::Path;
use std::process::Command;

use vmhost::{VmHost, BOOT};

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples").join(name).display().to_string()
}

#[test]
fn save_every_running_vm_from_shell_and_python() {
    let h = VmHost::start();
    for vm in ["ex-a", "ex-b", "ex-off"] {
        h.create_kit_vm(vm, &["vine.counter=1"], &[]);
    }
    for vm in ["ex-a", "ex-b"] {
        h.ok(&["vm", "start", vm]);
        h.console(vm).wait_for("VINE-COUNTER 1", BOOT).unwrap();
    }
    let out = Command::new("sh")
        .arg(example("save-all-running.sh"))
        .env("VINE_SOCKET", &h.socket)
        .output()
        .unwrap();
    let text = vmhost::text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("saved ex-a") && text.contains("saved ex-b") && !text.contains("ex-off"), "{text}");
    for vm in ["ex-a", "ex-b"] {
        assert_eq!(h.state(vm), "saved");
        h.ok(&["vm", "restore", vm]);
    }
    assert_eq!(h.state("ex-off"), "off");

    // Remote: a user's API token over HTTPS, trusting the host's certificate.
    h.ok(&["user", "add", "ops", "--password", "ops-password", "--admin"]);
    let session = h.login("ops", "ops-password");
    let (code, body) = h.https("POST", "/api/tokens", Some(&session), Some(r#"{"label":"example"}"#));
    assert_eq!(code, 201, "{body}");
    let token =
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["token"].as_str().unwrap().to_string();
    let out = Command::new("python3")
        .arg(example("save_all_running.py"))
        .env("VINE_URL", format!("https://127.0.0.1:{}", h.https_port()))
        .env("VINE_TOKEN", &token)
        .env("VINE_CA", h.data.join("tls/cert.pem"))
        .output()
        .unwrap();
    let text = vmhost::text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("saved ex-a") && text.contains("saved ex-b"), "{text}");
    assert_eq!((h.state("ex-a"), h.state("ex-b")), ("saved".to_string(), "saved".to_string()));
    for vm in ["ex-a", "ex-b"] {
        h.ok(&["vm", "discard-state", vm]);
    }
}
