//! vine's storage engine: Microsoft's VHD format, complete.
//!
//! * [`spec`], [`footer`], [`header`], [`geometry`], [`locator`]: the on-disk structures, parsed
//!   from bytes with no I/O, each error naming the field and its offset.
//! * [`image::VhdFile`]: one file: mapping, crash-consistent allocation, flush.
//! * [`chain::Disk`]: a file with its parents, as a [`block::BlockDevice`].
//! * [`create`], [`check`], [`ops`]: making, checking/repairing and transforming images.
//!
//! This crate knows nothing about NBD or VMs; it does blocking I/O on files only.
#![warn(missing_docs)]

pub mod backing;
pub mod chain;
pub mod check;
pub mod create;
pub mod error;
pub mod footer;
#[doc(hidden)]
pub mod fuzzing;
pub mod geometry;
pub mod header;
pub mod image;
pub mod locator;
pub mod lock;
pub mod ops;
pub mod spec;
pub mod workload;

pub use chain::{Disk, OpenOptions};
pub use error::{FormatError, VhdError};
pub use footer::{DiskType, Footer};
