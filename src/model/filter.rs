//! Which memory a command looks at: mappings chosen by kind, permissions, path and
//! address range. One filter serves `search`, `read`, `maps` and `diff`.
//!
//! Each criterion given must hold (they combine with AND); a criterion given several
//! values (`--kind heap,stack`, `--path` twice) holds when any value does (OR). An
//! empty filter selects everything.

use crate::error::{Error, Result};
use crate::model::memory::{Vma, VmaKind};

/// The `--kind` names and the kinds each selects. Names are the kind column of
/// `ck2core maps`, plus two groups: `file` (private and shared file mappings) and
/// `shmem` (memfd, shared anonymous and SysV memory).
const KINDS: &[(&str, &[VmaKind])] = &[
    ("heap", &[VmaKind::Heap]),
    ("stack", &[VmaKind::Stack]),
    ("anon", &[VmaKind::Anon]),
    ("file", &[VmaKind::File, VmaKind::SharedFile]),
    ("shared-file", &[VmaKind::SharedFile]),
    ("shmem", &[VmaKind::Memfd, VmaKind::Shared, VmaKind::Sysv]),
    ("memfd", &[VmaKind::Memfd]),
    ("shared", &[VmaKind::Shared]),
    ("sysv", &[VmaKind::Sysv]),
    ("vdso", &[VmaKind::Vdso]),
    ("vvar", &[VmaKind::Vvar]),
    ("vsyscall", &[VmaKind::Vsyscall]),
    ("other", &[VmaKind::Other]),
];

const READ: u8 = 1;
const WRITE: u8 = 2;
const EXEC: u8 = 4;
const SHARED: u8 = 8;
const PRIVATE: u8 = 16;

/// Permissions a mapping must have (`must`) and must not have (`must_not`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Perm {
    must: u8,
    must_not: u8,
}

impl Perm {
    /// `rw` (letters in any order): at least these; `r-xp` (the four columns of
    /// maps, `-` for absent; the fourth may be left off): exactly these.
    fn parse(s: &str) -> Result<Perm> {
        let bad = |why: &str| {
            Error::Usage(format!(
                "--perm {s:?}: {why} (letters r, w, x, s, p, e.g. `rw` for at least read and write, or the four columns `r-xp` for exactly those)"
            ))
        };
        if s.is_empty() {
            return Err(bad("empty"));
        }
        let mut p = Perm::default();
        if s.contains('-') {
            let cols: Vec<char> = s.chars().collect();
            if !(3..=4).contains(&cols.len()) {
                return Err(bad("with `-`, give the columns rwx or rwxp"));
            }
            for (i, (c, (letter, bit))) in cols
                .iter()
                .zip([('r', READ), ('w', WRITE), ('x', EXEC)])
                .enumerate()
            {
                match *c {
                    '-' => p.must_not |= bit,
                    c if c == letter => p.must |= bit,
                    _ => return Err(bad(&format!("column {} is {c:?}", i + 1))),
                }
            }
            match cols.get(3) {
                None => {}
                Some('s') => p.must |= SHARED,
                Some('p') => p.must |= PRIVATE,
                Some(c) => return Err(bad(&format!("column 4 is {c:?}, not s or p"))),
            }
            return Ok(p);
        }
        for c in s.chars() {
            p.must |= match c {
                'r' => READ,
                'w' => WRITE,
                'x' => EXEC,
                's' => SHARED,
                'p' => PRIVATE,
                _ => return Err(bad(&format!("{c:?} is not a permission"))),
            };
        }
        if p.must & SHARED != 0 && p.must & PRIVATE != 0 {
            return Err(bad("a mapping is shared or private, not both"));
        }
        Ok(p)
    }

    fn bits(v: &Vma) -> u8 {
        let mut b = (v.prot & 7) as u8;
        b |= if v.flags & 1 != 0 { SHARED } else { PRIVATE };
        b
    }

    fn matches(&self, v: &Vma) -> bool {
        let b = Perm::bits(v);
        b & self.must == self.must && b & self.must_not == 0
    }
}

/// A memory filter: which mappings, and which addresses inside them.
#[derive(Debug, Clone, Default)]
pub struct MemFilter {
    kinds: Vec<VmaKind>,
    perm: Option<Perm>,
    ranges: Vec<(u64, u64)>,
    paths: Vec<glob::Pattern>,
}

/// The filter as the command line gives it, before parsing.
#[derive(Debug, Clone, Default)]
pub struct FilterSpec<'a> {
    /// `--kind` values (each may be comma-separated).
    pub kinds: &'a [String],
    /// `--perm`.
    pub perm: Option<&'a str>,
    /// `--range START-END` values (hex).
    pub ranges: &'a [String],
    /// `--path GLOB` values.
    pub paths: &'a [String],
}

/// Parses a hex address (`0x` optional: addresses are hex, as `maps` prints them).
fn hex_addr(s: &str, flag: &str) -> Result<u64> {
    let h = s.trim();
    let h = h
        .strip_prefix("0x")
        .or_else(|| h.strip_prefix("0X"))
        .unwrap_or(h);
    u64::from_str_radix(h, 16)
        .map_err(|_| Error::Usage(format!("{flag}: {s:?} is not a hex address")))
}

impl MemFilter {
    /// Parses the command-line form.
    pub fn parse(spec: &FilterSpec<'_>) -> Result<MemFilter> {
        let mut f = MemFilter::default();
        for name in spec.kinds.iter().flat_map(|k| k.split(',')) {
            let name = name.trim();
            let (_, kinds) = KINDS.iter().find(|(n, _)| *n == name).ok_or_else(|| {
                let all: Vec<&str> = KINDS.iter().map(|(n, _)| *n).collect();
                Error::Usage(format!(
                    "--kind {name:?} is not a kind of mapping (one of: {})",
                    all.join(", ")
                ))
            })?;
            f.kinds.extend_from_slice(kinds);
        }
        f.perm = spec.perm.map(Perm::parse).transpose()?;
        for r in spec.ranges {
            let (a, b) = r.split_once('-').ok_or_else(|| {
                Error::Usage(format!("--range {r:?}: give START-END, e.g. 7f00-7f80"))
            })?;
            let (a, b) = (hex_addr(a, "--range")?, hex_addr(b, "--range")?);
            if a >= b {
                return Err(Error::Usage(format!(
                    "--range {r:?}: the end must be above the start (the end is exclusive)"
                )));
            }
            f.ranges.push((a, b));
        }
        for p in spec.paths {
            f.paths.push(
                glob::Pattern::new(p).map_err(|e| Error::Usage(format!("--path {p:?}: {e}")))?,
            );
        }
        Ok(f)
    }

    /// A filter that cuts nothing.
    pub fn all() -> MemFilter {
        MemFilter::default()
    }

    /// The same filter without its `--range`s.
    pub fn without_ranges(&self) -> MemFilter {
        MemFilter {
            ranges: Vec::new(),
            ..self.clone()
        }
    }

    /// True when nothing is filtered.
    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
            && self.perm.is_none()
            && self.ranges.is_empty()
            && self.paths.is_empty()
    }

    /// Whether mapping `v` is selected (its kind, permissions and name match, and it
    /// overlaps a `--range` if any was given).
    pub fn selects(&self, v: &Vma) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&v.kind))
            && self.perm.is_none_or(|p| p.matches(v))
            && (self.paths.is_empty() || {
                let name = v.name();
                self.paths.iter().any(|p| p.matches(&name))
            })
            && (self.ranges.is_empty() || !self.cut(v).is_empty())
    }

    /// The address ranges `[start, end)` of `v` the filter keeps, in order: all of it,
    /// or its overlap with the `--range`s; empty when `v` is not selected.
    pub fn cut(&self, v: &Vma) -> Vec<(u64, u64)> {
        if self.ranges.is_empty() {
            return vec![(v.start, v.end)];
        }
        let mut out: Vec<(u64, u64)> = self
            .ranges
            .iter()
            .map(|(a, b)| ((*a).max(v.start), (*b).min(v.end)))
            .filter(|(a, b)| a < b)
            .collect();
        out.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(out.len());
        for (a, b) in out {
            match merged.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        merged
    }

    /// [`MemFilter::cut`] of a selected mapping; empty for one not selected.
    pub fn selected_ranges(&self, v: &Vma) -> Vec<(u64, u64)> {
        if self.selects(v) {
            self.cut(v)
        } else {
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vma(start: u64, end: u64, prot: u32, shared: bool, kind: VmaKind) -> Vma {
        Vma {
            start,
            end,
            pgoff: 0,
            prot,
            flags: if shared { 1 } else { 2 },
            status: 0,
            madv: 0,
            kind,
            file: None,
            shmem: None,
        }
    }

    fn filter(kinds: &[&str], perm: Option<&str>, ranges: &[&str]) -> Result<MemFilter> {
        let kinds: Vec<String> = kinds.iter().map(|s| s.to_string()).collect();
        let ranges: Vec<String> = ranges.iter().map(|s| s.to_string()).collect();
        MemFilter::parse(&FilterSpec {
            kinds: &kinds,
            perm,
            ranges: &ranges,
            paths: &[],
        })
    }

    #[test]
    fn perm_letters_mean_at_least_and_columns_mean_exactly() {
        let rw = vma(0x1000, 0x2000, 3, false, VmaKind::Anon);
        let rwx = vma(0x1000, 0x2000, 7, false, VmaKind::Anon);
        let r = vma(0x1000, 0x2000, 1, false, VmaKind::Anon);
        let rws = vma(0x1000, 0x2000, 3, true, VmaKind::Memfd);
        let f = filter(&[], Some("rw"), &[]).unwrap();
        assert!(f.selects(&rw) && f.selects(&rwx) && f.selects(&rws) && !f.selects(&r));
        let f = filter(&[], Some("rw-"), &[]).unwrap();
        assert!(f.selects(&rw) && !f.selects(&rwx) && f.selects(&rws));
        let f = filter(&[], Some("rw-p"), &[]).unwrap();
        assert!(f.selects(&rw) && !f.selects(&rws));
        let f = filter(&[], Some("s"), &[]).unwrap();
        assert!(f.selects(&rws) && !f.selects(&rw));
        for bad in ["", "rq", "r-", "rw-q", "sp", "rwxps"] {
            assert!(filter(&[], Some(bad), &[]).is_err(), "{bad:?} is refused");
        }
    }

    #[test]
    fn kinds_combine_with_or_and_criteria_with_and() {
        let heap = vma(0x1000, 0x2000, 3, false, VmaKind::Heap);
        let stack = vma(0x3000, 0x4000, 3, false, VmaKind::Stack);
        let memfd = vma(0x5000, 0x6000, 1, true, VmaKind::Memfd);
        let f = filter(&["heap,stack"], None, &[]).unwrap();
        assert!(f.selects(&heap) && f.selects(&stack) && !f.selects(&memfd));
        let f = filter(&["shmem"], None, &[]).unwrap();
        assert!(f.selects(&memfd) && !f.selects(&heap));
        let f = filter(&["shmem"], Some("w"), &[]).unwrap();
        assert!(!f.selects(&memfd), "kind and perm must both hold");
        assert!(filter(&["heapish"], None, &[]).is_err());
    }

    #[test]
    fn ranges_cut_mappings_and_drop_those_outside() {
        let v = vma(0x10000, 0x20000, 3, false, VmaKind::Anon);
        let f = filter(&[], None, &["0x11000-12000", "18000-0x30000"]).unwrap();
        assert_eq!(f.cut(&v), vec![(0x11000, 0x12000), (0x18000, 0x20000)]);
        let f = filter(&[], None, &["20000-30000"]).unwrap();
        assert!(
            !f.selects(&v),
            "the end of a range and of a mapping are exclusive"
        );
        assert!(filter(&[], None, &["2000-1000"]).is_err());
        assert!(filter(&[], None, &["2000"]).is_err());
        let f = filter(&[], None, &["10000-14000", "12000-16000"]).unwrap();
        assert_eq!(
            f.cut(&v),
            vec![(0x10000, 0x16000)],
            "overlapping ranges merge"
        );
    }
}
