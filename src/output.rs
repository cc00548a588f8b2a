//! Output files that appear complete or not at all: written under a temporary
//! name in the output directory and renamed when done; any error (or panic) on the
//! way removes the temporary file.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A file being written to `dir/name`.
pub struct AtomicFile {
    /// The open temporary file.
    pub file: File,
    /// Its temporary path (for messages).
    pub tmp: PathBuf,
    path: PathBuf,
    armed: bool,
}

impl AtomicFile {
    /// Creates the temporary file for `dir/name`; refuses to replace an existing
    /// `dir/name` unless `force`.
    pub fn create(dir: &Path, name: &str, force: bool) -> Result<AtomicFile> {
        let path = dir.join(name);
        if !force && std::fs::symlink_metadata(&path).is_ok() {
            return Err(Error::Usage(format!(
                "{} exists; use --force to overwrite it",
                path.display()
            )));
        }
        let tmp = dir.join(format!(".{name}.partial-{}", std::process::id()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| Error::io(&tmp, e))?;
        Ok(AtomicFile {
            file,
            tmp,
            path,
            armed: true,
        })
    }

    /// Renames the finished file into place; returns its final path.
    pub fn commit(mut self) -> Result<PathBuf> {
        std::fs::rename(&self.tmp, &self.path).map_err(|e| Error::io(&self.path, e))?;
        self.armed = false;
        Ok(self.path.clone())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
