//! `--image`: the image's layers, as the archive's image reader presents them
//! ([`crate::archive::oci`]), stacked into a [`Layered`] root. A plain tar layer is
//! read in place; a compressed one is decompressed only for the files asked for.

use std::path::Path;

use super::{Layer, Layered};
use crate::arch::Arch;
use crate::archive::oci::{Compression, ImageFile};
use crate::archive::Limits;
use crate::error::Result;

/// Opens the image at `path` (the manifest for `arch` in a multi-platform index) and
/// indexes its layers. Returns the root and notes from reading the image file.
pub fn open(path: &Path, arch: Option<Arch>, limits: &Limits) -> Result<(Layered, Vec<String>)> {
    let file = ImageFile::open(path, limits)?;
    let image = file.select(arch.map(Arch::name))?;
    let prefix = format!("{}: layer ", file.label());
    let mut layers = Vec::with_capacity(image.layers.len());
    for (i, l) in image.layers.iter().enumerate() {
        let what = l
            .digest
            .clone()
            .unwrap_or_else(|| l.name.strip_prefix(&prefix).unwrap_or(&l.name).to_string());
        let name = format!("layer {} ({what})", i + 1);
        layers.push(match l.compression()? {
            Compression::None => Layer::in_place(&name, &what, l.blob().clone()),
            _ => {
                let l = l.clone();
                Layer::streamed(
                    &name,
                    &what,
                    Box::new(move || Ok(Box::new(l.open()?) as Box<dyn std::io::Read>)),
                )
            }
        });
    }
    let mut identity = vec![image.id.clone()];
    identity.extend(image.manifest_digest.clone());
    let layered = Layered::new(file.label(), layers, limits.max_unpacked)?
        .with_identity(identity, image.reference.clone());
    Ok((layered, file.notes().to_vec()))
}
