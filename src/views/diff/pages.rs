//! Page-by-page comparison of two mappings, through the model's page API
//! ([`AddressSpace::extents`] to skip what needs no reading, [`AddressSpace::read`]
//! for bytes), so every page source counts: pages files, parents, shared memory,
//! container files, and untouched memory as zeros.
//!
//! Both sides are read in step, window by window, in address order: each pages file
//! is read once, front to back, and memory stays at two windows whatever the size.
//! Pages are compared byte for byte rather than hashed, since both are at hand.

use serde::Serialize;

use crate::error::Result;
use crate::model::memory::{AddressSpace, Source, Vma};
use crate::views::Hex;

/// Bytes compared per step on each side.
const WINDOW: u64 = 1 << 20;

/// A run of pages that differ, or that one side does not have.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct PageRange {
    /// First address in A.
    pub a: Hex,
    /// First address in B (differs from `a` when the mapping moved).
    pub b: Hex,
    /// Number of pages.
    pub pages: u64,
    /// For unknown pages: which side lacks them, `a`, `b`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing_in: Option<&'static str>,
}

/// How the pages of one mapping pair compare.
#[derive(Debug, Default, Serialize, schemars::JsonSchema)]
pub struct PageComparison {
    /// Page size (bytes) the counts are in.
    pub page_size: u64,
    /// Pages compared (in both mappings and selected by the filter).
    pub compared: u64,
    /// Pages whose bytes differ.
    pub differ: u64,
    /// Pages one side has and the other does not (CRIU did not save them, or their
    /// file is missing): their content can't be compared, which is not "equal".
    pub unknown: u64,
    /// Pages neither side has (e.g. `[vvar]`, file pages without `--rootfs`).
    pub unavailable: u64,
    /// The differing pages, as runs.
    pub differing: Vec<PageRange>,
    /// The unknown pages, as runs.
    pub unknown_ranges: Vec<PageRange>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Page {
    Same,
    Differ,
    Missing(&'static str),
    Neither,
}

impl PageComparison {
    fn push(&mut self, page: u64, a: u64, b: u64, pages: u64, what: Page) {
        self.compared += pages;
        let list = match what {
            Page::Same => return,
            Page::Neither => {
                self.unavailable += pages;
                return;
            }
            Page::Differ => {
                self.differ += pages;
                &mut self.differing
            }
            Page::Missing(_) => {
                self.unknown += pages;
                &mut self.unknown_ranges
            }
        };
        let side = match what {
            Page::Missing(s) => Some(s),
            _ => None,
        };
        if let Some(last) = list.last_mut() {
            if last.a.0 + last.pages * page == a
                && last.b.0 + last.pages * page == b
                && last.missing_in == side
            {
                last.pages += pages;
                return;
            }
        }
        list.push(PageRange {
            a: Hex(a),
            b: Hex(b),
            pages,
            missing_in: side,
        });
    }
}

/// What a window of one side holds, from its extents alone.
enum Shape {
    AllZero,
    AllMissing,
    Mixed,
}

fn shape(mem: &AddressSpace, v: &Vma, start: u64, end: u64) -> Shape {
    let ext = mem.extents(v, start, end);
    if ext.iter().all(|e| matches!(e.source, Source::Zero)) {
        Shape::AllZero
    } else if ext.iter().all(|e| matches!(e.source, Source::Missing(_))) {
        Shape::AllMissing
    } else {
        Shape::Mixed
    }
}

/// Reads `buf.len()` bytes at `addr`; returns, per page, whether any byte of it is
/// missing.
fn read_pages(mem: &AddressSpace, addr: u64, buf: &mut [u8], page: u64) -> Result<Vec<bool>> {
    let mut missing = vec![false; (buf.len() as u64 / page) as usize];
    for (o, l) in mem.read(addr, buf)? {
        let first = o as u64 / page;
        let last = (o + l).div_ceil(page as usize) as u64;
        for m in &mut missing[first as usize..last as usize] {
            *m = true;
        }
    }
    Ok(missing)
}

/// Compares the pages of `va` (in `a`) and `vb` (in `b`) at the same offsets from
/// their starts, over `ranges` (addresses in A, page aligned, inside `va`), up to
/// the shorter mapping's end. `bufs` are reused between calls.
pub fn compare(
    a: &AddressSpace,
    va: &Vma,
    b: &AddressSpace,
    vb: &Vma,
    ranges: &[(u64, u64)],
    bufs: &mut (Vec<u8>, Vec<u8>),
) -> Result<PageComparison> {
    let page = a.page_size;
    let mut out = PageComparison {
        page_size: page,
        ..Default::default()
    };
    let common = va.len().min(vb.len());
    let to_b = |addr: u64| vb.start + (addr - va.start);
    for &(s, e) in ranges {
        let s = s - (s - va.start) % page;
        let e = (va.start + (e - va.start).div_ceil(page) * page).min(va.start + common);
        let mut at = s;
        while at < e {
            let n = WINDOW.min(e - at);
            let n = n.div_ceil(page) * page;
            let stop = (at + n).min(e);
            let pages = (stop - at).div_ceil(page);
            let (sa, sb) = (shape(a, va, at, stop), shape(b, vb, to_b(at), to_b(stop)));
            let whole = match (&sa, &sb) {
                (Shape::AllZero, Shape::AllZero) => Some(Page::Same),
                (Shape::AllMissing, Shape::AllMissing) => Some(Page::Neither),
                (Shape::AllMissing, Shape::AllZero) => Some(Page::Missing("a")),
                (Shape::AllZero, Shape::AllMissing) => Some(Page::Missing("b")),
                _ => None,
            };
            if let Some(w) = whole {
                out.push(page, at, to_b(at), pages, w);
                at = stop;
                continue;
            }
            let len = (pages * page) as usize;
            bufs.0.resize(len, 0);
            bufs.1.resize(len, 0);
            let ma = read_pages(a, at, &mut bufs.0[..len], page)?;
            let mb = read_pages(b, to_b(at), &mut bufs.1[..len], page)?;
            for i in 0..pages as usize {
                let r = i * page as usize..(i + 1) * page as usize;
                let what = match (ma[i], mb[i]) {
                    (true, true) => Page::Neither,
                    (true, false) => Page::Missing("a"),
                    (false, true) => Page::Missing("b"),
                    _ if bufs.0[r.clone()] == bufs.1[r] => Page::Same,
                    _ => Page::Differ,
                };
                let addr = at + i as u64 * page;
                out.push(page, addr, to_b(addr), 1, what);
            }
            at = stop;
        }
    }
    Ok(out)
}
