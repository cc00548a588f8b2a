//! `ck2core diff` throughput and peak memory on two large synthetic checkpoints,
//! next to reading both pages files once (`cat A/pages-*.img B/pages-*.img >
//! /dev/null`): comparing should cost about that read.
//!
//! `cargo bench --bench diff` prints the figures. Sizes: CK2CORE_BENCH_DIFF_GIB
//! (default 1) GiB of saved pages on each side, in 256 VMAs; B has one byte changed
//! in every 1000th page.

#[path = "common/measure.rs"]
mod measure;
#[path = "../tests/common/synth.rs"]
mod synth;

use std::path::Path;
use std::time::{Duration, Instant};

use ck2core::archive::Input;
use ck2core::model::{Checkpoint, OpenOptions};
use ck2core::views::diff::{diff, DiffOptions};
use measure::*;
use synth::*;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let gib = env_or("CK2CORE_BENCH_DIFF_GIB", 1);
    let nvma = 256u64;
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-diff");
    let _ = std::fs::remove_dir_all(&dir);
    let total = gib * (1 << 30) / PAGE;
    let per_vma = total / nvma;
    let pages = per_vma * nvma;
    eprintln!("building 2 x {gib} GiB under {} ...", dir.display());
    for (side, changed) in [("a", false), ("b", true)] {
        let images = dir.join(side);
        let mut p = Proc::new(1);
        for i in 0..nvma {
            let start = 0x1000_0000 + i * (per_vma + 1) * PAGE;
            p.vmas.push(anon_vma(start, start + per_vma * PAGE));
            p.pagemap.push(run(start, per_vma, 4));
        }
        write_images(&images, &[p]);
        write_pages(&images, 1, pages, |i, pg| {
            pg.fill((i % 251) as u8 + 1);
            pg[..8].copy_from_slice(&i.to_le_bytes());
            if changed && i % 1000 == 0 {
                pg[100] ^= 1;
            }
        });
    }
    let rss_before = peak_rss();
    let both = format!(
        "cat {0}/a/pages-*.img {0}/b/pages-*.img > /dev/null",
        dir.display()
    );
    let sh = |cmd: &str| {
        assert!(std::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .status()
            .unwrap()
            .success())
    };
    // Warm the page cache so both runs read from the same place.
    sh(&both);
    let read = best_of(2, || {
        let t = Instant::now();
        sh(&both);
        t.elapsed()
    });
    let open = |side: &str| {
        Checkpoint::open(&Input::Path(dir.join(side)), &OpenOptions::default()).unwrap()
    };
    let compare = best_of(2, || {
        let t = Instant::now();
        let d = diff(&open("a"), &open("b"), &DiffOptions::default()).unwrap();
        assert_eq!(d.summary.pages_differ, pages.div_ceil(1000));
        t.elapsed()
    });
    let peak = peak_rss();
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let bytes = 2 * pages * PAGE;
    let rate = |d: Duration| mib(bytes) / d.as_secs_f64();
    println!(
        "two checkpoints: {} MiB of pages each",
        mib(bytes / 2) as u64
    );
    println!(
        "read both (cat > /dev/null):   {:>8.0} MiB/s  ({:.2} s)",
        rate(read),
        read.as_secs_f64()
    );
    println!(
        "ck2core diff:                  {:>8.0} MiB/s  ({:.2} s)",
        rate(compare),
        compare.as_secs_f64()
    );
    println!(
        "diff / read:                   {:>8.0} %",
        100.0 * read.as_secs_f64() / compare.as_secs_f64()
    );
    println!(
        "peak memory (VmHWM):           {:>8.1} MiB  (before diffing: {:.1} MiB)",
        mib(peak),
        mib(rss_before)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
