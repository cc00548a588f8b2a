//! CRIU image framing and decoding.
//!
//! An image is `[HEAD_MAGIC] TYPE_MAGIC { u32 size, protobuf payload [, extra bytes] }`.
//! Every size is checked against what is left of the member before it is used, and
//! every error names the member and the entry.
//!
//! CRIU writes the magics and sizes in the byte order of the machine it ran on:
//! little-endian on x86_64, aarch64, ppc64le and riscv64, big-endian on s390x. The
//! order of each image is told from its first magic (a known magic read backwards
//! means big-endian), and every integer of the framing is read in that order.
//! Protobuf payloads are byte-order free; raw bytes in images (page contents,
//! siginfo, build-id and address words) are the dumping machine's memory.

use std::sync::Arc;

use prost::Message;

use crate::archive::{resolve_link, Archive, Blob, Format, Input, Limits};
use crate::error::{Error, Result};

pub mod pagemap;
pub mod pages;

/// Messages generated from `proto/criu.proto`.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/criu.rs"));
}

/// Image magics (CRIU criu/include/magic.h).
pub mod magic {
    /// Head magic of ordinary images.
    pub const COMMON: u32 = 0x5456_4319;
    /// Head magic of `stats-dump` and `irmap-cache`.
    pub const SERVICE: u32 = 0x5510_5940;
    /// inventory.img (no head magic).
    pub const INVENTORY: u32 = 0x5831_3116;
    /// pstree.img
    pub const PSTREE: u32 = 0x5027_3030;
    /// fdinfo-*.img
    pub const FDINFO: u32 = 0x5621_3732;
    /// pagemap-*.img and pagemap-shmem-*.img
    pub const PAGEMAP: u32 = 0x5608_4025;
    /// core-*.img
    pub const CORE: u32 = 0x5505_3847;
    /// ids-*.img
    pub const IDS: u32 = 0x5443_2030;
    /// ipcns-shm-*.img
    pub const IPCNS_SHM: u32 = 0x4628_3044;
    /// fs-*.img
    pub const FS: u32 = 0x5140_3912;
    /// mm-*.img
    pub const MM: u32 = 0x5749_2820;
    /// remap-fpath.img
    pub const REMAP_FPATH: u32 = 0x5913_3954;
    /// ghost-file-*.img
    pub const GHOST_FILE: u32 = 0x5258_3605;
    /// files.img
    pub const FILES: u32 = 0x5630_3138;
    /// memfd.img
    pub const MEMFD_INODE: u32 = 0x4845_3499;
    /// stats-dump
    pub const STATS: u32 = 0x5709_3306;
    /// cgroup.img
    pub const CGROUP: u32 = 0x5938_3330;
    /// utsns-*.img
    pub const UTSNS: u32 = 0x5447_3203;
}

/// Largest metadata image read into memory (pages files are never read whole).
pub const MAX_IMAGE: u64 = 256 << 20;

/// The byte order of the machine that wrote a checkpoint, as seen in its images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ByteOrder {
    /// Little-endian (x86_64, aarch64, arm, ppc64le, riscv64).
    #[default]
    Little,
    /// Big-endian (s390x).
    Big,
}

impl ByteOrder {
    /// A u32 from 4 bytes in this order.
    pub fn u32(self, b: [u8; 4]) -> u32 {
        match self {
            ByteOrder::Little => u32::from_le_bytes(b),
            ByteOrder::Big => u32::from_be_bytes(b),
        }
    }

    /// The 4 bytes of `v` in this order (the memory a u32 word held).
    pub fn u32_bytes(self, v: u32) -> [u8; 4] {
        match self {
            ByteOrder::Little => v.to_le_bytes(),
            ByteOrder::Big => v.to_be_bytes(),
        }
    }
}

/// One decoded image file: a cursor over its entries.
pub struct Image {
    member: String,
    bytes: Vec<u8>,
    pos: usize,
    entry: usize,
    order: ByteOrder,
}

impl Image {
    /// Checks the magics of `bytes` (member `member`) and positions at the first entry.
    ///
    /// The byte order is the one in which the first magic is a known one: the head
    /// magic, or `want` for images without one (inventory.img).
    pub fn parse(member: &str, bytes: Vec<u8>, want: u32) -> Result<Image> {
        let err = |d: String| Error::image(member, d);
        let raw =
            |at: usize| -> Option<[u8; 4]> { bytes.get(at..at + 4).map(|b| b.try_into().unwrap()) };
        let first = raw(0).ok_or_else(|| err("shorter than an image header (4 bytes)".into()))?;
        let known = |v: u32| v == magic::COMMON || v == magic::SERVICE || v == want;
        let order = if known(u32::from_le_bytes(first)) {
            ByteOrder::Little
        } else if known(u32::from_be_bytes(first)) {
            ByteOrder::Big
        } else {
            return Err(err(format!(
                "image magic is {:#010x} (or {:#010x} read big-endian), expected {want:#010x}: not the image its name says",
                u32::from_le_bytes(first),
                u32::from_be_bytes(first)
            )));
        };
        let first = order.u32(first);
        let (found, pos) = if first == magic::COMMON || first == magic::SERVICE {
            let t = raw(4).ok_or_else(|| err("ends after the head magic".into()))?;
            (order.u32(t), 8)
        } else {
            (first, 4)
        };
        if found != want {
            return Err(err(format!(
                "image magic is {found:#010x}, expected {want:#010x}: not the image its name says"
            )));
        }
        Ok(Image {
            member: member.to_string(),
            bytes,
            pos,
            entry: 0,
            order,
        })
    }

    /// The byte order the image was written in.
    pub fn byte_order(&self) -> ByteOrder {
        self.order
    }

    /// Member name, for messages.
    pub fn member(&self) -> &str {
        &self.member
    }

    /// An error about the entry just read.
    pub fn error(&self, detail: impl std::fmt::Display) -> Error {
        Error::image(
            &self.member,
            format!("entry {}: {detail}", self.entry.saturating_sub(1)),
        )
    }

    /// Decodes the next entry, or `None` at a clean end of file.
    pub fn next_entry<M: Message + Default>(&mut self) -> Result<Option<M>> {
        let rest = self.bytes.len() - self.pos;
        if rest == 0 {
            return Ok(None);
        }
        let e = self.entry;
        if rest < 4 {
            return Err(Error::image(
                &self.member,
                format!(
                    "entry {e}: {rest} stray bytes where a 4-byte size was expected (truncated?)"
                ),
            ));
        }
        let size =
            self.order
                .u32(self.bytes[self.pos..self.pos + 4].try_into().unwrap()) as usize;
        if size > rest - 4 {
            return Err(Error::image(
                &self.member,
                format!(
                    "entry {e}: size field says {size} bytes but only {} remain (truncated?)",
                    rest - 4
                ),
            ));
        }
        let start = self.pos + 4;
        let msg = M::decode(&self.bytes[start..start + size]).map_err(|err| {
            Error::image(
                &self.member,
                format!("entry {e}: not a valid {}: {err}", short_type::<M>()),
            )
        })?;
        self.pos = start + size;
        self.entry += 1;
        Ok(Some(msg))
    }

    /// Decodes every remaining entry.
    pub fn all<M: Message + Default>(&mut self) -> Result<Vec<M>> {
        let mut out = Vec::new();
        while let Some(m) = self.next_entry()? {
            out.push(m);
        }
        Ok(out)
    }

    /// Decodes exactly one entry (for single-entry images).
    pub fn single<M: Message + Default>(mut self) -> Result<M> {
        self.next_entry()?
            .ok_or_else(|| Error::image(&self.member, "holds no entry (one was expected)"))
    }

    /// Takes `len` raw bytes that follow an entry (the "extra" payload of some images).
    pub fn extra(&mut self, len: usize) -> Result<(usize, usize)> {
        let rest = self.bytes.len() - self.pos;
        if len > rest {
            return Err(self.error(format!("extra payload of {len} bytes, only {rest} remain")));
        }
        let at = self.pos;
        self.pos += len;
        Ok((at, len))
    }
}

/// Entry-by-entry reading of an image that may be too large to hold in memory
/// (ghost files carry whole file contents), by offset.
pub struct BlobImage {
    blob: Blob,
    pos: u64,
    entry: usize,
    order: ByteOrder,
}

impl BlobImage {
    /// Checks the magics and positions at the first entry.
    pub fn open(blob: Blob, want: u32) -> Result<BlobImage> {
        let mut head = [0u8; 8];
        let n = blob.len().min(8) as usize;
        blob.read_exact_at(0, &mut head[..n])?;
        let img = Image::parse(blob.name(), head[..n].to_vec(), want)?;
        Ok(BlobImage {
            blob,
            pos: img.pos as u64,
            entry: 0,
            order: img.order,
        })
    }

    /// The member.
    pub fn blob(&self) -> &Blob {
        &self.blob
    }

    /// Current offset.
    pub fn pos(&self) -> u64 {
        self.pos
    }

    /// Decodes the next entry (`None` at the end).
    pub fn next_entry<M: Message + Default>(&mut self) -> Result<Option<M>> {
        let rest = self.blob.len() - self.pos;
        if rest == 0 {
            return Ok(None);
        }
        let e = self.entry;
        let err = |d: String| Error::image(self.blob.name(), format!("entry {e}: {d}"));
        if rest < 4 {
            return Err(err(format!(
                "{rest} stray bytes where a 4-byte size was expected (truncated?)"
            )));
        }
        let mut w = [0u8; 4];
        self.blob.read_exact_at(self.pos, &mut w)?;
        let size = self.order.u32(w) as u64;
        if size > rest - 4 {
            return Err(err(format!(
                "size field says {size} bytes but only {} remain (truncated?)",
                rest - 4
            )));
        }
        let mut buf = vec![0u8; size as usize];
        self.blob.read_exact_at(self.pos + 4, &mut buf)?;
        let msg = M::decode(buf.as_slice())
            .map_err(|x| err(format!("not a valid {}: {x}", short_type::<M>())))?;
        self.pos += 4 + size;
        self.entry += 1;
        Ok(Some(msg))
    }

    /// Takes `len` raw bytes after the current entry, as a blob.
    pub fn extra(&mut self, len: u64) -> Result<Blob> {
        let b = self.blob.slice(self.pos, len).map_err(|_| {
            Error::image(
                self.blob.name(),
                format!(
                    "entry {}: extra payload of {len} bytes runs past the end",
                    self.entry.saturating_sub(1)
                ),
            )
        })?;
        self.pos += len;
        Ok(b)
    }
}

fn short_type<M>() -> &'static str {
    let full = std::any::type_name::<M>();
    full.rsplit("::").next().unwrap_or(full)
}

/// A directory of CRIU images inside an archive (or on disk).
#[derive(Clone)]
pub struct ImageDir {
    archive: Arc<Archive>,
    prefix: String,
}

impl ImageDir {
    /// The images of `archive`, wherever in it they are.
    pub fn new(archive: Arc<Archive>) -> Result<ImageDir> {
        let prefix = archive.images_prefix()?;
        Ok(ImageDir { archive, prefix })
    }

    /// The directory prefix of the images in the archive.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The archive the images are in.
    pub fn archive(&self) -> &Arc<Archive> {
        &self.archive
    }

    /// Full member name of image `file`.
    pub fn member_name(&self, file: &str) -> String {
        format!("{}{file}", self.prefix)
    }

    /// Whether image `file` exists.
    pub fn has(&self, file: &str) -> bool {
        self.archive.member(&self.member_name(file)).is_some()
    }

    /// Reads image `file` if it exists.
    pub fn read(&self, file: &str, want: u32) -> Result<Option<Image>> {
        let name = self.member_name(file);
        match self.archive.member(&name) {
            None => Ok(None),
            Some(m) => Image::parse(&name, m.read_all(MAX_IMAGE)?, want).map(Some),
        }
    }

    /// Reads image `file`, which must exist.
    pub fn require(&self, file: &str, want: u32) -> Result<Image> {
        self.read(file, want)?
            .ok_or_else(|| Error::image(self.member_name(file), "missing from the checkpoint"))
    }

    /// Opens a raw image (a pages file) for positioned reads.
    pub fn raw(&self, file: &str) -> Result<Blob> {
        let name = self.member_name(file);
        self.archive
            .member(&name)
            .ok_or_else(|| Error::image(&name, "missing from the checkpoint"))?
            .open()
    }

    /// The parent image directory of an incremental dump (the `parent` link), if any.
    pub fn parent(&self) -> Result<Option<ImageDir>> {
        let link = self.member_name("parent");
        let Some(member) = self.archive.member(&link) else {
            return Ok(None);
        };
        let Some(target) = member.symlink_target() else {
            return Err(Error::image(
                &link,
                "is not a symbolic link to the parent images",
            ));
        };
        if self.archive.format() == Format::Directory {
            // An image directory on disk: CRIU's own link, followed as CRIU would.
            let base = self.archive.dir_path(&self.prefix).unwrap_or_default();
            let dir = base.join(target);
            if !dir.is_dir() {
                return Err(Error::image(
                    &link,
                    format!(
                        "points to {}, which is not a directory: parent images missing",
                        dir.display()
                    ),
                ));
            }
            let archive = Archive::open(&Input::Path(dir), &Limits::default())?;
            return ImageDir::new(Arc::new(archive)).map(Some);
        }
        let resolved = resolve_link(&link, target).ok_or_else(|| {
            Error::image(
                &link,
                format!("points outside the archive ({target}); refusing to follow"),
            )
        })?;
        let prefix = format!("{resolved}/");
        if !self.archive.members().any(|m| m.name.starts_with(&prefix)) {
            return Err(Error::image(
                &link,
                format!("points to {resolved}/, which is not in the archive: the parent (pre-dump) images are missing"),
            ));
        }
        Ok(Some(ImageDir {
            archive: self.archive.clone(),
            prefix,
        }))
    }

    /// Names (relative to the image dir) of images starting with `prefix`.
    pub fn list(&self, prefix: &str) -> Vec<String> {
        self.archive
            .members()
            .filter_map(|m| m.name.strip_prefix(&self.prefix).map(str::to_string))
            .filter(|n| n.starts_with(prefix) && !n[prefix.len()..].contains('/'))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(order: ByteOrder, want: u32, entries: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for w in [magic::COMMON, want] {
            out.extend_from_slice(&order.u32_bytes(w));
        }
        for e in entries {
            out.extend_from_slice(&order.u32_bytes(e.len() as u32));
            out.extend_from_slice(e);
        }
        out
    }

    #[test]
    fn byte_order_comes_from_the_magic_and_governs_the_sizes() {
        // A pstree entry: pid 7 (field 1, varint).
        let entry: &[u8] = &[0x08, 0x07];
        for order in [ByteOrder::Little, ByteOrder::Big] {
            let mut img = Image::parse(
                "pstree.img",
                framed(order, magic::PSTREE, &[entry, entry]),
                magic::PSTREE,
            )
            .unwrap();
            assert_eq!(img.byte_order(), order);
            let all: Vec<pb::PstreeEntry> = img.all().unwrap();
            assert_eq!(all.len(), 2, "{order:?}");
            assert_eq!(all[1].pid, Some(7));
        }
        // inventory.img has no head magic: its own magic tells the order.
        let inv = magic::INVENTORY.to_be_bytes().to_vec();
        let img = Image::parse("inventory.img", inv, magic::INVENTORY).unwrap();
        assert_eq!(img.byte_order(), ByteOrder::Big);
    }

    #[test]
    fn a_size_read_in_the_wrong_order_is_caught() {
        // Big-endian magics with a little-endian size: the size is 0x02000000.
        let mut b = framed(ByteOrder::Big, magic::PSTREE, &[]);
        b.extend_from_slice(&2u32.to_le_bytes());
        b.extend_from_slice(&[0x08, 0x07]);
        let mut img = Image::parse("pstree.img", b, magic::PSTREE).unwrap();
        let e = img.next_entry::<pb::PstreeEntry>().unwrap_err().to_string();
        assert!(
            e.contains("pstree.img") && e.contains("size field says 33554432"),
            "{e}"
        );
    }

    #[test]
    fn an_unknown_magic_names_both_readings() {
        let e = Image::parse("core-1.img", vec![1, 2, 3, 4, 5, 6, 7, 8], magic::CORE)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("core-1.img") && e.contains("0x04030201") && e.contains("0x01020304"),
            "{e}"
        );
    }
}
