//! `--image`: an image's layers, as the archive reader presents them, stacked into a
//! [`Layered`] root.

use std::path::Path;

use super::Layered;
use crate::arch::Arch;
use crate::archive::Limits;
use crate::error::{Error, Result};

/// Opens the image at `path` (choosing the manifest for `arch` in a multi-platform
/// index) and indexes its layers.
pub fn open(path: &Path, arch: Option<Arch>, limits: &Limits) -> Result<Layered> {
    let _ = (arch, limits);
    Err(Error::Unsupported(format!(
        "{}: reading images is not available yet",
        path.display()
    )))
}
