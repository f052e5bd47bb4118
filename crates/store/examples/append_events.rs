//! Appends events to the store at the path given as the first argument, printing
//! `committed ID` after each commit, until killed. Used by the crash test in tests/sqlite.rs.

use store::{EventRecord, SqliteStore, Store};

fn main() {
    let path = std::env::args_os().nth(1).expect("usage: append_events DB");
    let s = SqliteStore::open(std::path::Path::new(&path)).expect("open the store");
    let e = EventRecord {
        id: 0,
        time_ms: 1,
        vm: Some("w".into()),
        level: "info".into(),
        kind: "tick".into(),
        message: "tick".into(),
    };
    for _ in 0..1_000_000 {
        let id = s.append_event(&e).expect("append");
        println!("committed {id}");
    }
}
