//! Exports and the writer policy: which export a client's name selects, and how many
//! connections may hold it at once.
//!
//! Architecture invariant: a read-write export that is not `shared` has at most one writing
//! connection at any time. For an ordinary export the slot is taken atomically at
//! `NBD_OPT_GO`/`NBD_OPT_EXPORT_NAME`, so it has at most one connection in transmission; a
//! `handover` export admits several connections and gives the slot to the first one that writes,
//! until it ends (a live migration's mirror hands the disk to the destination's emulator this
//! way). The slot is given back when the connection ends ([`Claim`] is an RAII guard).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use block::BlockDevice;

use crate::error::ConfigError;
use crate::proto::MAX_STRING_LEN;

/// One named disk offered to clients.
#[derive(Clone)]
pub struct Export {
    /// The name clients ask for. The first export is also the default (empty name).
    pub name: String,
    /// Shown by `nbdinfo` and `NBD_OPT_LIST`; may be empty.
    pub description: String,
    /// The disk behind the export.
    pub device: Arc<dyn BlockDevice>,
    /// Refuse writes even if the device accepts them.
    pub read_only: bool,
    /// Allow several read-write connections at once (and advertise `NBD_FLAG_CAN_MULTI_CONN`).
    /// Without it a read-write export takes one connection at a time.
    pub shared: bool,
    /// Admit several connections, but let only one of them write: the first to write holds the
    /// writer slot until it disconnects; another connection's writes wait up to [`CLAIM_GRACE`]
    /// for it and then fail with `EPERM`.
    pub handover: bool,
}

impl Export {
    /// A read-write, unshared export with no description.
    pub fn new(name: impl Into<String>, device: Arc<dyn BlockDevice>) -> Self {
        Self {
            name: name.into(),
            description: String::new(),
            device,
            read_only: false,
            shared: false,
            handover: false,
        }
    }

    /// True when the export or its device refuses writes.
    pub fn is_read_only(&self) -> bool {
        self.read_only || self.device.info().read_only
    }

    /// True when only one connection at a time may use the export.
    fn is_exclusive(&self) -> bool {
        !self.shared && !self.handover && !self.is_read_only()
    }

    /// True when connections take the writer slot at their first write.
    fn writes_by_handover(&self) -> bool {
        self.handover && !self.shared && !self.is_read_only()
    }

    /// The message sent to a client refused because another connection holds the export.
    fn busy_message(&self) -> String {
        format!("export '{}' already has a writer; serve it with --shared to allow several", self.name)
    }
}

impl fmt::Debug for Export {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Export")
            .field("name", &self.name)
            .field("description", &self.description)
            .field("device", &self.device.info())
            .field("read_only", &self.read_only)
            .field("shared", &self.shared)
            .field("handover", &self.handover)
            .finish()
    }
}

/// The validated exports of a server and which of them currently have their one writer.
pub(crate) struct ExportTable {
    exports: Vec<Export>,
    held: Mutex<Vec<bool>>,
    freed: Condvar,
}

/// How long a new connection waits for an unshared export's writer to leave before it is
/// refused. A client that disconnects and at once reconnects (`qemu-img info` then `qemu-img
/// convert`) must not be refused because the server has not yet seen the first connection end.
pub const CLAIM_GRACE: Duration = Duration::from_secs(3);

impl ExportTable {
    /// Checks that the names are unique, non-empty NBD strings.
    pub(crate) fn new(exports: Vec<Export>) -> Result<Self, ConfigError> {
        if exports.is_empty() {
            return Err(ConfigError::NoExports);
        }
        for (index, export) in exports.iter().enumerate() {
            if export.name.is_empty() {
                return Err(ConfigError::EmptyName { index });
            }
            for (field, value) in [("name", &export.name), ("description", &export.description)] {
                if value.len() > MAX_STRING_LEN || value.contains('\0') {
                    return Err(ConfigError::InvalidString { name: export.name.clone(), field });
                }
            }
            if exports[..index].iter().any(|earlier| earlier.name == export.name) {
                return Err(ConfigError::DuplicateName { name: export.name.clone() });
            }
        }
        let held = Mutex::new(vec![false; exports.len()]);
        Ok(Self { exports, held, freed: Condvar::new() })
    }

    /// The export a client's name selects: the empty name is the first export.
    pub(crate) fn find(&self, name: &str) -> Option<usize> {
        if name.is_empty() {
            return Some(0);
        }
        self.exports.iter().position(|export| export.name == name)
    }

    pub(crate) fn get(&self, index: usize) -> &Export {
        &self.exports[index]
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Export> {
        self.exports.iter()
    }

    /// Waits up to [`CLAIM_GRACE`] for export `index` to have no writer; the guard says
    /// whether it is free.
    fn wait_free(&self, index: usize) -> MutexGuard<'_, Vec<bool>> {
        let deadline = Instant::now() + CLAIM_GRACE;
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        while held[index] {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            held = self.freed.wait_timeout(held, deadline - now).unwrap_or_else(PoisonError::into_inner).0;
        }
        held
    }

    /// Whether a new connection could use export `index` (waiting briefly for a writer that is
    /// leaving); the error is the refusal message.
    pub(crate) fn check_available(&self, index: usize) -> Result<(), String> {
        let export = self.get(index);
        if export.is_exclusive() && self.wait_free(index)[index] {
            return Err(export.busy_message());
        }
        Ok(())
    }

    /// Takes export `index` for one connection, if the writer policy allows it.
    pub(crate) fn claim(&self, index: usize) -> Result<Claim<'_>, String> {
        let export = self.get(index);
        let later = export.writes_by_handover().then_some(index);
        if !export.is_exclusive() {
            return Ok(Claim { table: self, held: None, later, taken: AtomicBool::new(false) });
        }
        let mut held = self.wait_free(index);
        if held[index] {
            return Err(export.busy_message());
        }
        held[index] = true;
        Ok(Claim { table: self, held: Some(index), later: None, taken: AtomicBool::new(false) })
    }
}

/// A connection's hold on an export; an exclusive export becomes free again when it drops, and so
/// does a handover export's writer slot taken by this connection.
pub(crate) struct Claim<'a> {
    table: &'a ExportTable,
    held: Option<usize>,
    /// A handover export, whose writer slot this connection takes at its first write.
    later: Option<usize>,
    /// Whether it has.
    taken: AtomicBool,
}

impl Claim<'_> {
    /// Before a write: the writer slot of a handover export (waiting up to [`CLAIM_GRACE`] for
    /// the connection holding it to end). Every other export was settled at the handshake.
    pub(crate) fn writer(&self) -> Result<(), String> {
        let Some(index) = self.later else { return Ok(()) };
        if self.taken.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut held = self.table.wait_free(index);
        if self.taken.load(Ordering::Acquire) {
            return Ok(()); // another request of this connection took it meanwhile
        }
        if held[index] {
            return Err(format!(
                "export '{}' is written by another connection; it takes writes once that one has left",
                self.table.get(index).name
            ));
        }
        held[index] = true;
        self.taken.store(true, Ordering::Release);
        Ok(())
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let index = self.held.or(self.later.filter(|_| self.taken.load(Ordering::Acquire)));
        if let Some(index) = index {
            self.table.held.lock().unwrap_or_else(PoisonError::into_inner)[index] = false;
            self.table.freed.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use block::{BlockError, DeviceInfo};

    use super::*;

    struct Null;

    impl BlockDevice for Null {
        fn info(&self) -> DeviceInfo {
            DeviceInfo { size: 0, read_only: false, preferred_block: 512, can_trim: false }
        }
        fn read_at(&self, _: &mut [u8], _: u64) -> Result<(), BlockError> {
            Ok(())
        }
        fn write_at(&self, _: &[u8], _: u64) -> Result<(), BlockError> {
            Ok(())
        }
        fn flush(&self) -> Result<(), BlockError> {
            Ok(())
        }
    }

    fn export(name: &str) -> Export {
        Export::new(name, Arc::new(Null))
    }

    #[test]
    fn empty_name_selects_the_first_export() {
        let table = ExportTable::new(vec![export("a"), export("b")]).expect("valid");
        assert_eq!(table.find(""), Some(0));
        assert_eq!(table.find("b"), Some(1));
        assert_eq!(table.find("c"), None);
    }

    #[test]
    fn duplicate_export_names_are_rejected() {
        let err = ExportTable::new(vec![export("a"), export("a")]).err().expect("duplicate");
        assert_eq!(err, ConfigError::DuplicateName { name: "a".into() });
    }

    #[test]
    fn empty_export_list_and_empty_names_are_rejected() {
        assert_eq!(ExportTable::new(vec![]).err().expect("empty"), ConfigError::NoExports);
        assert_eq!(
            ExportTable::new(vec![export("")]).err().expect("unnamed"),
            ConfigError::EmptyName { index: 0 }
        );
    }

    #[test]
    fn description_longer_than_protocol_limit_is_rejected() {
        let mut long = export("a");
        long.description = "d".repeat(MAX_STRING_LEN + 1);
        let err = ExportTable::new(vec![long]).err().expect("too long");
        assert_eq!(err, ConfigError::InvalidString { name: "a".into(), field: "description" });
    }

    #[test]
    fn second_writer_of_unshared_export_is_refused_until_the_first_leaves() {
        let table = ExportTable::new(vec![export("disk")]).expect("valid");
        let first = table.claim(0).expect("first writer");
        assert_eq!(
            table.claim(0).err().expect("second writer"),
            "export 'disk' already has a writer; serve it with --shared to allow several"
        );
        assert!(table.check_available(0).is_err());
        drop(first);
        table.claim(0).expect("free again");
    }

    #[test]
    fn a_writer_leaving_during_the_grace_period_lets_the_next_one_in() {
        let table = ExportTable::new(vec![export("disk")]).expect("valid");
        let first = table.claim(0).expect("first writer");
        std::thread::scope(|s| {
            let waiter = s.spawn(|| table.claim(0).map(|_| ()));
            std::thread::sleep(Duration::from_millis(200));
            drop(first);
            waiter.join().expect("no panic").expect("claimed once the first writer left");
        });
    }

    #[test]
    fn a_handover_export_lets_the_first_writer_write_until_it_leaves() {
        let mut e = export("disk");
        e.handover = true;
        let table = ExportTable::new(vec![e]).expect("valid");
        let mirror = table.claim(0).expect("first connection");
        let guest = table.claim(0).expect("a second connection is admitted");
        mirror.writer().expect("the first to write takes the slot");
        mirror.writer().expect("and keeps it");
        let t = Instant::now();
        let refused = guest.writer().expect_err("the other may not write meanwhile");
        assert!(t.elapsed() >= CLAIM_GRACE, "it waited for the writer to leave first");
        assert!(refused.contains("written by another connection"), "{refused}");
        std::thread::scope(|s| {
            let w = s.spawn(|| guest.writer());
            std::thread::sleep(Duration::from_millis(200));
            drop(mirror);
            w.join().expect("no panic").expect("the slot passes once the writer has left");
        });
        let third = table.claim(0).expect("admitted");
        assert!(third.writer().is_err(), "the second holds it now");
    }

    #[test]
    fn shared_and_read_only_exports_take_many_connections() {
        let mut shared = export("shared");
        shared.shared = true;
        let mut read_only = export("ro");
        read_only.read_only = true;
        let table = ExportTable::new(vec![shared, read_only]).expect("valid");
        for index in [0, 1] {
            let _first = table.claim(index).expect("first");
            let _second = table.claim(index).expect("second");
        }
    }
}
