//! A pool whose etcd serves clients over TLS only and requires client certificates
//! (scripts/pool-lab.sh with VINE_LAB_TLS=1): the first host makes the pool with its TLS files;
//! a join token names the pool's etcd CA by its SHA-256, so a host joining without TLS files, or
//! with another CA, is refused with a sentence (and the token is not spent); with the right
//! files it joins, and everything pool-wide works over TLS: hosts, VMs, users; a restarted
//! daemon rejoins over TLS by itself.

mod poollab;

use std::time::Duration;

use poollab::Lab;
use serde_json::Value;

fn states(lab: &Lab, on: &str) -> Vec<(String, String)> {
    lab.json(on, &["host", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["name"].as_str().unwrap().to_string(), h["state"].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn a_pool_on_an_etcd_that_wants_client_certificates() {
    let lab = Lab::up_tls(2, "vttls", "10.250.0");
    assert!(lab.get("LAB_ETCD").starts_with("https://"), "{}", lab.get("LAB_ETCD"));
    // etcd itself refuses a client without a certificate.
    let url = format!("{}/version", lab.get("LAB_ETCD").split(',').next().unwrap());
    let out = lab.inside("h1", &["curl", "-s", "--cacert", lab.get("LAB_ETCD_CA"), &url]);
    assert!(!out.status.success() || !String::from_utf8_lossy(&out.stdout).contains("etcdserver"), "{out:?}");

    let tls = lab.tls_args();
    let tls: Vec<&str> = tls.iter().map(String::as_str).collect();
    let e = lab.fails("h1", &["cluster", "init", "--etcd", lab.get("LAB_ETCD"), "--name", "h1"]);
    assert!(e.contains("etcd"), "without its client certificate, etcd cannot be reached: {e}");
    let mut init = vec!["cluster", "init", "--etcd", lab.get("LAB_ETCD"), "--name", "h1"];
    init.extend(&tls);
    lab.ok("h1", &init);

    let token = lab.ok("h1", &["cluster", "token", "h2"]);
    let token = token.trim();
    let e = lab.fails("h2", &["cluster", "join", token]);
    assert!(e.contains("uses TLS") && e.contains("--etcd-ca"), "{e}");
    // Another CA (here: a member's server certificate) is not the pool's.
    let other_ca = format!("{}/tls/h1.pem", lab.get("LAB_DIR"));
    let mut wrong = vec!["cluster", "join", token, "--etcd-ca", &other_ca];
    wrong.extend(&tls[2..]);
    let e = lab.fails("h2", &wrong);
    assert!(e.contains("SHA-256") && e.contains("pool's etcd CA"), "{e}");
    let mut join = vec!["cluster", "join", token];
    join.extend(&tls);
    lab.ok("h2", &join);

    let both = vec![("h1".to_string(), "online".to_string()), ("h2".to_string(), "online".to_string())];
    for h in ["h1", "h2"] {
        assert_eq!(states(&lab, h), both, "hosts seen from {h}");
    }
    let kit = test_infra::Kit::ensure().expect("guest kit");
    let kernel = kit.vmlinuz.display().to_string();
    lab.ok("h1", &["vm", "create", "t1", "--memory", "64", "--kernel", &kernel, "--host", "h2"]);
    assert_eq!(lab.json("h1", &["vm", "show", "t1"])["host"], "h2");
    lab.ok("h2", &["user", "add", "tess", "--password", "tess-password-1"]);
    lab.wait_value(Duration::from_secs(5), "tess logs in on h1", || {
        lab.try_login("h2", "h1", "tess", "tess-password-1")
    });

    // A daemon restarted rejoins over TLS by itself (its cluster.toml names the files).
    lab.kill_daemon("h2");
    lab.start_daemon("h2");
    lab.wait(Duration::from_secs(15), "h2 online again", || states(&lab, "h1") == both);
    let show: Value = lab.json("h2", &["cluster", "show"]);
    assert_eq!(show["registered"], true, "{show}");
}
