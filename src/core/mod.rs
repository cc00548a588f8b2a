//! The ELF core writer: plans the layout of one process's core (notes, one PT_LOAD
//! per VMA in address order, as the kernel writes them), then streams page content
//! from the checkpoint into it. Untouched memory becomes holes; offsets come from the
//! plan, and every byte range written is the one planned, so a short source is an
//! error rather than a shifted file. The core is written under a temporary name and
//! renamed only when complete.

pub mod layout;
pub mod notes;

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::model::dump::DumpPolicy;
use crate::model::memory::{AddressSpace, Extent, Source, Vma, VmaKind};
use crate::model::Process;
use crate::output::AtomicFile;
pub use layout::ElfLayout;
use notes::Note;

/// The kernel aligns the start of segment data to ELF_EXEC_PAGESIZE.
const DATA_ALIGN: u64 = 4096;
/// Above this many program headers, e_phnum holds PN_XNUM and the real count lives
/// in section header 0.
const PN_XNUM: u64 = 0xffff;

/// One planned PT_LOAD.
#[derive(Debug)]
pub struct Segment {
    /// Start address.
    pub vaddr: u64,
    /// Size in memory.
    pub memsz: u64,
    /// Bytes in the file (a prefix of the range).
    pub filesz: u64,
    /// PF_* flags.
    pub flags: u32,
    /// File offset.
    pub offset: u64,
    /// Where the `filesz` bytes come from, in order.
    pieces: Vec<Extent>,
}

/// Memory that belongs in the core but that no source could provide.
#[derive(Debug, Default)]
pub struct LeftOut {
    /// Bytes missing, by reason.
    pub by_reason: BTreeMap<String, u64>,
    /// Mapped files left out of NT_FILE because they are not verified in the
    /// container's root (or there is none), so that gdb neither warns nor reads
    /// another file's bytes.
    pub unlisted_files: Vec<String>,
    /// Bytes of mappings the process marked `MADV_DONTDUMP`, written without data.
    pub dontdump: u64,
}

/// Choices about what goes into a core.
#[derive(Debug, Clone, Default)]
pub struct CoreOptions {
    /// Payload of the CK2CORE metadata note (JSON), if one is to be written.
    pub metadata: Option<Vec<u8>>,
    /// Which memory gets its bytes, and which files NT_FILE names.
    pub policy: DumpPolicy,
}

impl Segment {
    fn new(vaddr: u64, flags: u32) -> Segment {
        Segment {
            vaddr,
            memsz: 0,
            filesz: 0,
            flags,
            offset: 0,
            pieces: Vec::new(),
        }
    }
}

/// A complete plan for one core file.
pub struct Plan {
    /// e_machine.
    pub machine: u16,
    /// e_flags.
    pub flags: u32,
    /// ELF class and byte order.
    pub layout: ElfLayout,
    notes: Vec<u8>,
    /// Segments in file order.
    pub segments: Vec<Segment>,
    /// Total file size.
    pub file_size: u64,
    /// What could not be included, and why.
    pub left_out: LeftOut,
}

/// What writing a core did.
#[derive(Debug)]
pub struct Written {
    /// Final path.
    pub path: PathBuf,
    /// File size (apparent).
    pub file_size: u64,
    /// Bytes of memory content actually written (the rest are holes).
    pub data_bytes: u64,
    /// Number of PT_LOAD segments.
    pub segments: usize,
    /// What could not be included, and why.
    pub left_out: LeftOut,
}

impl Plan {
    /// Plans the core of `p` (which must have memory).
    pub fn new(p: &Process, opts: &CoreOptions) -> Result<Plan> {
        let mem = p
            .memory
            .as_ref()
            .ok_or_else(|| Error::Usage(format!("process {} has no memory (zombie)", p.pid())))?;
        let mut left_out = LeftOut::default();
        let mut segments = Vec::new();
        let policy = &opts.policy;
        for vma in &mem.vmas {
            plan_vma(mem, vma, policy, &mut segments, &mut left_out);
        }
        for v in &mem.vmas {
            // A deleted file's name can't be opened by anyone: not worth a mention.
            let unlisted = v
                .file
                .as_ref()
                .filter(|f| !f.deleted)
                .filter(|f| policy.file_name(f).is_none());
            if let Some(f) = unlisted {
                if !left_out.unlisted_files.contains(&f.path) {
                    left_out.unlisted_files.push(f.path.clone());
                }
            }
        }
        let layout = p.arch.layout();
        let mut notes = encode_notes(p, mem, layout, policy)?;
        if let Some(m) = &opts.metadata {
            // Last, after every thread's notes, so it can't be taken for a thread's.
            Note {
                name: "CK2CORE",
                ntype: notes::NT_CK2CORE_METADATA,
                desc: m.clone(),
            }
            .encode(layout, &mut notes);
        }
        let phnum = 1 + segments.len() as u64;
        let notes_at = layout.ehdr_size() + layout.phdr_size() * phnum;
        let mut offset = (notes_at + notes.len() as u64).next_multiple_of(DATA_ALIGN);
        for s in &mut segments {
            s.offset = offset;
            offset += s.filesz;
        }
        let file_size = if phnum >= PN_XNUM {
            offset.next_multiple_of(8) + layout.shdr_size()
        } else {
            offset
        };
        if file_size > layout.word_max() {
            // Offsets in an ELFCLASS32 file are 32 bits; the model already
            // checked that every address fits.
            return Err(Error::Unsupported(format!(
                "process {}: its core would be {file_size} bytes, more than a 32-bit ({}) ELF core can address",
                p.pid(),
                p.arch.name()
            )));
        }
        Ok(Plan {
            machine: p.arch.elf_machine(),
            flags: p.arch.elf_flags(),
            layout,
            notes,
            segments,
            file_size,
            left_out,
        })
    }

    fn headers(&self) -> Vec<u8> {
        let l = self.layout;
        let phnum = 1 + self.segments.len() as u64;
        let notes_at = l.ehdr_size() + l.phdr_size() * phnum;
        let xnum = phnum >= PN_XNUM;
        let shoff = if xnum {
            self.file_size - l.shdr_size()
        } else {
            0
        };
        let mut h = Vec::with_capacity(notes_at as usize + self.notes.len());
        h.extend_from_slice(b"\x7fELF");
        // EI_CLASS, EI_DATA, EV_CURRENT, ELFOSABI_SYSV
        h.extend_from_slice(&[
            if l.class64 { 2 } else { 1 },
            if l.big_endian { 2 } else { 1 },
            1,
            0,
        ]);
        h.extend_from_slice(&[0; 8]);
        l.u16(&mut h, 4); // ET_CORE
        l.u16(&mut h, self.machine);
        l.u32(&mut h, 1);
        l.word_push(&mut h, 0); // e_entry
        l.word_push(&mut h, l.ehdr_size()); // e_phoff
        l.word_push(&mut h, shoff);
        l.u32(&mut h, self.flags);
        l.u16(&mut h, l.ehdr_size() as u16);
        l.u16(&mut h, l.phdr_size() as u16);
        l.u16(&mut h, phnum.min(PN_XNUM) as u16);
        l.u16(&mut h, if xnum { l.shdr_size() as u16 } else { 0 }); // e_shentsize
        l.u16(&mut h, xnum as u16); // e_shnum
        l.u16(&mut h, 0); // e_shstrndx
        let phdr = |h: &mut Vec<u8>,
                    ty: u32,
                    flags: u32,
                    off: u64,
                    vaddr: u64,
                    filesz: u64,
                    memsz: u64,
                    align: u64| {
            l.u32(h, ty);
            if l.class64 {
                // Elf64_Phdr keeps p_flags next to p_type, for alignment.
                l.u32(h, flags);
            }
            for v in [off, vaddr, 0, filesz, memsz] {
                l.word_push(h, v);
            }
            if !l.class64 {
                l.u32(h, flags);
            }
            l.word_push(h, align);
        };
        phdr(&mut h, 4, 0, notes_at, 0, self.notes.len() as u64, 0, 4);
        for s in &self.segments {
            phdr(
                &mut h, 1, s.flags, s.offset, s.vaddr, s.filesz, s.memsz, DATA_ALIGN,
            );
        }
        h.extend_from_slice(&self.notes);
        h
    }

    /// Bytes of content the core will hold (the rest are holes).
    pub fn content_bytes(&self) -> u64 {
        let bytes = |e: &Extent| matches!(e.source, Source::Bytes { .. }).then_some(e.len);
        self.segments
            .iter()
            .flat_map(|s| &s.pieces)
            .filter_map(bytes)
            .sum()
    }

    /// Writes the core to `dir/core.<pid>` through a temporary file, calling
    /// `progress(done)` with the content bytes written so far.
    pub fn write(
        self,
        dir: &Path,
        pid: u32,
        force: bool,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Written> {
        let out = AtomicFile::create(dir, &format!("core.{pid}"), force)?;
        let data_bytes = self.write_to(&out.file, progress).map_err(|e| match e {
            Error::Io { path: p, err } if p.as_os_str().is_empty() => Error::io(&out.tmp, err),
            e => e,
        })?;
        let path = out.commit()?;
        Ok(Written {
            path,
            file_size: self.file_size,
            data_bytes,
            segments: self.segments.len(),
            left_out: self.left_out,
        })
    }

    /// Writes the planned bytes into `file`; returns the bytes of content written.
    pub fn write_to(&self, file: &File, progress: &mut dyn FnMut(u64)) -> Result<u64> {
        let io = |e| Error::io(PathBuf::new(), e);
        file.write_all_at(&self.headers(), 0).map_err(io)?;
        let mut buf = vec![0u8; 1 << 20];
        let mut written = 0u64;
        for s in &self.segments {
            let mut at = s.offset;
            for piece in &s.pieces {
                if let Source::Bytes { blob, offset, .. } = &piece.source {
                    let mut done = 0u64;
                    while done < piece.len {
                        let n = (piece.len - done).min(buf.len() as u64) as usize;
                        blob.read_exact_at(offset + done, &mut buf[..n])?;
                        file.write_all_at(&buf[..n], at + done).map_err(io)?;
                        done += n as u64;
                        progress(written + done);
                    }
                    written += piece.len;
                }
                at += piece.len;
            }
            debug_assert_eq!(at, s.offset + s.filesz);
        }
        if self.segments.len() as u64 + 1 >= PN_XNUM {
            let l = self.layout;
            let mut sh = vec![0u8; l.shdr_size() as usize];
            // sh_size holds e_shnum (1), sh_info the real number of segments.
            let (size_at, info_at) = if l.class64 { (32, 44) } else { (20, 28) };
            l.put_word(&mut sh, size_at, 1);
            l.put_u32(&mut sh, info_at, (self.segments.len() + 1) as u32);
            file.write_all_at(&sh, self.file_size - l.shdr_size())
                .map_err(io)?;
        }
        file.set_len(self.file_size).map_err(io)?;
        Ok(written)
    }
}

/// Turns one VMA into PT_LOADs: normally one, whose file bytes are the VMA's
/// content (the part the policy chooses) and whose p_memsz covers the whole VMA.
///
/// gdb reads an address covered by p_memsz but not by file bytes from the file
/// NT_FILE names for it, and failing that as zeros. That is right for untouched
/// anonymous memory and for listed files; anywhere else it would invent zeros. So
/// bytes that no source has and that gdb cannot fetch from a listed file are left
/// out of every segment (the segment ends there and a new one starts after), and
/// gdb reports them as unreadable, as it would for any unmapped address.
///
/// A `MADV_DONTDUMP` mapping is one PT_LOAD with p_filesz 0, as the kernel
/// writes it: the range stays visible, with no data.
fn plan_vma(
    mem: &AddressSpace,
    vma: &Vma,
    policy: &DumpPolicy,
    out: &mut Vec<Segment>,
    left_out: &mut LeftOut,
) {
    let flags = (vma.prot & 1) << 2 | (vma.prot & 2) | (vma.prot & 4) >> 2;
    let choice = policy.vma(mem, vma);
    if choice.dontdump {
        left_out.dontdump += vma.len();
        let mut s = Segment::new(vma.start, flags);
        s.memsz = vma.len();
        out.push(s);
        return;
    }
    // gdb reads what the listed file holds there: the truth, or "unavailable".
    let from_file = matches!(vma.kind, VmaKind::File | VmaKind::SharedFile)
        && vma
            .file
            .as_ref()
            .is_some_and(|f| policy.file_name(f).is_some());
    // Memory we chose not to dump reads as zeros in gdb, which is the truth for
    // anonymous memory (never touched, or unreadable to the process anyway).
    let anon = matches!(vma.kind, VmaKind::Anon | VmaKind::Heap | VmaKind::Stack);
    let end = choice.content_end;
    let mut parts = if end > vma.start {
        mem.extents(vma, vma.start, end)
    } else {
        Vec::new()
    };
    if end < vma.end {
        // Not dumped by choice (no reason to report): like missing bytes, covered
        // only where gdb fills it truthfully.
        parts.push(Extent {
            start: end,
            len: vma.end - end,
            source: Source::Missing("".into()),
        });
    }
    let mut seg: Option<Segment> = None;
    // True once `seg` has a stretch without file bytes: content after it needs a
    // new segment, since file bytes are always a prefix of a segment.
    let mut gap = false;
    for ext in parts {
        let ext_end = ext.start + ext.len;
        match &ext.source {
            Source::Missing(why) => {
                // An empty reason marks the part not dumped by choice.
                let by_choice = why.is_empty();
                if !by_choice {
                    *left_out.by_reason.entry(why.to_string()).or_default() += ext.len;
                }
                if from_file || (by_choice && anon) {
                    let s = seg.get_or_insert_with(|| Segment::new(ext.start, flags));
                    s.memsz = ext_end - s.vaddr;
                    gap = true;
                } else if let Some(s) = seg.take() {
                    out.push(s);
                }
            }
            _ => {
                if gap {
                    out.extend(seg.take());
                    gap = false;
                }
                let s = seg.get_or_insert_with(|| Segment::new(ext.start, flags));
                s.filesz += ext.len;
                s.memsz = ext_end - s.vaddr;
                s.pieces.push(ext);
            }
        }
    }
    out.extend(seg);
}

/// All notes, in the kernel's order: the first thread's NT_PRSTATUS, then the
/// process notes, then that thread's other register sets; then each other thread.
fn encode_notes(
    p: &Process,
    mem: &AddressSpace,
    layout: ElfLayout,
    policy: &DumpPolicy,
) -> Result<Vec<u8>> {
    let args_len = p.layout.arg_end.saturating_sub(p.layout.arg_start).min(79) as usize;
    let mut args = vec![0u8; args_len];
    if mem
        .read(p.layout.arg_start, &mut args)
        .map(|m| !m.is_empty())
        .unwrap_or(true)
    {
        args.clear();
    }
    let mut list: Vec<Note> = Vec::new();
    for (i, t) in p.threads.iter().enumerate() {
        list.push(notes::prstatus(p, t, layout));
        if i == 0 {
            list.push(notes::prpsinfo(p, &args, layout));
            list.push(notes::siginfo(layout));
            list.push(notes::auxv(p, layout));
            list.push(notes::nt_file(p, layout, policy));
        }
        list.extend(notes::thread_regsets(p, t));
    }
    let mut out = Vec::new();
    for n in &list {
        n.encode(layout, &mut out);
    }
    Ok(out)
}
