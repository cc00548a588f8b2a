//! A root that is a directory of the local filesystem (`--rootfs`). Only single
//! components are looked at here, never followed: the resolver walks the links itself,
//! inside the root.

use std::path::Path;

use super::{Content, Node};

/// The node at `path` (normalised, every parent already known not to be a link).
pub(super) fn node(root: &Path, path: &str) -> Option<Node> {
    let p = root.join(path);
    let meta = std::fs::symlink_metadata(&p).ok()?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        let t = std::fs::read_link(&p).ok()?;
        Some(Node::Symlink(t.to_str()?.to_string()))
    } else if ft.is_dir() {
        Some(Node::Dir)
    } else if ft.is_file() {
        Some(Node::File(Content::Local(p)))
    } else {
        None
    }
}

/// The entries directly in `dir`.
pub(super) fn list(root: &Path, dir: &str) -> Vec<(String, Node)> {
    let Ok(rd) = std::fs::read_dir(root.join(dir)) else {
        return Vec::new();
    };
    rd.filter_map(|e| {
        let name = e.ok()?.file_name().to_str()?.to_string();
        let rel = if dir.is_empty() {
            name.clone()
        } else {
            format!("{dir}/{name}")
        };
        Some((name, node(root, &rel)?))
    })
    .collect()
}
