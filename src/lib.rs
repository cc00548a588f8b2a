//! ck2core: CRIU container checkpoints to ELF core files, and views of what is inside.
//!
//! Data flows one way: [`archive`] (input) -> [`images`] (CRIU framing and messages)
//! -> [`model`] (one model of the checkpoint) -> [`core`] (the ELF core writer),
//! [`minidump`] (the minidump writer) and the command-line views.
#![deny(missing_docs)]

pub mod arch;
pub mod archive;
pub mod core;
pub mod error;
pub mod images;
pub mod minidump;
pub mod model;
pub mod output;
pub mod report;
pub mod rootfs;
pub mod views;

pub use error::{Error, Result};
