//! Errors of the VHD engine. [`FormatError`] says what is wrong with bytes on disk and where;
//! [`VhdError`] adds the file, the chain and the operation.

use std::io;
use std::path::PathBuf;

/// A structural fault in an image's metadata, naming the field and its file offset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// A structure's magic cookie is not what the spec requires.
    #[error("{structure} cookie at offset {offset:#x} is {found:?}, expected {expected:?}")]
    BadCookie {
        /// "footer" or "dynamic header".
        structure: &'static str,
        /// File offset of the structure.
        offset: u64,
        /// The bytes found, as lossy text.
        found: String,
        /// The required cookie.
        expected: &'static str,
    },
    /// A stored checksum does not match the structure's bytes.
    #[error("{structure} checksum mismatch at offset {offset:#x}: stored {stored:#010x}, computed {computed:#010x}")]
    BadChecksum {
        /// "footer" or "dynamic header".
        structure: &'static str,
        /// File offset of the checksum field.
        offset: u64,
        /// Value in the file.
        stored: u32,
        /// Value computed from the bytes.
        computed: u32,
    },
    /// A field holds a value the format does not allow.
    #[error("{structure} field {field} at offset {offset:#x} is {value:#x}: {reason}")]
    BadField {
        /// The structure holding the field.
        structure: &'static str,
        /// The field's name as the spec spells it.
        field: &'static str,
        /// File offset of the field.
        offset: u64,
        /// The value found.
        value: u64,
        /// Why it is not allowed.
        reason: String,
    },
    /// The file is shorter than a structure that must be in it.
    #[error("file is {file_len} bytes, too short for the {structure} at offset {offset:#x} ({len} bytes)")]
    Truncated {
        /// The missing structure.
        structure: &'static str,
        /// Where it should start.
        offset: u64,
        /// Its length.
        len: u64,
        /// The file's length.
        file_len: u64,
    },
    /// Two on-disk regions that must be disjoint overlap.
    #[error(
        "{first} ({first_start:#x}..{first_end:#x}) overlaps {second} ({second_start:#x}..{second_end:#x})"
    )]
    Overlap {
        /// Name of one region.
        first: String,
        /// Its start.
        first_start: u64,
        /// Its end.
        first_end: u64,
        /// Name of the other region.
        second: String,
        /// Its start.
        second_start: u64,
        /// Its end.
        second_end: u64,
    },
}

/// Errors of opening, reading, writing and transforming images.
#[derive(Debug, thiserror::Error)]
pub enum VhdError {
    /// An operating-system error on a file.
    #[error("{op} {path}: {source}")]
    Io {
        /// What vine was doing ("open", "read", "write", …).
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The file is not a valid VHD.
    #[error("{path}: {source}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong and where.
        #[source]
        source: FormatError,
    },
    /// A differencing disk's parent could not be found.
    #[error("{child}: parent disk not found (tried {})", tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    ParentNotFound {
        /// The child.
        child: PathBuf,
        /// Every path looked at.
        tried: Vec<PathBuf>,
    },
    /// The parent found is not the disk the child was made from.
    #[error("{child}: parent {parent} has unique id {found}, but the child was made from {expected}: it is another disk")]
    ParentMismatch {
        /// The child.
        child: PathBuf,
        /// The candidate parent.
        parent: PathBuf,
        /// The id recorded in the child.
        expected: String,
        /// The candidate's id.
        found: String,
    },
    /// The parent was written after the child was made, so the child's view of it is stale.
    #[error("{child}: parent {parent} was modified after the child was made (child records {recorded}, parent file time is {actual}); refusing the chain because its contents may no longer match. If only the file time changed (e.g. a copy), run `vine disk relink {child}`")]
    ParentModified {
        /// The child.
        child: PathBuf,
        /// The parent.
        parent: PathBuf,
        /// VHD time recorded in the child, as text.
        recorded: String,
        /// The parent's modification time, as text.
        actual: String,
    },
    /// The chain is deeper than [`crate::spec::MAX_CHAIN_DEPTH`] or loops.
    #[error("{path}: differencing chain {reason}")]
    BadChain {
        /// The disk at which the problem shows.
        path: PathBuf,
        /// "loops back to …" or "is deeper than 64 disks".
        reason: String,
    },
    /// Another process (vine or QEMU) holds a lock that conflicts with this open.
    #[error("{path} is {}", match holder {
        crate::lock::Holder::Writer => "in use by another writer (lock held); vine refuses two writers on one image",
        crate::lock::Holder::Reader => "open for reading by another process (lock held), e.g. a differencing child served over it; it cannot be written until that ends",
    })]
    Locked {
        /// The image.
        path: PathBuf,
        /// Who holds it.
        holder: crate::lock::Holder,
    },
    /// An invalid argument, e.g. a size that is not allowed.
    #[error("{0}")]
    Invalid(String),
    /// The image has no room for more blocks (2 TiB BAT limit) or the host is full.
    #[error("{path}: no space: {reason}")]
    NoSpace {
        /// The image.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The operation is not possible on this kind of image.
    #[error("{path}: {reason}")]
    Unsupported {
        /// The image.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A block-level error (range, read-only) from the disk view.
    #[error(transparent)]
    Block(#[from] block::BlockError),
}

impl VhdError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        VhdError::Io { op, path: path.into(), source }
    }
    pub(crate) fn format(path: impl Into<PathBuf>, source: FormatError) -> Self {
        VhdError::Format { path: path.into(), source }
    }
}

impl From<VhdError> for block::BlockError {
    fn from(e: VhdError) -> Self {
        match e {
            VhdError::Block(b) => b,
            VhdError::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC) => {
                block::BlockError::NoSpace(source.to_string())
            }
            VhdError::Io { source, .. } => block::BlockError::Io(source),
            VhdError::NoSpace { reason, .. } => block::BlockError::NoSpace(reason),
            other => block::BlockError::Corrupt(other.to_string()),
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = VhdError> = std::result::Result<T, E>;
