//! One error type for everything that reads a checkpoint.
//!
//! Errors are for people reading evidence: each one names where the problem is (the
//! archive member, the entry, the field) and what was expected, so that a damaged or
//! hostile checkpoint can be diagnosed without a debugger.

use std::path::PathBuf;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while reading a checkpoint or writing a core.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file of the machine doing the conversion could not be read or written.
    #[error("{}: {err}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said (in the message, so not a `source`).
        err: std::io::Error,
    },
    /// The archive itself (tar framing, compression, member names) is unusable.
    #[error("{archive}: {detail}")]
    Archive {
        /// The archive as the user named it.
        archive: String,
        /// What is wrong.
        detail: String,
    },
    /// An image (a member of the checkpoint) is missing, damaged or inconsistent.
    #[error("{member}: {detail}")]
    Image {
        /// Archive member, e.g. `checkpoint/mm-1.img`.
        member: String,
        /// Entry and field, and what was expected.
        detail: String,
    },
    /// The checkpoint is valid but asks for something ck2core does not do yet.
    #[error("{0}")]
    Unsupported(String),
    /// The user asked for something that cannot be done (e.g. an unknown pid).
    #[error("{0}")]
    Usage(String),
}

impl Error {
    /// An [`Error::Image`] for `member`.
    pub fn image(member: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Image {
            member: member.into(),
            detail: detail.into(),
        }
    }

    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            err: source,
        }
    }
}
