//! The module list (every mapped ELF file and the vDSO, with Breakpad's ELF
//! CodeView record holding the GNU build-id, which is what symbol servers match
//! on) and the dynamic linker's link map (Breakpad's DSO_DEBUG stream).

use minidump_common::format::{
    CvSignature, DSO_DEBUG_32, DSO_DEBUG_64, LINK_MAP_32, LINK_MAP_64,
    MINIDUMP_LOCATION_DESCRIPTOR, MINIDUMP_MODULE,
};
use object::Object;

use super::{bytes, counted, Builder};
use crate::error::Result;
use crate::model::memory::{AddressSpace, VmaKind};
use crate::model::Process;

/// The name glibc and ldd give the vDSO.
pub const VDSO_NAME: &str = "linux-vdso.so.1";
/// Most link-map entries followed (a cycle or a hostile list ends there).
const MAX_LINK_MAP: usize = 4096;
/// Longest library name read from memory.
const MAX_NAME: usize = 4096;

/// One module.
#[derive(Debug, Clone)]
pub struct Module {
    /// Path in the container (or [`VDSO_NAME`]).
    pub path: String,
    /// First address.
    pub base: u64,
    /// End address (exclusive).
    pub end: u64,
    /// GNU build-id, if known.
    pub build_id: Vec<u8>,
}

/// Every module of an address space, the executable first (readers take the first
/// module for the main one), the rest in address order.
///
/// A module starts at each mapping of an ELF file at offset 0 and takes in the
/// later mappings of the same file; a file is ELF when CRIU recorded a build-id
/// for it or its first page shows the ELF magic.
pub fn list(mem: &AddressSpace, exe: Option<&str>) -> Vec<Module> {
    let mut out: Vec<(u32, Module)> = Vec::new();
    for v in &mem.vmas {
        if v.kind == VmaKind::Vdso {
            out.push((
                u32::MAX,
                Module {
                    path: VDSO_NAME.into(),
                    base: v.start,
                    end: v.end,
                    build_id: vdso_build_id(mem, v.start, v.len()).unwrap_or_default(),
                },
            ));
            continue;
        }
        let (VmaKind::File | VmaKind::SharedFile) = v.kind else {
            continue;
        };
        let Some(f) = &v.file else { continue };
        let elf = !f.build_id.is_empty() || (v.pgoff == 0 && elf_magic(mem, v.start));
        if !elf {
            continue;
        }
        let current = out.iter_mut().rev().find(|(id, _)| *id == f.id);
        match current {
            Some((_, m)) if v.pgoff != 0 => m.end = m.end.max(v.end),
            _ => out.push((
                f.id,
                Module {
                    path: f.path.clone(),
                    base: v.start,
                    end: v.end,
                    build_id: f.build_id.clone(),
                },
            )),
        }
    }
    let mut mods: Vec<Module> = out.into_iter().map(|(_, m)| m).collect();
    if let Some(i) = exe.and_then(|e| mods.iter().position(|m| m.path == e)) {
        let m = mods.remove(i);
        mods.insert(0, m);
    }
    mods
}

fn elf_magic(mem: &AddressSpace, addr: u64) -> bool {
    let mut m = [0u8; 4];
    matches!(mem.read(addr, &mut m), Ok(missing) if missing.is_empty()) && &m == b"\x7fELF"
}

/// The build-id of the vDSO image in memory.
fn vdso_build_id(mem: &AddressSpace, start: u64, len: u64) -> Option<Vec<u8>> {
    let mut image = vec![0u8; len.min(1 << 20) as usize];
    if !mem.read(start, &mut image).ok()?.is_empty() {
        return None;
    }
    let file = object::File::parse(&*image).ok()?;
    file.build_id().ok()?.map(<[u8]>::to_vec)
}

/// The module list stream; names and CodeView records go into `b`.
pub fn encode(b: &mut Builder, mods: &[Module]) -> Result<Vec<u8>> {
    let mut entries = Vec::new();
    for m in mods {
        let name = b.string(&m.path)?;
        let cv_record = if m.build_id.is_empty() {
            MINIDUMP_LOCATION_DESCRIPTOR::default()
        } else {
            // CV_INFO_ELF: the 'BpEL' signature, then the whole build-id. Readers
            // derive the debug id (a GUID from its first 16 bytes, age 0) from it,
            // as dump_syms does for the symbol file of the same ELF.
            let mut cv = (CvSignature::Elf as u32).to_le_bytes().to_vec();
            cv.extend_from_slice(&m.build_id);
            b.put(&cv)?
        };
        entries.extend(bytes(&MINIDUMP_MODULE {
            base_of_image: m.base,
            size_of_image: (m.end - m.base).min(u32::MAX as u64) as u32,
            module_name_rva: name,
            cv_record,
            ..Default::default()
        })?);
    }
    Ok(counted(mods.len(), entries))
}

/// The DSO_DEBUG stream, when the process's memory has a dynamic linker's
/// `r_debug` (found through the executable's DT_DEBUG): the struct, then a copy
/// of the executable's dynamic section; the link-map entries and their names go
/// into `b`.
pub fn dso_debug(b: &mut Builder, p: &Process, mem: &AddressSpace) -> Result<Option<Vec<u8>>> {
    let Some(found) = link_map(p, mem) else {
        return Ok(None);
    };
    let class64 = p.arch.layout().class64;
    let mut maps = Vec::new();
    for (addr, name, ld) in &found.entries {
        let name = b.string(name)?;
        maps.extend(if class64 {
            bytes(&LINK_MAP_64 {
                addr: *addr,
                name,
                ld: *ld,
            })?
        } else {
            bytes(&LINK_MAP_32 {
                addr: *addr as u32,
                name,
                ld: *ld as u32,
            })?
        });
    }
    let map = b.put(&maps)?.rva;
    let count = found.entries.len() as u32;
    let mut out = if class64 {
        bytes(&DSO_DEBUG_64 {
            version: found.version,
            map,
            dso_count: count,
            brk: found.brk,
            ldbase: found.ldbase,
            dynamic: found.dynamic,
        })?
    } else {
        bytes(&DSO_DEBUG_32 {
            version: found.version,
            map,
            dso_count: count,
            brk: found.brk as u32,
            ldbase: found.ldbase as u32,
            dynamic: found.dynamic as u32,
        })?
    };
    out.extend(found.dynamic_section);
    Ok(Some(out))
}

struct LinkMap {
    version: u32,
    brk: u64,
    ldbase: u64,
    dynamic: u64,
    dynamic_section: Vec<u8>,
    /// (l_addr, l_name, l_ld) of each entry.
    entries: Vec<(u64, String, u64)>,
}

/// Follows AT_PHDR to the executable's PT_DYNAMIC, its DT_DEBUG to `r_debug`, and
/// `r_map` along the list. Any unreadable or absurd step means no link map.
fn link_map(p: &Process, mem: &AddressSpace) -> Option<LinkMap> {
    let layout = p.arch.layout();
    let w = layout.word() as u64;
    let aux = |t: u64| p.auxv.iter().find(|(k, _)| *k == t).map(|(_, v)| *v);
    let (phdr, phnum) = (aux(3)?, aux(5)?);
    let read = |addr: u64, len: u64| -> Option<Vec<u8>> {
        let mut buf = vec![0u8; usize::try_from(len).ok().filter(|l| *l <= 1 << 20)?];
        mem.read(addr, &mut buf)
            .ok()
            .filter(|m| m.is_empty())
            .map(|_| buf)
    };
    let word = |addr: u64| read(addr, w).map(|b| layout.get_word(&b));
    let u32at = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let phent = if layout.class64 { 56 } else { 32 };
    let phdrs = read(phdr, phnum.min(256) * phent)?;
    // (p_type, p_vaddr, p_memsz) of each program header.
    let entries: Vec<(u32, u64, u64)> = phdrs
        .chunks_exact(phent as usize)
        .map(|h| {
            if layout.class64 {
                (
                    u32at(h, 0),
                    layout.get_word(&h[16..]),
                    layout.get_word(&h[40..]),
                )
            } else {
                (u32at(h, 0), u32at(h, 8) as u64, u32at(h, 20) as u64)
            }
        })
        .collect();
    // The load bias: where PT_PHDR says the headers are, against where they are.
    let bias = entries
        .iter()
        .find(|e| e.0 == 6)
        .map_or(0, |e| phdr.wrapping_sub(e.1));
    let (_, dyn_vaddr, dyn_size) = *entries.iter().find(|e| e.0 == 2)?;
    let dynamic = bias.wrapping_add(dyn_vaddr);
    let dynamic_section = read(dynamic, dyn_size)?;
    let r_debug = dynamic_section
        .chunks_exact(2 * w as usize)
        .map(|d| (layout.get_word(d), layout.get_word(&d[w as usize..])))
        .take_while(|(tag, _)| *tag != 0)
        .find(|(tag, _)| *tag == 21)
        .map(|(_, v)| v)
        .filter(|v| *v != 0)?;
    // struct r_debug { int r_version; link_map *r_map; ElfW(Addr) r_brk;
    //                  enum r_state; ElfW(Addr) r_ldbase; }
    let version = read(r_debug, 4).map(|b| u32at(&b, 0))?;
    let r_map = word(r_debug + w)?;
    let brk = word(r_debug + 2 * w)?;
    let ldbase = word(r_debug + 4 * w)?;
    let mut list = Vec::new();
    let mut at = r_map;
    let mut seen = std::collections::HashSet::new();
    while at != 0 && list.len() < MAX_LINK_MAP && seen.insert(at) {
        // struct link_map { l_addr; char *l_name; l_ld; l_next; l_prev; }
        let l = read(at, 4 * w)?;
        let f = |i: u64| layout.get_word(&l[(i * w) as usize..]);
        let name = cstring(mem, f(1)).unwrap_or_default();
        list.push((f(0), name, f(2)));
        at = f(3);
    }
    Some(LinkMap {
        version,
        brk,
        ldbase,
        dynamic,
        dynamic_section,
        entries: list,
    })
}

/// A NUL-terminated string from memory.
fn cstring(mem: &AddressSpace, addr: u64) -> Option<String> {
    if addr == 0 {
        return None;
    }
    let mut out = Vec::new();
    let mut chunk = [0u8; 64];
    while out.len() < MAX_NAME {
        let at = addr.checked_add(out.len() as u64)?;
        // Read up to the end of the page, so a name at a page's end still reads.
        let n = (chunk.len() as u64).min(4096 - at % 4096) as usize;
        if !mem.read(at, &mut chunk[..n]).ok()?.is_empty() {
            return None;
        }
        match chunk[..n].iter().position(|c| *c == 0) {
            Some(i) => {
                out.extend_from_slice(&chunk[..i]);
                return Some(String::from_utf8_lossy(&out).into_owned());
            }
            None => out.extend_from_slice(&chunk[..n]),
        }
    }
    None
}
