//! Input: a CRIU image directory, or a container checkpoint archive (tar, tar.gz,
//! tar.zst, from a file or stdin), presented as one index of named members.
//!
//! Nothing is ever extracted. An uncompressed tar on disk is read in place by offset.
//! A compressed or piped archive is streamed once; the members ck2core may need are
//! copied into one anonymous spool file (unlinked at creation, so nothing is left
//! behind) and read from there by offset. Member names are checked: no absolute
//! paths, no `..`, no duplicates; links are never followed on the local filesystem.

mod ckimage;
pub mod oci;
mod tarball;

pub use ckimage::CheckpointImage;
pub(crate) use tarball::spool_file;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};

/// Where the checkpoint comes from.
#[derive(Debug, Clone)]
pub enum Input {
    /// A directory of images or an archive file.
    Path(PathBuf),
    /// An archive on standard input (`-`).
    Stdin,
}

impl Input {
    /// `-` means standard input; anything else is a path.
    pub fn parse(arg: &str) -> Input {
        if arg == "-" {
            Input::Stdin
        } else {
            Input::Path(PathBuf::from(arg))
        }
    }

    /// How the input is named in messages.
    pub fn label(&self) -> String {
        match self {
            Input::Path(p) => p.display().to_string(),
            Input::Stdin => "<stdin>".to_string(),
        }
    }
}

/// Bounds on what reading an archive may cost.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most bytes a compressed or piped archive may expand to in the spool.
    pub max_unpacked: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_unpacked: 64 << 30,
        }
    }
}

/// The container of the checkpoint, as detected from its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A directory on disk.
    Directory,
    /// An uncompressed tar.
    Tar,
    /// A gzip-compressed tar.
    TarGz,
    /// A zstd-compressed tar.
    TarZst,
    /// A checkpoint image in an OCI image layout directory.
    OciLayout,
    /// A checkpoint image in an OCI archive.
    OciArchive,
    /// A checkpoint image in a Docker archive.
    DockerArchive,
}

impl Format {
    /// Short name for messages and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Format::Directory => "directory",
            Format::Tar => "tar",
            Format::TarGz => "tar.gz",
            Format::TarZst => "tar.zst",
            Format::OciLayout => "oci-layout",
            Format::OciArchive => "oci-archive",
            Format::DockerArchive => "docker-archive",
        }
    }
}

#[derive(Debug, Clone)]
enum Data {
    /// Bytes at `offset` in a shared file (an uncompressed tar, or the spool).
    At { file: Arc<File>, offset: u64 },
    /// A file of an image directory, opened when read.
    Path(PathBuf),
    /// Known size only: a member we do not keep (logs, volumes).
    SizeOnly,
    /// A symbolic link; its target is interpreted, never followed on disk.
    Symlink(String),
}

/// One named member of the checkpoint.
#[derive(Debug, Clone)]
pub struct Member {
    /// Normalised name, relative, `/`-separated.
    pub name: String,
    /// Size in bytes (decompressed, for a member ck2core decompressed).
    pub size: u64,
    /// For a member stored compressed and read decompressed (containerd's
    /// rootfs-diff.tar): the compression and the stored size.
    pub stored: Option<(&'static str, u64)>,
    data: Data,
}

impl Member {
    /// The link target, if this member is a symbolic link.
    pub fn symlink_target(&self) -> Option<&str> {
        match &self.data {
            Data::Symlink(t) => Some(t),
            _ => None,
        }
    }

    /// Opens the member for positioned reads.
    pub fn open(&self) -> Result<Blob> {
        match &self.data {
            Data::At { file, offset } => Ok(Blob {
                name: self.name.clone(),
                file: file.clone(),
                base: *offset,
                len: self.size,
            }),
            Data::Path(p) => {
                let file = File::open(p).map_err(|e| Error::io(p, e))?;
                Ok(Blob {
                    name: self.name.clone(),
                    file: Arc::new(file),
                    base: 0,
                    len: self.size,
                })
            }
            Data::SizeOnly => Err(Error::image(
                &self.name,
                "this member's content is not kept by ck2core",
            )),
            Data::Symlink(t) => Err(Error::image(
                &self.name,
                format!("is a symbolic link (to {t}), not a file"),
            )),
        }
    }

    /// Reads the whole member, refusing members larger than `max` bytes.
    pub fn read_all(&self, max: u64) -> Result<Vec<u8>> {
        if self.size > max {
            return Err(Error::image(
                &self.name,
                format!(
                    "is {} bytes, more than the {} an image of this kind may have",
                    self.size, max
                ),
            ));
        }
        let blob = self.open()?;
        let mut buf = vec![0u8; self.size as usize];
        blob.read_exact_at(0, &mut buf)?;
        Ok(buf)
    }
}

/// A member opened for positioned reads.
#[derive(Debug, Clone)]
pub struct Blob {
    name: String,
    file: Arc<File>,
    base: u64,
    len: u64,
}

impl Blob {
    /// A whole file of the local filesystem as a blob (`name` for messages).
    pub fn from_file(name: &str, file: File, len: u64) -> Blob {
        Blob {
            name: name.to_string(),
            file: Arc::new(file),
            base: 0,
            len,
        }
    }

    /// `len` bytes at `base` of a file shared with other blobs (a spool).
    pub fn from_shared(name: &str, file: Arc<File>, base: u64, len: u64) -> Blob {
        Blob {
            name: name.to_string(),
            file,
            base,
            len,
        }
    }

    /// Member name, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether two blobs are the same bytes of the same file.
    pub fn same_as(&self, other: &Blob) -> bool {
        Arc::ptr_eq(&self.file, &other.file) && self.base == other.base
    }

    /// True for an empty member.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Fills `buf` from `offset`; reading past the end is an error naming the member.
    pub fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|e| e > self.len) {
            return Err(Error::image(
                &self.name,
                format!(
                    "read of {} bytes at offset {offset} goes past the end ({} bytes)",
                    buf.len(),
                    self.len
                ),
            ));
        }
        self.file
            .read_exact_at(buf, self.base + offset)
            .map_err(|e| Error::image(&self.name, format!("read at offset {offset}: {e}")))
    }

    /// The bytes mapped into memory, for readers that want a slice (ELF and DWARF
    /// parsers). Mapped, not read, so a large binary costs address space, not RAM.
    pub fn map(&self) -> Result<Mapped> {
        let page = 4096;
        let start = self.base - self.base % page;
        let skip = (self.base - start) as usize;
        // SAFETY: the file is opened read-only by us; if someone truncates it while we
        // read, we get SIGBUS, as any reader of a mapped file would. Evidence files
        // are not expected to change under an investigation.
        let map = unsafe {
            memmap2::MmapOptions::new()
                .offset(start)
                .len(skip + self.len as usize)
                .map(&*self.file)
        }
        .map_err(|e| Error::image(&self.name, format!("cannot map it: {e}")))?;
        Ok(Mapped { map, skip })
    }

    /// A sequential reader over the bytes (for stream decoders and the `tar` crate).
    pub fn reader(&self) -> BlobReader {
        BlobReader {
            blob: self.clone(),
            pos: 0,
        }
    }

    /// A sub-range of this member, as its own blob.
    pub fn slice(&self, offset: u64, len: u64) -> Result<Blob> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(Blob {
                name: self.name.clone(),
                file: self.file.clone(),
                base: self.base + offset,
                len,
            }),
            _ => Err(Error::image(
                &self.name,
                format!(
                    "range {offset}+{len} goes past the end ({} bytes)",
                    self.len
                ),
            )),
        }
    }
}

/// A [`Blob`] read from start to end; seekable within it.
#[derive(Debug)]
pub struct BlobReader {
    blob: Blob,
    pos: u64,
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.blob.len.saturating_sub(self.pos);
        let n = (buf.len() as u64).min(left) as usize;
        if n == 0 {
            return Ok(0);
        }
        let got = self
            .blob
            .file
            .read_at(&mut buf[..n], self.blob.base + self.pos)?;
        if got == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{}: file shorter than its index says", self.blob.name),
            ));
        }
        self.pos += got as u64;
        Ok(got)
    }
}

impl Seek for BlobReader {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let new = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.blob.len.checked_add_signed(d),
        };
        self.pos = new.ok_or_else(|| std::io::Error::other("seek out of range"))?;
        Ok(self.pos)
    }
}

/// A [`Blob`] mapped into memory; derefs to its bytes.
#[derive(Debug)]
pub struct Mapped {
    map: memmap2::Mmap,
    skip: usize,
}

impl std::ops::Deref for Mapped {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.map[self.skip..]
    }
}

/// An index of every member of a checkpoint, and where its bytes are.
#[derive(Debug)]
pub struct Archive {
    label: String,
    format: Format,
    members: BTreeMap<String, Member>,
    notes: Vec<String>,
    image: Option<Box<CheckpointImage>>,
}

/// Members whose content no command needs; only their sizes are kept.
fn size_only(name: &str) -> bool {
    name == "devshm-checkpoint.tar"
        || name.starts_with("volumes/")
        || name.starts_with("artifacts/")
}

impl Archive {
    /// Opens `input`, detecting its format from its content: an image directory, a
    /// tar (plain, gzip, zstd), or a checkpoint image (OCI layout, OCI archive, Docker
    /// archive). A compressed `rootfs-diff.tar` (containerd's) is read decompressed.
    pub fn open(input: &Input, limits: &Limits) -> Result<Archive> {
        let label = input.label();
        let archive = match input {
            Input::Path(path) => {
                let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
                if meta.is_dir() && oci::ImageFile::is_oci_dir_path(path) {
                    ckimage::open(oci::ImageFile::open(path, limits)?, limits)?
                } else if meta.is_dir() {
                    Archive::from_dir(path)?
                } else {
                    Archive::index_file(path, limits)?
                }
            }
            Input::Stdin => {
                let mut stdin = std::io::stdin().lock();
                let mut head = Vec::with_capacity(512);
                (&mut stdin)
                    .take(512)
                    .read_to_end(&mut head)
                    .map_err(|e| Error::io("<stdin>", e))?;
                let format = sniff(&head).ok_or_else(|| not_a_checkpoint(&label))?;
                let reader = std::io::Cursor::new(head).chain(stdin);
                tarball::index_stream(label, format, Box::new(reader), limits)?
            }
        };
        let mut archive = if archive.has_images() {
            archive
        } else {
            match oci::ImageFile::from_archive(archive, limits) {
                Ok(image) => ckimage::open(image, limits)?,
                Err(archive) => archive,
            }
        };
        archive.decompress_rootfs_diff(limits);
        Ok(archive)
    }

    /// Indexes an archive file (tar, tar.gz, tar.zst) as it is, without looking at
    /// what it holds.
    pub(crate) fn index_file(path: &Path, limits: &Limits) -> Result<Archive> {
        let label = path.display().to_string();
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let mut head = [0u8; 512];
        let n = file.read_at(&mut head, 0).map_err(|e| Error::io(path, e))?;
        match sniff(&head[..n]) {
            Some(Format::Tar) => {
                let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
                tarball::index_blob(
                    label.clone(),
                    Format::Tar,
                    &Blob::from_file(&label, file, len),
                )
            }
            Some(f) => tarball::index_stream(label, f, Box::new(file), limits),
            None => Err(not_a_checkpoint(&label)),
        }
    }

    /// Whether CRIU images are here (a `pstree.img` at any level).
    fn has_images(&self) -> bool {
        self.members
            .keys()
            .any(|k| k == "pstree.img" || k.ends_with("/pstree.img"))
    }

    /// containerd stores `rootfs-diff.tar` as a gzip layer blob (and its restore
    /// accepts any compression): decompress it once into a spool so that everything
    /// downstream reads a plain tar. A damaged stream costs only the diff's files.
    fn decompress_rootfs_diff(&mut self, limits: &Limits) {
        let Some(m) = self.members.get_mut("rootfs-diff.tar") else {
            return;
        };
        let Ok(blob) = m.open() else { return };
        let mut head = [0u8; 4];
        let n = head.len().min(blob.len() as usize);
        if blob.read_exact_at(0, &mut head[..n]).is_err() {
            return;
        }
        let comp = match oci::Compression::sniff(&head[..n]) {
            Some(c @ (oci::Compression::Gzip | oci::Compression::Zstd)) => c,
            _ => return,
        };
        match tarball::spool_decompressed(&blob, comp, limits) {
            Ok((file, len)) => {
                m.stored = Some((comp.name(), m.size));
                m.size = len;
                m.data = Data::At { file, offset: 0 };
            }
            Err(e) => {
                self.notes.push(format!(
                    "rootfs-diff.tar ({}-compressed): {e}; the files it holds are not used",
                    comp.name()
                ));
                m.data = Data::SizeOnly;
            }
        }
    }

    fn from_dir(root: &Path) -> Result<Archive> {
        let mut archive = Archive {
            label: root.display().to_string(),
            format: Format::Directory,
            members: BTreeMap::new(),
            notes: Vec::new(),
            image: None,
        };
        // An extracted container archive has the images one level down
        // (checkpoint/); deeper levels are never needed.
        let mut dirs = vec![(root.to_path_buf(), String::new(), 0)];
        while let Some((dir, prefix, depth)) = dirs.pop() {
            let rd = std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?;
            for ent in rd {
                let ent = ent.map_err(|e| Error::io(&dir, e))?;
                let Some(fname) = ent.file_name().to_str().map(str::to_string) else {
                    archive.notes.push(format!(
                        "{}: name is not UTF-8, ignored",
                        ent.path().display()
                    ));
                    continue;
                };
                let name = format!("{prefix}{fname}");
                let ft = ent.file_type().map_err(|e| Error::io(ent.path(), e))?;
                let data = if ft.is_symlink() {
                    let t = std::fs::read_link(ent.path()).map_err(|e| Error::io(ent.path(), e))?;
                    Data::Symlink(t.to_string_lossy().into_owned())
                } else if ft.is_dir() {
                    if depth < 1 {
                        dirs.push((ent.path(), format!("{name}/"), depth + 1));
                    }
                    continue;
                } else if ft.is_file() {
                    Data::Path(ent.path())
                } else {
                    continue;
                };
                let size = match data {
                    Data::Path(_) => ent.metadata().map_err(|e| Error::io(ent.path(), e))?.len(),
                    _ => 0,
                };
                archive.members.insert(
                    name.clone(),
                    Member {
                        name,
                        size,
                        stored: None,
                        data,
                    },
                );
            }
        }
        Ok(archive)
    }

    /// The input as the user named it.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Detected format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// A member by its normalised name.
    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.get(name)
    }

    /// Every member, in name order.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// The checkpoint image this checkpoint was read from, if it came as one.
    pub fn image(&self) -> Option<&CheckpointImage> {
        self.image.as_deref()
    }

    /// Things noticed while indexing (ignored members and why).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The directory prefix (`""` or `"checkpoint/"`) that holds the CRIU images.
    pub fn images_prefix(&self) -> Result<String> {
        for p in ["checkpoint/", ""] {
            if self.members.contains_key(&format!("{p}pstree.img")) {
                return Ok(p.to_string());
            }
        }
        let dirs: Vec<&str> = self
            .members
            .keys()
            .filter_map(|k| k.strip_suffix("pstree.img"))
            .filter(|d| d.ends_with('/'))
            .collect();
        match dirs.as_slice() {
            [one] => Ok(one.to_string()),
            [] => Err(Error::Archive {
                archive: self.label.clone(),
                detail: "no pstree.img: this is not a CRIU image directory or a container checkpoint archive".into(),
            }),
            many => Err(Error::Unsupported(format!(
                "{}: holds several checkpoints ({}); pod checkpoints are not supported yet",
                self.label,
                many.join(", ")
            ))),
        }
    }

    /// For a directory input: the directory a member path names on disk.
    pub fn dir_path(&self, name: &str) -> Option<PathBuf> {
        (self.format == Format::Directory).then(|| Path::new(&self.label).join(name))
    }
}

fn not_a_checkpoint(label: &str) -> Error {
    Error::Archive {
        archive: label.to_string(),
        detail: "not a CRIU image directory or a tar, tar.gz or tar.zst archive".into(),
    }
}

/// Detects the archive format from its first bytes.
fn sniff(head: &[u8]) -> Option<Format> {
    if head.starts_with(&[0x1f, 0x8b]) {
        Some(Format::TarGz)
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some(Format::TarZst)
    } else if head.len() >= 262 && &head[257..262] == b"ustar" {
        Some(Format::Tar)
    } else {
        None
    }
}

/// Lower-case hex of `bytes` (digests, build-ids): here, in the lowest layer, so
/// that the image reader and the resolver above it share one.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Normalises a member name; `None` if it is unsafe (absolute, `..`) or empty.
pub fn normalize_name(raw: &str) -> Option<String> {
    if raw.starts_with('/') {
        return None;
    }
    let mut parts = Vec::new();
    for c in raw.split('/') {
        match c {
            "" | "." => {}
            ".." => return None,
            c => parts.push(c),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// Resolves a symlink `target` found in member `link` to a member name, within the
/// archive's own namespace. `None` if it leaves the archive.
pub fn resolve_link(link: &str, target: &str) -> Option<String> {
    if target.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = link.split('/').collect();
    parts.pop();
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised_and_unsafe_ones_refused() {
        assert_eq!(
            normalize_name("./checkpoint//core-1.img").as_deref(),
            Some("checkpoint/core-1.img")
        );
        assert_eq!(normalize_name("/etc/passwd"), None);
        assert_eq!(normalize_name("checkpoint/../../x"), None);
        assert_eq!(normalize_name("./"), None);
    }

    #[test]
    fn links_resolve_inside_the_archive_only() {
        assert_eq!(
            resolve_link("checkpoint/parent", "../pre-checkpoint").as_deref(),
            Some("pre-checkpoint")
        );
        assert_eq!(resolve_link("checkpoint/parent", "../../etc"), None);
        assert_eq!(resolve_link("checkpoint/parent", "/etc"), None);
    }
}
