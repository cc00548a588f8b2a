//! Pagemap images (`pagemap-<pid>.img`, `pagemap-shmem-<id>.img`): which pages a
//! dump saved, and where their bytes are. Every entry is checked before any page is
//! read; an error names the pagemap, the entry and the field.
//!
//! Compressed pages (criu-dev's `criu dump --compress`, docs/compressed-pages.md):
//! a present entry may carry `compressed_size`, one value per block of one page or of
//! `region_pages` pages; its payload is the blocks one after the other, and with
//! PE_PAYLOAD_ALIGNED it starts at the next page boundary of the pages file.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::images::pages::{Blocks, Bytes, Pages, Stored};
use crate::images::{magic, pb, ImageDir};

/// Pagemap entry flags (CRIU criu/include/pagemap.h).
pub mod pe {
    /// Pages are in the parent images.
    pub const PARENT: u32 = 1 << 0;
    /// Pages may be restored lazily.
    pub const LAZY: u32 = 1 << 1;
    /// Pages are in this dump's pages file.
    pub const PRESENT: u32 = 1 << 2;
    /// The entry's payload starts at a page boundary of the pages file.
    pub const PAYLOAD_ALIGNED: u32 = 1 << 3;
}

/// Largest compressed block: CRIU's largest region (`--compress-region`, 4 MiB). A
/// larger one is refused, so no image can make a reader hold more.
pub const MAX_BLOCK: u64 = 4 << 20;

/// What inventory.img says about page compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compression {
    /// 1: a block per page; 2: a block per region; anything else is unknown.
    pub mode: u32,
    /// Bytes per region, in region mode.
    pub region_size: Option<u32>,
}

impl Compression {
    /// From the inventory entry; `None` when pages are not compressed.
    pub fn from_inventory(inv: &pb::InventoryEntry) -> Option<Compression> {
        inv.compress.filter(|m| *m != 0).map(|mode| Compression {
            mode,
            region_size: inv.compress_region_size,
        })
    }
}

/// One pagemap entry, normalised.
#[derive(Debug, Clone, Copy)]
pub struct PageRun {
    /// First address (or object offset for shmem).
    pub vaddr: u64,
    /// Length in bytes.
    pub len: u64,
    /// PE_* flags.
    pub flags: u32,
    /// Offset of its pages in [`Pagemap::pages`] (meaningful with PE_PRESENT).
    pub offset: u64,
    /// Index of the entry in the image (the head is entry 0), for messages.
    pub entry: usize,
}

/// A decoded pagemap with its pages.
#[derive(Debug)]
pub struct Pagemap {
    /// Member name, for messages.
    pub member: String,
    /// Sorted, non-overlapping runs.
    pub runs: Vec<PageRun>,
    /// The pages of present runs, uncompressed, one run after the other; `None`
    /// when no run is present.
    pub pages: Option<Bytes>,
}

impl Pagemap {
    /// Loads `pagemap-<name>.img` and checks it against its pages file.
    pub fn load(dir: &ImageDir, file: &str, page_size: u64) -> Result<Option<Pagemap>> {
        let Some(mut img) = dir.read(file, magic::PAGEMAP)? else {
            return Ok(None);
        };
        let member = img.member().to_string();
        let head: pb::PagemapHead = img
            .next_entry()?
            .ok_or_else(|| Error::image(&member, "holds no pagemap_head entry"))?;
        let mut runs: Vec<PageRun> = Vec::new();
        let mut stored: Vec<Stored> = Vec::new();
        // End of the uncompressed layout, and of the payloads in the pages file.
        let (mut raw, mut file_end) = (0u64, 0u64);
        // Whether the pages file differs from the uncompressed layout.
        let mut packed = false;
        let mut entry = 0usize;
        while let Some(e) = img.next_entry::<pb::PagemapEntry>()? {
            entry += 1;
            let vaddr = e
                .vaddr
                .ok_or_else(|| img.error("pagemap_entry.vaddr is missing"))?;
            let flags = match (e.in_parent, e.flags) {
                (Some(true), _) => pe::PARENT,
                (_, Some(f)) => f,
                (_, None) => pe::PRESENT,
            };
            let nr = e.nr_pages.unwrap_or(e.compat_nr_pages.unwrap_or(0) as u64);
            if vaddr % page_size != 0 {
                return Err(img.error(format!("vaddr {vaddr:#x} is not page aligned")));
            }
            let len = nr
                .checked_mul(page_size)
                .filter(|l| vaddr.checked_add(*l).is_some())
                .ok_or_else(|| {
                    img.error(format!(
                        "nr_pages {nr} at {vaddr:#x} overflows the address space"
                    ))
                })?;
            if let Some(prev) = runs.last() {
                if vaddr < prev.vaddr + prev.len {
                    return Err(img.error(format!(
                        "vaddr {vaddr:#x} overlaps or precedes the previous entry ({:#x}-{:#x}); entries must be sorted and disjoint",
                        prev.vaddr,
                        prev.vaddr + prev.len
                    )));
                }
            }
            let present = flags & pe::PRESENT != 0;
            let metadata = !e.compressed_size.is_empty()
                || e.total_compressed_size.is_some()
                || e.region_pages.is_some();
            if !present && (metadata || flags & pe::PAYLOAD_ALIGNED != 0) {
                return Err(img.error(
                    "compression fields or PE_PAYLOAD_ALIGNED on an entry whose pages are not in this dump (no PE_PRESENT)",
                ));
            }
            let run = PageRun {
                vaddr,
                len,
                flags,
                offset: raw,
                entry,
            };
            if present {
                if flags & pe::PAYLOAD_ALIGNED != 0 {
                    packed = true;
                    file_end = file_end
                        .checked_next_multiple_of(page_size)
                        .ok_or_else(|| img.error("payload offset overflows"))?;
                }
                let (blocks, payload) = if metadata {
                    packed = true;
                    let (b, p) = blocks(&e, nr, page_size, file_end).map_err(|d| img.error(d))?;
                    (Some(b), p)
                } else {
                    (None, len)
                };
                if len > 0 {
                    stored.push(Stored {
                        raw,
                        len,
                        file: file_end,
                        entry,
                        blocks,
                    });
                }
                raw = raw
                    .checked_add(len)
                    .ok_or_else(|| img.error("pages total overflows"))?;
                file_end = file_end
                    .checked_add(payload)
                    .ok_or_else(|| img.error("payload offset overflows"))?;
            }
            if len > 0 {
                runs.push(run);
            }
        }
        if raw == 0 {
            return Ok(Some(Pagemap {
                member,
                runs,
                pages: None,
            }));
        }
        let id = head
            .pages_id
            .ok_or_else(|| Error::image(&member, "pagemap_head.pages_id is missing"))?;
        let blob = dir.raw(&format!("pages-{id}.img"))?;
        if blob.len() < file_end {
            // The first entry whose payload does not fit names the damage.
            let over = stored
                .iter()
                .find(|s| payload_end(s) > blob.len())
                .expect("the last payload ends at file_end");
            return Err(Error::image(
                &member,
                format!(
                    "entry {}: its pages end at byte {} of {}, past its end: entries need {file_end} bytes of pages but {} has only {} (truncated?)",
                    over.entry,
                    payload_end(over),
                    blob.name(),
                    blob.name(),
                    blob.len()
                ),
            ));
        }
        let pages = if packed {
            Bytes::Pages(Arc::new(Pages::new(member.clone(), blob, stored)))
        } else {
            // The pages file is the layout itself: read it directly.
            Bytes::Blob(blob)
        };
        Ok(Some(Pagemap {
            member,
            runs,
            pages: Some(pages),
        }))
    }

    /// Index of the first run that ends after `addr`.
    pub fn first_after(&self, addr: u64) -> usize {
        self.runs.partition_point(|r| r.vaddr + r.len <= addr)
    }

    /// Whether any run overlaps `[start, end)`.
    pub fn overlaps(&self, start: u64, end: u64) -> bool {
        self.runs
            .get(self.first_after(start))
            .is_some_and(|r| r.vaddr < end)
    }
}

/// Where the payload of `s` ends in the pages file.
fn payload_end(s: &Stored) -> u64 {
    match &s.blocks {
        None => s.file + s.len,
        Some(b) => s.file + b.stored.iter().map(|x| u64::from(*x)).sum::<u64>(),
    }
}

/// The blocks of present entry `e` of `nr` pages whose payload starts at `file`,
/// checked against its page count; and the payload's length.
fn blocks(
    e: &pb::PagemapEntry,
    nr: u64,
    page_size: u64,
    file: u64,
) -> std::result::Result<(Blocks, u64), String> {
    if e.compressed_size.is_empty() {
        return Err(
            "region_pages or total_compressed_size without compressed_size: incomplete compression fields"
                .into(),
        );
    }
    let region = u64::from(e.region_pages.unwrap_or(0));
    let per = region.max(1);
    let size = per * page_size;
    if size > MAX_BLOCK {
        return Err(format!(
            "region_pages {region} makes blocks of {size} bytes, more than the {MAX_BLOCK} CRIU writes"
        ));
    }
    let want = nr.div_ceil(per);
    let have = e.compressed_size.len() as u64;
    if have != want {
        let per_what = if region == 0 {
            "one per page".to_string()
        } else {
            format!("one per region of region_pages {region}")
        };
        return Err(format!(
            "compressed_size has {have} values, but nr_pages {nr} needs {want} ({per_what})"
        ));
    }
    let mut total = 0u64;
    for (k, s) in e.compressed_size.iter().enumerate() {
        let raw = size.min(nr * page_size - k as u64 * size);
        if u64::from(*s) > raw {
            return Err(format!(
                "compressed_size[{k}] is {s}, more than the {raw} bytes of its block"
            ));
        }
        total += u64::from(*s);
    }
    if let Some(t) = e.total_compressed_size {
        if t != total {
            return Err(format!(
                "total_compressed_size is {t}, but the compressed_size values add up to {total}"
            ));
        }
    }
    file.checked_add(total)
        .ok_or("payload offset overflows".to_string())?;
    Ok((Blocks::new(size, e.compressed_size.clone(), file), total))
}
