//! `scripts/pool-demo.sh` as a user runs it: three hosts make one pool, six VMs are placed across
//! them, started through one host, listed alike from every host, and one is paused and resumed
//! through a host that does not own it while its console is read through a third; `down`
//! removes it all.

use std::process::Command;

struct Down;

fn demo(args: &[&str]) -> std::process::Output {
    Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/pool-demo.sh"))
        .args(args)
        .env("VINE", env!("CARGO_BIN_EXE_vine"))
        .env("VINE_LAB", "vtdemo")
        .env("VINE_LAB_DIR", "/var/tmp/vtdemo")
        .env("VINE_LAB_NET", "10.248.0")
        .output()
        .unwrap()
}

impl Drop for Down {
    fn drop(&mut self) {
        let out = demo(&["down"]);
        if !out.status.success() {
            eprintln!("pool-demo.sh down: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

#[test]
fn the_pool_demo_places_lists_and_controls_vms_from_every_host() {
    let down = Down;
    let out = demo(&[]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "pool-demo.sh failed:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    // Every host lists the six VMs, each on its host, running.
    for h in ["h1", "h2", "h3"] {
        let list = text.split(&format!("-- on {h}:")).nth(1).unwrap_or_default();
        let rows: Vec<&str> = list.lines().filter(|l| l.starts_with("demo")).take(6).collect();
        assert_eq!(rows.len(), 6, "six VMs listed on {h}:\n{list}");
        assert!(rows.iter().all(|r| r.contains("running")), "{rows:?}");
        for host in ["h1", "h2", "h3"] {
            assert!(rows.iter().any(|r| r.split_whitespace().any(|w| w == host)), "a VM on {host}: {rows:?}");
        }
    }
    assert_eq!(text.matches("placed 'demo").count(), 6, "each placement says why:\n{text}");
    assert!(text.contains("VINE-COUNTER"), "demo1's console read through h3:\n{text}");
    assert!(text.contains("bash scripts/pool-demo.sh down"), "{text}");
    drop(down);
    let ns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&ns.stdout).contains("vtdemo"), "down removed the lab's namespaces");
}
