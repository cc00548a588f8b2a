//! The sysroot beside the cores: exactly the files the converted processes mapped,
//! each verified and taken from the layer that wins, their separate debug files by
//! build-id, and the symbolic links the dynamic loader's names go through (with their
//! targets rewritten to stay inside the sysroot). gdb and lldb are pointed at it, so
//! they read the container's own files and never this machine's.
//!
//! A file that is a plain file of the local filesystem (`--rootfs`) is hard-linked
//! when it can be (same filesystem, and the kernel's protected_hardlinks lets this
//! user), else reflinked (a copy-on-write clone, on filesystems that have them), else
//! copied; anything else is copied from where the resolver found it.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{debug_path, interpreter, Node, RootFs};
use crate::archive::normalize_name;
use crate::error::{Error, Result};
use crate::model::memory::{FileData, InRoot, MappedFile};
use crate::model::Process;

/// What the sysroot holds.
#[derive(Debug, Default, Clone, Copy)]
pub struct Summary {
    /// Files (mapped files and debug files).
    pub files: usize,
    /// Of those, separate debug files.
    pub debug_files: usize,
    /// Of those, hard links to `--rootfs` files (no bytes copied).
    pub linked: usize,
    /// Of those, reflinks (copy-on-write clones) of `--rootfs` files: no bytes
    /// copied either.
    pub reflinked: usize,
    /// Their total size.
    pub bytes: u64,
    /// Symbolic links recreated.
    pub symlinks: usize,
}

/// A sysroot being written.
pub struct Sysroot {
    dir: PathBuf,
    done: HashSet<String>,
    links: HashSet<String>,
    top_links: bool,
    summary: Summary,
    /// Directories of the sysroot known to exist (made or checked once).
    made: HashSet<PathBuf>,
    /// Per directory of the root: its symbolic links, as (the path they resolve to,
    /// the links passed on the way). A library's soname link sits beside it, so
    /// each directory is listed once, not once per library in it.
    dir_links: HashMap<String, Vec<Resolved>>,
}

/// A link resolved: (the path it reaches, the links passed as (link, target)).
type Resolved = (String, Vec<(String, String)>);

impl Sysroot {
    /// Creates (or reuses) the directory `dir`.
    pub fn create(dir: &Path) -> Result<Sysroot> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let dir = std::fs::canonicalize(dir).map_err(|e| Error::io(dir, e))?;
        Ok(Sysroot {
            dir,
            done: HashSet::new(),
            links: HashSet::new(),
            top_links: false,
            summary: Summary::default(),
            made: HashSet::new(),
            dir_links: HashMap::new(),
        })
    }

    /// Its directory (absolute).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What it holds so far.
    pub fn summary(&self) -> Summary {
        self.summary
    }

    /// Where a container path is in the sysroot, if the sysroot holds it.
    pub fn holds(&self, container_path: &str) -> Option<PathBuf> {
        let rel = normalize_name(container_path.trim_start_matches('/'))?;
        self.done.contains(&rel).then(|| self.dir.join(rel))
    }

    /// Adds the files `process` mapped whose bytes were verified, their debug files
    /// and the links to them; each of those files is then known to be here, at its
    /// container path (so the core's NT_FILE lists exactly what the sysroot holds).
    pub fn add(&mut self, root: &RootFs, process: &mut Process) -> Result<()> {
        if !self.top_links {
            self.top_links = true;
            // /lib -> usr/lib and the like: the loader's names go through them.
            for (name, node) in root.list("") {
                if let Node::Symlink(t) = node {
                    self.link(&name, &t)?;
                }
            }
        }
        let vma_files = process
            .memory
            .iter()
            .flat_map(|m| m.vmas.iter())
            .filter_map(|v| v.file.as_ref());
        let files: Vec<_> = vma_files.chain(process.exe.iter()).cloned().collect();
        for f in &files {
            let Ok(data) = &f.content else { continue };
            if f.deleted {
                continue;
            }
            let Some(rel) = normalize_name(f.path.trim_start_matches('/')) else {
                continue;
            };
            if !self.done.insert(rel.clone()) {
                continue;
            }
            self.file(&rel, data)?;
            if !f.build_id.is_empty() {
                if let Some(dbg) = root.debug_file(&f.build_id) {
                    let drel = debug_path(&f.build_id);
                    if self.done.insert(drel.clone()) {
                        self.file(&drel, &dbg.data)?;
                        self.summary.debug_files += 1;
                    }
                }
            }
            // The program interpreter is opened by the name the executable's
            // PT_INTERP gives (a library's is never used; every file is looked at
            // when the executable is not known).
            let is_exe = process.exe.as_ref().is_none_or(|e| e.path == f.path);
            if let Some(interp) = is_exe.then(|| interpreter(&data.chunks[0].1)).flatten() {
                if let Ok(found) = root.find(&interp) {
                    for (l, t) in &found.links {
                        self.link(l, t)?;
                    }
                }
            }
            // Libraries are opened by their soname, a link beside the file.
            let dir = rel.rsplit_once('/').map_or("", |d| d.0).to_string();
            let links: Vec<(String, String)> = self
                .links_in(root, &dir)
                .iter()
                .filter(|(reached, _)| *reached == rel)
                .flat_map(|(_, passed)| passed.iter().cloned())
                .collect();
            for (l, t) in &links {
                self.link(l, t)?;
            }
        }
        let here = |f: &MappedFile| -> Option<PathBuf> {
            if f.deleted || f.content.is_err() {
                return None;
            }
            self.holds(&f.path)
        };
        let mark = |f: &mut std::sync::Arc<MappedFile>| {
            if let Some(path) = here(f) {
                if let Ok(d) = &mut std::sync::Arc::make_mut(f).content {
                    d.in_root = Some(InRoot {
                        path,
                        by_container_path: true,
                    });
                }
            }
        };
        for v in process.memory.iter_mut().flat_map(|m| m.vmas.iter_mut()) {
            if let Some(f) = v.file.as_mut() {
                mark(f);
            }
        }
        if let Some(f) = process.exe.as_mut() {
            mark(f);
        }
        Ok(())
    }

    /// The symbolic links in directory `dir` of the root, resolved (listed once).
    fn links_in(&mut self, root: &RootFs, dir: &str) -> &[Resolved] {
        self.dir_links.entry(dir.to_string()).or_insert_with(|| {
            root.list(dir)
                .into_iter()
                .filter(|(_, node)| matches!(node, Node::Symlink(_)))
                .filter_map(|(name, _)| {
                    let lpath = if dir.is_empty() {
                        name
                    } else {
                        format!("{dir}/{name}")
                    };
                    root.find(&lpath).ok().map(|f| (f.path, f.links))
                })
                .collect()
        })
    }

    /// Makes the directories of `rel` inside the sysroot, refusing to go through a
    /// symbolic link (one of ours could otherwise lead a later write elsewhere).
    fn parent_of(&mut self, rel: &str) -> Result<PathBuf> {
        let mut p = self.dir.clone();
        let parts: Vec<&str> = rel.split('/').collect();
        for c in &parts[..parts.len() - 1] {
            p.push(c);
            if self.made.contains(&p) {
                continue;
            }
            self.made.insert(p.clone());
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(Error::io(
                        &p,
                        std::io::Error::other(format!(
                            "is not a directory in the sysroot, so /{rel} can't be placed"
                        )),
                    ))
                }
                Err(_) => std::fs::create_dir(&p).map_err(|e| Error::io(&p, e))?,
            }
        }
        Ok(p)
    }

    fn file(&mut self, rel: &str, data: &FileData) -> Result<()> {
        let parent = self.parent_of(rel)?;
        let name = rel.rsplit('/').next().unwrap_or(rel);
        let target = parent.join(name);
        let origin = data.in_root.as_ref().map(|r| &r.path);
        // A hard link appears whole at once: it goes straight to its name, in place
        // of a leftover of an earlier run (never followed, were it a link).
        let linked = origin.is_some_and(|o| match std::fs::hard_link(o, &target) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                std::fs::remove_file(&target).is_ok() && std::fs::hard_link(o, &target).is_ok()
            }
            r => r.is_ok(),
        });
        let how = if linked {
            How::Linked
        } else {
            // Anything written goes to a temporary name first, so that no partial
            // file is ever left under the real one.
            let tmp = parent.join(format!(".{name}.ck2core-tmp"));
            let _ = std::fs::remove_file(&tmp);
            let how = match origin {
                Some(o) => clone_or_copy(o, &tmp),
                None => write_chunks(&tmp, data).map(|_| How::Copied),
            };
            match how.and_then(|h| std::fs::rename(&tmp, &target).map(|_| h)) {
                Ok(h) => h,
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(Error::io(&target, e));
                }
            }
        };
        self.summary.files += 1;
        self.summary.bytes += data.size;
        match how {
            How::Linked => self.summary.linked += 1,
            How::Reflinked => self.summary.reflinked += 1,
            How::Copied => {}
        }
        Ok(())
    }

    /// Recreates the link `rel` -> `target`, its target rewritten relative and
    /// clamped at the sysroot. Whatever is already at `rel` is kept.
    fn link(&mut self, rel: &str, target: &str) -> Result<()> {
        let Some(rel) = normalize_name(rel) else {
            return Ok(());
        };
        if !self.links.insert(rel.clone()) {
            return Ok(());
        }
        let parent = self.parent_of(&rel)?;
        let at = parent.join(rel.rsplit('/').next().unwrap_or(&rel));
        if std::fs::symlink_metadata(&at).is_ok() {
            return Ok(());
        }
        std::os::unix::fs::symlink(contained(&rel, target), &at).map_err(|e| Error::io(&at, e))?;
        self.summary.symlinks += 1;
        Ok(())
    }
}

/// `target` of a link at `rel`, as a relative path that can't leave the sysroot.
pub(crate) fn contained(rel: &str, target: &str) -> String {
    let dir: Vec<&str> = rel.split('/').collect();
    let dir = &dir[..dir.len() - 1];
    let mut parts: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        dir.to_vec()
    };
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    let s = format!("{}{}", "../".repeat(dir.len()), parts.join("/"));
    match s.trim_end_matches('/') {
        "" => ".".to_string(),
        t => t.to_string(),
    }
}

/// How a file of the local filesystem was put in the sysroot.
enum How {
    Linked,
    Reflinked,
    Copied,
}

/// Puts the file `from` at `to` (a fresh name): a reflink, else a copy.
fn clone_or_copy(from: &Path, to: &Path) -> std::io::Result<How> {
    let src = File::open(from)?;
    let dst = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(to)?;
    if rustix::fs::ioctl_ficlone(&dst, &src).is_ok() {
        return Ok(How::Reflinked);
    }
    drop(dst);
    std::fs::copy(from, to)?;
    Ok(How::Copied)
}

fn write_chunks(path: &Path, data: &FileData) -> std::io::Result<()> {
    let f = File::create(path)?;
    f.set_len(data.size)?;
    let mut buf = vec![0u8; 1 << 20];
    for (off, blob) in &data.chunks {
        let mut done = 0u64;
        let len = blob.len().min(data.size.saturating_sub(*off));
        while done < len {
            let n = (len - done).min(buf.len() as u64) as usize;
            blob.read_exact_at(done, &mut buf[..n])
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            f.write_all_at(&buf[..n], off + done)?;
            done += n as u64;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::contained;

    #[test]
    fn link_targets_stay_inside() {
        assert_eq!(contained("lib", "usr/lib"), "usr/lib");
        assert_eq!(
            contained("lib64/ld.so", "/lib/x86_64-linux-gnu/ld.so"),
            "../lib/x86_64-linux-gnu/ld.so"
        );
        assert_eq!(contained("a/b/c", "../../../../../etc"), "../../etc");
        assert_eq!(contained("a/x", "libx.so.1.2"), "../a/libx.so.1.2");
        assert_eq!(contained("up", "/"), ".");
    }
}
