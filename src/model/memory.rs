//! A process's address space: its VMAs, and for any address range where each byte
//! comes from. Sources, in the order CRIU saved them: the task's pagemap and pages
//! (through `parent/` images for incremental dumps), shared-memory objects
//! (`pagemap-shmem-*`, SysV segments), the container's files (`--rootfs`,
//! `rootfs-diff.tar`) for file pages CRIU did not save, and zero for untouched
//! anonymous memory. Ranges no source can fill are reported as missing, with why.

use std::sync::Arc;

use serde::Serialize;

use crate::archive::Blob;
use crate::error::Result;
pub use crate::images::pagemap::{pe, PageRun, Pagemap};
pub use crate::images::pages::Bytes;

/// VMA status bits (CRIU criu/include/image.h).
pub mod status {
    /// An ordinary mapping.
    pub const REGULAR: u32 = 1 << 0;
    /// The main stack.
    pub const STACK: u32 = 1 << 1;
    /// [vsyscall]
    pub const VSYSCALL: u32 = 1 << 2;
    /// [vdso]
    pub const VDSO: u32 = 1 << 3;
    /// [heap]
    pub const HEAP: u32 = 1 << 5;
    /// Private file mapping.
    pub const FILE_PRIVATE: u32 = 1 << 6;
    /// Shared file mapping.
    pub const FILE_SHARED: u32 = 1 << 7;
    /// Shared anonymous memory.
    pub const ANON_SHARED: u32 = 1 << 8;
    /// Private anonymous memory.
    pub const ANON_PRIVATE: u32 = 1 << 9;
    /// SysV shared memory.
    pub const SYSVIPC: u32 = 1 << 10;
    /// A socket mapping (packet rings).
    pub const SOCKET: u32 = 1 << 11;
    /// [vvar]
    pub const VVAR: u32 = 1 << 12;
    /// AIO ring.
    pub const AIORING: u32 = 1 << 13;
    /// memfd (or shared anonymous memory dumped as memfd).
    pub const MEMFD: u32 = 1 << 14;
    /// Shadow stack.
    pub const SHSTK: u32 = 1 << 15;
    /// Fake entry for a MADV_GUARD_INSTALL range; not a mapping.
    pub const GUARD: u32 = 1 << 16;
    /// [uprobes]
    pub const UPROBES: u32 = 1 << 17;
}

/// What a VMA is, for the core writer and for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum VmaKind {
    /// Private anonymous memory other than heap and stack.
    Anon,
    /// [heap]
    Heap,
    /// The main stack.
    Stack,
    /// Private file mapping.
    File,
    /// Shared file mapping.
    #[serde(rename = "shared-file")]
    SharedFile,
    /// memfd mapping.
    Memfd,
    /// Shared anonymous memory.
    Shared,
    /// SysV shared memory.
    Sysv,
    /// [vdso]
    Vdso,
    /// [vvar]
    Vvar,
    /// [vsyscall]
    Vsyscall,
    /// Anything CRIU saved no content for (sockets, devices, uprobes).
    Other,
}

impl VmaKind {
    /// The name `maps`, `--kind` and JSON use.
    pub fn name(self) -> &'static str {
        match self {
            VmaKind::Anon => "anon",
            VmaKind::Heap => "heap",
            VmaKind::Stack => "stack",
            VmaKind::File => "file",
            VmaKind::SharedFile => "shared-file",
            VmaKind::Memfd => "memfd",
            VmaKind::Shared => "shared",
            VmaKind::Sysv => "sysv",
            VmaKind::Vdso => "vdso",
            VmaKind::Vvar => "vvar",
            VmaKind::Vsyscall => "vsyscall",
            VmaKind::Other => "other",
        }
    }
}

/// A file a VMA maps, as CRIU recorded it, and its content if available.
#[derive(Debug, Clone)]
pub struct MappedFile {
    /// files.img id.
    pub id: u32,
    /// Path in the container.
    pub path: String,
    /// Size at dump time.
    pub size: Option<u64>,
    /// GNU build-id recorded by CRIU.
    pub build_id: Vec<u8>,
    /// True if the file was deleted (unlinked) while mapped.
    pub deleted: bool,
    /// The file's bytes, or why they could not be used.
    pub content: std::result::Result<FileData, String>,
}

/// The bytes of a file: chunks at offsets, zeros between them (ghost images of
/// deleted files are stored sparse), `size` bytes in all.
#[derive(Debug, Clone)]
pub struct FileData {
    /// Length of the file.
    pub size: u64,
    /// (offset, bytes), sorted and disjoint.
    pub chunks: Vec<(u64, Blob)>,
    /// Where the file is in the container's root directory, when it came from
    /// there (not from `rootfs-diff.tar` or a ghost image).
    pub in_root: Option<InRoot>,
    /// Which part of the container's files it was taken from (`rootfs-diff.tar`,
    /// `layer 2 (sha256:…)` of the image, `--rootfs`); `None` for a ghost image.
    pub from: Option<String>,
}

/// A verified file's place in the root directory on this machine.
#[derive(Debug, Clone)]
pub struct InRoot {
    /// Absolute path of the file (symbolic links resolved).
    pub path: std::path::PathBuf,
    /// ROOT/CONTAINER-PATH reaches this same file when followed as this machine
    /// follows links (as gdb does with its sysroot): false when the way there
    /// crosses a link that points out of the root.
    pub by_container_path: bool,
}

impl FileData {
    /// A file that is one blob.
    pub fn whole(blob: Blob) -> FileData {
        FileData {
            size: blob.len(),
            chunks: vec![(0, blob)],
            in_root: None,
            from: None,
        }
    }
}

/// Shared memory a VMA maps.
#[derive(Debug, Clone)]
pub struct SharedMemory {
    /// Name as the kernel writes it in NT_FILE / maps (`/memfd:x (deleted)`).
    pub name: String,
    /// Where its pages are.
    pub pages: ShmemPages,
}

/// The stored content of a shared-memory object.
#[derive(Debug, Clone)]
pub enum ShmemPages {
    /// A pagemap whose `vaddr`s are offsets in the object.
    Pagemap(Arc<Pagemap>),
    /// The raw bytes (SysV segments stored after their ipcns-shm entry).
    Raw(Blob),
    /// Not found in the checkpoint.
    Missing(String),
}

/// One VMA.
#[derive(Debug, Clone)]
pub struct Vma {
    /// First address.
    pub start: u64,
    /// End address (exclusive).
    pub end: u64,
    /// Offset in the mapped file or object, in bytes.
    pub pgoff: u64,
    /// PROT_* bits.
    pub prot: u32,
    /// MAP_* bits.
    pub flags: u32,
    /// CRIU status bits.
    pub status: u32,
    /// madvise bits.
    pub madv: u64,
    /// Kind, derived from status.
    pub kind: VmaKind,
    /// The mapped file, for file mappings.
    pub file: Option<Arc<MappedFile>>,
    /// The shared-memory object, for memfd, shared anonymous and SysV mappings.
    pub shmem: Option<SharedMemory>,
}

impl Vma {
    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Never true: VMAs are validated non-empty.
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// Readable by the process.
    pub fn readable(&self) -> bool {
        self.prot & 1 != 0
    }

    /// The name /proc/PID/maps would show.
    pub fn name(&self) -> String {
        match self.kind {
            VmaKind::Heap => "[heap]".into(),
            VmaKind::Stack => "[stack]".into(),
            VmaKind::Vdso => "[vdso]".into(),
            VmaKind::Vvar => "[vvar]".into(),
            VmaKind::Vsyscall => "[vsyscall]".into(),
            _ => {
                if let Some(f) = &self.file {
                    f.path.clone()
                } else if let Some(s) = &self.shmem {
                    s.name.clone()
                } else {
                    String::new()
                }
            }
        }
    }
}

/// Where a run of bytes comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Bytes at an offset of a blob (pages file, shmem, ghost or container file).
    Bytes {
        /// The bytes: a member, or the saved pages of a pagemap (raw or
        /// compressed, read the same way).
        blob: Bytes,
        /// Offset in it.
        offset: u64,
        /// What kind of source, for reports.
        origin: Origin,
    },
    /// Known to be zero (untouched anonymous memory).
    Zero,
    /// Not in the checkpoint or any file given; the reason.
    Missing(Arc<str>),
}

/// Which kind of storage bytes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// The dump's pages file.
    Pages,
    /// A parent (pre-dump) image.
    Parent,
    /// A shared-memory object.
    Shmem,
    /// A container file (rootfs or rootfs-diff.tar).
    Rootfs,
}

/// A contiguous range of addresses with one source.
#[derive(Debug, Clone)]
pub struct Extent {
    /// First address.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
    /// Where the bytes are.
    pub source: Source,
}

/// The memory of one process.
#[derive(Debug)]
pub struct AddressSpace {
    /// Page size of the dumping machine.
    pub page_size: u64,
    /// VMAs, sorted by address, without CRIU's fake guard entries.
    pub vmas: Vec<Vma>,
    /// The task's own pagemap.
    pub pagemap: Option<Pagemap>,
    /// Pagemaps of the same task in the parent image chain, nearest first.
    pub parents: Vec<Pagemap>,
}

impl AddressSpace {
    /// The VMA holding `addr`.
    pub fn vma_at(&self, addr: u64) -> Option<&Vma> {
        let i = self.vmas.partition_point(|v| v.end <= addr);
        self.vmas.get(i).filter(|v| v.start <= addr)
    }

    /// Whether the task's pagemap has any entry inside `vma`.
    pub fn has_saved_pages(&self, vma: &Vma) -> bool {
        self.pagemap
            .as_ref()
            .is_some_and(|p| p.overlaps(vma.start, vma.end))
    }

    /// Where every byte of `[start, end)` (inside `vma`) comes from.
    pub fn extents(&self, vma: &Vma, start: u64, end: u64) -> Vec<Extent> {
        let mut out = Extents::default();
        match vma.kind {
            VmaKind::Vvar | VmaKind::Vsyscall | VmaKind::Other => out.push(
                start,
                end - start,
                Source::Missing("CRIU saves no content for this mapping".into()),
            ),
            VmaKind::Memfd | VmaKind::Shared | VmaKind::Sysv => {
                self.shmem_extents(vma, start, end, &mut out)
            }
            VmaKind::SharedFile => self.file_extents(vma, start, end, &mut out),
            _ => self.private_extents(vma, 0, start, end, &mut out),
        }
        out.0
    }

    /// Private memory: the pagemap at `level` (0 = this dump, n = n-th parent),
    /// with gaps filled as the VMA kind dictates.
    fn private_extents(&self, vma: &Vma, level: usize, start: u64, end: u64, out: &mut Extents) {
        let pm = if level == 0 {
            self.pagemap.as_ref()
        } else {
            self.parents.get(level - 1)
        };
        let Some(pm) = pm else {
            if level > 0 {
                out.push(
                    start,
                    end - start,
                    Source::Missing("pages are in parent images that are missing".into()),
                );
            } else {
                self.gap_extents(vma, start, end, out);
            }
            return;
        };
        let mut at = start;
        for run in &pm.runs[pm.first_after(start)..] {
            if run.vaddr >= end {
                break;
            }
            if run.vaddr > at {
                self.gap_extents(vma, at, run.vaddr, out);
                at = run.vaddr;
            }
            let stop = (run.vaddr + run.len).min(end);
            if run.flags & pe::PRESENT != 0 {
                let blob = pm.pages.clone().expect("present runs imply a pages file");
                let origin = if level == 0 {
                    Origin::Pages
                } else {
                    Origin::Parent
                };
                out.push(
                    at,
                    stop - at,
                    Source::Bytes {
                        blob,
                        offset: run.offset + (at - run.vaddr),
                        origin,
                    },
                );
            } else if run.flags & pe::PARENT != 0 {
                self.private_extents(vma, level + 1, at, stop, out);
            } else {
                out.push(
                    at,
                    stop - at,
                    Source::Missing(
                        "lazy pages (criu dump --lazy-pages) are not in the images".into(),
                    ),
                );
            }
            at = stop;
        }
        if at < end {
            self.gap_extents(vma, at, end, out);
        }
    }

    /// Private memory CRIU did not save: zero for anonymous memory, the file for
    /// file mappings.
    fn gap_extents(&self, vma: &Vma, start: u64, end: u64, out: &mut Extents) {
        match vma.kind {
            VmaKind::File => self.file_extents(vma, start, end, out),
            VmaKind::Vdso => out.push(
                start,
                end - start,
                Source::Missing("vDSO page not in the images".into()),
            ),
            _ => out.push(start, end - start, Source::Zero),
        }
    }

    fn file_extents(&self, vma: &Vma, start: u64, end: u64, out: &mut Extents) {
        let Some(file) = &vma.file else {
            out.push(
                start,
                end - start,
                Source::Missing("mapped file unknown".into()),
            );
            return;
        };
        let data = match &file.content {
            Ok(d) => d,
            Err(why) => {
                out.push(
                    start,
                    end - start,
                    Source::Missing(format!("{}: {why}", file.path).into()),
                );
                return;
            }
        };
        let off = vma.pgoff + (start - vma.start);
        let addr = |file_off: u64| start + (file_off - off);
        let len = end - start;
        let inside_end = off + data.size.saturating_sub(off).min(len);
        let mut at = off;
        for (coff, blob) in &data.chunks {
            let cend = coff + blob.len();
            if cend <= at || *coff >= inside_end {
                continue;
            }
            if *coff > at {
                out.push(addr(at), coff - at, Source::Zero);
                at = *coff;
            }
            let stop = cend.min(inside_end);
            let source = Source::Bytes {
                blob: blob.clone().into(),
                offset: at - coff,
                origin: Origin::Rootfs,
            };
            out.push(addr(at), stop - at, source);
            at = stop;
        }
        if at < inside_end {
            out.push(addr(at), inside_end - at, Source::Zero);
        }
        // The rest of the page holding the file's last byte reads as zeros; pages
        // wholly past the end would fault in the process.
        let tail_end = inside_end.div_ceil(self.page_size) * self.page_size;
        let zero_end = tail_end.min(off + len);
        if zero_end > inside_end {
            out.push(addr(inside_end), zero_end - inside_end, Source::Zero);
        }
        if zero_end < off + len {
            out.push(
                addr(zero_end),
                off + len - zero_end,
                Source::Missing("past the end of the file".into()),
            );
        }
    }

    fn shmem_extents(&self, vma: &Vma, start: u64, end: u64, out: &mut Extents) {
        let Some(shm) = &vma.shmem else {
            out.push(
                start,
                end - start,
                Source::Missing("shared memory object unknown".into()),
            );
            return;
        };
        let obj = |a: u64| vma.pgoff + (a - vma.start);
        match &shm.pages {
            ShmemPages::Missing(why) => {
                out.push(start, end - start, Source::Missing(why.as_str().into()))
            }
            ShmemPages::Raw(blob) => {
                let inside = blob.len().saturating_sub(obj(start)).min(end - start);
                if inside > 0 {
                    out.push(
                        start,
                        inside,
                        Source::Bytes {
                            blob: blob.clone().into(),
                            offset: obj(start),
                            origin: Origin::Shmem,
                        },
                    );
                }
                if inside < end - start {
                    out.push(start + inside, end - start - inside, Source::Zero);
                }
            }
            ShmemPages::Pagemap(pm) => {
                let mut at = start;
                for run in &pm.runs[pm.first_after(obj(start))..] {
                    let rstart = vma.start + run.vaddr.saturating_sub(vma.pgoff);
                    if rstart >= end {
                        break;
                    }
                    let rstart = rstart.max(at);
                    if rstart > at {
                        out.push(at, rstart - at, Source::Zero);
                    }
                    let rend = (vma.start + (run.vaddr + run.len - vma.pgoff)).min(end);
                    if run.flags & pe::PRESENT != 0 {
                        let blob = pm.pages.clone().expect("present runs imply a pages file");
                        let offset = run.offset + (obj(rstart) - run.vaddr);
                        out.push(
                            rstart,
                            rend - rstart,
                            Source::Bytes {
                                blob,
                                offset,
                                origin: Origin::Shmem,
                            },
                        );
                    } else {
                        out.push(
                            rstart,
                            rend - rstart,
                            Source::Missing("shared memory pages not in this dump".into()),
                        );
                    }
                    at = rend;
                }
                if at < end {
                    out.push(at, end - at, Source::Zero);
                }
            }
        }
    }

    /// Reads `buf.len()` bytes at `addr`. Returns the sub-ranges (offset, len) of
    /// `buf` that could not be read; those are left zero.
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Result<Vec<(usize, usize)>> {
        buf.fill(0);
        let mut missing = Vec::new();
        let end = addr.saturating_add(buf.len() as u64);
        let mut at = addr;
        while at < end {
            let Some(vma) = self.vma_at(at) else {
                let next = self
                    .vmas
                    .iter()
                    .map(|v| v.start)
                    .find(|s| *s > at)
                    .unwrap_or(end)
                    .min(end);
                missing.push(((at - addr) as usize, (next - at) as usize));
                at = next;
                continue;
            };
            let stop = vma.end.min(end);
            for e in self.extents(vma, at, stop) {
                let o = (e.start - addr) as usize;
                let slot = &mut buf[o..o + e.len as usize];
                match &e.source {
                    Source::Bytes { blob, offset, .. } => blob.read_exact_at(*offset, slot)?,
                    Source::Zero => {}
                    Source::Missing(_) => missing.push((o, e.len as usize)),
                }
            }
            at = stop;
        }
        Ok(missing)
    }
}

/// Builder that merges adjacent extents with continuous sources.
#[derive(Default)]
struct Extents(Vec<Extent>);

impl Extents {
    fn push(&mut self, start: u64, len: u64, source: Source) {
        if len == 0 {
            return;
        }
        if let Some(last) = self.0.last_mut() {
            if last.start + last.len == start {
                let merge = match (&last.source, &source) {
                    (Source::Zero, Source::Zero) => true,
                    (Source::Missing(a), Source::Missing(b)) => a == b,
                    (
                        Source::Bytes {
                            blob: a,
                            offset: oa,
                            origin: ga,
                        },
                        Source::Bytes {
                            blob: b,
                            offset: ob,
                            origin: gb,
                        },
                    ) => a.same_as(b) && ga == gb && oa + last.len == *ob,
                    _ => false,
                };
                if merge {
                    last.len += len;
                    return;
                }
            }
        }
        self.0.push(Extent { start, len, source });
    }
}
