//! Memory views: maps with where each page comes from, reads, environment, search.

use serde::{Serialize, Serializer};

use super::Hex;
use crate::error::{Error, Result};
use crate::model::filter::MemFilter;
use crate::model::memory::{AddressSpace, Origin, Source, Vma, VmaKind};
use crate::model::Process;

/// Page counts of a mapping by source.
#[derive(Debug, Default, Clone, Copy, Serialize, schemars::JsonSchema)]
pub struct PageCounts {
    /// Pages in the mapping.
    pub total: u64,
    /// From the dump's pages files.
    pub pages: u64,
    /// From parent (pre-dump) images.
    pub parent: u64,
    /// From shared-memory objects.
    pub shmem: u64,
    /// From container files (rootfs, rootfs-diff.tar, ghost copies).
    pub rootfs: u64,
    /// Known zero (never touched).
    pub zero: u64,
    /// Not available anywhere.
    pub absent: u64,
}

/// One mapping (`ck2core maps`).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct MapRow {
    /// Start address.
    pub start: Hex,
    /// End address.
    pub end: Hex,
    /// rwxp / rwxs.
    pub perms: String,
    /// Offset in the file or object.
    pub offset: Hex,
    /// Kind of mapping.
    pub kind: VmaKind,
    /// What /proc/PID/maps would name it.
    pub name: String,
    /// GNU build-id of the mapped file, as CRIU recorded it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_id: Option<String>,
    /// Where its pages come from.
    pub pages: PageCounts,
    /// The process marked it `MADV_DONTDUMP`: cores leave its bytes out by default.
    pub dontdump: bool,
}

/// Permissions as /proc/PID/maps shows them: `rwxp`, `r--s`.
pub fn perms(v: &Vma) -> String {
    let b = |bit: u32, c: char| if v.prot & bit != 0 { c } else { '-' };
    format!(
        "{}{}{}{}",
        b(1, 'r'),
        b(2, 'w'),
        b(4, 'x'),
        if v.flags & 1 != 0 { 's' } else { 'p' }
    )
}

/// Builds the maps of `p` that `filter` selects (empty for a zombie). Rows are
/// whole mappings, also when `--range` cuts into them.
pub fn maps(p: &Process, filter: &MemFilter) -> Vec<MapRow> {
    let Some(mem) = &p.memory else {
        return Vec::new();
    };
    let ps = mem.page_size;
    mem.vmas
        .iter()
        .filter(|v| filter.selects(v))
        .map(|v| {
            let mut c = PageCounts {
                total: v.len() / ps,
                ..Default::default()
            };
            for e in mem.extents(v, v.start, v.end) {
                let n = e.len.div_ceil(ps);
                match e.source {
                    Source::Bytes {
                        origin: Origin::Pages,
                        ..
                    } => c.pages += n,
                    Source::Bytes {
                        origin: Origin::Parent,
                        ..
                    } => c.parent += n,
                    Source::Bytes {
                        origin: Origin::Shmem,
                        ..
                    } => c.shmem += n,
                    Source::Bytes {
                        origin: Origin::Rootfs,
                        ..
                    } => c.rootfs += n,
                    Source::Zero => c.zero += n,
                    Source::Missing(_) => c.absent += n,
                }
            }
            MapRow {
                start: Hex(v.start),
                end: Hex(v.end),
                perms: perms(v),
                offset: Hex(v.pgoff),
                kind: v.kind,
                name: v.name(),
                build_id: v
                    .file
                    .as_ref()
                    .filter(|f| !f.build_id.is_empty())
                    .map(|f| crate::rootfs::hex(&f.build_id)),
                pages: c,
                dontdump: v.dontdump(),
            }
        })
        .collect()
}

/// argv and environment of a process (`ck2core env`).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Environment {
    /// Pid.
    pub pid: u32,
    /// Arguments, read from memory.
    pub argv: Option<Vec<String>>,
    /// `NAME=value` strings, read from memory.
    pub environ: Option<Vec<String>>,
}

/// Builds [`Environment`].
pub fn environment(p: &Process) -> Environment {
    Environment {
        pid: p.pid(),
        argv: p.args(),
        environ: p.environ(),
    }
}

/// Bytes, serialised as a hex string.
#[derive(Debug, Clone)]
pub struct HexBytes(pub Vec<u8>);

impl Serialize for HexBytes {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&crate::rootfs::hex(&self.0))
    }
}

impl schemars::JsonSchema for HexBytes {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "HexBytes".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Bytes: two lower-case hex digits each, no prefix.",
            "type": "string",
            "pattern": "^([0-9a-f]{2})*$"
        })
    }
}

/// A range of addresses the checkpoint has no bytes for.
#[derive(Debug, Clone, Copy, Serialize, schemars::JsonSchema)]
pub struct Range {
    /// Start address.
    pub start: Hex,
    /// Length in bytes.
    pub length: u64,
    /// Why the bytes are missing.
    pub reason: Gap,
}

/// Why a range of a read has no bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Gap {
    /// No mapping covers it.
    Unmapped,
    /// Mapped, but no page source has these bytes.
    NotSaved,
    /// Left out by the memory filter (`--kind`, `--perm`, `--range`, `--path`).
    Excluded,
}

/// A read of process memory (`ck2core read`).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct MemoryRead {
    /// Pid.
    pub pid: u32,
    /// First address.
    pub address: Hex,
    /// The bytes (zero where unavailable or excluded).
    pub bytes: HexBytes,
    /// Ranges no source has (not mapped, or not saved).
    pub unavailable: Vec<Range>,
}

/// Most bytes one read may ask for.
pub const MAX_READ: u64 = 64 << 20;

fn memory_of(p: &Process) -> Result<&AddressSpace> {
    p.memory
        .as_ref()
        .ok_or_else(|| Error::Usage(format!("process {} has no memory (zombie)", p.pid())))
}

/// Reads `len` bytes at `addr`. A range no mapping touches is an error naming it:
/// there is nothing to show, not even `??`. A range only partly mapped is read, its
/// unmapped parts reported as unavailable; so are bytes outside what `filter`
/// selects (reason `excluded`).
pub fn read(p: &Process, addr: u64, len: u64, filter: &MemFilter) -> Result<MemoryRead> {
    let mem = memory_of(p)?;
    if len > MAX_READ {
        return Err(Error::Usage(format!(
            "read at most {MAX_READ} bytes at a time"
        )));
    }
    let end = addr.checked_add(len).ok_or_else(|| {
        Error::Usage(format!(
            "{} + {len} bytes goes past the end of the address space",
            Hex(addr)
        ))
    })?;
    if len > 0 && !mem.vmas.iter().any(|v| v.start < end && v.end > addr) {
        return Err(Error::Usage(format!(
            "process {}: no mapping covers {}..{} (see 'ck2core maps')",
            p.pid(),
            Hex(addr),
            Hex(end)
        )));
    }
    let mut buf = vec![0u8; len as usize];
    let missing = mem.read(addr, &mut buf)?;
    // The pieces of [addr, end) the filter keeps.
    let keep: Vec<(u64, u64)> = if filter.is_empty() {
        vec![(addr, end)]
    } else {
        mem.vmas
            .iter()
            .filter(|v| v.end > addr && v.start < end)
            .flat_map(|v| filter.selected_ranges(v))
            .map(|(s, e)| (s.max(addr), e.min(end)))
            .filter(|(s, e)| s < e)
            .collect()
    };
    let mut unavailable = Vec::new();
    for (o, l) in missing {
        let (ms, me) = (addr + o as u64, addr + (o + l) as u64);
        // The model reports unmapped gaps and unsaved bytes as separate ranges, so
        // one address tells which this is.
        let reason = if mem.vma_at(ms).is_some() {
            Gap::NotSaved
        } else {
            Gap::Unmapped
        };
        for (s, e) in &keep {
            let (s, e) = (ms.max(*s), me.min(*e));
            if s < e {
                unavailable.push(Range {
                    start: Hex(s),
                    length: e - s,
                    reason,
                });
            }
        }
    }
    let mut at = addr;
    for (s, e) in keep.iter().copied().chain([(end, end)]) {
        if s > at {
            buf[(at - addr) as usize..(s - addr) as usize].fill(0);
            unavailable.push(Range {
                start: Hex(at),
                length: s - at,
                reason: Gap::Excluded,
            });
        }
        at = at.max(e);
    }
    unavailable.sort_by_key(|r| r.start);
    Ok(MemoryRead {
        pid: p.pid(),
        address: Hex(addr),
        bytes: HexBytes(buf),
        unavailable,
    })
}

/// The address ranges `[start, end)` `filter` selects in `p`, in order (what
/// `read` without an address reads).
pub fn selected_ranges(p: &Process, filter: &MemFilter) -> Result<Vec<(u64, u64)>> {
    let mem = memory_of(p)?;
    Ok(mem
        .vmas
        .iter()
        .flat_map(|v| filter.selected_ranges(v))
        .collect())
}

/// What to look for.
pub struct Pattern {
    re: regex::bytes::Regex,
    /// Longest stretch a match may cross between two reads.
    overlap: usize,
}

impl Pattern {
    /// A literal byte string.
    pub fn literal(bytes: &[u8]) -> Result<Pattern> {
        if bytes.is_empty() {
            return Err(Error::Usage("the search pattern is empty".into()));
        }
        let escaped: String = bytes.iter().map(|b| format!("\\x{b:02x}")).collect();
        let re = regex::bytes::RegexBuilder::new(&escaped)
            .unicode(false)
            .build()
            .map_err(|e| Error::Usage(e.to_string()))?;
        Ok(Pattern {
            re,
            overlap: bytes.len() - 1,
        })
    }

    /// A regular expression over bytes; matches longer than 4 KiB that cross a
    /// 1 MiB read boundary are not found.
    pub fn regex(expr: &str) -> Result<Pattern> {
        let re = regex::bytes::RegexBuilder::new(expr)
            .unicode(false)
            .build()
            .map_err(|e| Error::Usage(format!("bad regular expression: {e}")))?;
        Ok(Pattern { re, overlap: 4096 })
    }
}

/// One match (`ck2core search`).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Match {
    /// Pid.
    pub pid: u32,
    /// Address of the first byte.
    pub address: Hex,
    /// Length of the match.
    pub length: u64,
    /// The mapping's name.
    pub mapping: String,
    /// The mapping's kind.
    pub kind: VmaKind,
    /// Offset from the mapping's start.
    pub offset: Hex,
    /// Address of the context's first byte.
    pub context_start: Hex,
    /// The match with up to `--context` bytes either side.
    pub context: HexBytes,
}

const CHUNK: u64 = 1 << 20;

/// Searches the memory of `p` that `filter` selects; at most `max` matches. A match
/// lies wholly inside the selection.
pub fn search(
    p: &Process,
    pat: &Pattern,
    context: u64,
    max: usize,
    filter: &MemFilter,
) -> Result<Vec<Match>> {
    let mut out = Vec::new();
    let Some(mem) = &p.memory else { return Ok(out) };
    for v in &mem.vmas {
        let cuts = filter.selected_ranges(v);
        for (start, end) in cuts
            .iter()
            .flat_map(|(s, e)| searchable(mem, v, *s, *e, pat.overlap as u64))
        {
            scan(mem, start, end, pat, &mut |addr, len| {
                if out.len() >= max {
                    return false;
                }
                let cs = addr.saturating_sub(context).max(v.start);
                let ce = (addr + len).saturating_add(context).min(v.end);
                let mut ctx = vec![0u8; (ce - cs) as usize];
                let _ = mem.read(cs, &mut ctx);
                out.push(Match {
                    pid: p.pid(),
                    address: Hex(addr),
                    length: len,
                    mapping: v.name(),
                    kind: v.kind,
                    offset: Hex(addr - v.start),
                    context_start: Hex(cs),
                    context: HexBytes(ctx),
                });
                true
            })?;
            if out.len() >= max {
                return Ok(out);
            }
        }
    }
    Ok(out)
}

/// The stretches of a mapping worth scanning: contiguous available bytes, where
/// long runs of zeros (untouched memory) are cut down to `overlap` bytes at each
/// edge, since a pattern with any non-zero byte can't lie wholly inside them. This
/// is what makes searching a 1 GiB mapping with a few pages instant.
fn searchable(mem: &AddressSpace, v: &Vma, start: u64, end: u64, overlap: u64) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    let mut cur: Option<(u64, u64)> = None;
    for e in mem.extents(v, start, end) {
        let end = e.start + e.len;
        match e.source {
            Source::Missing(_) => out.extend(cur.take()),
            Source::Zero if e.len > 2 * overlap => {
                let (s, _) = cur.take().unwrap_or((e.start, e.start));
                out.push((s, e.start + overlap));
                cur = Some((end - overlap, end));
            }
            _ => {
                let (s, _) = cur.unwrap_or((e.start, e.start));
                cur = Some((s, end));
            }
        }
    }
    out.extend(cur);
    out.retain(|(s, e)| e > s);
    out
}

fn scan(
    mem: &AddressSpace,
    start: u64,
    end: u64,
    pat: &Pattern,
    found: &mut dyn FnMut(u64, u64) -> bool,
) -> Result<()> {
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_start = start;
    let mut pos = start;
    let mut last: Option<u64> = None;
    while pos < end {
        let n = CHUNK.min(end - pos) as usize;
        let old = buf.len();
        buf.resize(old + n, 0);
        mem.read(pos, &mut buf[old..])?;
        pos += n as u64;
        for m in pat.re.find_iter(&buf) {
            let addr = buf_start + m.start() as u64;
            if last.is_some_and(|l| addr <= l) {
                continue;
            }
            last = Some(addr);
            if !found(addr, m.len() as u64) {
                return Ok(());
            }
        }
        let keep = pat.overlap.min(buf.len());
        buf.drain(..buf.len() - keep);
        buf_start = pos - keep as u64;
    }
    Ok(())
}
