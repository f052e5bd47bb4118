//! Writes to the store at the path given as the first argument until killed, printing
//! `committed N` after each commit. Used by the crash tests in tests/sqlite.rs.
//!
//! Second argument: `events` appends events (fsynced: [`Durability::Host`]); `states` records
//! VM `w` (which must exist) as running with pid N and an event, for N = 1, 2, …, without
//! waiting for the disk ([`Durability::Process`]).

use store::{Durability, EventRecord, SqliteStore, Store};

fn main() {
    let mut args = std::env::args_os().skip(1);
    let path = args.next().expect("usage: append_events DB events|states");
    let mode = args.next().and_then(|m| m.into_string().ok()).unwrap_or_else(|| "events".into());
    let s = SqliteStore::open(std::path::Path::new(&path)).expect("open the store");
    let e = EventRecord {
        id: 0,
        time_ms: 1,
        vm: Some("w".into()),
        host: None,
        level: "info".into(),
        kind: "tick".into(),
        message: "tick".into(),
    };
    for n in 1..1_000_000u32 {
        match mode.as_str() {
            "states" => {
                s.set_state_with_event("w", "running", Some(n), None, &e, Durability::Process)
                    .expect("record a state");
                println!("committed {n}");
            }
            _ => {
                let id = s.append_event(&e).expect("append");
                println!("committed {id}");
            }
        }
    }
}
