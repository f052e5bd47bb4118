//! A pool of three simulated hosts on one three-member etcd (scripts/pool-lab.sh): one host
//! makes the pool, the others join with one-time tokens, and every host's CLI and HTTPS API list
//! the same hosts; a host whose daemon is killed is listed offline by the others within 15 s and
//! online again when its daemon comes back; tokens admit one named host once; a host already in
//! a pool cannot make or join another.

mod poollab;

use std::time::Duration;

use poollab::Lab;
use serde_json::Value;

fn names_and_states(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|h| (h["name"].as_str().unwrap().to_string(), h["state"].as_str().unwrap().to_string()))
        .collect()
}

fn state_of(lab: &Lab, on: &str, host: &str) -> String {
    let v = lab.json(on, &["host", "list"]);
    names_and_states(&v).into_iter().find(|(n, _)| n == host).map(|(_, s)| s).unwrap_or_default()
}

#[test]
fn three_hosts_make_one_pool_seen_alike_from_every_host() {
    let lab = Lab::up(3, "vtpool", "10.241.0");

    // Before the pool: each host lists itself alone, as a single host always has.
    let alone = lab.json("h2", &["host", "list"]);
    assert_eq!(alone.as_array().unwrap().len(), 1, "{alone}");
    assert!(lab.fails("h2", &["cluster", "show"]).contains("this host is in no pool"));
    let e = lab.fails("h2", &["cluster", "join", "vine1.garbage"]);
    assert!(e.contains("join token"), "{e}");

    lab.pool();
    let all = vec![
        ("h1".to_string(), "online".to_string()),
        ("h2".to_string(), "online".to_string()),
        ("h3".to_string(), "online".to_string()),
    ];
    // The same hosts from every host's CLI …
    for h in lab.hosts() {
        assert_eq!(names_and_states(&lab.json(&h, &["host", "list"])), all, "vine host list on {h}");
        let show = lab.json(&h, &["cluster", "show"]);
        assert_eq!(show["this_host"], h.as_str());
        assert_eq!(show["etcd_members"].as_array().unwrap().len(), 3, "{show}");
        assert_eq!(show["pool"]["id"], lab.json("h1", &["cluster", "show"])["pool"]["id"]);
    }
    // … and from every host's HTTPS API, asked across the lab's LAN.
    for to in lab.hosts() {
        let token = lab.login("h1", &to, "admin", &lab.admin_password(&to));
        let (code, body) = lab.https("h1", &to, "GET", "/api/hosts", &token, None);
        assert_eq!(code, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(names_and_states(&v), all, "GET /api/hosts on {to}");
        let h2 = v.as_array().unwrap().iter().find(|h| h["name"] == "h2").unwrap();
        assert_eq!(h2["url"], lab.get("LAB_h2_URL"), "{h2}");
        let (code, body) = lab.https("h1", &to, "GET", "/api/hosts/h3", &token, None);
        assert_eq!(code, 200, "{body}");
    }

    // Tokens: one named host, once.
    let token = lab.ok("h1", &["cluster", "token", "h9"]);
    let e = lab.fails("h1", &["cluster", "token", "h2"]);
    assert!(e.contains("already has a host named 'h2'"), "{e}");
    let e = lab.fails("h3", &["cluster", "join", token.trim()]);
    assert!(e.contains("already host 'h3'"), "{e}");
    let e = lab.fails("h3", &["cluster", "init", "--etcd", lab.get("LAB_ETCD")]);
    assert!(e.contains("already host 'h3'"), "{e}");

    // A daemon killed: the others list its host offline within 15 s; back, it is online again.
    lab.kill_daemon("h2");
    let took = lab
        .wait(Duration::from_secs(15), "h2 listed offline by h1", || state_of(&lab, "h1", "h2") == "offline");
    eprintln!("h2 offline after {took:?}");
    assert_eq!(state_of(&lab, "h3", "h2"), "offline");
    lab.start_daemon("h2");
    lab.wait(Duration::from_secs(15), "h2 online again", || state_of(&lab, "h3", "h2") == "online");
    assert_eq!(names_and_states(&lab.json("h2", &["host", "list"])), all, "h2 rejoined its pool by itself");

    // Leaving: the host is on its own again, and gone from the others' lists.
    lab.ok("h3", &["cluster", "leave"]);
    assert_eq!(lab.json("h3", &["host", "list"]).as_array().unwrap().len(), 1);
    assert_eq!(names_and_states(&lab.json("h1", &["host", "list"])), all[..2].to_vec());
}
