//! The bytes of saved pages, read by offset in the pagemap's uncompressed layout
//! (present entries one after the other, `nr_pages` pages each), however the pages
//! file stores them: raw, or in blocks that are all zero, raw or LZ4 compressed
//! (`criu dump --compress`, see docs/compressed-pages.md).
//!
//! Compressed blocks are decoded on demand into a small cache of recently used
//! blocks, so reading a checkpoint costs a few blocks of memory whatever its size.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::archive::Blob;
use crate::error::{Error, Result};

/// Bytes stored in the checkpoint, read by offset: a member (or part of one), or a
/// pages file seen through its pagemap.
#[derive(Debug, Clone)]
pub enum Bytes {
    /// Stored as they are.
    Blob(Blob),
    /// Saved pages of a pagemap whose pages file is compressed or padded.
    Pages(Arc<Pages>),
}

impl From<Blob> for Bytes {
    fn from(b: Blob) -> Bytes {
        Bytes::Blob(b)
    }
}

impl Bytes {
    /// Fills `buf` from `offset`; errors name the member (and the pagemap entry).
    pub fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        match self {
            Bytes::Blob(b) => b.read_exact_at(offset, buf),
            Bytes::Pages(p) => p.read_exact_at(offset, buf),
        }
    }

    /// The member the bytes are in, for messages.
    pub fn name(&self) -> &str {
        match self {
            Bytes::Blob(b) => b.name(),
            Bytes::Pages(p) => p.blob.name(),
        }
    }

    /// Length in bytes (uncompressed).
    pub fn len(&self) -> u64 {
        match self {
            Bytes::Blob(b) => b.len(),
            Bytes::Pages(p) => p.len,
        }
    }

    /// True if there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether two are the same bytes, so that offsets in them compare.
    pub fn same_as(&self, other: &Bytes) -> bool {
        match (self, other) {
            (Bytes::Blob(a), Bytes::Blob(b)) => a.same_as(b),
            (Bytes::Pages(a), Bytes::Pages(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// Blocks whose file offset is kept; the others' are summed from the nearest.
const MARK: usize = 64;

/// Decoded blocks kept: enough for the boundaries between sequential reads.
const CACHED_BLOCKS: usize = 4;

/// How one present pagemap entry's pages are stored.
#[derive(Debug)]
pub(crate) struct Stored {
    /// First byte in the uncompressed layout.
    pub raw: u64,
    /// Uncompressed length.
    pub len: u64,
    /// Where its payload starts in the pages file.
    pub file: u64,
    /// Index of the entry in the pagemap image, for messages.
    pub entry: usize,
    /// `None`: the pages as they are.
    pub blocks: Option<Blocks>,
}

/// The blocks of a compressed entry.
#[derive(Debug)]
pub(crate) struct Blocks {
    /// Uncompressed bytes per block (the last may be fewer).
    pub size: u64,
    /// Stored bytes of each block (`compressed_size`).
    pub stored: Box<[u32]>,
    /// File offset of every MARK-th block.
    pub marks: Box<[u64]>,
}

impl Blocks {
    /// Indexes `stored` from `file`, the offset of the first block.
    pub fn new(size: u64, stored: Vec<u32>, file: u64) -> Blocks {
        let mut marks = Vec::with_capacity(stored.len().div_ceil(MARK));
        let mut at = file;
        for (i, s) in stored.iter().enumerate() {
            if i % MARK == 0 {
                marks.push(at);
            }
            at += u64::from(*s);
        }
        Blocks {
            size,
            stored: stored.into_boxed_slice(),
            marks: marks.into_boxed_slice(),
        }
    }

    /// File offset of block `k`.
    fn offset(&self, k: usize) -> u64 {
        let first = k - k % MARK;
        self.marks[k / MARK]
            + self.stored[first..k]
                .iter()
                .map(|s| u64::from(*s))
                .sum::<u64>()
    }
}

/// A pages file read through its pagemap's layout.
#[derive(Debug)]
pub struct Pages {
    /// The pagemap image, named in messages.
    member: String,
    blob: Blob,
    /// Present entries in layout order.
    stored: Vec<Stored>,
    /// Uncompressed length of all of them.
    len: u64,
    cache: Mutex<Cache>,
}

#[derive(Debug, Default)]
struct Cache {
    /// (entry position in `stored`, block index, decoded bytes), oldest first.
    blocks: VecDeque<(usize, usize, Vec<u8>)>,
    /// The compressed bytes of the block being decoded.
    input: Vec<u8>,
}

impl Pages {
    /// `stored` must be in layout order, contiguous from 0, every payload inside `blob`
    /// (the pagemap decoder checks all of it).
    pub(crate) fn new(member: String, blob: Blob, stored: Vec<Stored>) -> Pages {
        let len = stored.last().map_or(0, |s| s.raw + s.len);
        Pages {
            member,
            blob,
            stored,
            len,
            cache: Mutex::default(),
        }
    }

    /// Fills `buf` with the uncompressed bytes at `offset`.
    pub fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        if offset
            .checked_add(buf.len() as u64)
            .is_none_or(|e| e > self.len)
        {
            return Err(Error::image(
                &self.member,
                format!(
                    "read of {} bytes at {offset} goes past the {} bytes of saved pages",
                    buf.len(),
                    self.len
                ),
            ));
        }
        let mut i = self.stored.partition_point(|s| s.raw + s.len <= offset);
        let mut at = offset;
        let mut done = 0usize;
        while done < buf.len() {
            let s = &self.stored[i];
            let within = at - s.raw;
            let n = (s.len - within).min((buf.len() - done) as u64) as usize;
            let out = &mut buf[done..done + n];
            match &s.blocks {
                None => self.blob.read_exact_at(s.file + within, out)?,
                Some(b) => self.read_blocks(i, b, within, out)?,
            }
            done += n;
            at += n as u64;
            i += 1;
        }
        Ok(())
    }

    /// Fills `out` from `within` bytes into the entry at position `i`.
    fn read_blocks(&self, i: usize, b: &Blocks, within: u64, out: &mut [u8]) -> Result<()> {
        let s = &self.stored[i];
        let mut at = within;
        let mut done = 0usize;
        while done < out.len() {
            let k = (at / b.size) as usize;
            let skip = at % b.size;
            let raw = b.size.min(s.len - k as u64 * b.size);
            let n = (raw - skip).min((out.len() - done) as u64) as usize;
            let slot = &mut out[done..done + n];
            let stored = u64::from(b.stored[k]);
            if stored == 0 {
                slot.fill(0);
            } else if stored == raw {
                self.blob.read_exact_at(b.offset(k) + skip, slot)?;
            } else {
                self.decoded(i, k, b, raw, |block| {
                    slot.copy_from_slice(&block[skip as usize..skip as usize + n])
                })?;
            }
            done += n;
            at += n as u64;
        }
        Ok(())
    }

    /// Calls `f` with block `k` of the entry at position `i`, decoded.
    fn decoded(
        &self,
        i: usize,
        k: usize,
        b: &Blocks,
        raw: u64,
        f: impl FnOnce(&[u8]),
    ) -> Result<()> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, _, block)) = cache.blocks.iter().find(|(a, c, _)| (*a, *c) == (i, k)) {
            f(block);
            return Ok(());
        }
        let s = &self.stored[i];
        let at = b.offset(k);
        let len = b.stored[k] as usize;
        let err = |d: String| {
            Error::image(
                &self.member,
                format!(
                    "entry {}: block {k} ({len} bytes at offset {at} of {}) {d}",
                    s.entry,
                    self.blob.name()
                ),
            )
        };
        let Cache { blocks, input } = &mut *cache;
        input.resize(len, 0);
        self.blob.read_exact_at(at, input)?;
        let mut block = if blocks.len() >= CACHED_BLOCKS {
            blocks.pop_front().map(|(_, _, v)| v).unwrap_or_default()
        } else {
            Vec::new()
        };
        block.clear();
        block.resize(raw as usize, 0);
        match lz4_flex::block::decompress_into(input, &mut block) {
            Ok(n) if n as u64 == raw => {}
            Ok(n) => {
                return Err(err(format!(
                    "decodes to {n} bytes, but the block holds {raw}"
                )))
            }
            Err(lz4_flex::block::DecompressError::OutputTooSmall { .. }) => {
                return Err(err(format!(
                    "decodes to more than the {raw} bytes the block holds"
                )))
            }
            Err(e) => return Err(err(format!("is not a valid LZ4 block: {e}"))),
        }
        f(&block);
        blocks.push_back((i, k, block));
        Ok(())
    }
}
