//! Conversion throughput and peak memory on a large synthetic checkpoint, next to
//! the physical limit: copying the same pages files on the same disk
//! (`cat pages-*.img > file`, the same bytes read and written).
//!
//! `cargo bench` prints the figures. Sizes: CK2CORE_BENCH_GIB (default 2) GiB of
//! present pages in one process, spread over CK2CORE_BENCH_VMAS (default 1000) VMAs.
//! The same checkpoint is then compressed as `criu dump --compress` would (an LZ4
//! block per 256 KiB region, CRIU's default, then per page) and converted again:
//! the rate counts the uncompressed bytes written to the core, and the peak memory
//! of each conversion is measured on its own.

#[path = "../tests/common/compress.rs"]
mod compress;
#[path = "common/measure.rs"]
mod measure;
#[path = "../tests/common/synth.rs"]
mod synth;

use std::path::Path;
use std::time::{Duration, Instant};

use ck2core::archive::Input;
use ck2core::core::{CoreOptions, Plan};
use ck2core::model::{Checkpoint, OpenOptions};
use measure::*;
use synth::*;

/// Best time of two conversions of process 1 of `images` into `out`.
fn convert(images: &Path, out: &Path, bytes: u64) -> Duration {
    best_of(2, || {
        let t = Instant::now();
        let ckpt =
            Checkpoint::open(&Input::Path(images.to_path_buf()), &OpenOptions::default()).unwrap();
        let process = ckpt.process(1).unwrap();
        let plan = Plan::new(&process, &CoreOptions::default()).unwrap();
        let w = plan.write(out, 1, true, &mut |_| {}).unwrap();
        assert_eq!(w.data_bytes, bytes);
        t.elapsed()
    })
}

/// Total size of the pages files in `dir`.
fn pages_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().starts_with("pages-"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

fn main() {
    // `cargo test --benches` runs this with --bench absent; only build then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let gib = env_or("CK2CORE_BENCH_GIB", 2);
    let nvma = env_or("CK2CORE_BENCH_VMAS", 1000);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench");
    let _ = std::fs::remove_dir_all(&dir);
    let images = dir.join("images");
    let total_pages = gib * (1 << 30) / PAGE;
    let per_vma = total_pages.div_ceil(nvma);
    let base = 0x1000_0000u64;
    let mut p = Proc::new(1);
    for i in 0..nvma {
        // Each VMA is followed by an unmapped page, so none merge.
        let start = base + i * (per_vma + 1) * PAGE;
        p.vmas.push(anon_vma(start, start + per_vma * PAGE));
        p.pagemap.push(run(start, per_vma, 4));
    }
    eprintln!(
        "building {gib} GiB in {nvma} VMAs under {} ...",
        dir.display()
    );
    write_images(&images, &[p]);
    write_pages(&images, 1, per_vma * nvma, |i, pg| {
        // Half noise, half a repeated byte: LZ4 stores about half of each page.
        let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        for w in pg[..PAGE as usize / 2].chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w.copy_from_slice(&x.to_le_bytes());
        }
        pg[PAGE as usize / 2..].fill((i % 251) as u8 + 1);
        pg[..8].copy_from_slice(&i.to_le_bytes());
    });
    let bytes = per_vma * nvma * PAGE;
    let rss_before = peak_rss();

    // Warm the page cache so both runs read from the same place.
    std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("cat {}/pages-*.img > /dev/null", images.display()))
        .status()
        .unwrap();
    let copy = best_of(2, || {
        let t = Instant::now();
        let ok = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "cat {0}/pages-*.img > {1}/copy",
                images.display(),
                dir.display()
            ))
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let d = t.elapsed();
        std::fs::remove_file(dir.join("copy")).unwrap();
        d
    });
    let out = dir.join("cores");
    std::fs::create_dir_all(&out).unwrap();
    reset_peak_rss();
    let raw = convert(&images, &out, bytes);
    let peak = peak_rss();
    // The same pages compressed, per page (a copy) and per 256 KiB region.
    let per_page = dir.join("images-per-page");
    let ok = std::process::Command::new("cp")
        .arg("-r")
        .arg(&images)
        .arg(&per_page)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let mut compressed = Vec::new();
    for (label, o, at) in [
        (
            "LZ4 per 256 KiB region",
            compress::Options::region(64),
            &images,
        ),
        ("LZ4 per page", compress::Options::per_page(), &per_page),
    ] {
        compress::compress_dir(at, PAGE, &o);
        reset_peak_rss();
        let t = convert(at, &out, bytes);
        compressed.push((label, t, peak_rss(), pages_size(at)));
    }
    let convert = raw;
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let rate = |d: Duration| mib(bytes) / d.as_secs_f64();
    println!(
        "checkpoint: {} MiB of pages in {nvma} VMAs",
        mib(bytes) as u64
    );
    println!(
        "copy (cat pages-*.img > file): {:>8.0} MiB/s  ({:.2} s)",
        rate(copy),
        copy.as_secs_f64()
    );
    println!(
        "ck2core convert:               {:>8.0} MiB/s  ({:.2} s)",
        rate(convert),
        convert.as_secs_f64()
    );
    println!(
        "convert / copy:                {:>8.0} %",
        100.0 * copy.as_secs_f64() / convert.as_secs_f64()
    );
    println!(
        "peak memory (VmHWM):           {:>8.1} MiB  (before converting: {:.1} MiB)",
        mib(peak),
        mib(rss_before)
    );
    for (label, t, peak, stored) in compressed {
        println!(
            "convert, {label:<22}{:>8.0} MiB/s  ({:.2} s; pages stored in {:.0}% of their size; peak memory {:.1} MiB)",
            rate(t),
            t.as_secs_f64(),
            100.0 * stored as f64 / bytes as f64,
            mib(peak)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);

    checkpoint_images();
    sysroot_of_20_files();

    // The real ckfix fixture: 5 threads, a 1 GiB sparse mapping.
    let td = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-ckfix");
    std::fs::create_dir_all(&out).unwrap();
    let opts = OpenOptions {
        rootfs: Some(td.join("host-rootfs")),
        ..Default::default()
    };
    let ckfix = best_of(5, || {
        let t = Instant::now();
        let ckpt = Checkpoint::open(&Input::Path(td.join("ckfix/images")), &opts).unwrap();
        for pid in [31227, 31229] {
            let process = ckpt.process(pid).unwrap();
            let plan = Plan::new(
                &process,
                &CoreOptions {
                    metadata: None,
                    policy: Default::default(),
                },
            )
            .unwrap();
            plan.write(&out, pid, true, &mut |_| {}).unwrap();
        }
        t.elapsed()
    });
    // Its sysroot: the 4 files the two processes map (hard links) and libc's
    // separate debug file, from testdata/host-rootfs.
    let ckfix_sysroot = best_of(5, || {
        let ckpt = Checkpoint::open(&Input::Path(td.join("ckfix/images")), &opts).unwrap();
        let mut procs: Vec<_> = [31227, 31229]
            .iter()
            .map(|pid| ckpt.process(*pid).unwrap())
            .collect();
        let dir = out.join("sysroot");
        let _ = std::fs::remove_dir_all(&dir);
        let t = Instant::now();
        let mut s = ck2core::rootfs::sysroot::Sysroot::create(&dir).unwrap();
        for p in &mut procs {
            s.add(ckpt.rootfs(), p).unwrap();
        }
        assert_eq!((s.summary().files, s.summary().debug_files), (5, 1));
        t.elapsed()
    });
    println!(
        "ckfix fixture (2 processes):   {:>8.1} ms",
        ckfix.as_secs_f64() * 1000.0
    );
    println!(
        "  its sysroot (5 files):       {:>8.2} ms ({:.0}% of the conversion)",
        ckfix_sysroot.as_secs_f64() * 1000.0,
        100.0 * ckfix_sysroot.as_secs_f64() / ckfix.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&out);

    // Search both ckfix processes (a 1 GiB sparse mapping each) for a regex.
    let pat = ck2core::views::memory::Pattern::regex("CK2CORE-[A-Z]+-[0-9a-f]+").unwrap();
    let search = best_of(5, || {
        let t = Instant::now();
        let ckpt = Checkpoint::open(
            &Input::Path(td.join("ckfix/images")),
            &OpenOptions::default(),
        )
        .unwrap();
        let mut n = 0;
        for pid in [31227, 31229] {
            let process = ckpt.process(pid).unwrap();
            n += ck2core::views::memory::search(
                &process,
                &pat,
                16,
                1000,
                &ck2core::model::filter::MemFilter::all(),
            )
            .unwrap()
            .len();
        }
        assert!(n >= 3);
        t.elapsed()
    });
    println!(
        "search ckfix (2 x 1 GiB maps): {:>8.1} ms",
        search.as_secs_f64() * 1000.0
    );

    // The crash-triage report of the 5-thread ckfix process: modules loaded (libc's
    // compressed debug file inflated), every thread unwound and symbolized.
    let report = best_of(5, || {
        let t = Instant::now();
        let ckpt = Checkpoint::open(&Input::Path(td.join("ckfix/images")), &opts).unwrap();
        let r = ck2core::report::build(
            &ckpt,
            &[31227],
            &ck2core::report::ReportOptions {
                stack_words: 32,
                debug: ck2core::report::modules::DebugDirs { host: Vec::new() },
            },
        );
        assert_eq!(r.processes[0].threads.len(), 5);
        t.elapsed()
    });
    println!(
        "report ckfix (5 threads):      {:>8.1} ms",
        report.as_secs_f64() * 1000.0
    );
}

/// A checkpoint image: the same synthetic checkpoint (CK2CORE_BENCH_IMAGE_MIB, default
/// 256 MiB of pages) as an OCI layout whose one layer is a plain tar (read in place)
/// and one whose layer is gzip (decompressed once into the spool), next to the image
/// directory itself.
fn checkpoint_images() {
    use sha2::Digest;
    let mib_total = env_or("CK2CORE_BENCH_IMAGE_MIB", 256);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-image");
    let _ = std::fs::remove_dir_all(&dir);
    let images = dir.join("images");
    let pages = mib_total * (1 << 20) / PAGE;
    let mut p = Proc::new(1);
    p.vmas
        .push(anon_vma(0x1000_0000, 0x1000_0000 + pages * PAGE));
    p.pagemap.push(run(0x1000_0000, pages, 4));
    write_images(&images, &[p]);
    write_pages(&images, 1, pages, |i, pg| {
        pg.fill((i % 251) as u8 + 1);
        pg[..8].copy_from_slice(&i.to_le_bytes());
    });
    // Layers are written and hashed as files, so memory stays flat here too.
    let plain = dir.join("layer.tar");
    let mut tar = tar::Builder::new(std::fs::File::create(&plain).unwrap());
    tar.append_dir_all("checkpoint", &images).unwrap();
    tar.into_inner().unwrap();
    let gz = dir.join("layer.tar.gz");
    let mut e = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::fast(),
    );
    std::io::copy(&mut std::fs::File::open(&plain).unwrap(), &mut e).unwrap();
    e.finish().unwrap();
    let layout = |name: &str, layer: &Path| -> std::path::PathBuf {
        let d = dir.join(name);
        let blobs = d.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        let hash = |p: &Path| {
            let mut h = sha2::Sha256::new();
            std::io::copy(&mut std::fs::File::open(p).unwrap(), &mut h).unwrap();
            format!("{:x}", h.finalize())
        };
        let put = |b: &[u8]| {
            let h = format!("{:x}", sha2::Sha256::digest(b));
            std::fs::write(blobs.join(&h), b).unwrap();
            format!("sha256:{h}")
        };
        let lh = hash(layer);
        std::fs::rename(layer, blobs.join(&lh)).unwrap();
        let lsize = std::fs::metadata(blobs.join(&lh)).unwrap().len();
        let config = br#"{"architecture":"amd64","os":"linux"}"#;
        let man = format!(
            r#"{{"schemaVersion":2,"config":{{"digest":"{}","size":{}}},"layers":[{{"digest":"sha256:{lh}","size":{lsize}}}],"annotations":{{"org.criu.checkpoint.container.name":"bench"}}}}"#,
            put(config),
            config.len(),
        );
        let idx = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":{}}}]}}"#,
            put(man.as_bytes()),
            man.len()
        );
        std::fs::write(d.join("index.json"), idx).unwrap();
        std::fs::write(d.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        d
    };
    let plain_dir = layout("plain", &plain);
    let gz_dir = layout("gzip", &gz);
    let out = dir.join("cores");
    std::fs::create_dir_all(&out).unwrap();
    let bytes = pages * PAGE;
    let time = |input: &Path| {
        best_of(2, || {
            let t = Instant::now();
            let ckpt = Checkpoint::open(&Input::Path(input.to_path_buf()), &OpenOptions::default())
                .unwrap();
            let process = ckpt.process(1).unwrap();
            let plan = Plan::new(&process, &CoreOptions::default()).unwrap();
            let w = plan.write(&out, 1, true, &mut |_| {}).unwrap();
            assert_eq!(w.data_bytes, bytes);
            t.elapsed()
        })
    };
    let mib = bytes as f64 / (1 << 20) as f64;
    for (what, input) in [
        ("image directory", &images),
        ("checkpoint image, tar layer", &plain_dir),
        ("checkpoint image, gzip layer", &gz_dir),
    ] {
        let d = time(input);
        println!(
            "{:<30} {:>8.0} MiB/s  ({:.2} s for {mib:.0} MiB)",
            format!("{what}:"),
            mib / d.as_secs_f64(),
            d.as_secs_f64()
        );
    }
    println!(
        "peak memory (VmHWM):           {:>8.1} MiB",
        peak_rss() as f64 / (1 << 20) as f64
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The sysroot of a process mapping 20 files of 4 MiB from a --rootfs on the same
/// filesystem (hard links, no bytes copied), next to writing that process's core.
fn sysroot_of_20_files() {
    use ck2core::images::magic;
    use ck2core::rootfs::sysroot::Sysroot;
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-sysroot");
    let _ = std::fs::remove_dir_all(&dir);
    let images = dir.join("images");
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("usr/lib")).unwrap();
    let file_pages = 1024u64;
    let mut p = Proc::new(1);
    let mut files = Vec::new();
    for i in 0..20u64 {
        let start = 0x4000_0000 + i * (file_pages + 1) * PAGE;
        p.vmas.push(vma(
            start,
            start + file_pages * PAGE,
            FILE_PRIVATE,
            100 + i,
            0,
        ));
        let name = format!("/usr/lib/lib{i}.so");
        std::fs::write(
            root.join(name.trim_start_matches('/')),
            vec![i as u8; (file_pages * PAGE) as usize],
        )
        .unwrap();
        files.push(reg_file(100 + i as u32, &name, file_pages * PAGE));
    }
    write_images(&images, &[p]);
    put(&images, "files.img", magic::FILES, &files);
    let opts = OpenOptions {
        rootfs: Some(root.clone()),
        ..Default::default()
    };
    let ckpt = Checkpoint::open(&Input::Path(images.clone()), &opts).unwrap();
    let mut linked = 0;
    let sysroot = best_of(5, || {
        let out = dir.join("out-sysroot");
        let _ = std::fs::remove_dir_all(&out);
        let mut process = ckpt.process(1).unwrap();
        let t = Instant::now();
        let mut s = Sysroot::create(&out).unwrap();
        s.add(ckpt.rootfs(), &mut process).unwrap();
        let d = t.elapsed();
        linked = s.summary().linked;
        assert_eq!(s.summary().files, 20);
        d
    });
    let core = best_of(5, || {
        let out = dir.join("out-core");
        std::fs::create_dir_all(&out).unwrap();
        let process = ckpt.process(1).unwrap();
        let t = Instant::now();
        let plan = Plan::new(&process, &CoreOptions::default()).unwrap();
        plan.write(&out, 1, true, &mut |_| {}).unwrap();
        t.elapsed()
    });
    // What the user waits for without a sysroot: open the checkpoint, find and
    // verify the 20 files in the root, write the core.
    let conversion = best_of(5, || {
        let out = dir.join("out-conversion");
        std::fs::create_dir_all(&out).unwrap();
        let t = Instant::now();
        let ckpt = Checkpoint::open(&Input::Path(images.clone()), &opts).unwrap();
        let process = ckpt.process(1).unwrap();
        let plan = Plan::new(&process, &CoreOptions::default()).unwrap();
        plan.write(&out, 1, true, &mut |_| {}).unwrap();
        t.elapsed()
    });
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "sysroot, 20 files of 4 MiB:    {:>8.2} ms ({linked} of 20 hard links; {:.0}% of the conversion)",
        ms(sysroot),
        100.0 * sysroot.as_secs_f64() / conversion.as_secs_f64()
    );
    println!("  the conversion without it:   {:>8.2} ms", ms(conversion));
    println!("  of which the core alone:     {:>8.2} ms", ms(core));
    let _ = std::fs::remove_dir_all(&dir);
}
