//! The container's own files, for mapped pages CRIU did not save.
//!
//! They come from a root directory the user names (`--rootfs`) and from the archive's
//! `rootfs-diff.tar` (files the container changed, which win over the root). A path
//! from the checkpoint is always resolved *inside* that root: `..` stops at the root
//! and absolute symlinks restart from it, so no container path ever names a file of
//! the machine doing the conversion. A file is only used when its size and GNU
//! build-id match what CRIU recorded.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::archive::{Archive, Blob};
use crate::error::Result;
use crate::model::memory::{FileData, InRoot};

/// Why a file's content is missing when no root directory was given.
pub const NO_ROOT: &str = "no --rootfs given";

/// Where container files come from.
pub struct RootFs {
    dir: Option<PathBuf>,
    diff: HashMap<String, Blob>,
    deleted: HashSet<String>,
}

/// What was recorded about a mapped file, to check a candidate against.
pub struct Expect<'a> {
    /// Container path.
    pub path: &'a str,
    /// Size at dump time.
    pub size: Option<u64>,
    /// GNU build-id, if CRIU recorded one.
    pub build_id: &'a [u8],
}

impl RootFs {
    /// A root from `dir` (if given) and the archive's `rootfs-diff.tar` and
    /// `deleted.files` (if present).
    pub fn new(dir: Option<PathBuf>, archive: &Archive) -> Result<RootFs> {
        let mut diff = HashMap::new();
        if let Some(m) = archive.member("rootfs-diff.tar") {
            if let Ok(blob) = m.open() {
                // A damaged diff only costs its files; the images are still usable.
                index_tar(&blob, &mut diff);
            }
        }
        let mut deleted = HashSet::new();
        // containerd's diff is an OCI layer: `.wh.NAME` says NAME was deleted.
        let whiteouts: Vec<String> = diff
            .keys()
            .filter(|k| crate::archive::oci::whiteout(k).is_some())
            .cloned()
            .collect();
        for k in whiteouts {
            diff.remove(&k);
            if let Some(crate::archive::oci::Whiteout::Entry(p)) = crate::archive::oci::whiteout(&k)
            {
                deleted.insert(p);
            }
        }
        if let Some(m) = archive.member("deleted.files") {
            if let Ok(bytes) = m.read_all(16 << 20) {
                if let Ok(list) = serde_json::from_slice::<Vec<String>>(&bytes) {
                    deleted.extend(
                        list.into_iter()
                            .map(|p| p.trim_start_matches('/').to_string()),
                    );
                }
            }
        }
        Ok(RootFs { dir, diff, deleted })
    }

    /// The content of a container file, or why it can't be used.
    pub fn open(&self, want: &Expect<'_>) -> std::result::Result<FileData, String> {
        let rel = want.path.trim_start_matches('/');
        let mut in_root = None;
        let blob = if let Some(b) = self.diff.get(rel) {
            b.clone()
        } else if self.deleted.contains(rel) {
            return Err("deleted in the container (deleted.files)".into());
        } else if let Some(dir) = &self.dir {
            let p = resolve_in_root(dir, rel)
                .ok_or_else(|| format!("not found in {}", dir.display()))?;
            let f = File::open(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            let len = f.metadata().map_err(|e| e.to_string())?.len();
            let path = std::fs::canonicalize(&p).unwrap_or_else(|_| p.clone());
            // A reader given the root as its sysroot follows links the way this
            // machine does, out of the root for an absolute one.
            let naive = std::fs::canonicalize(dir.join(rel)).ok();
            in_root = Some(InRoot {
                by_container_path: naive.as_ref() == Some(&path),
                path,
            });
            Blob::from_file(&p.display().to_string(), f, len)
        } else {
            return Err(NO_ROOT.into());
        };
        if let Some(size) = want.size {
            if blob.len() != size {
                return Err(format!(
                    "the file there has {} bytes, the checkpoint recorded {size}",
                    blob.len()
                ));
            }
        }
        if !want.build_id.is_empty() {
            match build_id(&blob) {
                Some(id) if id == want.build_id => {}
                Some(id) => {
                    return Err(format!(
                        "build-id {} differs from the recorded {}",
                        hex(&id),
                        hex(want.build_id)
                    ))
                }
                None => return Err("has no build-id, the checkpoint recorded one".into()),
            }
        }
        Ok(FileData {
            in_root,
            ..FileData::whole(blob)
        })
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Resolves `rel` under `root` without ever leaving it: `..` stops at the root and
/// absolute symlink targets are taken relative to the root.
pub fn resolve_in_root(root: &Path, rel: &str) -> Option<PathBuf> {
    let mut todo: Vec<String> = rel.split('/').rev().map(str::to_string).collect();
    let mut parts: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(c) = todo.pop() {
        match c.as_str() {
            "" | "." => continue,
            ".." => {
                parts.pop();
                continue;
            }
            _ => {}
        }
        let here: PathBuf = parts
            .iter()
            .chain(std::iter::once(&c))
            .fold(root.to_path_buf(), |p, c| p.join(c));
        let meta = std::fs::symlink_metadata(&here).ok()?;
        if meta.file_type().is_symlink() {
            hops += 1;
            if hops > 40 {
                return None;
            }
            let target = std::fs::read_link(&here).ok()?;
            let target = target.to_str()?.to_string();
            if target.starts_with('/') {
                parts.clear();
            }
            todo.extend(target.split('/').rev().map(str::to_string));
        } else {
            parts.push(c);
        }
    }
    let p = parts.iter().fold(root.to_path_buf(), |p, c| p.join(c));
    p.is_file().then_some(p)
}

/// Reads the GNU build-id from an ELF file's PT_NOTE segments (64- or 32-bit, either
/// byte order: s390x binaries are big-endian).
pub fn build_id(blob: &Blob) -> Option<Vec<u8>> {
    let mut eh = [0u8; 64];
    blob.read_exact_at(0, &mut eh[..52.min(blob.len() as usize)])
        .ok()?;
    if &eh[..4] != b"\x7fELF" || !matches!(eh[5], 1 | 2) {
        return None;
    }
    let be = eh[5] == 2;
    let is64 = eh[4] == 2;
    if is64 {
        blob.read_exact_at(0, &mut eh).ok()?;
    }
    let uint = |b: &[u8]| -> u64 {
        let fold = |acc: u64, x: &u8| acc << 8 | *x as u64;
        if be {
            b.iter().fold(0, fold)
        } else {
            b.iter().rev().fold(0, fold)
        }
    };
    let u16at = |b: &[u8], o: usize| uint(&b[o..o + 2]);
    let u32at = |b: &[u8], o: usize| uint(&b[o..o + 4]);
    let u64at = |b: &[u8], o: usize| uint(&b[o..o + 8]);
    let (phoff, phentsize, phnum) = if is64 {
        (u64at(&eh, 32), u16at(&eh, 54), u16at(&eh, 56))
    } else {
        (u32at(&eh, 28), u16at(&eh, 42), u16at(&eh, 44))
    };
    if phnum > 4096 || phentsize < if is64 { 56 } else { 32 } {
        return None;
    }
    for i in 0..phnum {
        let mut ph = vec![0u8; phentsize as usize];
        blob.read_exact_at(phoff.checked_add(i * phentsize)?, &mut ph)
            .ok()?;
        let (ptype, off, size) = if is64 {
            (u32at(&ph, 0), u64at(&ph, 8), u64at(&ph, 32))
        } else {
            (u32at(&ph, 0), u32at(&ph, 4), u32at(&ph, 16))
        };
        if ptype != 4 || size > 1 << 20 {
            continue;
        }
        let mut notes = vec![0u8; size as usize];
        blob.read_exact_at(off, &mut notes).ok()?;
        let mut p = 0usize;
        while p + 12 <= notes.len() {
            let namesz = u32at(&notes, p) as usize;
            let descsz = u32at(&notes, p + 4) as usize;
            let ntype = u32at(&notes, p + 8);
            let name_at = p + 12;
            let desc_at = name_at + namesz.div_ceil(4) * 4;
            let end = desc_at.checked_add(descsz.div_ceil(4) * 4)?;
            if desc_at + descsz > notes.len() {
                break;
            }
            if ntype == 3 && namesz == 4 && &notes[name_at..name_at + 4] == b"GNU\0" {
                return Some(notes[desc_at..desc_at + descsz].to_vec());
            }
            p = end;
        }
    }
    None
}

/// Adapter so the `tar` crate can index a tar that is itself a member.
struct BlobReader<'a> {
    blob: &'a Blob,
    pos: u64,
}

impl Read for BlobReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.blob.len().saturating_sub(self.pos)) as usize;
        self.blob
            .read_exact_at(self.pos, &mut buf[..n])
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for BlobReader<'_> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let new = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.blob.len().checked_add_signed(d),
        };
        self.pos = new.ok_or_else(|| std::io::Error::other("seek out of range"))?;
        Ok(self.pos)
    }
}

/// Indexes the regular files of an uncompressed tar held in `blob`.
fn index_tar(blob: &Blob, out: &mut HashMap<String, Blob>) {
    walk_tar(blob, &mut |e| {
        if e.kind == "file" {
            if let Ok(slice) = blob.slice(e.offset, e.size) {
                out.insert(e.path.to_string(), slice);
            }
        }
    });
}

/// One entry of a tar, as [`walk_tar`] reports it.
pub struct TarEntry<'a> {
    /// Normalised path (no leading `/`).
    pub path: &'a str,
    /// "file", "dir", "symlink", "link" or "other".
    pub kind: &'static str,
    /// Size in bytes.
    pub size: u64,
    /// Offset of the data in the tar.
    pub offset: u64,
}

/// Calls `f` for every safely named entry of an uncompressed tar in `blob`, stopping
/// at the first damaged header (gzip-compressed diffs, as containerd writes them, are
/// not read).
pub fn walk_tar(blob: &Blob, f: &mut dyn FnMut(TarEntry<'_>)) {
    let mut tar = tar::Archive::new(BlobReader { blob, pos: 0 });
    let Ok(entries) = tar.entries_with_seek() else {
        return;
    };
    for entry in entries {
        let Ok(entry) = entry else { return };
        let Ok(path) = entry.path() else { continue };
        let Some(name) = crate::archive::normalize_name(&path.to_string_lossy()) else {
            continue;
        };
        let kind = match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => "file",
            tar::EntryType::Directory => "dir",
            tar::EntryType::Symlink => "symlink",
            tar::EntryType::Link => "link",
            _ => "other",
        };
        f(TarEntry {
            path: &name,
            kind,
            size: entry.size(),
            offset: entry.raw_file_position(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 file with one PT_NOTE holding a GNU build-id, in either
    /// byte order.
    fn elf_with_build_id(be: bool, id: &[u8]) -> Vec<u8> {
        let u16b = |v: u16| if be { v.to_be_bytes() } else { v.to_le_bytes() };
        let u32b = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
        let u64b = |v: u64| if be { v.to_be_bytes() } else { v.to_le_bytes() };
        let mut f = vec![0u8; 64];
        f[..6].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, if be { 2 } else { 1 }]);
        f[32..40].copy_from_slice(&u64b(64)); // e_phoff
        f[54..56].copy_from_slice(&u16b(56)); // e_phentsize
        f[56..58].copy_from_slice(&u16b(1)); // e_phnum
        let mut note = Vec::new();
        note.extend_from_slice(&u32b(4));
        note.extend_from_slice(&u32b(id.len() as u32));
        note.extend_from_slice(&u32b(3));
        note.extend_from_slice(b"GNU\0");
        note.extend_from_slice(id);
        let mut ph = vec![0u8; 56];
        ph[..4].copy_from_slice(&u32b(4)); // PT_NOTE
        ph[8..16].copy_from_slice(&u64b(120)); // p_offset
        ph[32..40].copy_from_slice(&u64b(note.len() as u64)); // p_filesz
        f.extend_from_slice(&ph);
        f.extend_from_slice(&note);
        f
    }

    #[test]
    fn build_ids_of_both_byte_orders() {
        let id: Vec<u8> = (1..=20).collect();
        for be in [false, true] {
            let path =
                std::env::temp_dir().join(format!("ck2core-bid-{}-{be}", std::process::id()));
            std::fs::write(&path, elf_with_build_id(be, &id)).unwrap();
            let len = std::fs::metadata(&path).unwrap().len();
            let blob = Blob::from_file("x", File::open(&path).unwrap(), len);
            let got = build_id(&blob);
            std::fs::remove_file(&path).unwrap();
            assert_eq!(got.as_deref(), Some(&id[..]), "big-endian: {be}");
        }
    }
}
