//! Checkpoint images: a container checkpoint stored as an OCI or Docker image, as
//! `checkpointctl build`, buildah and `podman container checkpoint --create-image`
//! make them so that CRI-O, containerd and Podman can restore from a registry.
//!
//! An image is a checkpoint when its manifest (or the index naming it) carries one of
//! [`CHECKPOINT_ANNOTATIONS`]; a Docker archive keeps no annotations, so there its
//! config's labels of the same names count. Its layers hold the checkpoint archive's
//! members; several layers are read as one layered tree (upper layers win, OCI
//! whiteouts hide lower members). Layers are read in place when they are plain tars,
//! and decompressed once into the spool otherwise, as a compressed archive is.

use std::collections::BTreeMap;

use serde::Serialize;

use super::oci::{whiteout, Compression, Image, ImageFile, Whiteout};
use super::{tarball, Archive, Format, Limits, Member};
use crate::error::{Error, Result};

/// The annotations that mark a checkpoint image, each giving the container's name:
/// Podman's (`podman container checkpoint --create-image`, libpod
/// `define.CheckpointAnnotationName`), CRI-O's (what its restore looks for), and
/// checkpointctl's (`checkpointctl build`), the last one present naming it.
pub const CHECKPOINT_ANNOTATIONS: [&str; 3] = [
    "io.podman.annotations.checkpoint.name",
    "io.kubernetes.cri-o.annotations.checkpoint.name",
    "org.criu.checkpoint.container.name",
];

/// The image a checkpoint was read from (`ck2core info`).
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct CheckpointImage {
    /// `oci-layout`, `oci-archive` or `docker-archive`.
    pub format: &'static str,
    /// The image's reference (tag), if the file names one.
    pub reference: Option<String>,
    /// Image id: the config's digest.
    pub id: String,
    /// The manifest's digest (OCI forms).
    pub manifest_digest: Option<String>,
    /// The checkpointed container's name, from the checkpoint annotation.
    pub container_name: Option<String>,
    /// Annotations of the index and the manifest (for a Docker archive: the config's
    /// labels, its only place for them).
    pub annotations: BTreeMap<String, String>,
    /// The layers, bottom first: digest (or path), and compression.
    pub layers: Vec<ImageLayer>,
}

/// One layer of a [`CheckpointImage`].
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ImageLayer {
    /// Digest, or path in a Docker archive.
    pub name: String,
    /// `tar`, `gzip` or `zstd`, from the content.
    pub compression: &'static str,
    /// Stored size in bytes.
    pub size: u64,
}

/// Annotations (or, for a Docker archive, config labels) that make `image` a
/// checkpoint image, and the container's name they give.
fn marks(image: &Image) -> Option<(BTreeMap<String, String>, Option<String>)> {
    let ann = if image.annotations.is_empty() {
        image.labels()
    } else {
        image.annotations.clone()
    };
    let hit = CHECKPOINT_ANNOTATIONS.iter().any(|k| ann.contains_key(*k));
    let name = CHECKPOINT_ANNOTATIONS
        .iter()
        .rev()
        .find_map(|k| ann.get(*k).filter(|v| !v.is_empty()).cloned());
    hit.then_some((ann, name))
}

/// Reads the checkpoint an image file holds, as an archive of its members.
pub(super) fn open(file: ImageFile, limits: &Limits) -> Result<Archive> {
    let manifests = file.manifests()?;
    let mut found = Vec::new();
    let mut plain = Vec::new();
    for m in &manifests {
        let image = file.image(m)?;
        match marks(&image) {
            Some(mark) => found.push((image, mark)),
            None => plain.push(image),
        }
    }
    let label = file.label().to_string();
    let (image, (annotations, container_name)) = match found.len() {
        1 => found.pop().expect("one"),
        0 => {
            let what = plain
                .first()
                .map(|i| {
                    format!(
                        " ({}{})",
                        i.reference
                            .as_deref()
                            .map(|r| format!("{r}, "))
                            .unwrap_or_default(),
                        i.id
                    )
                })
                .unwrap_or_default();
            return Err(Error::Archive {
                archive: label,
                detail: format!(
                    "a container image{what}, not a checkpoint: no {} annotation",
                    CHECKPOINT_ANNOTATIONS.join(" or ")
                ),
            });
        }
        n => {
            let names: Vec<String> = found
                .iter()
                .map(|(i, (_, name))| {
                    format!(
                        "{} ({})",
                        name.as_deref().unwrap_or("?"),
                        i.manifest_digest.as_deref().unwrap_or(&i.id)
                    )
                })
                .collect();
            return Err(Error::Unsupported(format!(
                "{label}: holds {n} checkpoint images ({}); ck2core reads one checkpoint at a time",
                names.join(", ")
            )));
        }
    };
    let format = match file.format() {
        super::oci::ImageFormat::OciLayout => Format::OciLayout,
        super::oci::ImageFormat::OciArchive => Format::OciArchive,
        super::oci::ImageFormat::DockerArchive => Format::DockerArchive,
    };
    let mut members: BTreeMap<String, Member> = BTreeMap::new();
    let mut notes = file.notes().to_vec();
    let mut layers = Vec::new();
    for layer in &image.layers {
        let comp = layer.compression()?;
        layers.push(ImageLayer {
            name: layer.digest.clone().unwrap_or_else(|| layer.name.clone()),
            compression: comp.name(),
            size: layer.blob().len(),
        });
        let one = match comp {
            Compression::None => {
                tarball::index_blob(layer.name.clone(), Format::Tar, layer.blob())?
            }
            _ => tarball::index_stream(layer.name.clone(), Format::Tar, layer.open()?, limits)?,
        };
        notes.extend(one.notes);
        stack(&mut members, one.members);
    }
    Ok(Archive {
        label,
        format,
        members,
        notes,
        image: Some(Box::new(CheckpointImage {
            format: file.format().name(),
            reference: image.reference.clone(),
            id: image.id.clone(),
            manifest_digest: image.manifest_digest.clone(),
            container_name,
            annotations,
            layers,
        })),
    })
}

/// Puts `upper` over `lower` as OCI layers stack: whiteouts hide what the lower
/// layers had, then the upper layer's own members win.
fn stack(lower: &mut BTreeMap<String, Member>, upper: BTreeMap<String, Member>) {
    for name in upper.keys() {
        match whiteout(name) {
            Some(Whiteout::Opaque(dir)) if dir.is_empty() => lower.clear(),
            Some(Whiteout::Opaque(dir)) => {
                let under = format!("{dir}/");
                lower.retain(|k, _| !k.starts_with(&under));
            }
            Some(Whiteout::Entry(target)) => {
                let under = format!("{target}/");
                lower.retain(|k, _| *k != target && !k.starts_with(&under));
            }
            None => {}
        }
    }
    for (name, m) in upper {
        let base = name.rsplit('/').next().unwrap_or(&name);
        if !base.starts_with(".wh.") {
            lower.insert(name, m);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::Data;

    fn m(name: &str) -> (String, Member) {
        (
            name.to_string(),
            Member {
                name: name.to_string(),
                size: 0,
                stored: None,
                data: Data::SizeOnly,
            },
        )
    }

    #[test]
    fn upper_layers_win_and_whiteouts_hide() {
        let mut lower: BTreeMap<String, Member> = [
            m("checkpoint/core-1.img"),
            m("checkpoint/pages-1.img"),
            m("old/a"),
            m("old/b/c"),
            m("keep"),
            m("spec.dump"),
        ]
        .into_iter()
        .collect();
        let upper = [
            m("checkpoint/.wh..wh..opq"),
            m("checkpoint/core-9.img"),
            m(".wh.old"),
            m("spec.dump"),
        ]
        .into_iter()
        .collect();
        stack(&mut lower, upper);
        let names: Vec<&str> = lower.keys().map(String::as_str).collect();
        assert_eq!(names, ["checkpoint/core-9.img", "keep", "spec.dump"]);
    }
}
