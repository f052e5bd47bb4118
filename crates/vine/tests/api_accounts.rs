//! Accounts under attack, over HTTPS: guessing a password is throttled and logged without locking
//! the user out elsewhere; an unknown user costs the same time as a wrong password; a password
//! change ends the user's other sessions; hook scripts others could write are refused; and a
//! change that authenticates with the session cookie must come from the site's own pages.

mod vmhost;

use std::process::Command;

use serde_json::{json, Value};
use vmhost::VmHost;

/// `curl` from source address `from` (any 127.0.0.0/8 address reaches the daemon on 127.0.0.1):
/// (status, body, seconds from the end of the TLS handshake to the end of the answer).
fn curl_from(
    h: &VmHost,
    from: &str,
    method: &str,
    path: &str,
    headers: &[String],
    body: Option<&str>,
) -> (u16, String, f64) {
    let mut c = Command::new("curl");
    c.args(["-sk", "--interface", from, "-o", "-", "-w", "\n%{http_code} %{time_appconnect} %{time_total}"]);
    c.args(["-X", method, &format!("https://127.0.0.1:{}{path}", h.https_port())]);
    for hd in headers {
        c.args(["-H", hd]);
    }
    if let Some(b) = body {
        c.args(["-H", "Content-Type: application/json", "--data-binary", b]);
    }
    let out = c.output().expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, tail) = text.rsplit_once('\n').unwrap_or(("", &text));
    let f: Vec<&str> = tail.split_whitespace().collect();
    let secs = f[2].parse::<f64>().unwrap() - f[1].parse::<f64>().unwrap();
    (f[0].parse().unwrap(), body.to_string(), secs)
}

fn login_body(user: &str, password: &str) -> String {
    json!({ "user": user, "password": password }).to_string()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn events(h: &VmHost, kind: &str) -> Vec<Value> {
    // One JSON object a line.
    h.ok(&["events", "--json"])
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["kind"] == kind)
        .collect()
}

#[test]
fn logins_are_throttled_and_timing_safe_sessions_end_hooks_and_origins_are_checked() {
    let h = VmHost::start();
    h.ok(&["user", "add", "ann", "--password", "ann-password-1"]);

    // A connection opened ahead of its request (a live migration's last call to its destination):
    // the TLS handshake, and with it the certificate's check, happens at `open`; the request goes
    // later on that connection.
    let addr = format!("127.0.0.1:{}", h.https_port());
    let fingerprint = api::client::fetch_fingerprint(&addr).unwrap();
    let impostor = api::client::Client::https(&addr, &"ab".repeat(32), None);
    assert!(impostor.open().is_err(), "a connection to a certificate of another fingerprint opened");
    let open = api::client::Client::https(&addr, &fingerprint, None).open().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (code, body) = open
        .request("POST", "/api/login", Some(&json!({"user": "ann", "password": "ann-password-1"})))
        .unwrap();
    assert_eq!(code, 200, "{body}");

    // An unknown user and a wrong password take the same time: 41 pairs, each from an address of
    // its own (so no throttle is involved), the two tries of a pair back to back in alternating
    // order; the median of the pairs' differences against the median wrong-password time (the
    // pairing cancels the machine's drifts in speed).
    let (mut unknown, mut wrong) = (Vec::new(), Vec::new());
    for i in 0..41 {
        let from = format!("127.0.0.{}", 10 + i);
        let one = |user: &str, into: &mut Vec<f64>| {
            let (code, body, secs) =
                curl_from(&h, &from, "POST", "/api/login", &[], Some(&login_body(user, "not-the-password")));
            assert_eq!(code, 401, "{body}");
            into.push(secs);
        };
        if i % 2 == 0 {
            one(&format!("nobody{i}"), &mut unknown);
            one("ann", &mut wrong);
        } else {
            one("ann", &mut wrong);
            one(&format!("nobody{i}"), &mut unknown);
        }
    }
    let diffs: Vec<f64> = unknown.iter().zip(&wrong).map(|(u, w)| u - w).collect();
    let (u, w) = (median(unknown), median(wrong));
    let gap = median(diffs).abs() / w;
    eprintln!(
        "login timing: unknown user {:.2} ms, wrong password {:.2} ms, gap {:.1} %",
        u * 1e3,
        w * 1e3,
        gap * 100.0
    );
    assert!(
        gap < 0.10,
        "an unknown user takes {u:.4} s, a wrong password {w:.4} s: {:.1} % apart",
        gap * 100.0
    );

    // 1,000 wrong passwords for ann from one address: a handful are checked, the rest are
    // answered 429 at once; every checked failure is logged, and the slowing down once.
    let c = api::client::Client::https(&format!("127.0.0.1:{}", h.https_port()), "", None);
    let (mut refused, mut throttled) = (0, 0);
    let t0 = std::time::Instant::now();
    for i in 0..1000 {
        let (code, body) = c
            .request("POST", "/api/login", Some(&json!({"user": "ann", "password": format!("guess{i}")})))
            .unwrap();
        match code {
            401 => refused += 1,
            429 => {
                assert!(
                    body["error"]
                        .as_str()
                        .unwrap()
                        .contains("too many failed logins of user 'ann' from 127.0.0.1"),
                    "{body}"
                );
                throttled += 1
            }
            other => panic!("login answered {other}: {body}"),
        }
    }
    eprintln!("1000 guesses in {:?}: {refused} checked, {throttled} throttled", t0.elapsed());
    assert_eq!(refused + throttled, 1000);
    assert!(refused <= 20, "{refused} of 1000 guesses were checked");
    let failed = events(&h, "auth.login-failed");
    let from_here =
        failed.iter().filter(|e| e["message"] == "failed login of user \"ann\" from 127.0.0.1").count();
    assert_eq!(from_here, refused, "every checked failure is logged");
    assert!(
        events(&h, "auth.throttled")
            .iter()
            .any(|e| e["message"].as_str().unwrap().contains("user \"ann\" from 127.0.0.1")),
        "the slowing down is logged"
    );
    // Still slowed here, but ann logs in from elsewhere.
    let (code, _, _) =
        curl_from(&h, "127.0.0.1", "POST", "/api/login", &[], Some(&login_body("ann", "ann-password-1")));
    assert_eq!(code, 429);
    let session = |from: &str| {
        let (code, body, _) =
            curl_from(&h, from, "POST", "/api/login", &[], Some(&login_body("ann", "ann-password-1")));
        assert_eq!(code, 200, "{body}");
        serde_json::from_str::<Value>(&body).unwrap()["token"].as_str().unwrap().to_string()
    };
    let (s1, s2) = (session("127.0.0.2"), session("127.0.0.2"));

    // A password change ends ann's other sessions, not the one that made it.
    let me = |token: &str| {
        curl_from(&h, "127.0.0.2", "GET", "/api/me", &[format!("Authorization: Bearer {token}")], None).0
    };
    assert_eq!((me(&s1), me(&s2)), (200, 200));
    let (code, body, _) = curl_from(
        &h,
        "127.0.0.2",
        "PUT",
        "/api/me/password",
        &[format!("Authorization: Bearer {s1}")],
        Some(&json!({"password": "ann-password-2"}).to_string()),
    );
    assert_eq!(code, 204, "{body}");
    assert_eq!((me(&s1), me(&s2)), (200, 401), "the other session outlived the password change");

    // The session cookie: a change from another site's page is refused, from ours it is done.
    let cookie = format!("Cookie: vine_session={s1}");
    let new_token = json!({"label": "from a page"}).to_string();
    let (code, body, _) = curl_from(
        &h,
        "127.0.0.2",
        "POST",
        "/api/tokens",
        &[cookie.clone(), "Origin: https://evil.example".into()],
        Some(&new_token),
    );
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("cross-site request refused"), "{body}");
    let (code, body, _) =
        curl_from(&h, "127.0.0.2", "POST", "/api/tokens", std::slice::from_ref(&cookie), Some(&new_token));
    assert_eq!(code, 403, "no Origin and no Referer: {body}");
    let ours = format!("Origin: https://127.0.0.1:{}", h.https_port());
    let (code, body, _) =
        curl_from(&h, "127.0.0.2", "POST", "/api/tokens", &[cookie.clone(), ours], Some(&new_token));
    assert_eq!(code, 201, "{body}");
    let (code, _, _) = curl_from(&h, "127.0.0.2", "GET", "/api/me", &[cookie], None);
    assert_eq!(code, 200, "reading with the cookie needs no Origin");

    // Hook scripts: one that others may write is refused, a root-owned 0755 one is taken.
    use std::os::unix::fs::PermissionsExt;
    let script = h.dir.path().join("hook.sh");
    std::fs::write(&script, "#!/bin/sh\ntrue\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o757)).unwrap();
    let err = h.fails(&["hook", "add", "vm.crashed", script.to_str().unwrap()]);
    assert!(err.contains("is writable by others (mode 757): they could run code as root"), "{err}");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o775)).unwrap();
    let err = h.fails(&["hook", "add", "vm.crashed", script.to_str().unwrap()]);
    assert!(err.contains("is writable by its group"), "{err}");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    h.ok(&["hook", "add", "vm.crashed", script.to_str().unwrap()]);
}
