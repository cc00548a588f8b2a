//! The container's own files: the one place that finds, verifies and serves them, for
//! the converter (file pages CRIU did not save), the sysroot beside the cores, the
//! report and the inspection commands.
//!
//! The root is stacked as the container saw it: the archive's `rootfs-diff.tar` and
//! `deleted.files` (what the container changed) on top of either a directory the user
//! names (`--rootfs`) or the layers of an image (`--image`). A path from the checkpoint
//! is always resolved *inside* that stack: `..` stops at the root and absolute symlinks
//! restart from it, so no container path ever names a file of the machine doing the
//! conversion. A file is only used when its size and GNU build-id match what CRIU
//! recorded.

mod dir;
pub mod image;
mod layers;
pub mod sysroot;
mod tarwalk;
mod verify;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

pub use layers::{Layer, Layered, OpenLayer};
pub use tarwalk::{walk_tar, TarEntry};
pub use verify::{build_id, build_id_of, check, hex, interpreter, Expect};

use crate::archive::{Archive, Blob};
use crate::model::memory::{FileData, InRoot};

/// Why a file's content is missing when no root was given.
pub const NO_ROOT: &str = "no --rootfs or --image given";

/// Where a file's bytes are.
#[derive(Clone, Debug)]
pub(crate) enum Content {
    /// A plain file of the local filesystem (a `--rootfs` directory): it can be linked.
    Local(PathBuf),
    /// Bytes in place in a file (an uncompressed tar member or layer), and the
    /// layer's name.
    Blob(Blob, std::sync::Arc<str>),
    /// Inside a compressed layer of the image: decompressed when needed.
    Packed {
        layer: usize,
        offset: u64,
        size: u64,
    },
}

/// What a path of the root is, without following it.
#[derive(Clone, Debug)]
pub(crate) enum Node {
    Dir,
    File(Content),
    Symlink(String),
    /// Hidden (a whiteout, deleted.files): why.
    Gone(String),
}

/// The root below `rootfs-diff.tar`.
pub enum Base {
    /// Neither `--rootfs` nor `--image`: only the archive's own files.
    None,
    /// A directory (`--rootfs`).
    Dir(PathBuf),
    /// An image's layers (`--image`).
    Image(Layered),
}

/// A file found in the root.
#[derive(Debug)]
pub struct Found {
    /// Its path in the container, every symlink resolved (no leading `/`).
    pub path: String,
    /// Its bytes.
    pub data: FileData,
    /// The symbolic links passed on the way: (link path, target as written).
    pub links: Vec<(String, String)>,
}

/// Where container files come from.
pub struct RootFs {
    base: Base,
    diff: Option<Layered>,
    deleted: HashSet<String>,
    notes: Vec<String>,
}

/// A path resolved: (real path, content, links passed as (link, target)).
type Resolved = (String, Content, Vec<(String, String)>);

/// Most symbolic links followed for one path (as the kernel's limit).
const MAX_LINKS: usize = 40;

impl RootFs {
    /// A root of `base` with the archive's `rootfs-diff.tar` and `deleted.files` (if
    /// present) on top.
    pub fn new(base: Base, archive: &Archive) -> RootFs {
        let mut notes = Vec::new();
        let diff = archive.member("rootfs-diff.tar").and_then(|m| {
            let blob = m.open().ok()?;
            let layer = Layer::in_place("rootfs-diff.tar", "rootfs-diff.tar", blob);
            // A damaged diff only costs its files; the images are still usable.
            Layered::new(archive.label(), vec![layer], u64::MAX)
                .map_err(|e| notes.push(format!("rootfs-diff.tar not used: {e}")))
                .ok()
        });
        let mut deleted = HashSet::new();
        if let Some(m) = archive.member("deleted.files") {
            if let Ok(bytes) = m.read_all(16 << 20) {
                if let Ok(list) = serde_json::from_slice::<Vec<String>>(&bytes) {
                    deleted.extend(
                        list.iter().filter_map(|p| {
                            crate::archive::normalize_name(p.trim_start_matches('/'))
                        }),
                    );
                }
            }
        }
        RootFs {
            base,
            diff,
            deleted,
            notes,
        }
    }

    /// Things noticed while reading the root (a diff that could not be used).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Adds notes (from reading the image file).
    pub fn add_notes(&mut self, notes: Vec<String>) {
        self.notes.extend(notes);
    }

    /// The image, when the base is one (`--image`).
    pub fn image(&self) -> Option<&Layered> {
        match &self.base {
            Base::Image(l) => Some(l),
            _ => None,
        }
    }

    /// Whether any root was given (`--rootfs` or `--image`).
    pub fn has_base(&self) -> bool {
        !matches!(self.base, Base::None)
    }

    fn label(&self) -> String {
        match &self.base {
            Base::None => "rootfs-diff.tar".into(),
            Base::Dir(d) => d.display().to_string(),
            Base::Image(l) => l.label().to_string(),
        }
    }

    /// The node at a normalised path: the diff's entries, then deleted.files, then
    /// the base.
    fn node(&self, path: &str) -> Option<Node> {
        if let Some(n) = self.diff.as_ref().and_then(|d| d.explicit(path)) {
            return Some(n);
        }
        if self.deleted.contains(path) {
            return Some(Node::Gone(
                "deleted in the container (deleted.files)".into(),
            ));
        }
        if let Some(why) = self.diff.as_ref().and_then(|d| d.hides_below(path)) {
            return Some(Node::Gone(why));
        }
        match &self.base {
            Base::None => None,
            Base::Dir(root) => dir::node(root, path),
            Base::Image(l) => l.node(path),
        }
    }

    /// The entries directly in `dir` (`""` for the root), upper ones winning.
    fn list(&self, dir: &str) -> Vec<(String, Node)> {
        let hidden = self.diff.as_ref().is_some_and(|d| d.hides_entries_of(dir));
        let mut out = match &self.base {
            _ if hidden => Vec::new(),
            Base::None => Vec::new(),
            Base::Dir(root) => dir::list(root, dir),
            Base::Image(l) => l.list(dir),
        };
        if let Some(d) = &self.diff {
            for (name, n) in d.list(dir) {
                out.retain(|(m, _)| *m != name);
                out.push((name, n));
            }
        }
        let join = |name: &str| {
            if dir.is_empty() {
                name.to_string()
            } else {
                format!("{dir}/{name}")
            }
        };
        out.retain(|(name, _)| !self.deleted.contains(&join(name)));
        out
    }

    /// Resolves a container path inside the root, following symbolic links there.
    pub fn find(&self, path: &str) -> Result<Found, String> {
        let (real, content, links) = self.resolve(path)?;
        Ok(Found {
            path: real,
            data: self.data(content, path)?,
            links,
        })
    }

    /// The real path, where its bytes are, and the links passed on the way.
    fn resolve(&self, path: &str) -> Result<Resolved, String> {
        let mut todo: Vec<String> = path.split('/').rev().map(str::to_string).collect();
        let mut parts: Vec<String> = Vec::new();
        let mut links = Vec::new();
        while let Some(c) = todo.pop() {
            match c.as_str() {
                "" | "." => continue,
                ".." => {
                    parts.pop();
                    continue;
                }
                _ => {}
            }
            parts.push(c);
            let here = parts.join("/");
            match self.node(&here) {
                Some(Node::Symlink(target)) => {
                    if links.len() >= MAX_LINKS {
                        return Err(format!(
                            "more than {MAX_LINKS} symbolic links (a loop?) at /{here}"
                        ));
                    }
                    parts.pop();
                    if target.starts_with('/') {
                        parts.clear();
                    }
                    todo.extend(target.split('/').rev().map(str::to_string));
                    links.push((here, target));
                }
                Some(Node::Gone(why)) => return Err(format!("/{here}: {why}")),
                Some(Node::File(_)) if todo.iter().any(|c| !c.is_empty() && c != ".") => {
                    return Err(format!("/{here} is a file, not a directory"))
                }
                _ => {}
            }
        }
        let real = parts.join("/");
        match self.node(&real) {
            Some(Node::File(c)) => Ok((real, c, links)),
            Some(Node::Dir) => Err(format!("/{real} is a directory")),
            _ if matches!(self.base, Base::None) => Err(NO_ROOT.into()),
            _ => Err(format!("not found in {}", self.label())),
        }
    }

    /// The bytes of `content`, found for the container path `asked`.
    fn data(&self, content: Content, asked: &str) -> Result<FileData, String> {
        let (blob, in_root, from) = match content {
            Content::Local(p) => {
                let f = std::fs::File::open(&p).map_err(|e| format!("{}: {e}", p.display()))?;
                let len = f.metadata().map_err(|e| e.to_string())?.len();
                let path = std::fs::canonicalize(&p).unwrap_or_else(|_| p.clone());
                // A reader given the root as its sysroot follows links the way this
                // machine does, out of the root for an absolute one.
                let naive = match &self.base {
                    Base::Dir(d) => {
                        std::fs::canonicalize(d.join(asked.trim_start_matches('/'))).ok()
                    }
                    _ => None,
                };
                let at = InRoot {
                    by_container_path: naive.as_ref() == Some(&path),
                    path,
                };
                let blob = Blob::from_file(&p.display().to_string(), f, len);
                (blob, Some(at), "--rootfs".to_string())
            }
            Content::Blob(b, layer) => (b, None, layer.to_string()),
            Content::Packed {
                layer,
                offset,
                size,
            } => match &self.base {
                Base::Image(l) => (
                    l.materialise(layer, offset, size)
                        .map_err(|e| e.to_string())?,
                    None,
                    l.layer_name(layer).to_string(),
                ),
                _ => return Err("internal: packed content without an image".into()),
            },
        };
        Ok(FileData {
            in_root,
            from: Some(from),
            ..FileData::whole(blob)
        })
    }

    /// The content of a container file, verified against what CRIU recorded, or
    /// why it can't be used.
    pub fn open(&self, want: &Expect<'_>) -> Result<FileData, String> {
        let found = self.find(want.path)?;
        check(&found.data.chunks[0].1, want)?;
        Ok(found.data)
    }

    /// Decompresses, in one pass per layer, the image's files at `paths` whose size is
    /// what the checkpoint recorded, so that later lookups don't each read a layer.
    pub fn prefetch(&self, paths: &[(String, Option<u64>)]) {
        let Base::Image(l) = &self.base else { return };
        let mut by_layer: std::collections::BTreeMap<usize, Vec<(u64, u64)>> = Default::default();
        for (p, want) in paths {
            if let Ok((
                _,
                Content::Packed {
                    layer,
                    offset,
                    size,
                },
                _,
            )) = self.resolve(p)
            {
                if want.is_none_or(|w| w == size) {
                    by_layer.entry(layer).or_default().push((offset, size));
                }
            }
        }
        for (layer, files) in by_layer {
            // An error here recurs, with its reason, when the file is opened.
            let _ = l.fetch(layer, &files);
        }
    }

    /// The separate debug file for `build_id`, from `usr/lib/debug/.build-id/` of
    /// this root, if it is there and has that build-id.
    pub fn debug_file(&self, build_id: &[u8]) -> Option<Found> {
        if build_id.len() < 2 {
            return None;
        }
        let path = debug_path(build_id);
        let found = self.find(&path).ok()?;
        (verify::build_id(&found.data.chunks[0].1).as_deref() == Some(build_id)).then_some(found)
    }
}

/// Where a debug file lives under a root, by build-id.
pub fn debug_path(build_id: &[u8]) -> String {
    format!(
        "usr/lib/debug/.build-id/{:02x}/{}.debug",
        build_id[0],
        hex(&build_id[1..])
    )
}

/// Resolves `rel` under the directory `root` without ever leaving it (`..` stops at
/// the root, absolute symlinks restart from it); `None` if it is not a regular file.
pub fn resolve_in_root(root: &Path, rel: &str) -> Option<PathBuf> {
    let r = RootFs {
        base: Base::Dir(root.to_path_buf()),
        diff: None,
        deleted: HashSet::new(),
        notes: Vec::new(),
    };
    match r.resolve(rel).ok()?.1 {
        Content::Local(p) => Some(p),
        _ => None,
    }
}
