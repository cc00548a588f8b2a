//! Compressed pages (criu-dev `criu dump --compress`): every real fixture, rewritten
//! by the tests' own encoder per page and per region, aligned and not, with zero,
//! raw and LZ4 blocks, and in pre-dump chains mixing compressed and raw layers,
//! converts to cores byte-identical to those of its uncompressed form; search, read
//! and the report find the same things; and damaged compression fields or blocks
//! give errors naming the pagemap entry.

mod common;

use std::path::{Path, PathBuf};

use common::compress::{self, Align, Options, Stats};
use common::*;

const PAGE: u64 = 4096;

/// Every ZERO_EVERY-th page of a fixture is zeroed (in both forms compared).
const ZERO_EVERY: u64 = 7;

fn td(p: &str) -> PathBuf {
    testdata().join(p)
}

/// Converts `input` into `out` (emptied first).
fn convert(input: &Path, out: &Path, rootfs: Option<&Path>) {
    let _ = std::fs::remove_dir_all(out);
    let mut args = vec![input.to_str().unwrap(), "-o", out.to_str().unwrap()];
    if let Some(r) = rootfs {
        args.extend(["--rootfs", r.to_str().unwrap()]);
    }
    ck2core_ok(&args);
}

/// The core files of `dir`, sorted.
fn cores(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("core."))
        .collect();
    v.sort();
    v
}

/// Every core of `want` is in `got` with the same bytes.
fn same_cores(want: &Path, got: &Path, what: &str) {
    let names = cores(want);
    assert!(!names.is_empty(), "no cores in {}", want.display());
    assert_eq!(names, cores(got), "{what}: not the same cores");
    for n in names {
        same_file(&want.join(&n), &got.join(&n), &format!("{what}: {n}"));
    }
}

/// Byte ranges of `f` that hold data (the rest are holes, which read as zeros).
fn data_ranges(f: &std::fs::File) -> Vec<(u64, u64)> {
    use std::os::fd::AsRawFd;
    let mut out = Vec::new();
    let mut at = 0i64;
    loop {
        // SAFETY: lseek on a file descriptor we own; no memory is touched.
        let data = unsafe { libc::lseek(f.as_raw_fd(), at, libc::SEEK_DATA) };
        if data < 0 {
            return out;
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(f.as_raw_fd(), data, libc::SEEK_HOLE) };
        out.push((data as u64, hole as u64));
        at = hole;
    }
}

/// `a` and `b` hold the same bytes. Cores are mostly holes (a 1 GiB mapping of a
/// few pages): only the ranges where either holds data are read.
fn same_file(a: &Path, b: &Path, what: &str) {
    use std::os::unix::fs::FileExt;
    let (fa, fb) = (
        std::fs::File::open(a).unwrap(),
        std::fs::File::open(b).unwrap(),
    );
    let (la, lb) = (fa.metadata().unwrap().len(), fb.metadata().unwrap().len());
    assert_eq!(la, lb, "{what}: lengths differ");
    let mut ranges = data_ranges(&fa);
    ranges.extend(data_ranges(&fb));
    let (mut ba, mut bb) = (Vec::new(), Vec::new());
    for (start, end) in ranges {
        ba.resize((end - start) as usize, 0);
        bb.resize((end - start) as usize, 0);
        fa.read_exact_at(&mut ba, start).unwrap();
        fb.read_exact_at(&mut bb, start).unwrap();
        if ba != bb {
            let i = (0..ba.len()).find(|i| ba[*i] != bb[*i]).unwrap();
            panic!("{what}: first difference at byte {}", start + i as u64);
        }
    }
}

/// A copy of the image directory `src` at `dir`, compressed with `o` unless `None`.
/// Cores name the checkpoint they came from, so the forms compared are converted
/// from the same path.
fn copy_as(src: &Path, dir: &Path, o: Option<&Options>) -> Stats {
    copy_unzeroed(src, dir);
    compress::zero_pages(dir, PAGE, ZERO_EVERY);
    o.map(|o| compress::compress_dir(dir, PAGE, o))
        .unwrap_or_default()
}

/// A copy of the image directory `src` at `dir`, as it is.
fn copy_unzeroed(src: &Path, dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    copy_dir(src, dir);
}

/// The variants every fixture goes through.
fn variants() -> Vec<(&'static str, Options)> {
    vec![
        ("per-page", Options::per_page()),
        (
            "per-page-aligned-before-raw",
            Options {
                align: Align::BeforeRaw,
                raw_every: 3,
                ..Options::per_page()
            },
        ),
        (
            "region-64-aligned",
            Options {
                align: Align::Always,
                ..Options::region(64)
            },
        ),
        (
            "region-3-mixed-unpacked",
            Options {
                raw_every: 2,
                plain_every: 3,
                unpacked: true,
                total: false,
                drop_all_raw: false,
                ..Options::region(3)
            },
        ),
        (
            "region-1024-every-entry-raw-kept",
            Options {
                raw_every: 1,
                drop_all_raw: false,
                align: Align::BeforeRaw,
                ..Options::region(1024)
            },
        ),
    ]
}

/// Converts `src` (an image directory) raw and in every variant; all cores equal.
fn every_variant_converts_alike(fixture: &str, rootfs: Option<&Path>) -> Stats {
    let src = td(fixture);
    let root = scratch(&format!("compressed-{}", fixture.replace('/', "-")));
    let dir = root.join("images");
    copy_as(&src, &dir, None);
    let want = root.join("cores-raw");
    convert(&dir, &want, rootfs);
    let mut total = Stats::default();
    for (name, o) in variants() {
        let stats = copy_as(&src, &dir, Some(&o));
        let got = root.join(format!("cores-{name}"));
        convert(&dir, &got, rootfs);
        same_cores(&want, &got, &format!("{fixture} {name}"));
        total += stats;
    }
    total
}

#[test]
fn ckfix_compressed_converts_to_the_same_cores() {
    let s = every_variant_converts_alike("ckfix/images", Some(&td("host-rootfs")));
    // Every kind of block and layout was exercised.
    assert!(s.lz4 > 50 && s.raw > 20 && s.zero > 5, "{s:?}");
    assert!(s.aligned > 10 && s.padding > 0 && s.plain > 5, "{s:?}");
}

#[test]
fn sleep_compressed_converts_to_the_same_cores() {
    let s = every_variant_converts_alike("sleep/images", Some(&td("host-rootfs")));
    assert!(s.lz4 > 20 && s.raw > 5, "{s:?}");
}

/// Unpacks the tar `archive` into `dir`.
fn untar(archive: &Path, dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    tar::Archive::new(std::fs::File::open(archive).unwrap())
        .unpack(dir)
        .unwrap();
}

/// Packs the files under `dir` into `out`, as `<relative path>` members, then zstd
/// compresses it if `zst`.
fn pack(dir: &Path, out: &Path, zst: bool) {
    fn walk(base: &Path, at: &Path, b: &mut tar::Builder<Vec<u8>>) {
        let mut entries: Vec<_> = std::fs::read_dir(at).unwrap().map(|e| e.unwrap()).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap();
            if e.file_type().unwrap().is_dir() {
                walk(base, &p, b);
            } else {
                b.append_path_with_name(&p, rel).unwrap();
            }
        }
    }
    let mut b = tar::Builder::new(Vec::new());
    walk(dir, dir, &mut b);
    let bytes = b.into_inner().unwrap();
    let bytes = if zst {
        zstd::encode_all(bytes.as_slice(), 3).unwrap()
    } else {
        bytes
    };
    std::fs::write(out, bytes).unwrap();
}

#[test]
fn archives_compressed_convert_to_the_same_cores() {
    let counter = td("podman-counter/rootfs");
    let root = scratch("compressed-archives");
    // Podman's plain and zstd archives, and containerd's (ckbox, without its root:
    // the cores then leave file pages out, alike in both forms).
    for (fixture, zst, rootfs) in [
        ("podman-counter/counter.tar", false, Some(&counter)),
        ("podman-counter/counter.tar.zst", true, Some(&counter)),
        ("ckbox/ckbox.tar.zst", true, None),
        ("ckbox/ckbox.containerd.tar", false, None),
    ] {
        let src = td(fixture);
        let archive = Path::new(fixture).file_name().unwrap().to_str().unwrap();
        let tar = root.join("raw.tar");
        if zst {
            let raw = zstd::decode_all(std::fs::File::open(&src).unwrap()).unwrap();
            std::fs::write(&tar, raw).unwrap();
        } else {
            std::fs::copy(&src, &tar).unwrap();
        }
        // Each form is packed back as `input`, the name the cores record.
        let input = root.join(archive);
        let dir = root.join("unpacked");
        let repack = |o: Option<&Options>| {
            untar(&tar, &dir);
            let images = dir.join("checkpoint");
            compress::zero_pages(&images, PAGE, ZERO_EVERY);
            let stats = o.map(|o| compress::compress_dir(&images, PAGE, o));
            pack(&dir, &input, zst);
            stats.unwrap_or_default()
        };
        repack(None);
        let want = root.join(format!("cores-{archive}"));
        convert(&input, &want, rootfs.map(|r| r.as_path()));
        for (name, o) in variants() {
            let stats = repack(Some(&o));
            assert!(stats.raw + stats.lz4 > 0, "{archive} {name}: {stats:?}");
            let got = root.join(format!("cores-{name}-{archive}"));
            convert(&input, &got, rootfs.map(|r| r.as_path()));
            same_cores(&want, &got, &format!("{archive} {name}"));
        }
    }
}

#[test]
fn the_comparison_sees_a_difference() {
    // Cores name the checkpoint they came from: the same images at two paths give
    // cores that differ in that note, and the comparison must say so.
    let root = scratch("compressed-differ");
    let (a, b) = (root.join("a"), root.join("b"));
    copy_dir(&td("sleep/images"), &a);
    copy_dir(&td("sleep/images"), &b);
    convert(&a, &root.join("cores-a"), None);
    convert(&b, &root.join("cores-b"), None);
    let r = std::panic::catch_unwind(|| {
        same_cores(&root.join("cores-a"), &root.join("cores-b"), "two paths")
    });
    assert!(r.is_err(), "cores of different inputs compared equal");
}

/// The output of `ck2core ARGS`, which must succeed.
fn stdout(args: &[&str]) -> String {
    let o = ck2core(args);
    assert!(
        o.status.success(),
        "ck2core {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn search_read_and_report_see_the_same_memory() {
    let root = scratch("compressed-inspect");
    let dir = root.join("images");
    let d = dir.to_str().unwrap();
    let rootfs = td("host-rootfs");
    let r = rootfs.to_str().unwrap();
    // ckfix's `ready`: the heap secret, the sparse mapping, the shared page.
    let (secret, sparse, shared) = ("0x55a1e47962a0", "0x7f2420c00000", "0x7f2460e67000");
    let commands: Vec<Vec<&str>> = vec![
        vec![
            "search",
            d,
            "--regex",
            "CK2CORE-[A-Z-]+[0-9a-f]*",
            "-C",
            "32",
        ],
        vec!["search", d, "--regex", "CK2CORE-[A-Z-]+[0-9a-f]*", "--json"],
        vec!["search", d, "--hex", "00000000000000000000c0de", "-C", "8"],
        vec!["read", d, "--pid", "31227", secret, "27", "--json"],
        vec!["read", d, "--pid", "31227", shared, "19"],
        vec!["read", d, "--pid", "31229", sparse, "65536", "--raw"],
        vec!["report", d, "--rootfs", r, "--pid", "31227", "--json"],
        vec!["maps", d, "--json"],
    ];
    // The report's header describes the images (sizes, compression); its
    // processes are what must not change.
    let run = |c: &[&str]| {
        let out = stdout(c);
        if c[0] == "report" {
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            serde_json::to_string_pretty(&v["processes"]).unwrap()
        } else {
            out
        }
    };
    copy_unzeroed(&td("ckfix/images"), &dir);
    let want: Vec<String> = commands.iter().map(|c| run(c)).collect();
    // What the raw form shows is the truth the fixture's README records.
    for s in [
        "CK2CORE-SECRET-5f1e2d3c4b5a",
        "CK2CORE-CHILD-SECRET-a1b2c3",
        "CK2CORE-SHARED-PAGE",
        "CK2CORE-PRIVATE-DIRTY",
        "CK2CORE-SPARSE-15",
    ] {
        let hex: String = s.bytes().map(|b| format!("{b:02x}")).collect();
        assert!(want[1].contains(&hex), "{s} not found: {}", want[1]);
    }
    assert!(
        want[5].starts_with("CK2CORE-SPARSE-0"),
        "{:?}",
        &want[5][..32]
    );
    for (name, o) in variants() {
        let stats = copy_as_unzeroed(&td("ckfix/images"), &dir, &o);
        assert!(stats.lz4 + stats.raw > 0, "{name}");
        for (c, w) in commands.iter().zip(&want) {
            let got = run(c);
            if &got != w {
                let line = got.lines().zip(w.lines()).find(|(a, b)| a != b);
                panic!("{name}: ck2core {c:?} differs: {line:?}");
            }
        }
    }
    // And gdb reads the secret from a core made from compressed pages.
    let out = root.join("cores");
    convert(&dir, &out, Some(&rootfs));
    let g = gdb(
        &out.join("core.31227"),
        Some(&rootfs),
        Some(&rootfs.join("ckfix/bin/ckfix")),
        &[&format!("x/s {secret}")],
    );
    assert!(g.contains("\"CK2CORE-SECRET-5f1e2d3c4b5a\""), "{g}");
    assert!(warnings(&g).is_empty(), "{g}");
}

/// Replaces `dir` with `src` compressed with `o` (no page zeroed).
fn copy_as_unzeroed(src: &Path, dir: &Path, o: &Options) -> Stats {
    copy_unzeroed(src, dir);
    compress::compress_dir(dir, PAGE, o)
}

/// A pre-dump chain built from `fixture`: `layers[0]` is the oldest image
/// directory, holding every page; each later layer keeps only some entries of
/// the process `pid` and refers to its parent for the rest (PE_PARENT). `None`
/// leaves a layer raw. Returns the newest layer.
fn chain(fixture: &str, root: &Path, pid: u32, layers: &[Option<Options>]) -> PathBuf {
    let src = td(fixture);
    let mut prev: Option<String> = None;
    for (i, o) in layers.iter().enumerate() {
        let name = format!("layer{i}");
        let dir = root.join(&name);
        copy_unzeroed(&src, &dir);
        if let Some(p) = &prev {
            // Layer i defers every i+1-th entry (a different set each time).
            let n = compress::defer_to_parent(&dir, pid, PAGE, i as u32 + 1, 0);
            assert!(n > 0, "{name} defers nothing");
            std::os::unix::fs::symlink(format!("../{p}"), dir.join("parent")).unwrap();
        }
        if let Some(o) = o {
            compress::compress_dir(&dir, PAGE, o);
        }
        prev = Some(name);
    }
    root.join(prev.unwrap())
}

#[test]
fn pre_dump_chains_mixing_compressed_and_raw_layers_convert_alike() {
    let root = scratch("compressed-chain");
    let rootfs = td("host-rootfs");
    // The newest layer is always `layer2`, so cores name the same checkpoint. Cores
    // count pages by where they came from (this dump or a parent), so the
    // reference is the same chain with every layer raw.
    for (fixture, pid) in [("sleep/images", 30914), ("ckfix/images", 31227)] {
        let want = root.join("cores-raw");
        let top = chain(fixture, &root, pid, &[None, None, None]);
        convert(&top, &want, Some(&rootfs));
        let per_page = Options::per_page();
        let region = Options {
            align: Align::Always,
            ..Options::region(4)
        };
        for (name, layers) in [
            ("raw<-compressed<-raw", [None, Some(per_page), None]),
            (
                "compressed<-raw<-compressed",
                [Some(region), None, Some(per_page)],
            ),
            (
                "compressed<-compressed<-compressed",
                [Some(per_page), Some(region), Some(region)],
            ),
        ] {
            let top = chain(fixture, &root, pid, &layers);
            let got = root.join(format!("cores-{name}"));
            convert(&top, &got, Some(&rootfs));
            same_cores(&want, &got, &format!("{fixture} {name}"));
            // The pages did come from every layer.
            let maps = stdout(&[
                "maps",
                top.to_str().unwrap(),
                "--pid",
                &pid.to_string(),
                "--json",
            ]);
            assert!(
                maps.contains("\"parent\": 1") || maps.contains("\"parent\": 2"),
                "{name}: {maps}"
            );
        }
    }
}

mod hostile {
    //! Damaged compression fields and blocks, in synthetic checkpoints: a clear
    //! error naming the pagemap entry, exit status 3 (the other process converts),
    //! no core and no partial file for the damaged one.

    use super::*;
    use ck2core::images::pb;
    use common::compress::lz4;
    use common::synth::{self, anon_vma, marked, write_images, write_pages, Proc};

    const BASE: u64 = 0x4000_0000;
    const PRESENT: u32 = 4;
    const ALIGNED: u32 = 8;

    fn entry(vaddr: u64, nr: u64, flags: u32, sizes: &[u32]) -> pb::PagemapEntry {
        pb::PagemapEntry {
            compressed_size: sizes.to_vec(),
            total_compressed_size: (!sizes.is_empty())
                .then(|| sizes.iter().map(|s| u64::from(*s)).sum()),
            ..synth::run(vaddr, nr, flags)
        }
    }

    /// A checkpoint of process 70 (the pagemap and pages given, in 16 anonymous
    /// pages at BASE) and process 71 (two plain pages).
    fn build(name: &str, pagemap: Vec<pb::PagemapEntry>, pages: &[u8]) -> PathBuf {
        let dir = scratch(&format!("compressed-hostile-{name}")).join("dump");
        let mut bad = Proc::new(70);
        bad.vmas = vec![anon_vma(BASE, BASE + 16 * PAGE)];
        bad.pagemap = pagemap;
        let mut good = Proc::new(71);
        good.vmas = vec![anon_vma(BASE, BASE + 2 * PAGE)];
        good.pagemap = vec![synth::run(BASE, 2, PRESENT)];
        write_images(&dir, &[bad, good]);
        std::fs::write(dir.join("pages-70.img"), pages).unwrap();
        write_pages(&dir, 71, 2, |i, pg| marked("GOOD", i, pg));
        dir
    }

    /// Converting fails for process 70 only, with a message holding `want`.
    fn refused(name: &str, pagemap: Vec<pb::PagemapEntry>, pages: &[u8], want: &str) {
        let dir = build(name, pagemap, pages);
        let out = dir.parent().unwrap().join("cores");
        let o = ck2core(&[dir.to_str().unwrap(), "-o", out.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(3), "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
        assert!(
            err.contains(&format!("pagemap-70.img: {want}")),
            "{name}: wanted {want:?} in: {err}"
        );
        let left: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("core.") || n.starts_with(".core."))
            .collect();
        assert_eq!(
            left,
            ["core.71"],
            "{name}: only the good core, no partial file"
        );
    }

    /// 4096 bytes of `b`, as a raw page.
    fn page(b: u8) -> Vec<u8> {
        vec![b; PAGE as usize]
    }

    #[test]
    fn a_block_that_decodes_to_another_size_is_refused() {
        let short = lz4::compress(&[0x41; 100]);
        let n = short.len() as u32;
        refused(
            "short",
            vec![entry(BASE, 1, PRESENT, &[n])],
            &short,
            &format!("entry 1: block 0 ({n} bytes at offset 0 of pages-70.img) decodes to 100 bytes, but the block holds 4096"),
        );
        let long = lz4::compress(&[0x41; 5000]);
        let n = long.len() as u32;
        // After a raw page, so the offset in the pages file shows.
        let mut pages = page(1);
        pages.extend_from_slice(&long);
        refused(
            "long",
            vec![entry(BASE, 2, PRESENT, &[PAGE as u32, n])],
            &pages,
            &format!("entry 1: block 1 ({n} bytes at offset 4096 of pages-70.img) decodes to more than the 4096 bytes the block holds"),
        );
        // A literal run that claims more bytes than the block has.
        let garbage = [0xf0, 0xff, 0xff, 0x10, 1, 2, 3];
        refused(
            "garbage",
            vec![entry(BASE, 1, PRESENT, &[garbage.len() as u32])],
            &garbage,
            "entry 1: block 0 (7 bytes at offset 0 of pages-70.img) is not a valid LZ4 block",
        );
    }

    #[test]
    fn compressed_sizes_that_disagree_with_the_pages_are_refused() {
        refused(
            "count-per-page",
            vec![entry(BASE, 3, PRESENT, &[0, 0])],
            &[],
            "entry 1: compressed_size has 2 values, but nr_pages 3 needs 3 (one per page)",
        );
        refused(
            "count-region",
            vec![pb::PagemapEntry {
                region_pages: Some(2),
                ..entry(BASE, 5, PRESENT, &[0, 0])
            }],
            &[],
            "entry 1: compressed_size has 2 values, but nr_pages 5 needs 3 (one per region of region_pages 2)",
        );
        refused(
            "total",
            vec![pb::PagemapEntry {
                total_compressed_size: Some(10),
                ..entry(BASE, 2, PRESENT, &[0, PAGE as u32])
            }],
            &page(1),
            "entry 1: total_compressed_size is 10, but the compressed_size values add up to 4096",
        );
        refused(
            "bigger-than-raw",
            vec![entry(BASE, 1, PRESENT, &[5000])],
            &[0; 5000],
            "entry 1: compressed_size[0] is 5000, more than the 4096 bytes of its block",
        );
        refused(
            "huge-region",
            vec![pb::PagemapEntry {
                region_pages: Some(2048),
                ..entry(BASE, 16, PRESENT, &[0])
            }],
            &[],
            "entry 1: region_pages 2048 makes blocks of 8388608 bytes, more than the 4194304 CRIU writes",
        );
        refused(
            "incomplete",
            vec![pb::PagemapEntry {
                region_pages: Some(4),
                ..entry(BASE, 4, PRESENT, &[])
            }],
            &page(1).repeat(4),
            "entry 1: region_pages or total_compressed_size without compressed_size",
        );
        refused(
            "on-parent-entry",
            vec![entry(BASE, 1, 1, &[0])],
            &[],
            "entry 1: compression fields or PE_PAYLOAD_ALIGNED on an entry whose pages are not in this dump",
        );
    }

    #[test]
    fn payloads_past_the_end_of_the_pages_file_are_refused() {
        refused(
            "past-end",
            vec![entry(BASE, 2, PRESENT, &[PAGE as u32, PAGE as u32])],
            &page(1)[..3000].repeat(2),
            "entry 1: its pages end at byte 8192 of pages-70.img, past its end",
        );
        // The second entry's payload starts at the next page boundary: 100 bytes
        // of the first, padding, then it would need a whole page.
        let block = lz4::compress(&page(7));
        let mut pages = block.clone();
        pages.resize(PAGE as usize + 4000, 0);
        refused(
            "aligned-past-end",
            vec![
                entry(BASE, 1, PRESENT, &[block.len() as u32]),
                entry(BASE + PAGE, 1, PRESENT | ALIGNED, &[PAGE as u32]),
            ],
            &pages,
            "entry 2: its pages end at byte 8192 of pages-70.img, past its end",
        );
    }

    #[test]
    fn every_kind_of_block_reads_back_exactly() {
        // Entry 1, per page: LZ4, zero, raw. Entry 2, aligned, regions of 2 pages:
        // an LZ4 region, then a last region of 1 page stored raw. Entry 3: plain.
        let want: Vec<Vec<u8>> = (0..7u64)
            .map(|i| {
                let mut p = vec![0u8; PAGE as usize];
                if i != 1 {
                    marked("KIND", i, &mut p);
                }
                if i == 2 || i == 5 {
                    // Incompressible: stored raw.
                    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                    for b in p[16..].iter_mut() {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        *b = x as u8;
                    }
                }
                p
            })
            .collect();
        let mut pages = Vec::new();
        let b0 = lz4::compress(&want[0]);
        pages.extend_from_slice(&b0);
        pages.extend_from_slice(&want[2]);
        pages.resize(pages.len().next_multiple_of(PAGE as usize), 0xa5);
        let r0 = lz4::compress(&[want[3].clone(), want[4].clone()].concat());
        pages.extend_from_slice(&r0);
        pages.extend_from_slice(&want[5]);
        pages.extend_from_slice(&want[6]);
        let region = pb::PagemapEntry {
            region_pages: Some(2),
            ..entry(
                BASE + 3 * PAGE,
                3,
                PRESENT | ALIGNED,
                &[r0.len() as u32, PAGE as u32],
            )
        };
        let dir = build(
            "kinds",
            vec![
                entry(BASE, 3, PRESENT, &[b0.len() as u32, 0, PAGE as u32]),
                region,
                synth::run(BASE + 6 * PAGE, 1, PRESENT),
            ],
            &pages,
        );
        // One read across every entry and block, and reads inside blocks.
        for (start, n) in [(0u64, 7u64), (3, 2), (4, 2), (1, 1)] {
            let o = ck2core(&[
                "read",
                dir.to_str().unwrap(),
                "--pid",
                "70",
                &format!("{:#x}", BASE + start * PAGE + 8),
                &(n * PAGE - 16).to_string(),
                "--raw",
            ]);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            let all = want.concat();
            let at = (start * PAGE + 8) as usize;
            assert!(
                o.stdout == all[at..at + (n * PAGE - 16) as usize],
                "pages {start}+{n} differ"
            );
        }
    }
}

#[test]
fn info_says_how_the_pages_are_compressed() {
    let root = scratch("compressed-info");
    let dir = root.join("images");
    let d = dir.to_str().unwrap();
    copy_unzeroed(&td("sleep/images"), &dir);
    let v: serde_json::Value = serde_json::from_str(&stdout(&["info", d, "--json"])).unwrap();
    assert!(v["page_compression"].is_null(), "{}", v["page_compression"]);
    for (o, text, mode, size) in [
        (
            Options::region(64),
            "LZ4 compressed, a block per 256.0 KiB region",
            "region",
            serde_json::json!(262144),
        ),
        (
            Options::per_page(),
            "LZ4 compressed, a block per page",
            "per-page",
            serde_json::Value::Null,
        ),
    ] {
        copy_as_unzeroed(&td("sleep/images"), &dir, &o);
        let t = stdout(&["info", d]);
        assert!(t.contains(text), "{t}");
        assert!(t.contains("image format 3"), "{t}");
        let v: serde_json::Value = serde_json::from_str(&stdout(&["info", d, "--json"])).unwrap();
        assert_eq!(v["page_compression"]["mode"], mode);
        assert_eq!(v["page_compression"]["region_size"], size);
        assert_eq!(v["criu_image_version"], 3);
    }
}
