//! An encoder of the tests' own for CRIU's compressed pages (criu-dev `criu dump
//! --compress`, as docs/compressed-pages.md describes it): rewrites the pagemaps and
//! pages files of a real CRIU image directory into their compressed form, so every
//! fixture can be read both ways and the results compared.
//!
//! Its LZ4 block encoder is written here too, from the block format alone, so the
//! decoder ck2core uses is checked against an independent encoder.
#![allow(dead_code)]

use std::path::Path;

use ck2core::images::{magic, pb, Image};
use prost::Message;

/// A greedy LZ4 block encoder (no frame): literals and matches as the LZ4 block
/// format defines them, with its end rules (the last 5 bytes are literals, no match
/// starts in the last 12).
pub mod lz4 {
    const MIN_MATCH: usize = 4;
    const LAST_LITERALS: usize = 5;
    const MF_LIMIT: usize = 12;
    const HASH_BITS: u32 = 14;

    fn word(b: &[u8], i: usize) -> u32 {
        u32::from_le_bytes(b[i..i + 4].try_into().unwrap())
    }

    fn hash(w: u32) -> usize {
        (w.wrapping_mul(2_654_435_761) >> (32 - HASH_BITS)) as usize
    }

    fn length(out: &mut Vec<u8>, mut n: usize) {
        while n >= 255 {
            out.push(255);
            n -= 255;
        }
        out.push(n as u8);
    }

    fn sequence(out: &mut Vec<u8>, literals: &[u8], matched: Option<(u16, usize)>) {
        let lit = literals.len();
        let ml = matched.map_or(0, |(_, l)| l - MIN_MATCH);
        out.push(((lit.min(15) as u8) << 4) | ml.min(15) as u8);
        if lit >= 15 {
            length(out, lit - 15);
        }
        out.extend_from_slice(literals);
        if let Some((offset, _)) = matched {
            out.extend_from_slice(&offset.to_le_bytes());
            if ml >= 15 {
                length(out, ml - 15);
            }
        }
    }

    /// `src` as one LZ4 block.
    pub fn compress(src: &[u8]) -> Vec<u8> {
        let n = src.len();
        let mut out = Vec::with_capacity(n / 2 + 16);
        let mut anchor = 0;
        if n > MF_LIMIT {
            let mut table = vec![usize::MAX; 1 << HASH_BITS];
            let mut i = 0;
            while i < n - MF_LIMIT {
                let w = word(src, i);
                let h = hash(w);
                let cand = table[h];
                table[h] = i;
                if cand != usize::MAX && i - cand <= u16::MAX as usize && word(src, cand) == w {
                    let mut len = MIN_MATCH;
                    while i + len < n - LAST_LITERALS && src[cand + len] == src[i + len] {
                        len += 1;
                    }
                    sequence(&mut out, &src[anchor..i], Some(((i - cand) as u16, len)));
                    i += len;
                    anchor = i;
                } else {
                    i += 1;
                }
            }
        }
        sequence(&mut out, &src[anchor..], None);
        out
    }
}

/// What a block covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocks {
    /// One block per page (`criu dump --compress`, inventory compress 1).
    PerPage,
    /// One block per region of this many pages (`--compress-region`, compress 2).
    Region(u32),
}

/// Where present entries' payloads start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Right after the previous payload.
    Never,
    /// At a page boundary, for every present entry (PE_PAYLOAD_ALIGNED).
    Always,
    /// At a page boundary before an entry's first payload when that payload is a
    /// raw block, as CRIT's `compress` does.
    BeforeRaw,
}

/// How to compress.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Per page or per region.
    pub blocks: Blocks,
    /// Payload alignment.
    pub align: Align,
    /// Store every n-th non-zero block raw even if it compresses (0: never), so
    /// that raw blocks sit between compressed ones.
    pub raw_every: u32,
    /// Leave every n-th present entry without compression fields (0: never).
    pub plain_every: u32,
    /// Drop an entry's compressed_size when all its blocks came out raw (CRIU does).
    pub drop_all_raw: bool,
    /// Encode compressed_size unpacked (one tagged varint per value).
    pub unpacked: bool,
    /// Write total_compressed_size.
    pub total: bool,
}

impl Options {
    /// Per page, unaligned, every field written as CRIU writes it.
    pub fn per_page() -> Options {
        Options {
            blocks: Blocks::PerPage,
            align: Align::Never,
            raw_every: 0,
            plain_every: 0,
            drop_all_raw: true,
            unpacked: false,
            total: true,
        }
    }

    /// Per region of `pages` pages, otherwise as [`Options::per_page`].
    pub fn region(pages: u32) -> Options {
        Options {
            blocks: Blocks::Region(pages),
            ..Options::per_page()
        }
    }
}

/// What the encoder did, so tests can insist every kind of block was made.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    /// Blocks stored as LZ4.
    pub lz4: u64,
    /// Blocks stored raw.
    pub raw: u64,
    /// All-zero blocks (nothing stored).
    pub zero: u64,
    /// Entries with PE_PAYLOAD_ALIGNED.
    pub aligned: u64,
    /// Present entries left without compression fields.
    pub plain: u64,
    /// Bytes of padding written.
    pub padding: u64,
}

impl std::ops::AddAssign for Stats {
    fn add_assign(&mut self, o: Stats) {
        self.lz4 += o.lz4;
        self.raw += o.raw;
        self.zero += o.zero;
        self.aligned += o.aligned;
        self.plain += o.plain;
        self.padding += o.padding;
    }
}

const PE_PARENT: u32 = 1;
const PE_PRESENT: u32 = 4;
const PE_PAYLOAD_ALIGNED: u32 = 8;

fn flags(e: &pb::PagemapEntry) -> u32 {
    match (e.in_parent, e.flags) {
        (Some(true), _) => PE_PARENT,
        (_, Some(f)) => f,
        (_, None) => PE_PRESENT,
    }
}

fn nr_pages(e: &pb::PagemapEntry) -> u64 {
    e.nr_pages.unwrap_or(e.compat_nr_pages.unwrap_or(0) as u64)
}

/// The head and entries of a pagemap image.
pub fn read_pagemap(path: &Path) -> (pb::PagemapHead, Vec<pb::PagemapEntry>) {
    let mut img = Image::parse(
        &path.display().to_string(),
        std::fs::read(path).unwrap(),
        magic::PAGEMAP,
    )
    .unwrap();
    let head = img.next_entry().unwrap().unwrap();
    (head, img.all().unwrap())
}

/// A pagemap image from its head and the encoded entries.
pub fn write_pagemap(path: &Path, head: &pb::PagemapHead, entries: &[Vec<u8>]) {
    let mut out = Vec::new();
    out.extend_from_slice(&magic::COMMON.to_le_bytes());
    out.extend_from_slice(&magic::PAGEMAP.to_le_bytes());
    for e in std::iter::once(head.encode_to_vec()).chain(entries.iter().cloned()) {
        out.extend_from_slice(&(e.len() as u32).to_le_bytes());
        out.extend_from_slice(&e);
    }
    std::fs::write(path, out).unwrap();
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// `e` encoded, its compressed_size unpacked if asked.
pub fn encode_entry(e: &pb::PagemapEntry, unpacked: bool) -> Vec<u8> {
    if !unpacked || e.compressed_size.is_empty() {
        return e.encode_to_vec();
    }
    let mut rest = e.clone();
    rest.compressed_size.clear();
    let mut out = rest.encode_to_vec();
    for s in &e.compressed_size {
        out.push(6 << 3);
        varint(&mut out, u64::from(*s));
    }
    out
}

/// Pids of the processes in `dir`'s pstree.img.
pub fn pids(dir: &Path) -> Vec<u32> {
    let mut img = Image::parse(
        "pstree.img",
        std::fs::read(dir.join("pstree.img")).unwrap(),
        magic::PSTREE,
    )
    .unwrap();
    img.all::<pb::PstreeEntry>()
        .unwrap()
        .iter()
        .map(|e| e.pid.unwrap())
        .collect()
}

/// Compresses, in place, the pages of every process of the image directory `dir`
/// and of its shared memory, and marks inventory.img as a compressed dump (image
/// version 3, compress 1 or 2). Pagemaps of processes not in pstree.img (stale
/// files some engines leave) are left alone.
pub fn compress_dir(dir: &Path, page_size: u64, o: &Options) -> Stats {
    let mut stats = Stats::default();
    let mut names: Vec<String> = pids(dir)
        .iter()
        .map(|p| format!("pagemap-{p}.img"))
        .collect();
    for e in std::fs::read_dir(dir).unwrap() {
        let n = e.unwrap().file_name().into_string().unwrap();
        if n.starts_with("pagemap-shmem-") && n.ends_with(".img") {
            names.push(n);
        }
    }
    for name in names {
        if dir.join(&name).exists() {
            stats += compress_pagemap(dir, &name, page_size, o);
        }
    }
    mark_inventory(dir, o, page_size);
    stats
}

/// Appends the compression fields to inventory.img's entry (a later value of a
/// field replaces an earlier one, so the rest of the entry is kept as it was).
pub fn mark_inventory(dir: &Path, o: &Options, page_size: u64) {
    let path = dir.join("inventory.img");
    let bytes = std::fs::read(&path).unwrap();
    let size = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
    let mut entry = bytes[8..8 + size].to_vec();
    let mut field = |n: u64, v: u64| {
        varint(&mut entry, n << 3);
        varint(&mut entry, v);
    };
    field(1, 3);
    match o.blocks {
        Blocks::PerPage => field(15, 1),
        Blocks::Region(n) => {
            field(15, 2);
            field(17, u64::from(n) * page_size);
        }
    }
    let mut out = bytes[..4].to_vec();
    out.extend_from_slice(&(entry.len() as u32).to_le_bytes());
    out.extend_from_slice(&entry);
    out.extend_from_slice(&bytes[8 + size..]);
    std::fs::write(&path, out).unwrap();
}

/// The pages file being written, and how far it got.
struct Out {
    w: std::io::BufWriter<std::fs::File>,
    len: u64,
}

impl Out {
    fn put(&mut self, b: &[u8]) {
        use std::io::Write;
        self.w.write_all(b).unwrap();
        self.len += b.len() as u64;
    }

    /// Pads to the next page boundary. CRIT pads with zeros; 0xa5 here makes a
    /// reader that does not skip the padding show.
    fn pad(&mut self, page_size: u64, stats: &mut Stats) {
        let n = self.len.next_multiple_of(page_size) - self.len;
        stats.padding += n;
        self.put(&vec![0xa5; n as usize]);
    }
}

/// Compresses one pagemap and its pages file, a block at a time (the bench
/// compresses gigabytes with it).
pub fn compress_pagemap(dir: &Path, name: &str, page_size: u64, o: &Options) -> Stats {
    use std::os::unix::fs::FileExt;
    let (head, entries) = read_pagemap(&dir.join(name));
    let pages_path = dir.join(format!("pages-{}.img", head.pages_id.unwrap()));
    let tmp = dir.join(".pages.compressing");
    let input = std::fs::File::open(&pages_path).ok();
    let mut out = Out {
        w: std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp).unwrap()),
        len: 0,
    };
    let per = match o.blocks {
        Blocks::PerPage => page_size as usize,
        Blocks::Region(n) => n as usize * page_size as usize,
    };
    let mut block = vec![0u8; per];
    let mut encoded = Vec::new();
    let mut stats = Stats::default();
    let mut at = 0u64;
    let mut present = 0u32;
    let mut block_no = 0u32;
    for mut e in entries {
        let f = flags(&e);
        if f & PE_PRESENT == 0 {
            encoded.push(encode_entry(&e, false));
            continue;
        }
        present += 1;
        let len = nr_pages(&e) * page_size;
        let input = input.as_ref().expect("present pages need a pages file");
        let plain = o.plain_every > 0 && present % o.plain_every == 0;
        let mut aligned = false;
        if o.align == Align::Always {
            out.pad(page_size, &mut stats);
            aligned = true;
        }
        let mut sizes = Vec::new();
        let mut started = false;
        let mut done = 0u64;
        while done < len {
            let b = &mut block[..(len - done).min(per as u64) as usize];
            input.read_exact_at(b, at + done).unwrap();
            done += b.len() as u64;
            if plain {
                out.put(b);
                continue;
            }
            block_no += 1;
            if b.iter().all(|x| *x == 0) {
                sizes.push(0);
                stats.zero += 1;
                continue;
            }
            let packed = lz4::compress(b);
            let force_raw = o.raw_every > 0 && block_no % o.raw_every == 0;
            let stored: &[u8] = if force_raw || packed.len() >= b.len() * 7 / 8 {
                stats.raw += 1;
                b
            } else {
                stats.lz4 += 1;
                &packed
            };
            if !started && stored.len() == b.len() && o.align == Align::BeforeRaw {
                out.pad(page_size, &mut stats);
                aligned = true;
            }
            started = true;
            out.put(stored);
            sizes.push(stored.len() as u32);
        }
        at += len;
        if aligned {
            e.flags = Some(f | PE_PAYLOAD_ALIGNED);
            stats.aligned += 1;
        }
        let raw_sizes = (0..sizes.len() as u64).map(|k| (len - k * per as u64).min(per as u64));
        let all_raw = sizes.iter().zip(raw_sizes).all(|(s, r)| u64::from(*s) == r);
        if plain || (o.drop_all_raw && all_raw) {
            stats.plain += 1;
        } else {
            e.total_compressed_size = o.total.then(|| sizes.iter().map(|s| u64::from(*s)).sum());
            if let Blocks::Region(n) = o.blocks {
                e.region_pages = Some(n);
            }
            e.compressed_size = sizes;
        }
        encoded.push(encode_entry(&e, o.unpacked));
    }
    out.w.into_inner().unwrap();
    if input.is_some() {
        std::fs::rename(&tmp, &pages_path).unwrap();
    } else {
        std::fs::remove_file(&tmp).unwrap();
    }
    write_pagemap(&dir.join(name), &head, &encoded);
    stats
}

/// Turns every `every`-th present entry of `dir`'s pagemap-`pid`.img into a
/// reference to the parent images (PE_PARENT, its pages dropped from the pages file),
/// as a pre-dump chain stores pages that did not change. Run before compressing.
pub fn defer_to_parent(dir: &Path, pid: u32, page_size: u64, every: u32, first: u32) -> u32 {
    let name = format!("pagemap-{pid}.img");
    let (head, entries) = read_pagemap(&dir.join(&name));
    let pages_path = dir.join(format!("pages-{}.img", head.pages_id.unwrap()));
    let input = std::fs::read(&pages_path).unwrap();
    let mut out = Vec::new();
    let mut encoded = Vec::new();
    let mut at = 0usize;
    let mut present = 0u32;
    let mut deferred = 0;
    for mut e in entries {
        let f = flags(&e);
        if f & PE_PRESENT == 0 {
            encoded.push(encode_entry(&e, false));
            continue;
        }
        let len = (nr_pages(&e) * page_size) as usize;
        if present % every == first {
            e.in_parent = None;
            e.flags = Some(PE_PARENT);
            deferred += 1;
        } else {
            out.extend_from_slice(&input[at..at + len]);
        }
        present += 1;
        at += len;
        encoded.push(encode_entry(&e, false));
    }
    std::fs::write(&pages_path, out).unwrap();
    write_pagemap(&dir.join(name), &head, &encoded);
    deferred
}

/// Zeroes every `every`-th page of each pages file in `dir`, so that fixtures, which
/// CRIU saved without all-zero pages, have some for the encoder to store as nothing.
pub fn zero_pages(dir: &Path, page_size: u64, every: u64) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let n = p.file_name().unwrap().to_str().unwrap();
        if !(n.starts_with("pages-") && n.ends_with(".img")) {
            continue;
        }
        let mut b = std::fs::read(&p).unwrap();
        for (i, page) in b.chunks_mut(page_size as usize).enumerate() {
            if i as u64 % every == every - 1 {
                page.fill(0);
            }
        }
        std::fs::write(&p, b).unwrap();
    }
}
