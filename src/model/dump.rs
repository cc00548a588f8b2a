//! What a dump of a process carries: which memory goes out with its bytes, and
//! which mapped files are named, under which names. One policy, so that every
//! writer (the ELF core writer, the minidump writer) makes the same choice.
//!
//! The defaults follow the kernel's core dumps (`coredump_filter` 0x33 and
//! `MADV_DONTDUMP`), with CRIU's data where the kernel would read live memory.

use serde::Serialize;

use crate::model::memory::{AddressSpace, MappedFile, Vma, VmaKind};

/// `1 << MADV_DONTDUMP`: CRIU records each madvise bit as `1 << advice` in
/// `vma_entry.madv` (from the `dd` flag of /proc/PID/smaps).
pub const MADV_DONTDUMP_BIT: u64 = 1 << 16;

/// Choices about what a dump carries. The default is what the kernel's own cores
/// carry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct DumpPolicy {
    /// Write the content of mappings the process marked `MADV_DONTDUMP` (forensics).
    /// By default they get no data, as in the kernel's cores.
    pub include_dontdump: bool,
    /// Write the verified pages of mapped files too, so that tools reading only the
    /// dump (py-spy's core mode) see read-only data the kernel's cores leave out.
    pub file_pages: bool,
    /// Name each listed file by the absolute path of its verified copy on this
    /// machine instead of its container path, for tools without a sysroot setting
    /// that open the named files where they run (py-spy).
    pub host_paths: bool,
}

/// How one VMA goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmaDump {
    /// The bytes from the VMA's start up to here go out, as far as the checkpoint
    /// has them; the rest goes out as a range without data.
    pub content_end: u64,
    /// The VMA is left without data because the process marked it `MADV_DONTDUMP`.
    pub dontdump: bool,
}

impl Vma {
    /// The process marked this mapping `MADV_DONTDUMP`.
    pub fn dontdump(&self) -> bool {
        self.madv & MADV_DONTDUMP_BIT != 0
    }
}

impl DumpPolicy {
    /// Which part of `vma` goes out with its bytes.
    ///
    /// As the kernel's default `coredump_filter` (0x33): anonymous and shared memory
    /// whole; private file mappings whole if the process wrote to them, else only
    /// an ELF header page (for build-id matching); shared file mappings, `[vvar]`
    /// and mappings CRIU saves nothing of, not at all; the vDSO whole, even when
    /// `MADV_DONTDUMP`. Unlike the kernel: untouched readable anonymous memory
    /// goes out as holes, so readers see the zeros the process would have read;
    /// a deleted file's mappings go out whole from CRIU's ghost copy, since no one
    /// can open that file; with [`Self::file_pages`] every mapping of a file with
    /// verified content goes out whole.
    pub fn vma(&self, mem: &AddressSpace, vma: &Vma) -> VmaDump {
        let none = VmaDump {
            content_end: vma.start,
            dontdump: false,
        };
        // The kernel marks [vvar] and device mappings DONTDUMP too; CRIU saves
        // nothing of them, and they get no range at all (see `extents`). The vDSO
        // is always dumped, as the kernel does.
        let has_data = !matches!(
            vma.kind,
            VmaKind::Vdso | VmaKind::Vvar | VmaKind::Vsyscall | VmaKind::Other
        );
        if vma.dontdump() && !self.include_dontdump && has_data {
            return VmaDump {
                dontdump: true,
                ..none
            };
        }
        let whole = VmaDump {
            content_end: vma.end,
            ..none
        };
        let file_ok = vma.file.as_ref().is_some_and(|f| f.content.is_ok());
        let deleted = vma.file.as_ref().is_some_and(|f| f.deleted);
        match vma.kind {
            VmaKind::File | VmaKind::SharedFile if file_ok && (deleted || self.file_pages) => whole,
            VmaKind::Vvar | VmaKind::Vsyscall | VmaKind::Other | VmaKind::SharedFile => none,
            VmaKind::Vdso | VmaKind::Memfd | VmaKind::Shared | VmaKind::Sysv => whole,
            VmaKind::Anon | VmaKind::Heap | VmaKind::Stack => {
                if vma.readable() || mem.has_saved_pages(vma) {
                    whole
                } else {
                    none
                }
            }
            VmaKind::File => {
                if mem.has_saved_pages(vma) {
                    whole
                } else if vma.pgoff == 0 && vma.readable() && starts_with_elf_header(mem, vma) {
                    VmaDump {
                        content_end: vma.start + mem.page_size.min(vma.len()),
                        ..none
                    }
                } else {
                    none
                }
            }
        }
    }

    /// The name under which a dump lists `f` (NT_FILE, a module list), or `None`
    /// if it is not listed.
    ///
    /// Only files verified in the container's root directory are listed: readers
    /// open the files a dump names to fill in pages it lacks, and a container path
    /// opened anywhere else (the analyst's own `/usr/lib/...`) gives another file's
    /// bytes, or a warning. So without a root nothing is listed. A file from
    /// `rootfs-diff.tar` or a ghost image has no path there and is not listed
    /// either. With [`Self::host_paths`] the name is the verified file's absolute
    /// path; otherwise the container path, for readers pointed at the root
    /// (gdb's sysroot), which is listed only when that path reaches the same file.
    pub fn file_name<'a>(&self, f: &'a MappedFile) -> Option<&'a str> {
        if f.deleted {
            return None;
        }
        let at = f.content.as_ref().ok()?.in_root.as_ref()?;
        if self.host_paths {
            at.path.to_str()
        } else {
            at.by_container_path.then_some(f.path.as_str())
        }
    }
}

fn starts_with_elf_header(mem: &AddressSpace, vma: &Vma) -> bool {
    let mut magic = [0u8; 4];
    matches!(mem.read(vma.start, &mut magic), Ok(m) if m.is_empty()) && &magic == b"\x7fELF"
}
