//! Walking an uncompressed tar that is itself a member of the checkpoint
//! (`rootfs-diff.tar`) or a layer read in place, by offset, without copying it.

use std::io::{Read, Seek, SeekFrom};

use crate::archive::Blob;

/// Adapter so the `tar` crate can read a tar held in a [`Blob`].
pub(crate) struct BlobReader<'a> {
    pub(crate) blob: &'a Blob,
    pub(crate) pos: u64,
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

/// [`BlobReader`] owning its blob, for a layer opened as a stream.
pub(crate) struct OwnedBlobReader {
    pub(crate) blob: Blob,
    pub(crate) pos: u64,
}

impl Read for OwnedBlobReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        BlobReader {
            blob: &self.blob,
            pos: self.pos,
        }
        .read(buf)
        .inspect(|n| self.pos += *n as u64)
    }
}
