//! The ELF files a process had mapped, as the report needs them: where each one is
//! loaded, its symbols, its unwind tables (CFI) and its DWARF (function names, inlined
//! calls, source lines).
//!
//! File contents come from the model (the checkpoint, `--rootfs`, `rootfs-diff.tar`,
//! each verified by size and build-id), the vDSO from the process's own memory, and
//! separate debug files only by build-id, so a debug file can never describe another
//! binary than the one that was mapped.

use std::collections::BTreeMap;
use std::io::Read;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol, SymbolKind};

use crate::archive::Mapped;
use crate::model::memory::{AddressSpace, FileData, MappedFile, Vma, VmaKind};
use crate::rootfs::{hex, RootFs};

/// Bytes shared by every reader of one file: a mapping of it, or a copy (sparse or
/// compressed data, the vDSO).
#[derive(Clone)]
pub struct Bytes(Arc<Backing>);

enum Backing {
    Mapped(Mapped),
    Owned(Vec<u8>),
}

impl Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &*self.0 {
            Backing::Mapped(m) => m,
            Backing::Owned(v) => v,
        }
    }
}

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bytes({})", self.len())
    }
}

// SAFETY: the bytes live in an `Arc` (a mapping or a Vec that is never changed), so
// they stay where they are for as long as any clone exists.
unsafe impl gimli::StableDeref for Bytes {}
unsafe impl gimli::CloneStableDeref for Bytes {}

impl Bytes {
    fn owned(v: Vec<u8>) -> Bytes {
        Bytes(Arc::new(Backing::Owned(v)))
    }
}

/// The DWARF/CFI reader over a module's bytes.
pub type Reader = gimli::EndianReader<gimli::RunTimeEndian, Bytes>;

/// Largest file read into memory when it can't be mapped (sparse ghost files, the
/// vDSO, compressed debug sections).
const MAX_COPY: u64 = 1 << 30;

/// A section an unwinder or symbolizer reads: its address in the ELF file and bytes.
pub struct Section {
    /// sh_addr.
    pub addr: u64,
    /// Contents.
    pub data: Reader,
}

/// One function symbol.
#[derive(Debug, Clone)]
pub struct Symbol {
    /// Address in the ELF file.
    pub addr: u64,
    /// Size (0 if unknown).
    pub size: u64,
    /// Name as in the symbol table (mangled, if it is).
    pub name: String,
}

/// What the report reads from one ELF file (the mapped binary, or its debug file).
struct ElfInfo {
    endian: gimli::RunTimeEndian,
    /// PT_LOAD segments: (p_vaddr, p_offset, p_filesz).
    loads: Vec<(u64, u64, u64)>,
    build_id: Option<Vec<u8>>,
    symbols: Vec<Symbol>,
    sections: BTreeMap<&'static str, Section>,
}

const WANTED: [&str; 14] = [
    ".eh_frame",
    ".eh_frame_hdr",
    ".debug_frame",
    ".text",
    ".debug_abbrev",
    ".debug_addr",
    ".debug_aranges",
    ".debug_info",
    ".debug_line",
    ".debug_line_str",
    ".debug_ranges",
    ".debug_rnglists",
    ".debug_str",
    ".debug_str_offsets",
];

impl ElfInfo {
    fn parse(bytes: &Bytes) -> Result<ElfInfo, String> {
        let file =
            object::File::parse(&**bytes).map_err(|e| format!("not a usable ELF file: {e}"))?;
        let endian = if file.is_little_endian() {
            gimli::RunTimeEndian::Little
        } else {
            gimli::RunTimeEndian::Big
        };
        let loads = file
            .segments()
            .map(|s| {
                let (off, size) = s.file_range();
                (s.address(), off, size)
            })
            .collect();
        let build_id = crate::rootfs::build_id_of(&file);
        let mut symbols: Vec<Symbol> = file
            .symbols()
            .chain(file.dynamic_symbols())
            .filter(|s| s.kind() == SymbolKind::Text && s.address() != 0)
            .filter_map(|s| {
                Some(Symbol {
                    addr: s.address(),
                    size: s.size(),
                    name: s.name().ok()?.to_string(),
                })
            })
            .collect();
        sort_symbols(&mut symbols);
        let mut sections = BTreeMap::new();
        for name in WANTED {
            let Some(sec) = file.section_by_name(name) else {
                continue;
            };
            let Some(data) = section_bytes(bytes, &sec) else {
                continue;
            };
            sections.insert(
                name,
                Section {
                    addr: sec.address(),
                    data: gimli::EndianReader::new(data.0, endian).range(data.1),
                },
            );
        }
        Ok(ElfInfo {
            endian,
            loads,
            build_id,
            symbols,
            sections,
        })
    }

    fn has_dwarf(&self) -> bool {
        self.sections.contains_key(".debug_info")
    }

    fn dwarf(&self) -> Option<addr2line::Context<Reader>> {
        if !self.has_dwarf() {
            return None;
        }
        let empty = gimli::EndianReader::new(Bytes::owned(Vec::new()), self.endian);
        let get = |name: &str| {
            self.sections
                .get(name)
                .map_or_else(|| empty.clone(), |s| s.data.clone())
        };
        let dwarf = gimli::Dwarf::load(|id| -> Result<Reader, ()> { Ok(get(id.name())) }).ok()?;
        addr2line::Context::from_dwarf(dwarf).ok()
    }
}

/// A section's bytes (decompressed if need be): the backing and the range in it.
fn section_bytes(
    file: &Bytes,
    sec: &object::Section<'_, '_>,
) -> Option<(Bytes, std::ops::Range<usize>)> {
    let c = sec.compressed_data().ok()?;
    match c.format {
        object::CompressionFormat::None => {
            let (off, size) = sec.file_range()?;
            Some((file.clone(), off as usize..(off + size) as usize))
        }
        object::CompressionFormat::Zlib if c.uncompressed_size <= MAX_COPY => {
            let mut out = Vec::with_capacity(c.uncompressed_size as usize);
            flate2::read::ZlibDecoder::new(c.data)
                .take(c.uncompressed_size)
                .read_to_end(&mut out)
                .ok()?;
            let n = out.len();
            Some((Bytes::owned(out), 0..n))
        }
        object::CompressionFormat::Zstandard if c.uncompressed_size <= MAX_COPY => {
            let mut out = Vec::with_capacity(c.uncompressed_size as usize);
            zstd::stream::read::Decoder::new(c.data)
                .ok()?
                .take(c.uncompressed_size)
                .read_to_end(&mut out)
                .ok()?;
            let n = out.len();
            Some((Bytes::owned(out), 0..n))
        }
        _ => None,
    }
}

/// Where the report looks for separate debug files (by build-id only), besides the
/// container's own `usr/lib/debug` (through the resolver).
#[derive(Debug, Clone, Default)]
pub struct DebugDirs {
    /// Directories holding `.build-id/xx/rest.debug`, as on the analyst's machine.
    pub host: Vec<PathBuf>,
}

impl DebugDirs {
    fn find(&self, root: &RootFs, build_id: &[u8]) -> Option<(PathBuf, Bytes, ElfInfo)> {
        if build_id.len() < 2 {
            return None;
        }
        let rel = format!(
            ".build-id/{:02x}/{}.debug",
            build_id[0],
            hex(&build_id[1..])
        );
        let host = self.host.iter().find_map(|d| {
            let p = d.join(&rel);
            let file = std::fs::File::open(&p).ok()?;
            let len = file.metadata().ok()?.len();
            let blob = crate::archive::Blob::from_file(&p.display().to_string(), file, len);
            let bytes = Bytes(Arc::new(Backing::Mapped(blob.map().ok()?)));
            let info = ElfInfo::parse(&bytes).ok()?;
            (info.build_id.as_deref() == Some(build_id)).then_some((p, bytes, info))
        });
        host.or_else(|| {
            let found = root.debug_file(build_id)?;
            let bytes = file_bytes(&found.data).ok()?;
            let info = ElfInfo::parse(&bytes).ok()?;
            Some((PathBuf::from(format!("/{}", found.path)), bytes, info))
        })
    }
}

/// One mapped ELF file (or a mapped file that looks like one but can't be read).
pub struct Module {
    /// Path in the container, or `[vdso]`.
    pub path: String,
    /// Lowest mapped address.
    pub base: u64,
    /// End of the highest mapping.
    pub end: u64,
    /// GNU build-id, as CRIU recorded it or as read from the file.
    pub build_id: Option<Vec<u8>>,
    /// Why the file's bytes are not available, if they are not.
    pub missing: Option<String>,
    /// The separate debug file used, if any.
    pub debug_file: Option<PathBuf>,
    /// Mappings: (start, end, file offset, executable).
    maps: Vec<(u64, u64, u64, bool)>,
    loaded: Option<Loaded>,
}

/// The parts of a module's ELF the report uses.
struct Loaded {
    /// Run-time address minus ELF address.
    bias: u64,
    symbols: Vec<Symbol>,
    eh_frame: Option<Section>,
    eh_frame_hdr: Option<Section>,
    debug_frame: Option<Section>,
    text: u64,
    dwarf: Option<addr2line::Context<Reader>>,
}

/// A symbolized address: function, offset in it, and inlined frames.
#[derive(Debug, Clone, Default)]
pub struct Symbolized {
    /// Innermost first: (function, file, line). The last one is the real function.
    pub frames: Vec<(Option<String>, Option<String>, Option<u32>)>,
    /// Offset from the start of the real (outermost) function, if known.
    pub function_offset: Option<u64>,
}

impl Module {
    /// True if `addr` is in one of the module's mappings.
    pub fn contains(&self, addr: u64) -> bool {
        self.maps.iter().any(|m| (m.0..m.1).contains(&addr))
    }

    /// True if `addr` is in an executable mapping of the module.
    pub fn executable(&self, addr: u64) -> bool {
        self.maps.iter().any(|m| m.3 && (m.0..m.1).contains(&addr))
    }

    /// Whether the symbols / CFI / DWARF are available.
    pub fn has(&self) -> (bool, bool, bool) {
        match &self.loaded {
            None => (false, false, false),
            Some(l) => (
                !l.symbols.is_empty(),
                l.eh_frame.is_some() || l.debug_frame.is_some(),
                l.dwarf.is_some(),
            ),
        }
    }

    /// The module's unwind tables and the ELF address of `addr`.
    pub fn cfi(&self, addr: u64) -> Option<Cfi<'_>> {
        let l = self.loaded.as_ref()?;
        Some(Cfi {
            svma: addr.wrapping_sub(l.bias),
            eh_frame: l.eh_frame.as_ref(),
            eh_frame_hdr: l.eh_frame_hdr.as_ref(),
            debug_frame: l.debug_frame.as_ref(),
            text: l.text,
        })
    }

    /// Return points (run-time addresses, innermost first) of the functions that
    /// tail-called their way from the call returning to `caller_ret` down to the
    /// function holding `callee_probe`; see [`super::tailcall`].
    pub fn tail_calls(&self, caller_ret: u64, callee_probe: u64) -> Vec<u64> {
        let Some(l) = &self.loaded else {
            return Vec::new();
        };
        let Some(ctx) = &l.dwarf else {
            return Vec::new();
        };
        let Some(callee) = symbol_at(&l.symbols, callee_probe.wrapping_sub(l.bias)) else {
            return Vec::new();
        };
        let sites = super::tailcall::CallSites {
            ctx,
            symbols: &l.symbols,
        };
        sites
            .chain(caller_ret.wrapping_sub(l.bias), callee.addr)
            .into_iter()
            .map(|r| r.wrapping_add(l.bias))
            .collect()
    }

    /// Function, inlined calls and source line at `addr` (already adjusted to point
    /// inside the call instruction for return addresses).
    pub fn symbolize(&self, addr: u64) -> Symbolized {
        let Some(l) = &self.loaded else {
            return Symbolized::default();
        };
        let svma = addr.wrapping_sub(l.bias);
        let mut out = Symbolized::default();
        if let Some(ctx) = &l.dwarf {
            if let Ok(mut it) = ctx.find_frames(svma).skip_all_loads() {
                while let Ok(Some(f)) = it.next() {
                    let name = f
                        .function
                        .as_ref()
                        .and_then(|n| n.demangle().ok().map(|s| s.into_owned()));
                    let (file, line) = f
                        .location
                        .map_or((None, None), |loc| (loc.file.map(str::to_string), loc.line));
                    out.frames.push((name, file, line));
                }
            }
        }
        let sym = symbol_at(&l.symbols, svma);
        if let Some(s) = sym {
            out.function_offset = Some(svma - s.addr);
        }
        match out.frames.last_mut() {
            Some(last) if last.0.is_none() => last.0 = sym.map(|s| demangle(&s.name)),
            Some(_) => {}
            None => {
                if let Some(s) = sym {
                    out.frames.push((Some(demangle(&s.name)), None, None));
                }
            }
        }
        out
    }
}

fn demangle(name: &str) -> String {
    addr2line::demangle_auto(name.into(), None).into_owned()
}

/// Sorts symbols by address and keeps one per address: a sized one if any, else the
/// first (the symtab's name comes before the dynsym's).
fn sort_symbols(symbols: &mut Vec<Symbol>) {
    symbols.sort_by(|a, b| a.addr.cmp(&b.addr).then((b.size > 0).cmp(&(a.size > 0))));
    symbols.dedup_by_key(|s| s.addr);
}

/// The symbol covering `svma`: the nearest one at or below it, if its size reaches
/// (or it has no size, as hand-written assembly often doesn't).
fn symbol_at(symbols: &[Symbol], svma: u64) -> Option<&Symbol> {
    let i = symbols.partition_point(|s| s.addr <= svma);
    let s = symbols.get(i.checked_sub(1)?)?;
    (s.size == 0 || svma < s.addr + s.size).then_some(s)
}

/// A module's unwind tables, for one address.
pub struct Cfi<'a> {
    /// The address in the ELF file's terms.
    pub svma: u64,
    /// .eh_frame
    pub eh_frame: Option<&'a Section>,
    /// .eh_frame_hdr
    pub eh_frame_hdr: Option<&'a Section>,
    /// .debug_frame
    pub debug_frame: Option<&'a Section>,
    /// .text address (for text-relative pointer encodings).
    pub text: u64,
}

/// Every module of a process, by address.
pub struct Modules {
    /// Sorted by base.
    pub list: Vec<Module>,
}

impl Modules {
    /// Finds and loads the modules of an address space.
    pub fn load(mem: &AddressSpace, debug: &DebugDirs, root: &RootFs) -> Modules {
        let mut groups: Vec<(Arc<MappedFile>, Vec<&Vma>)> = Vec::new();
        let mut vdso = None;
        for v in &mem.vmas {
            if v.kind == VmaKind::Vdso {
                vdso = Some(v);
            }
            let (VmaKind::File | VmaKind::SharedFile) = v.kind else {
                continue;
            };
            let Some(f) = &v.file else { continue };
            match groups
                .iter_mut()
                .find(|(g, _)| Arc::ptr_eq(g, f) || g.id == f.id)
            {
                Some((_, vs)) => vs.push(v),
                None => groups.push((f.clone(), vec![v])),
            }
        }
        let mut list: Vec<Module> = groups
            .into_iter()
            .filter_map(|(f, vmas)| file_module(&f, &vmas, debug, root))
            .collect();
        if let Some(v) = vdso {
            list.push(vdso_module(mem, v));
        }
        list.sort_by_key(|m| m.base);
        Modules { list }
    }

    /// The module mapping `addr`.
    pub fn at(&self, addr: u64) -> Option<&Module> {
        self.list.iter().find(|m| m.contains(addr))
    }
}

fn maps_of(vmas: &[&Vma]) -> Vec<(u64, u64, u64, bool)> {
    vmas.iter()
        .map(|v| (v.start, v.end, v.pgoff, v.prot & 4 != 0))
        .collect()
}

fn file_module(f: &MappedFile, vmas: &[&Vma], debug: &DebugDirs, root: &RootFs) -> Option<Module> {
    let maps = maps_of(vmas);
    let bytes = match &f.content {
        Ok(data) => file_bytes(data),
        Err(e) => Err(e.clone()),
    };
    let elf = bytes.as_ref().ok().map(|b| (b.clone(), ElfInfo::parse(b)));
    let looks_elf = !f.build_id.is_empty()
        || matches!(&elf, Some((_, Ok(_))))
        || (bytes.is_err() && maps.iter().any(|m| m.3));
    if !looks_elf {
        return None;
    }
    let mut m = Module {
        path: f.path.clone(),
        base: maps.iter().map(|m| m.0).min()?,
        end: maps.iter().map(|m| m.1).max()?,
        build_id: (!f.build_id.is_empty()).then(|| f.build_id.clone()),
        missing: bytes.as_ref().err().cloned(),
        debug_file: None,
        maps,
        loaded: None,
    };
    if let Some((_, Ok(info))) = elf {
        if m.build_id.is_none() {
            m.build_id = info.build_id.clone();
        }
        let dbg = m.build_id.as_deref().and_then(|id| debug.find(root, id));
        m.loaded = Some(load(&m.maps, info, dbg.as_ref().map(|d| &d.2)));
        m.debug_file = dbg.map(|d| d.0);
    } else if let Some((_, Err(e))) = elf {
        m.missing = Some(e);
    }
    Some(m)
}

fn vdso_module(mem: &AddressSpace, v: &Vma) -> Module {
    let maps = maps_of(&[v]);
    let mut m = Module {
        path: "[vdso]".into(),
        base: v.start,
        end: v.end,
        build_id: None,
        missing: None,
        debug_file: None,
        maps,
        loaded: None,
    };
    let mut buf = vec![0u8; v.len().min(MAX_COPY) as usize];
    match mem.read(v.start, &mut buf) {
        Ok(missing) if missing.is_empty() => {
            let bytes = Bytes::owned(buf);
            match ElfInfo::parse(&bytes) {
                Ok(info) => {
                    m.build_id = info.build_id.clone();
                    m.loaded = Some(load(&m.maps, info, None));
                }
                Err(e) => m.missing = Some(e),
            }
        }
        Ok(_) => m.missing = Some("its pages are not in the checkpoint".into()),
        Err(e) => m.missing = Some(e.to_string()),
    }
    m
}

/// The bytes of a file from the model: mapped when it is one piece, else copied.
fn file_bytes(data: &FileData) -> Result<Bytes, String> {
    if let [(0, blob)] = data.chunks.as_slice() {
        if blob.len() == data.size {
            let m = blob.map().map_err(|e| e.to_string())?;
            return Ok(Bytes(Arc::new(Backing::Mapped(m))));
        }
    }
    if data.size > MAX_COPY {
        return Err(format!(
            "sparse file of {} bytes is too large to read",
            data.size
        ));
    }
    let mut out = vec![0u8; data.size as usize];
    for (off, blob) in data.chunks.iter().filter(|(off, _)| *off < data.size) {
        let n = blob.len().min(data.size - off) as usize;
        let at = *off as usize;
        blob.read_exact_at(0, &mut out[at..at + n])
            .map_err(|e| e.to_string())?;
    }
    Ok(Bytes::owned(out))
}

/// Combines a binary with its debug file (symbols and DWARF from either).
fn load(maps: &[(u64, u64, u64, bool)], mut info: ElfInfo, debug: Option<&ElfInfo>) -> Loaded {
    let bias = bias(maps, &info.loads);
    let mut dwarf = info.dwarf();
    let mut debug_frame = info.sections.remove(".debug_frame");
    if let Some(d) = debug {
        if dwarf.is_none() {
            dwarf = d.dwarf();
        }
        if debug_frame.is_none() {
            debug_frame = d.sections.get(".debug_frame").map(|s| Section {
                addr: s.addr,
                data: s.data.clone(),
            });
        }
        info.symbols.extend(d.symbols.iter().cloned());
        sort_symbols(&mut info.symbols);
    }
    Loaded {
        bias,
        symbols: info.symbols,
        eh_frame: info.sections.remove(".eh_frame"),
        eh_frame_hdr: info.sections.remove(".eh_frame_hdr"),
        debug_frame,
        text: info.sections.get(".text").map_or(0, |s| s.addr),
        dwarf,
    }
}

/// Load bias: a mapping that covers a PT_LOAD's file offset tells where that
/// segment's p_vaddr landed.
fn bias(maps: &[(u64, u64, u64, bool)], loads: &[(u64, u64, u64)]) -> u64 {
    for &(start, end, pgoff, _) in maps {
        for &(vaddr, off, _) in loads {
            if off >= pgoff && off - pgoff < end - start {
                return (start + (off - pgoff)).wrapping_sub(vaddr);
            }
        }
    }
    maps.first().map_or(0, |m| m.0.wrapping_sub(m.2))
}

/// The default host directory of separate debug files, as gdb uses it.
pub fn default_debug_dirs() -> Vec<PathBuf> {
    let d = Path::new("/usr/lib/debug");
    if d.is_dir() {
        vec![d.to_path_buf()]
    } else {
        Vec::new()
    }
}
