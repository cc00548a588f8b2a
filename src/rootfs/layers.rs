//! A root made of tar layers, looked up top-down as a container engine stacks them:
//! OCI whiteouts (`.wh.NAME`) and opaque directories (`.wh..wh..opq`) hide what lower
//! layers have, hard links may name a file of a lower layer, and symbolic links are
//! kept as links (resolved later, inside this root only).
//!
//! Layers are indexed, never extracted: an uncompressed layer on disk is read in place
//! by offset; from a compressed one, only the files asked for are decompressed, into
//! one anonymous spool file, and the total is bounded.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use super::{Content, Node};
use crate::archive::{normalize_name, Blob};
use crate::error::{Error, Result};

/// Opens a layer as an uncompressed tar stream.
pub type OpenLayer = Box<dyn Fn() -> Result<Box<dyn Read>> + Send + Sync>;

/// One layer: a tar, plain or compressed, as an image holds it.
pub struct Layer {
    /// How messages name it, e.g. `layer 2 (sha256:84f1…)`.
    pub name: String,
    /// What identifies it (its digest): the same layer twice is refused.
    pub id: String,
    /// The uncompressed tar itself when it lies in a file: read in place.
    pub in_place: Option<Blob>,
    /// The layer as an uncompressed tar stream (decompressing on the way).
    pub open: OpenLayer,
}

impl Layer {
    /// A layer that is an uncompressed tar in `blob`.
    pub fn in_place(name: &str, id: &str, blob: Blob) -> Layer {
        let b = blob.clone();
        Layer {
            name: name.to_string(),
            id: id.to_string(),
            in_place: Some(blob),
            open: Box::new(move || {
                Ok(Box::new(super::tarwalk::OwnedBlobReader {
                    blob: b.clone(),
                    pos: 0,
                }) as Box<dyn Read>)
            }),
        }
    }

    /// A layer read through `open` (which decompresses).
    pub fn streamed(name: &str, id: &str, open: OpenLayer) -> Layer {
        Layer {
            name: name.to_string(),
            id: id.to_string(),
            in_place: None,
            open,
        }
    }
}

/// The merged view of a stack of layers.
pub struct Layered {
    label: String,
    layers: Vec<Layer>,
    merged: BTreeMap<String, Node>,
    max_unpacked: u64,
    spool: Mutex<Spool>,
    identity: Vec<String>,
    reference: Option<String>,
    /// Directories made opaque, with the layer that did it: they hide a root
    /// stacked below this one too (a diff over `--rootfs`).
    opaque: Vec<(String, String)>,
}

#[derive(Default)]
struct Spool {
    file: Option<Arc<File>>,
    used: u64,
    done: HashMap<(usize, u64), Blob>,
}

/// One entry of a layer, before it is applied.
enum Entry {
    Dir,
    File { offset: u64, size: u64 },
    Symlink(String),
    HardLink(String),
}

impl Layered {
    /// Indexes `layers` (lowest first) of the image called `label`. Decompression
    /// stops at `max_unpacked` bytes in all.
    pub fn new(label: &str, layers: Vec<Layer>, max_unpacked: u64) -> Result<Layered> {
        let mut merged: BTreeMap<String, Node> = BTreeMap::new();
        let mut all_opaque = Vec::new();
        let mut expanded = 0u64;
        for (i, layer) in layers.iter().enumerate() {
            if let Some(j) = layers[..i].iter().position(|l| l.id == layer.id) {
                return Err(Error::Archive {
                    archive: label.to_string(),
                    detail: format!(
                        "{} repeats {} ({}): an image lists each layer once",
                        layer.name, layers[j].name, layer.id
                    ),
                });
            }
            let err = |detail: String| Error::Archive {
                archive: label.to_string(),
                detail: format!("{}: {detail}", layer.name),
            };
            let name: std::sync::Arc<str> = layer.name.as_str().into();
            let (entries, hide, opaque) = read_layer(layer, i, &mut expanded, max_unpacked)
                .map_err(|e| match e {
                    Error::Archive { detail, .. } => err(detail),
                    other => other,
                })?;
            // Whiteouts and opaque markers apply to the layers below only.
            for dir in &opaque {
                remove_under(&mut merged, dir);
            }
            all_opaque.extend(opaque.into_iter().map(|d| (d, layer.name.clone())));
            for path in hide {
                remove_under(&mut merged, &path);
                merged.insert(
                    path,
                    Node::Gone(format!("removed by a whiteout in {}", layer.name)),
                );
            }
            for (path, e) in entries {
                let node = match e {
                    Entry::Dir => {
                        if matches!(merged.get(&path), Some(Node::Dir)) {
                            continue;
                        }
                        Node::Dir
                    }
                    Entry::File { offset, size } => Node::File(match &layer.in_place {
                        Some(blob) => Content::Blob(
                            blob.slice(offset, size)
                                .map_err(|e| err(format!("entry {path}: {e}")))?,
                            name.clone(),
                        ),
                        None => Content::Packed {
                            layer: i,
                            offset,
                            size,
                        },
                    }),
                    Entry::Symlink(t) => Node::Symlink(t),
                    Entry::HardLink(target) => match merged.get(&target) {
                        Some(Node::File(c)) => Node::File(c.clone()),
                        _ => {
                            return Err(err(format!(
                                "entry {path}: hard link to /{target}, which is not a regular file of this layer or a lower one"
                            )))
                        }
                    },
                };
                remove_under(&mut merged, &path);
                merged.insert(path, node);
            }
        }
        Ok(Layered {
            label: label.to_string(),
            layers,
            merged,
            max_unpacked,
            spool: Mutex::new(Spool::default()),
            identity: Vec::new(),
            reference: None,
            opaque: all_opaque,
        })
    }

    /// Records what identifies the image: its id (config digest) and manifest digest,
    /// and its reference (tag).
    pub fn with_identity(mut self, ids: Vec<String>, reference: Option<String>) -> Layered {
        self.identity = ids;
        self.reference = reference;
        self
    }

    /// The image id first, then the manifest digest (`sha256:...`).
    pub fn identity(&self) -> &[String] {
        &self.identity
    }

    /// The image's reference (tag), if its file names one.
    pub fn reference(&self) -> Option<&str> {
        self.reference.as_deref()
    }

    /// The image, as the user named it.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The node at a normalised path (no leading `/`, no symlink followed); a
    /// directory no layer lists but some path lies under counts as one.
    pub(crate) fn node(&self, path: &str) -> Option<Node> {
        if let Some(n) = self.merged.get(path) {
            return Some(n.clone());
        }
        let prefix = format!("{path}/");
        self.merged
            .range(prefix.clone()..)
            .next()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|_| Node::Dir)
    }

    /// Why a root below this one can't show `path`: it lies under a directory one
    /// of these layers made opaque.
    pub(crate) fn hides_below(&self, path: &str) -> Option<String> {
        self.opaque
            .iter()
            .find(|(dir, _)| dir.is_empty() || path.starts_with(&format!("{dir}/")))
            .map(|(dir, layer)| format!("under /{dir}, made opaque in {layer}"))
    }

    /// Whether a root below this one shows nothing in directory `dir`.
    pub(crate) fn hides_entries_of(&self, dir: &str) -> bool {
        self.opaque
            .iter()
            .any(|(d, _)| d.is_empty() || d == dir || dir.starts_with(&format!("{d}/")))
    }

    /// The node at `path` only if an entry names it (no implied directories).
    pub(crate) fn explicit(&self, path: &str) -> Option<Node> {
        self.merged.get(path).cloned()
    }

    /// The entries directly in directory `dir` (`""` for the root).
    pub(crate) fn list(&self, dir: &str) -> Vec<(String, Node)> {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        self.merged
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| !k[prefix.len()..].contains('/'))
            .map(|(k, n)| (k[prefix.len()..].to_string(), n.clone()))
            .collect()
    }

    /// How messages name the layers, lowest first (`layer 1 (sha256:…)`).
    pub fn layer_names(&self) -> impl Iterator<Item = &str> {
        self.layers.iter().map(|l| l.name.as_str())
    }

    /// How messages name layer `i` (lowest first).
    pub(crate) fn layer_name(&self, i: usize) -> &str {
        &self.layers[i].name
    }

    /// The bytes of a file of a compressed layer, decompressed into the spool once.
    pub(crate) fn materialise(&self, layer: usize, offset: u64, size: u64) -> Result<Blob> {
        self.fetch(layer, &[(offset, size)])?;
        let spool = self.spool.lock().unwrap_or_else(|e| e.into_inner());
        spool
            .done
            .get(&(layer, offset))
            .cloned()
            .ok_or_else(|| self.err(layer, format!("file at offset {offset} was not read")))
    }

    /// Decompresses, in one pass over `layer`, the files at `wanted` (data offset and
    /// size in the uncompressed tar) that are not in the spool yet.
    pub(crate) fn fetch(&self, layer: usize, wanted: &[(u64, u64)]) -> Result<()> {
        let mut spool = self.spool.lock().unwrap_or_else(|e| e.into_inner());
        let mut todo: Vec<(u64, u64)> = wanted
            .iter()
            .copied()
            .filter(|(o, _)| !spool.done.contains_key(&(layer, *o)))
            .collect();
        if todo.is_empty() {
            return Ok(());
        }
        todo.sort_unstable();
        todo.dedup();
        let need: u64 = todo.iter().map(|t| t.1).sum();
        if spool.used.saturating_add(need) > self.max_unpacked {
            return Err(self.err(
                layer,
                format!(
                    "the files needed from it would take more than {} bytes (--max-unpacked)",
                    self.max_unpacked
                ),
            ));
        }
        let file = match &spool.file {
            Some(f) => f.clone(),
            None => {
                let f = Arc::new(crate::archive::spool_file()?);
                spool.file = Some(f.clone());
                f
            }
        };
        let mut src = (self.layers[layer].open)()?;
        let mut pos = 0u64;
        let mut at = spool.used;
        for (offset, size) in todo {
            if offset < pos {
                // Overlapping requests can't happen for distinct files of one tar.
                continue;
            }
            let skipped = std::io::copy(&mut (&mut src).take(offset - pos), &mut std::io::sink())
                .map_err(|e| self.err(layer, format!("decompressing: {e}")))?;
            if skipped != offset - pos {
                return Err(self.err(layer, format!("ends before offset {offset}: truncated?")));
            }
            let mut w = BufWriter::with_capacity(1 << 20, SpoolWriter { file: &file, at });
            let n = std::io::copy(&mut (&mut src).take(size), &mut w)
                .map_err(|e| self.err(layer, format!("decompressing: {e}")))?;
            w.flush()
                .map_err(|e| self.err(layer, format!("spool: {e}")))?;
            if n != size {
                return Err(self.err(
                    layer,
                    format!("file at offset {offset}: {n} of {size} bytes present: truncated?"),
                ));
            }
            let blob = Blob::from_shared(&self.layers[layer].name, file.clone(), at, size);
            spool.done.insert((layer, offset), blob);
            at += size;
            pos = offset + size;
        }
        spool.used = at;
        Ok(())
    }

    fn err(&self, layer: usize, detail: String) -> Error {
        Error::Archive {
            archive: self.label.clone(),
            detail: format!("{}: {detail}", self.layers[layer].name),
        }
    }
}

/// Writes at increasing offsets of the spool.
struct SpoolWriter<'a> {
    file: &'a File,
    at: u64,
}

impl Write for SpoolWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write_all_at(buf, self.at)?;
        self.at += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Removes `path`'s descendants (and `path` itself unless `path` is the root).
fn remove_under(merged: &mut BTreeMap<String, Node>, path: &str) {
    if path.is_empty() {
        merged.clear();
        return;
    }
    merged.remove(path);
    let prefix = format!("{path}/");
    let doomed: Vec<String> = merged
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .map(|(k, _)| k.clone())
        .collect();
    for k in doomed {
        merged.remove(&k);
    }
}

type LayerIndex = (Vec<(String, Entry)>, Vec<String>, Vec<String>);

/// Reads one layer's entries: (entries in order, whiteouts, opaque directories).
fn read_layer(
    layer: &Layer,
    _index: usize,
    expanded: &mut u64,
    max_unpacked: u64,
) -> Result<LayerIndex> {
    let err = |detail: String| Error::Archive {
        archive: String::new(),
        detail,
    };
    let mut entries = Vec::new();
    let mut hide = Vec::new();
    let mut opaque = Vec::new();
    let mut visit = |raw: &str,
                     kind: tar::EntryType,
                     size: u64,
                     offset: u64,
                     link: Option<String>|
     -> Result<()> {
        if raw.trim_start_matches("./").trim_matches('/').is_empty() && kind.is_dir() {
            return Ok(());
        }
        let name = normalize_name(raw)
            .ok_or_else(|| err(format!("entry {raw:?}: the path leaves the image's root")))?;
        let (parent, base) = match name.rsplit_once('/') {
            Some((p, b)) => (p.to_string(), b),
            None => (String::new(), name.as_str()),
        };
        if base == ".wh..wh..opq" {
            opaque.push(parent);
            return Ok(());
        }
        if let Some(hidden) = base.strip_prefix(".wh.") {
            if hidden.starts_with(".wh.") {
                // Other aufs bookkeeping (.wh..wh.plnk and the like): not content.
                return Ok(());
            }
            if hidden.is_empty() || hidden == "." || hidden == ".." {
                return Err(err(format!(
                    "entry {raw:?}: a whiteout of {}",
                    if parent.is_empty() {
                        "/".to_string()
                    } else {
                        format!("/{parent}")
                    }
                )));
            }
            hide.push(if parent.is_empty() {
                hidden.to_string()
            } else {
                format!("{parent}/{hidden}")
            });
            return Ok(());
        }
        use tar::EntryType as T;
        let e = match kind {
            T::Regular | T::Continuous => {
                *expanded = expanded.saturating_add(size);
                if *expanded > max_unpacked {
                    return Err(err(format!(
                        "entry {name}: its size ({size} bytes) takes the image past --max-unpacked ({max_unpacked} bytes)"
                    )));
                }
                Entry::File { offset, size }
            }
            T::Directory => Entry::Dir,
            T::Symlink => Entry::Symlink(link.unwrap_or_default()),
            T::Link => {
                let l = link.unwrap_or_default();
                Entry::HardLink(normalize_name(&l).ok_or_else(|| {
                    err(format!(
                        "entry {name}: hard link target {l:?} leaves the image's root"
                    ))
                })?)
            }
            // Devices, fifos: nothing a debugger reads.
            _ => return Ok(()),
        };
        entries.push((name, e));
        Ok(())
    };
    match &layer.in_place {
        Some(blob) => {
            let mut tar = tar::Archive::new(super::tarwalk::BlobReader { blob, pos: 0 });
            let it = tar
                .entries_with_seek()
                .map_err(|e| err(format!("not a readable tar: {e}")))?;
            scan(it, &mut visit)?;
        }
        None => {
            let mut tar = tar::Archive::new((layer.open)()?);
            let it = tar
                .entries()
                .map_err(|e| err(format!("not a readable tar: {e}")))?;
            scan(it, &mut visit)?;
        }
    }
    Ok((entries, hide, opaque))
}

type Visit<'a> = dyn FnMut(&str, tar::EntryType, u64, u64, Option<String>) -> Result<()> + 'a;

/// Feeds every entry of a tar to `visit`: name, type, size, data offset, link target.
fn scan<R: Read>(entries: tar::Entries<'_, R>, visit: &mut Visit<'_>) -> Result<()> {
    let err = |detail: String| Error::Archive {
        archive: String::new(),
        detail,
    };
    let mut last = String::from("(start)");
    for entry in entries {
        let entry = entry.map_err(|e| err(format!("damaged after entry {last}: {e}")))?;
        let raw = entry
            .path()
            .map_err(|e| err(format!("entry after {last}: bad name: {e}")))?
            .to_string_lossy()
            .into_owned();
        let link = entry
            .link_name()
            .ok()
            .flatten()
            .map(|l| l.to_string_lossy().into_owned());
        visit(
            &raw,
            entry.header().entry_type(),
            entry.size(),
            entry.raw_file_position(),
            link,
        )?;
        last = raw;
    }
    Ok(())
}
