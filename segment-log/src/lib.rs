//! Building blocks shared by Strata's two append-only logs: the edge agent's
//! stream buffer (`strata-edge`, `buffer/`) and the core's Raft segment log
//! (`strata-core`, `log/`).
//!
//! It holds the storage mechanics both logs share (each keeps its own body
//! header, bounds and recovery rules on top):
//!
//! * [`frame`]: the `[u32 LE body_len][u32 LE crc32c(body)][body]` frame and
//!   the recovery scan that stops at the first torn or corrupt frame.
//! * [`names`]: segment file names (`<first position, 20 digits>.<ext>`)
//!   and listing a directory of them.
//! * [`atomic`]: replacing a small file atomically (temporary file, fsync,
//!   rename, directory fsync).
//! * [`prefill`]: zero-filling the active segment ahead of small group
//!   commits, so their fsync does not also commit a new file size.
//!
//! and the file layer both logs do their I/O through:
//!
//! * [`fs::Fs`] and [`fs::File`]: the few file-system operations an
//!   append-only, fsync-disciplined log needs (open or create a file,
//!   positional reads and writes, `set_len`, `sync_data`/`sync_all`, create,
//!   list, remove and rename directory entries, fsync a directory). Object
//!   safe, so a log holds an `Arc<dyn Fs>` and its public types stay free of
//!   type parameters.
//! * [`fs::StdFs`]: the production implementation over `std::fs`.
//! * [`sim::SimFs`]: an in-memory file system for tests whose
//!   [`crash`](sim::SimFs::crash) keeps only what was made durable, as a power
//!   cut does: file contents up to their last fsync and directory entries only
//!   if their directory was fsynced after the change. A crash model driven
//!   through it fails when any fsync on an acknowledgement path is removed,
//!   which a model that truncates files itself, or an integration test that
//!   SIGKILLs a process (the page cache survives), cannot show.
//!
//! The simulated file system is always compiled because other crates' tests
//! use it and it is small. Dependencies: `std` and `crc32c` only.

#![forbid(unsafe_code)]

pub mod atomic;
pub mod frame;
pub mod fs;
pub mod names;
pub mod prefill;
pub mod sim;

#[cfg(test)]
mod conformance_tests;
#[cfg(test)]
mod sim_tests;
