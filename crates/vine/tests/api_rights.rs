//! The endpoint × right matrix over HTTPS: without a login every endpoint answers 401; with a
//! login lacking the right, 403; with the right, neither. The endpoints come from the daemon's own
//! OpenAPI document, and the test fails if the document has an endpoint the table below does not
//! know (or the table one the document lacks), so a new endpoint cannot skip the check.

mod vmhost;

use std::collections::BTreeMap;

use serde_json::{json, Value};
use vmhost::VmHost;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    Public,
    Login,
    Admin,
    Create,
    Configure,
    Use,
    See,
    UsePool,
    /// The template `rt1` (its maker, the creator, may use and delete it).
    Template,
    /// Only another host of the pool (with the pool's secret): refused to every user.
    PoolPeer,
}

/// Every endpoint, the right it needs, and a body good enough to get past parsing.
fn table(kernel: &str, pool_dir: &str) -> Vec<(&'static str, &'static str, Need, Option<Value>)> {
    use Need::*;
    vec![
        ("post", "/api/login", Public, Some(json!({"user": "nobody", "password": "wrong-password"}))),
        ("get", "/api/me", Login, None),
        ("put", "/api/me/password", Login, Some(json!({"password": "changed-password"}))),
        ("get", "/api/openapi.json", Login, None),
        ("get", "/api/host", Login, None),
        ("get", "/api/hosts", Login, None),
        ("get", "/api/hosts/{name}", Login, None),
        ("put", "/api/hosts/{name}/maintenance", Admin, Some(json!({"maintenance": true}))),
        ("put", "/api/hosts/{name}/standby", Admin, Some(json!({"standby": true}))),
        ("post", "/api/hosts/{name}/evacuate", Admin, Some(json!({"parallel": 2}))),
        ("get", "/api/cluster", Login, None),
        // An endpoint that is no URL: refused (400) before anything reaches out to an etcd.
        ("post", "/api/cluster", Admin, Some(json!({"etcd": ["not-a-url"]}))),
        // This host is in no pool: an allowed caller gets 404 (tokens, leave) or 400 (a bad token).
        ("post", "/api/cluster/tokens", Admin, Some(json!({"host": "h9"}))),
        ("post", "/api/cluster/join", Admin, Some(json!({"token": "vine1.bad"}))),
        ("delete", "/api/cluster", Admin, None),
        ("post", "/api/pool/call", PoolPeer, Some(json!({"op": "vm-set", "name": "m1", "changes": {}}))),
        ("put", "/api/pool/incoming/{name}/content", PoolPeer, Some(json!({"any": "bytes"}))),
        // This host is in no pool: an administrator's move is refused (400), nothing moves.
        ("post", "/api/vms/{name}/move", Admin, Some(json!({"to": "h9"}))),
        // Nor is a live migration; there is none under way to show or cancel.
        ("post", "/api/vms/{name}/migrate", Admin, Some(json!({"to": "h9"}))),
        ("get", "/api/vms/{name}/migration", Admin, None),
        ("delete", "/api/vms/{name}/migration", Admin, None),
        ("get", "/api/vms", Login, None),
        ("post", "/api/vms", Create, Some(json!({"name": "made", "memory": 67108864u64, "kernel": kernel}))),
        ("get", "/api/pools", Login, None),
        ("post", "/api/pools", Admin, Some(json!({"name": "rp2", "path": pool_dir}))),
        ("get", "/api/pools/{pool}", UsePool, None),
        ("get", "/api/pools/{pool}/volumes", UsePool, None),
        ("post", "/api/pools/{pool}/volumes", UsePool, Some(json!({"name": "matrix.vhd", "size": 1048576}))),
        ("get", "/api/pools/{pool}/volumes/{volume}", UsePool, None),
        ("put", "/api/pools/{pool}/volumes/{volume}/content", UsePool, Some(json!({"any": "bytes"}))),
        ("get", "/api/pools/{pool}/volumes/{volume}/content", UsePool, None),
        ("delete", "/api/pools/{pool}/volumes/{volume}", UsePool, None),
        ("get", "/api/vms/{name}", See, None),
        ("patch", "/api/vms/{name}", Configure, Some(json!({"cpu_weight": 200}))),
        ("post", "/api/vms/{name}/actions/{action}", Use, None),
        ("get", "/api/vms/{name}/console", Use, None),
        ("post", "/api/vms/{name}/nics", Configure, Some(json!({"network": "rn0"}))),
        ("delete", "/api/vms/{name}/nics/{index}", Configure, None),
        ("get", "/api/networks", Login, None),
        (
            "post",
            "/api/networks",
            Admin,
            Some(json!({"name": "rn1", "kind": "internal", "subnet": "10.233.77.0/24"})),
        ),
        ("get", "/api/networks/{net}", Login, None),
        (
            "post",
            "/api/networks/{net}/reservations",
            Admin,
            Some(json!({"mac": "0a:56:4e:00:00:77", "ip": "10.233.77.77"})),
        ),
        ("get", "/api/networks/{net}/leases", Admin, None),
        ("delete", "/api/networks/{net}", Admin, None),
        // Without websocket headers an allowed caller gets 400 (an upgrade is expected).
        ("get", "/api/vms/{name}/console/ws", Use, None),
        ("get", "/api/vms/{name}/vnc/ws", Use, None),
        ("get", "/api/events/stream", Login, None),
        ("get", "/api/events", Login, None),
        ("get", "/metrics", Admin, None),
        ("get", "/api/metrics/live", Admin, None),
        (
            "post",
            "/api/policy/dry-run",
            Admin,
            Some(serde_json::to_value(policy::Policy::builtin("thr-mmt-0.8").unwrap()).unwrap()),
        ),
        // This host is in no pool: an administrator is told so (400); nothing changes.
        ("get", "/api/policy", Admin, None),
        ("put", "/api/policy", Admin, Some(json!({"mode": "advise"}))),
        ("put", "/api/policy/vms/{name}", Admin, Some(json!({"mode": "off"}))),
        ("get", "/api/users", Admin, None),
        ("post", "/api/users", Admin, Some(json!({"name": "another", "password": "another-password"}))),
        ("put", "/api/users/{user}/password", Admin, Some(json!({"password": "victim-password2"}))),
        ("delete", "/api/users/{user}", Admin, None),
        ("get", "/api/tokens", Login, None),
        ("post", "/api/tokens", Login, Some(json!({"label": "matrix"}))),
        ("delete", "/api/tokens/{id}", Login, None),
        ("get", "/api/acl", Admin, None),
        ("post", "/api/acl", Admin, Some(json!({"user": "victim", "vm": "m1", "right": "use"}))),
        ("delete", "/api/acl/{user}/{vm}/{right}", Admin, None),
        ("delete", "/api/acl/{user}/pools/{pool}/{right}", Admin, None),
        ("delete", "/api/acl/{user}/networks/{net}/{right}", Admin, None),
        ("delete", "/api/acl/{user}/templates/{template}/{right}", Admin, None),
        ("get", "/api/templates", Login, None),
        ("post", "/api/templates", Create, Some(json!({"name": "rt1", "from_volume": "rp1/tsrc.vhd"}))),
        ("get", "/api/templates/{template}", Template, None),
        ("get", "/api/hooks", Admin, None),
        ("post", "/api/hooks", Admin, Some(json!({"event": "vm.crashed", "script": "/bin/true"}))),
        ("delete", "/api/hooks/{id}", Admin, None),
        // Last: they end sessions or remove the VM the others use.
        ("delete", "/api/vms/{name}", Configure, None),
        ("delete", "/api/templates/{template}", Template, None),
        ("delete", "/api/pools/{pool}", Admin, None),
        ("post", "/api/logout", Login, None),
    ]
}

fn path_for(template: &str) -> String {
    if template == "/api/events/stream" {
        return format!("{template}?seconds=1");
    }
    template
        .replace("{name}", "m1")
        .replace("{action}", "pause")
        .replace("{user}", "victim")
        .replace("{vm}", "m1")
        .replace("{right}", "use")
        .replace("{id}", "999999")
        .replace("{index}", "5")
        .replace("{net}", "rn1")
        .replace("{pool}", "rp1")
        .replace("{volume}", "matrix.vhd")
        .replace("{template}", "rt1")
}

#[test]
fn every_endpoint_answers_401_without_login_and_403_without_the_right() {
    let h = VmHost::start();
    let kernel = h.kit.vmlinuz.display().to_string();
    let admin = h.login("admin", &h.admin_password());

    // The users and the VM of the matrix.
    let mk_user = |name: &str, can_create: bool| {
        let body = json!({"name": name, "password": format!("{name}-password"), "can_create": can_create});
        let (code, text) = h.https("POST", "/api/users", Some(&admin), Some(&body.to_string()));
        assert_eq!(code, 201, "{text}");
    };
    for (u, c) in [("nobody", false), ("creator", true), ("user1", false), ("cfg1", false), ("victim", false)]
    {
        mk_user(u, c);
    }
    let (code, text) = h.https(
        "POST",
        "/api/vms",
        Some(&admin),
        Some(&json!({"name": "m1", "memory": 67108864u64, "kernel": kernel}).to_string()),
    );
    assert_eq!(code, 201, "{text}");
    for (u, right) in [("user1", "use"), ("cfg1", "configure")] {
        let (code, text) = h.https(
            "POST",
            "/api/acl",
            Some(&admin),
            Some(&json!({"user": u, "vm": "m1", "right": right}).to_string()),
        );
        assert_eq!(code, 204, "{text}");
    }
    // A pool with a kernel volume the creator may use (a user names no host paths), and a
    // network the VM configurer may attach NICs to.
    let pool_dir = h.dir.path().join("rp1");
    let (code, text) = h.https(
        "POST",
        "/api/pools",
        Some(&admin),
        Some(&json!({"name": "rp1", "path": pool_dir}).to_string()),
    );
    assert_eq!(code, 201, "{text}");
    std::fs::copy(&kernel, pool_dir.join("vmlinuz")).unwrap();
    // A disk the creator makes a template of.
    let (code, text) = h.https(
        "POST",
        "/api/pools/rp1/volumes",
        Some(&admin),
        Some(&json!({"name": "tsrc.vhd", "size": 1048576}).to_string()),
    );
    assert_eq!(code, 201, "{text}");
    let (code, text) = h.https(
        "POST",
        "/api/networks",
        Some(&admin),
        Some(&json!({"name": "rn0", "kind": "internal", "subnet": "10.233.76.0/24"}).to_string()),
    );
    assert_eq!(code, 201, "{text}");
    for grant in [
        json!({"user": "creator", "pool": "rp1", "right": "use"}),
        json!({"user": "cfg1", "network": "rn0", "right": "use"}),
    ] {
        let (code, text) = h.https("POST", "/api/acl", Some(&admin), Some(&grant.to_string()));
        assert_eq!(code, 204, "{text}");
    }
    let tokens: BTreeMap<&str, String> = ["nobody", "creator", "user1", "cfg1"]
        .into_iter()
        .map(|u| (u, h.login(u, &format!("{u}-password"))))
        .collect();

    // The document and the table name the same endpoints.
    let (code, doc) = h.https("GET", "/api/openapi.json", Some(&admin), None);
    assert_eq!(code, 200);
    let doc: Value = serde_json::from_str(&doc).unwrap();
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                documented.push((method.to_string(), path.clone()));
            }
        }
    }
    documented.sort();
    let rows = table("rp1/vmlinuz", h.dir.path().join("rp2").to_str().unwrap());
    let mut known: Vec<(String, String)> =
        rows.iter().map(|(m, p, _, _)| (m.to_string(), p.to_string())).collect();
    known.sort();
    assert_eq!(documented, known, "the OpenAPI document and this test's table differ");

    let allowed = |who: &str, need: Need| {
        need != Need::PoolPeer
            && matches!(
                (who, need),
                (_, Need::Public | Need::Login)
                    | ("admin", _)
                    | ("creator", Need::Create | Need::UsePool | Need::Template)
                    | ("user1", Need::Use | Need::See)
                    | ("cfg1", Need::Configure | Need::See)
            )
    };
    let mut checked = 0;
    for (method, template, need, body) in &rows {
        let path = path_for(template);
        let body = body.as_ref().map(|b| b.to_string());
        // No login.
        let (code, text) = h.https(&method.to_uppercase(), &path, None, body.as_deref());
        if *need == Need::Public {
            assert_ne!(code, 403, "{method} {path}: {text}");
        } else {
            assert_eq!(code, 401, "{method} {path} without a login: {text}");
            assert!(text.contains("\"error\""), "{text}");
        }
        // A garbage token is no login either.
        if *need != Need::Public {
            let (code, _) = h.https(&method.to_uppercase(), &path, Some("0123.4567"), body.as_deref());
            assert_eq!(code, 401, "{method} {path} with a forged token");
        }
        // Each user: 403 exactly when the right is missing.
        let principals: Vec<(&str, &str)> =
            tokens.iter().map(|(u, t)| (*u, t.as_str())).chain([("admin", admin.as_str())]).collect();
        for (who, token) in principals {
            let (code, text) = h.https(&method.to_uppercase(), &path, Some(token), body.as_deref());
            if *need == Need::Public {
                // Repeated wrong credentials from one address are throttled (429): no login either.
                assert!(
                    code == 401 || code == 429,
                    "{who}: wrong credentials must not log in: {code} {text}"
                );
            } else if allowed(who, *need) {
                assert!(code != 401 && code != 403, "{who}: {method} {path} answered {code}: {text}");
            } else {
                assert_eq!(code, 403, "{who}: {method} {path} should be forbidden: {text}");
                assert!(text.contains("may not"), "{text}");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, rows.len() * 5);
    // Logged out tokens are refused; non-administrators see only their VMs.
    let (code, _) = h.https("GET", "/api/me", Some(&tokens["nobody"]), None);
    assert_eq!(code, 401, "a logged-out session still works");
    let nobody = h.login("nobody", "changed-password");
    let (_, list) = h.https("GET", "/api/vms", Some(&nobody), None);
    assert_eq!(list.trim(), "[]");
    let creator = h.login("creator", "changed-password");
    let (_, list) = h.https("GET", "/api/vms", Some(&creator), None);
    let names: Vec<String> = serde_json::from_str::<Vec<Value>>(&list)
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, vec!["made".to_string()], "the creator sees the VM it made");
}
