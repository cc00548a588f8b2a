//! Damaged checkpoints must give errors, never panics: every image of the real
//! fixtures, truncated at many offsets and with bytes flipped, run through the whole
//! library (open, load every process, plan and write a core and a minidump, every
//! view). The mutations come from a fixed-seed generator, so a failure reproduces.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use ck2core::archive::Input;
use ck2core::core::{CoreOptions, Plan};
use ck2core::model::{Checkpoint, OpenOptions};
use common::*;

/// xorshift64*: tiny, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

/// Everything a user can make ck2core do with a checkpoint, errors ignored.
fn exercise(dir: &Path, out: &Path) {
    let Ok(ck) = Checkpoint::open(&Input::Path(dir.to_path_buf()), &OpenOptions::default()) else {
        return;
    };
    let _ = ck2core::views::info(&ck);
    let _ = ck2core::views::processes(&ck);
    for t in ck.tree.clone() {
        let _ = ck.files(t.pid);
        let Ok(p) = ck.process(t.pid) else { continue };
        let _ = ck2core::views::threads(&p, true);
        let _ = ck2core::views::memory::maps(&p, &ck2core::model::filter::MemFilter::all());
        let _ = ck2core::views::memory::environment(&p);
        let pat = ck2core::views::memory::Pattern::literal(b"CK2CORE").unwrap();
        let _ = ck2core::views::memory::search(
            &p,
            &pat,
            8,
            10,
            &ck2core::model::filter::MemFilter::all(),
        );
        let _ = ck2core::report::process_report(&p, &report_options(), ck.rootfs());
        let meta = serde_json::to_vec(&ck2core::views::core_metadata(&ck, &p, None)).ok();
        if let Ok(plan) = Plan::new(
            &p,
            &CoreOptions {
                metadata: meta,
                policy: Default::default(),
            },
        ) {
            let _ = plan.write(out, t.pid, true, &mut |_| {});
        }
        let full = ck2core::minidump::MinidumpOptions {
            full_memory: true,
            ..Default::default()
        };
        if let Ok(plan) = ck2core::minidump::Plan::new(&p, &full) {
            let _ = plan.write(out, t.pid, true);
        }
    }
    // Whatever failed, no temporary file is left behind.
    for e in std::fs::read_dir(out).into_iter().flatten() {
        let name = e.unwrap().file_name().into_string().unwrap();
        assert!(
            !name.contains(".partial-"),
            "{name} left in {}",
            out.display()
        );
    }
}

fn report_options() -> ck2core::report::ReportOptions {
    ck2core::report::ReportOptions {
        stack_words: 64,
        debug: ck2core::report::modules::DebugDirs { host: Vec::new() },
    }
}

/// The report parses ELF files an attacker can supply (rootfs-diff.tar, a shared
/// root): the ckfix binary with bytes flipped anywhere but its build-id (so it is
/// still accepted as the mapped file) must never make it panic or hang.
#[test]
fn damaged_elf_files_never_panic_the_report() {
    let work = scratch("mutations-elf");
    let root = work.join("root");
    std::fs::create_dir_all(root.join("ckfix/bin")).unwrap();
    let good = std::fs::read(testdata().join("host-rootfs/ckfix/bin/ckfix")).unwrap();
    let id = [
        0x93u8, 0xfb, 0x13, 0x40, 0x11, 0x0d, 0x67, 0x57, 0x4a, 0x7e, 0x16, 0xb7, 0xf1, 0x2c, 0x4f,
        0x48, 0x1b, 0xc8, 0xf7, 0xda,
    ];
    let id_at = good
        .windows(20)
        .position(|w| w == id)
        .expect("build-id in ckfix");
    let ck = Checkpoint::open(
        &Input::Path(testdata().join("ckfix/images")),
        &OpenOptions {
            rootfs: Some(root.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    let mut rng = Rng(0x5eed_e1f0);
    let mut symbolized = 0;
    for round in 0..300 {
        let mut bytes = good.clone();
        for _ in 0..1 + rng.below(8) {
            let at = rng.below(bytes.len() as u64) as usize;
            if (id_at - 16..id_at + 20).contains(&at) {
                continue;
            }
            bytes[at] = match rng.below(3) {
                0 => bytes[at] ^ (1 << rng.below(8)),
                1 => 0xff,
                _ => rng.next() as u8,
            };
        }
        std::fs::write(root.join("ckfix/bin/ckfix"), &bytes).unwrap();
        let r = catch_unwind(AssertUnwindSafe(|| {
            let p = ck.process(31227).unwrap();
            ck2core::report::process_report(&p, &report_options(), ck.rootfs())
        }));
        let r = r.unwrap_or_else(|_| panic!("round {round} panicked"));
        symbolized += r.threads[1]
            .frames
            .iter()
            .filter(|f| f.function.is_some())
            .count();
    }
    // Most rounds still found the file and its symbols: the damage was exercised.
    assert!(symbolized > 300, "only {symbolized} frames symbolized");
}

fn mutate_fixture(name: &str, rounds: usize, seed: u64) {
    mutate(&testdata().join(name), name, &|_| true, rounds, seed);
}

/// Damages images of `src` (those `pick` accepts) in `rounds` ways.
fn mutate(src: &Path, name: &str, pick: &dyn Fn(&str) -> bool, rounds: usize, seed: u64) {
    let work = scratch(&format!("mutations-{}", name.replace('/', "-")));
    let dir = work.join("images");
    let out = work.join("cores");
    std::fs::create_dir_all(&out).unwrap();
    let mut files: Vec<_> = std::fs::read_dir(src)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| pick(n.to_str().unwrap()))
        .collect();
    files.sort();
    let mut rng = Rng(seed);
    for round in 0..rounds {
        let _ = std::fs::remove_dir_all(&dir);
        copy_dir(src, &dir);
        // Damage one or two images per round, each in one of three ways.
        for _ in 0..1 + rng.below(2) {
            let f = &files[rng.below(files.len() as u64) as usize];
            let path = dir.join(f);
            let mut bytes = std::fs::read(&path).unwrap();
            match rng.below(3) {
                0 => bytes.truncate(rng.below(bytes.len() as u64 + 1) as usize),
                1 => {
                    for _ in 0..1 + rng.below(4) {
                        if !bytes.is_empty() {
                            let i = rng.below(bytes.len() as u64) as usize;
                            bytes[i] ^= 1 << rng.below(8);
                        }
                    }
                }
                _ => {
                    // A plausible but wrong value: a size or count byte set high.
                    if !bytes.is_empty() {
                        let i = rng.below(bytes.len() as u64) as usize;
                        bytes[i] = 0xff;
                    }
                }
            }
            std::fs::write(&path, bytes).unwrap();
        }
        let r = catch_unwind(AssertUnwindSafe(|| exercise(&dir, &out)));
        assert!(
            r.is_ok(),
            "{name}: round {round} (seed {seed}) panicked; images kept in {}",
            dir.display()
        );
    }
}

#[test]
fn damaged_ckfix_images_never_panic() {
    mutate_fixture("ckfix/images", 150, 0x5eed_0001);
}

#[test]
fn damaged_sleep_images_never_panic() {
    mutate_fixture("sleep/images", 150, 0x5eed_0002);
}

#[test]
fn damaged_compressed_pages_never_panic() {
    // ckfix with its pages compressed in every way at once (regions of 3 pages,
    // raw and LZ4 blocks, aligned payloads, plain entries); only the pagemaps, the
    // pages files and the inventory are damaged.
    let src = scratch("mutations-compressed-src").join("images");
    copy_dir(&testdata().join("ckfix/images"), &src);
    let o = compress::Options {
        raw_every: 3,
        plain_every: 4,
        align: compress::Align::BeforeRaw,
        ..compress::Options::region(3)
    };
    compress::compress_dir(&src, 4096, &o);
    let pick = |n: &str| n.starts_with("page") || n == "inventory.img";
    mutate(&src, "compressed", &pick, 120, 0x5eed_0003);
}

/// Truncation of each image kind at many offsets, through the command line: the
/// process either converts or fails with a message naming an image (usually the
/// damaged one), the exit status says so, and nothing outside the output directory
/// changes.
#[test]
fn truncated_images_give_messages_that_name_an_image() {
    let src = testdata().join("sleep/images");
    let work = scratch("mutations-truncate");
    let dir = work.join("images");
    let mut named_damaged = 0;
    let mut failures = 0;
    for image in [
        "core-30914.img",
        "mm-30914.img",
        "pagemap-30914.img",
        "pstree.img",
        "files.img",
        "pages-1.img",
    ] {
        let len = std::fs::metadata(src.join(image)).unwrap().len();
        for k in 0..8u64 {
            let cut = len * k / 8;
            let _ = std::fs::remove_dir_all(&dir);
            copy_dir(&src, &dir);
            let bytes = std::fs::read(src.join(image)).unwrap();
            std::fs::write(dir.join(image), &bytes[..cut as usize]).unwrap();
            let out = work.join("cores");
            let _ = std::fs::remove_dir_all(&out);
            let o = ck2core(&[dir.to_str().unwrap(), "-o", out.to_str().unwrap()]);
            let err = String::from_utf8_lossy(&o.stderr).into_owned();
            assert!(!err.contains("panicked"), "{image} cut at {cut}: {err}");
            let others: Vec<_> = std::fs::read_dir(&work)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert!(
                others.iter().all(|n| n == "images" || n == "cores"),
                "{others:?}"
            );
            if o.status.success() {
                assert!(out.join("core.30914").exists());
                continue;
            }
            failures += 1;
            assert!(
                matches!(o.status.code(), Some(1) | Some(3)),
                "{image} cut at {cut}: {:?}",
                o.status
            );
            assert!(
                err.contains(".img"),
                "{image} cut at {cut}: the message names no image: {err}"
            );
            if err.contains(image) {
                named_damaged += 1;
            }
            assert!(
                !out.join("core.30914").exists(),
                "no core for a process that failed"
            );
        }
    }
    assert!(failures > 20, "truncation should mostly fail ({failures})");
    assert!(
        named_damaged * 10 >= failures * 9,
        "most messages name the damaged image ({named_damaged} of {failures})"
    );
}
