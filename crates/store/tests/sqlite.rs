//! The SQLite store: VMs and events persist across reopening, names are unique, events are
//! filtered and paged, a newer schema is refused, a writer killed mid-stream loses nothing
//! it committed, a state change and its event are kept together or not at all, and checkpoints
//! happen in the background.

use store::{Durability, EventRecord, SqliteStore, Store, StoreError, TemplateRecord, VmRecord};

fn vm(name: &str) -> VmRecord {
    VmRecord {
        name: name.into(),
        uuid: format!("uuid-{name}"),
        definition: format!("name = \"{name}\""),
        state: "off".into(),
        pid: None,
        runtime: None,
    }
}

fn event(vm: Option<&str>, kind: &str) -> EventRecord {
    EventRecord {
        id: 0,
        time_ms: 1,
        vm: vm.map(String::from),
        host: None,
        level: "info".into(),
        kind: kind.into(),
        message: kind.into(),
    }
}

#[test]
fn vms_persist_across_reopen_and_names_are_unique() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let s = SqliteStore::open(&path).unwrap();
        s.create_vm(&vm("web1")).unwrap();
        s.create_vm(&vm("db")).unwrap();
        assert!(matches!(s.create_vm(&vm("web1")).unwrap_err(), StoreError::Exists(ref n) if n == "web1"));
        s.set_state("web1", "running", Some(4242), Some("{\"qemu\":1}"), Durability::Process).unwrap();
        s.update_definition("db", "cpus = 4").unwrap();
        assert!(matches!(
            s.set_state("nope", "off", None, None, Durability::Host).unwrap_err(),
            StoreError::NotFound(_)
        ));
    }
    let s = SqliteStore::open(&path).unwrap();
    let all = s.list_vms().unwrap();
    assert_eq!(all.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["db", "web1"]);
    let vm = s.get_vm("web1").unwrap().unwrap();
    assert_eq!(vm.pid, Some(4242));
    assert_eq!(vm.runtime.as_deref(), Some("{\"qemu\":1}"));
    assert_eq!(s.get_vm("db").unwrap().unwrap().definition, "cpus = 4");
    s.remove_vm("db").unwrap();
    assert!(s.get_vm("db").unwrap().is_none());
    assert!(matches!(s.remove_vm("db").unwrap_err(), StoreError::NotFound(_)));
}

#[test]
fn events_are_ordered_filtered_and_paged() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("state.db")).unwrap();
    let a = s.append_event(&event(Some("web1"), "vm.started")).unwrap();
    let b = s.append_event(&event(None, "host.started")).unwrap();
    let c = s.append_event(&event(Some("web1"), "vm.paused")).unwrap();
    assert!(a < b && b < c);
    let web: Vec<String> = s.events(Some("web1"), 0, 10).unwrap().into_iter().map(|e| e.kind).collect();
    assert_eq!(web, ["vm.started", "vm.paused"]);
    assert_eq!(s.events(None, a, 1).unwrap()[0].kind, "host.started");
    assert!(s.events(None, c, 10).unwrap().is_empty());
}

#[test]
fn a_state_and_its_event_are_written_together() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let s = SqliteStore::open(&path).unwrap();
        s.create_vm(&vm("web1")).unwrap();
        let id = s
            .set_state_with_event(
                "web1",
                "running",
                Some(7),
                Some("{}"),
                &event(Some("web1"), "vm.start"),
                Durability::Process,
            )
            .unwrap();
        // An unknown VM: neither the state nor the event is kept.
        let e = s
            .set_state_with_event(
                "nope",
                "running",
                None,
                None,
                &event(Some("nope"), "vm.start"),
                Durability::Host,
            )
            .unwrap_err();
        assert!(matches!(e, StoreError::NotFound(ref n) if n == "nope"), "{e}");
        let events = s.events(None, 0, 10).unwrap();
        assert_eq!(events.iter().map(|e| (e.id, e.kind.as_str())).collect::<Vec<_>>(), [(id, "vm.start")]);
    }
    let s = SqliteStore::open(&path).unwrap();
    let v = s.get_vm("web1").unwrap().unwrap();
    assert_eq!((v.state.as_str(), v.pid), ("running", Some(7)));
    assert_eq!(s.events(Some("web1"), 0, 10).unwrap().len(), 1);
}

#[test]
fn committed_pages_reach_the_database_file_without_a_caller_checkpointing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let s = SqliteStore::open(&path).unwrap();
    let before = std::fs::metadata(&path).unwrap().len();
    // About 150 pages: well under SQLite's automatic checkpoint (1000 pages), which is off anyway.
    let text = "x".repeat(1000);
    for i in 0..500 {
        s.append_event(&EventRecord { message: format!("{i} {text}"), ..event(None, "test") }).unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let now = std::fs::metadata(&path).unwrap().len();
        if now > before + 400_000 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the database file stayed at {now} bytes (was {before})"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(s.events(None, 0, 1000).unwrap().len(), 500);
}

#[test]
fn a_database_from_a_newer_vine_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    drop(SqliteStore::open(&path).unwrap());
    rusqlite_set_version(&path, 99);
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(err.to_string().contains("schema version 99"), "{err}");
}

fn rusqlite_set_version(path: &std::path::Path, v: i64) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.pragma_update(None, "user_version", v).unwrap();
}

/// Runs examples/append_events.rs (built by `cargo test`) on `path` in `mode` until it has
/// reported at least 200 commits, kills it, and returns the last commit it reported.
fn kill_a_writer(path: &std::path::Path, mode: &str) -> u64 {
    let exe = std::env::current_exe().unwrap();
    let writer = exe.parent().unwrap().parent().unwrap().join("examples/append_events");
    let mut child = std::process::Command::new(&writer)
        .arg(path)
        .arg(mode)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut last = 0u64;
    let mut line = String::new();
    while last < 200 {
        line.clear();
        if std::io::BufRead::read_line(&mut out, &mut line).unwrap() == 0 {
            break;
        }
        if let Some(n) = line.trim().strip_prefix("committed ") {
            last = n.parse().unwrap();
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(last >= 200, "the writer stopped early at {last}");
    last
}

#[test]
fn committed_events_survive_a_killed_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    drop(SqliteStore::open(&path).unwrap());
    // The child appends events (fsynced) as fast as it can and reports each committed id.
    let last = kill_a_writer(&path, "events");
    let s = SqliteStore::open(&path).unwrap();
    let got = s.events(None, 0, 1_000_000).unwrap();
    assert!(got.len() as u64 >= last, "{} events in the store, {last} were committed", got.len());
    assert!(got.windows(2).all(|w| w[0].id < w[1].id));
}

#[test]
fn state_changes_not_waited_for_on_disk_still_survive_a_killed_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let s = SqliteStore::open(&path).unwrap();
        s.create_vm(&vm("w")).unwrap();
    }
    // The child records "running" with pid N and an event, without fsync (Durability::Process),
    // for N = 1, 2, …, and reports N after each commit. Killing it must lose none of them: they
    // are in the operating system's hands when the commit returns.
    let last = kill_a_writer(&path, "states");
    let s = SqliteStore::open(&path).unwrap();
    let v = s.get_vm("w").unwrap().unwrap();
    assert_eq!(v.state, "running");
    let pid = u64::from(v.pid.expect("a pid was recorded"));
    assert!(pid >= last, "the store holds pid {pid}, {last} was committed");
    let got = s.events(Some("w"), 0, 1_000_000).unwrap();
    assert!(got.len() as u64 >= last, "{} events in the store, {last} were committed", got.len());
    // The next write is fsynced as usual and keeps what came before.
    s.set_state("w", "off", None, None, Durability::Host).unwrap();
    drop(s);
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.get_vm("w").unwrap().unwrap().state, "off");
    assert!(s.events(Some("w"), 0, 1_000_000).unwrap().len() as u64 >= last);
}

#[test]
fn a_version_1_database_is_upgraded_and_keeps_its_vms() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE vms (name TEXT PRIMARY KEY, uuid TEXT NOT NULL UNIQUE, definition TEXT NOT NULL,
                               state TEXT NOT NULL, pid INTEGER);
             INSERT INTO vms VALUES ('old', 'u1', 'format = 1', 'off', NULL);
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let s = SqliteStore::open(&path).unwrap();
    let old = s.get_vm("old").unwrap().unwrap();
    assert_eq!((old.state.as_str(), old.runtime), ("off", None));
    s.set_state("old", "running", Some(7), Some("{}"), Durability::Host).unwrap();
    drop(s);
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.get_vm("old").unwrap().unwrap().runtime.as_deref(), Some("{}"));
}

#[test]
fn users_tokens_rights_and_hooks() {
    use store::{AclEntry, HookRecord, TokenRecord, UserRecord};
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("v.db")).unwrap();
    let u = UserRecord {
        name: "ann".into(),
        password_hash: "$argon2id$x".into(),
        admin: false,
        can_create: true,
        created_ms: 1,
    };
    s.create_user(&u).unwrap();
    assert_eq!(s.create_user(&u).unwrap_err().to_string(), "a user named 'ann' already exists");
    assert_eq!(s.get_user("ann").unwrap().unwrap(), u);
    s.update_user(&UserRecord { admin: true, ..u.clone() }).unwrap();
    assert!(s.get_user("ann").unwrap().unwrap().admin);
    let t = TokenRecord {
        id: "t1".into(),
        user: "ann".into(),
        secret_sha256: "ab".into(),
        kind: "api".into(),
        label: "ci".into(),
        created_ms: 2,
        expires_ms: None,
    };
    s.put_token(&t).unwrap();
    assert_eq!(s.get_token("t1").unwrap().unwrap(), t);
    assert_eq!(s.list_tokens("ann").unwrap().len(), 1);
    let right = AclEntry { user: "ann".into(), vm: "web1".into(), right: "use".into() };
    s.grant(&right).unwrap();
    s.grant(&right).unwrap();
    assert_eq!(s.acl(Some("ann"), None).unwrap(), vec![right.clone()]);
    let id = s
        .add_hook(&HookRecord {
            id: 0,
            event: "vm.crashed".into(),
            script: "/x".into(),
            vm: None,
            timeout_s: 30,
        })
        .unwrap();
    assert_eq!(s.list_hooks().unwrap()[0].id, id);
    s.delete_hook(id).unwrap();
    assert!(s.delete_hook(id).unwrap_err().to_string().contains("no hook"));
    // Deleting a user takes its tokens and rights with it.
    s.delete_user("ann").unwrap();
    assert!(s.get_token("t1").unwrap().is_none());
    assert!(s.acl(None, Some("web1")).unwrap().is_empty());
    assert!(s.revoke(&right).unwrap_err().to_string().contains("no right"));
}

fn nic(mac: &str, vm: &str, index: u32) -> store::NicRecord {
    store::NicRecord { mac: mac.into(), vm: vm.into(), index, network: "lan".into() }
}

#[test]
fn a_mac_is_held_by_one_nic_and_freed_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let s = SqliteStore::open(&path).unwrap();
    s.claim_mac(&nic("0a:56:4e:00:00:01", "a", 0)).unwrap();
    s.claim_mac(&nic("0a:56:4e:00:00:01", "a", 0)).unwrap(); // the same NIC again: fine
    let e = s.claim_mac(&nic("0a:56:4e:00:00:01", "b", 0)).unwrap_err();
    assert!(matches!(&e, StoreError::MacInUse { vm, index: 0, .. } if vm == "a"), "{e}");
    // A NIC that takes a new MAC frees its old one.
    s.claim_mac(&nic("0a:56:4e:00:00:02", "a", 0)).unwrap();
    s.claim_mac(&nic("0a:56:4e:00:00:01", "b", 0)).unwrap();
    s.claim_mac(&nic("0a:56:4e:00:00:03", "a", 1)).unwrap();
    drop(s);
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.list_nics().unwrap().len(), 3);
    s.release_macs("a", 1).unwrap();
    assert_eq!(s.list_nics().unwrap().iter().filter(|n| n.vm == "a").count(), 1);
    s.release_macs("a", 0).unwrap();
    s.claim_mac(&nic("0a:56:4e:00:00:02", "c", 0)).unwrap();
}

#[test]
fn networks_persist_and_names_are_unique() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let s = SqliteStore::open(&path).unwrap();
    let n = store::NetworkRecord { name: "lan".into(), spec: "{}".into() };
    s.create_network(&n).unwrap();
    assert!(matches!(s.create_network(&n).unwrap_err(), StoreError::NetworkExists(x) if x == "lan"));
    s.update_network(&store::NetworkRecord { name: "lan".into(), spec: "{\"a\":1}".into() }).unwrap();
    drop(s);
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.list_networks().unwrap()[0].spec, "{\"a\":1}");
    s.remove_network("lan").unwrap();
    assert!(matches!(s.remove_network("lan").unwrap_err(), StoreError::NoNetwork(_)));
}

#[test]
fn a_version_2_database_gains_the_network_tables() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v2.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE vms (name TEXT PRIMARY KEY, uuid TEXT NOT NULL UNIQUE, definition TEXT NOT NULL,
                               state TEXT NOT NULL, pid INTEGER, runtime TEXT);
             INSERT INTO vms VALUES ('old', 'u1', 'format = 1', 'off', NULL, NULL);
             PRAGMA user_version = 2;",
        )
        .unwrap();
    }
    let s = SqliteStore::open(&path).unwrap();
    assert!(s.get_vm("old").unwrap().is_some());
    s.claim_mac(&nic("0a:56:4e:00:00:09", "old", 0)).unwrap();
    assert_eq!(s.list_networks().unwrap(), vec![]);
}

#[test]
fn the_shared_tables_are_replaced_whole_and_changed_idempotently() {
    use store::{AclEntry, HookRecord, SharedChange, SharedTables, TokenRecord, UserRecord};
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("v.db")).unwrap();
    let user = |name: &str| UserRecord {
        name: name.into(),
        password_hash: "$argon2id$x".into(),
        admin: false,
        can_create: false,
        created_ms: 1,
    };
    s.create_user(&user("local")).unwrap();
    let token = TokenRecord {
        id: "t1".into(),
        user: "ann".into(),
        secret_sha256: "ab".into(),
        kind: "api".into(),
        label: String::new(),
        created_ms: 2,
        expires_ms: None,
    };
    let right = AclEntry { user: "ann".into(), vm: "pool/fast".into(), right: "use".into() };
    let hook = HookRecord { id: 7, event: "vm.crashed".into(), script: "/x".into(), vm: None, timeout_s: 30 };
    let pool = SharedTables {
        users: vec![user("ann")],
        tokens: vec![token.clone()],
        acl: vec![right.clone()],
        hooks: vec![hook.clone()],
        templates: vec![TemplateRecord { name: "deb".into(), spec: "{}".into() }],
    };
    // A host joining a pool: its own users go, the pool's come, hook numbers are kept.
    s.replace_shared(&pool).unwrap();
    assert_eq!(s.shared().unwrap(), pool);
    assert!(s.get_user("local").unwrap().is_none());
    // Every change applies twice as once (a host's own write, then the same from the watch).
    for _ in 0..2 {
        s.apply_shared(&SharedChange::User(UserRecord { admin: true, ..user("ann") })).unwrap();
        s.apply_shared(&SharedChange::Revoke(right.clone())).unwrap();
        s.apply_shared(&SharedChange::HookGone(7)).unwrap();
        s.apply_shared(&SharedChange::TemplateGone("deb".into())).unwrap();
    }
    assert!(s.list_templates().unwrap().is_empty());
    assert!(s.get_user("ann").unwrap().unwrap().admin);
    assert!(s.acl(None, None).unwrap().is_empty());
    assert!(s.list_hooks().unwrap().is_empty());
    assert_eq!(s.get_token("t1").unwrap().unwrap(), token);
    // A token whose user is not there is refused, and the copy stays whole.
    let orphan = TokenRecord { id: "t2".into(), user: "nobody".into(), ..token.clone() };
    assert!(s.apply_shared(&SharedChange::Token(orphan)).is_err());
    s.apply_shared(&SharedChange::UserGone("ann".into())).unwrap();
    assert!(s.get_token("t1").unwrap().is_none());
    // A replacement that cannot be applied leaves the tables as they were.
    let broken =
        SharedTables { users: vec![], tokens: vec![token], acl: vec![], hooks: vec![], templates: vec![] };
    s.create_user(&user("kept")).unwrap();
    assert!(s.replace_shared(&broken).is_err());
    assert!(s.get_user("kept").unwrap().is_some());
}

#[test]
fn templates_are_named_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("state.db")).unwrap();
    let t = TemplateRecord { name: "debian".into(), spec: r#"{"a":1}"#.into() };
    s.create_template(&t).unwrap();
    let again = s.create_template(&TemplateRecord { spec: "{}".into(), ..t.clone() }).unwrap_err();
    assert_eq!(again.to_string(), "a template named 'debian' already exists");
    assert_eq!(s.list_templates().unwrap(), vec![t]);
    s.remove_template("debian").unwrap();
    assert_eq!(s.remove_template("debian").unwrap_err().to_string(), "no template 'debian'");
    assert!(s.list_templates().unwrap().is_empty());
}
