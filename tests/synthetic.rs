//! Synthetic checkpoints built in code, for what the real fixtures don't have:
//! incremental dumps (PE_PARENT), lazy pages, more than 65535 segments, damaged
//! pagemaps, an architecture we don't convert, and one broken process among good ones.

mod common;

use std::path::Path;

use ck2core::images::pb;
use common::synth::*;
use common::*;

const BASE: u64 = 0x1000_0000;
const PE_PARENT: u32 = 1;
const PE_LAZY: u32 = 2;
const PE_PRESENT: u32 = 4;

fn convert(dir: &Path, out: &Path) -> std::process::Output {
    ck2core(&[dir.to_str().unwrap(), "-o", out.to_str().unwrap()])
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn pages_come_from_the_parent_image_chain() {
    let root = scratch("synth-parent");
    let (grand, parent, top) = (root.join("pre0"), root.join("pre1"), root.join("dump"));
    // 4 pages; page 0 in this dump, page 1 in the parent, pages 2-3 in the grandparent.
    let mut p = Proc::new(10);
    p.vmas = vec![anon_vma(BASE, BASE + 4 * PAGE)];
    p.pagemap = vec![run(BASE + 2 * PAGE, 2, PE_PRESENT)];
    write_images(&grand, &[p]);
    write_pages(&grand, 10, 2, |i, pg| marked("GRAND", i, pg));
    let mut p = Proc::new(10);
    p.vmas = vec![anon_vma(BASE, BASE + 4 * PAGE)];
    p.pagemap = vec![
        run(BASE, 1, PE_PARENT),
        run(BASE + PAGE, 1, PE_PRESENT),
        run(BASE + 2 * PAGE, 2, PE_PARENT),
    ];
    write_images(&parent, &[p]);
    write_pages(&parent, 10, 1, |_, pg| marked("PARENT", 1, pg));
    std::os::unix::fs::symlink("../pre0", parent.join("parent")).unwrap();
    let mut p = Proc::new(10);
    p.vmas = vec![anon_vma(BASE, BASE + 4 * PAGE)];
    p.pagemap = vec![run(BASE, 1, PE_PRESENT), run(BASE + PAGE, 3, PE_PARENT)];
    write_images(&top, &[p]);
    write_pages(&top, 10, 1, |_, pg| marked("TOP", 0, pg));
    std::os::unix::fs::symlink("../pre1", top.join("parent")).unwrap();

    let out = root.join("cores");
    let o = convert(&top, &out);
    assert!(o.status.success(), "{}", stderr(&o));
    let core = CoreFile::open(&out.join("core.10"));
    assert_eq!(core.read(BASE, 6).unwrap(), b"TOP-0\0");
    assert_eq!(core.read(BASE + PAGE, 9).unwrap(), b"PARENT-1\0");
    // The grandparent's pages file holds its pages 2 and 3 as its entries 0 and 1.
    assert_eq!(core.read(BASE + 2 * PAGE, 8).unwrap(), b"GRAND-0\0");
    assert_eq!(core.read(BASE + 3 * PAGE, 8).unwrap(), b"GRAND-1\0");
    let got = gdb(
        &out.join("core.10"),
        None,
        None,
        &[&format!("x/s {:#x}", BASE + 3 * PAGE)],
    );
    assert!(got.contains("\"GRAND-1\""), "{got}");
    assert_eq!(warnings(&got), Vec::<&str>::new());
}

#[test]
fn missing_parent_images_are_a_clear_error() {
    let root = scratch("synth-noparent");
    let mut p = Proc::new(11);
    p.vmas = vec![anon_vma(BASE, BASE + PAGE)];
    p.pagemap = vec![run(BASE, 1, PE_PARENT)];
    write_images(&root.join("dump"), &[p]);
    let out = root.join("cores");
    let o = convert(&root.join("dump"), &out);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("pagemap-11.img") && e.contains("parent"), "{e}");
    assert_eq!(files_in(&out), Vec::<String>::new(), "no partial core");
}

#[test]
fn lazy_pages_are_left_out_and_said_so() {
    let root = scratch("synth-lazy");
    let dir = root.join("dump");
    let mut p = Proc::new(12);
    p.vmas = vec![anon_vma(BASE, BASE + 3 * PAGE)];
    // Page 0 present (lazy-eligible), page 1 lazy only (served later by a page
    // server, not in the images), page 2 present.
    p.pagemap = vec![
        run(BASE, 1, PE_PRESENT | PE_LAZY),
        run(BASE + PAGE, 1, PE_LAZY),
        run(BASE + 2 * PAGE, 1, PE_PRESENT),
    ];
    write_images(&dir, &[p]);
    write_pages(&dir, 12, 2, |i, pg| marked("LAZY", i, pg));
    let out = root.join("cores");
    let o = convert(&dir, &out);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("left out 4.0 KiB: lazy pages"),
        "{}",
        stderr(&o)
    );
    let core = CoreFile::open(&out.join("core.12"));
    assert_eq!(core.read(BASE, 7).unwrap(), b"LAZY-0\0");
    assert_eq!(
        core.read(BASE + PAGE, 1),
        None,
        "the lazy page is not invented"
    );
    assert_eq!(core.read(BASE + 2 * PAGE, 7).unwrap(), b"LAZY-1\0");
    // gdb sees the gap as unreadable, the rest as written.
    let got = gdb(
        &out.join("core.12"),
        None,
        None,
        &[
            &format!("x/s {:#x}", BASE + 2 * PAGE),
            &format!("x/s {:#x}", BASE + PAGE),
        ],
    );
    assert!(got.contains("\"LAZY-1\""), "{got}");
    assert!(got.contains("Cannot access memory"), "{got}");
}

#[test]
fn more_than_65535_segments_use_pn_xnum() {
    let root = scratch("synth-xnum");
    let dir = root.join("dump");
    let n: u64 = 70_000;
    let mut p = Proc::new(13);
    // VMAs of one page with one-page gaps, so none can be merged.
    p.vmas = (0..n)
        .map(|i| anon_vma(BASE + 2 * i * PAGE, BASE + (2 * i + 1) * PAGE))
        .collect();
    p.pagemap = vec![run(BASE + 2 * (n - 1) * PAGE, 1, PE_PRESENT)];
    write_images(&dir, &[p]);
    write_pages(&dir, 13, 1, |_, pg| marked("LAST", 0, pg));
    let out = root.join("cores");
    let o = convert(&dir, &out);
    assert!(o.status.success(), "{}", stderr(&o));
    let core = CoreFile::open(&out.join("core.13"));
    let eh = core.at(0, 64);
    assert_eq!(
        u16::from_le_bytes([eh[56], eh[57]]),
        0xffff,
        "e_phnum = PN_XNUM"
    );
    assert_eq!(u16::from_le_bytes([eh[60], eh[61]]), 1, "e_shnum");
    assert_eq!(
        core.phdrs().len() as u64,
        n + 1,
        "sh_info holds the real count"
    );
    let last = BASE + 2 * (n - 1) * PAGE;
    assert_eq!(core.read(last, 7).unwrap(), b"LAST-0\0");
    let got = gdb(
        &out.join("core.13"),
        None,
        None,
        &[&format!("x/s {last:#x}")],
    );
    assert!(got.contains("\"LAST-0\""), "{got}");
    assert_eq!(warnings(&got), Vec::<&str>::new());
}

#[test]
fn overlapping_pagemap_entries_are_refused() {
    let root = scratch("synth-overlap");
    let dir = root.join("dump");
    let mut p = Proc::new(14);
    p.vmas = vec![anon_vma(BASE, BASE + 4 * PAGE)];
    p.pagemap = vec![run(BASE, 2, PE_PRESENT), run(BASE + PAGE, 2, PE_PRESENT)];
    write_images(&dir, &[p]);
    write_pages(&dir, 14, 4, |i, pg| marked("X", i, pg));
    let out = root.join("cores");
    let o = convert(&dir, &out);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("pagemap-14.img: entry 2: vaddr 0x10001000 overlaps"),
        "{e}"
    );
    assert_eq!(files_in(&out), Vec::<String>::new());
}

#[test]
fn pages_outside_every_vma_are_refused() {
    let root = scratch("synth-outside");
    let dir = root.join("dump");
    let mut p = Proc::new(15);
    p.vmas = vec![anon_vma(BASE, BASE + PAGE)];
    p.pagemap = vec![run(BASE, 2, PE_PRESENT)];
    write_images(&dir, &[p]);
    write_pages(&dir, 15, 2, |i, pg| marked("X", i, pg));
    let o = convert(&dir, &root.join("cores"));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o)
            .contains("pagemap-15.img: entry 1: pages 0x10000000-0x10002000 are outside every VMA"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn pagemap_past_the_end_of_the_pages_file_is_refused() {
    let root = scratch("synth-short");
    let dir = root.join("dump");
    let mut p = Proc::new(16);
    p.vmas = vec![anon_vma(BASE, BASE + 4 * PAGE)];
    p.pagemap = vec![run(BASE, 4, PE_PRESENT)];
    write_images(&dir, &[p]);
    write_pages(&dir, 16, 3, |i, pg| marked("X", i, pg));
    let o = convert(&dir, &root.join("cores"));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("entries need 16384 bytes of pages but pages-16.img has only 12288"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn one_broken_process_does_not_stop_the_others() {
    let root = scratch("synth-partial");
    let dir = root.join("dump");
    let mut good = Proc::new(20);
    good.vmas = vec![anon_vma(BASE, BASE + PAGE)];
    good.pagemap = vec![run(BASE, 1, PE_PRESENT)];
    let mut bad = Proc::new(21);
    bad.ppid = 20;
    bad.vmas = vec![anon_vma(BASE + PAGE, BASE)]; // reversed range
    write_images(&dir, &[good, bad]);
    write_pages(&dir, 20, 1, |i, pg| marked("GOOD", i, pg));
    let out = root.join("cores");
    let o = convert(&dir, &out);
    assert_eq!(o.status.code(), Some(3), "exit 3: some processes failed");
    let e = stderr(&o);
    assert!(e.contains("failed   pid 21"), "{e}");
    assert!(e.contains("mm-21.img: vmas[0]: range 0x10001000-0x10000000 is empty, reversed or not page aligned"), "{e}");
    assert_eq!(
        files_in(&out),
        ["ck2core.py", "core.20", "gdbinit", "lldbinit"]
    );
}

#[test]
fn unsupported_architecture_names_mtype() {
    let root = scratch("synth-arch");
    let dir = root.join("dump");
    let p = Proc::new(30);
    write_images(&dir, &[p]);
    let mut core = x86_core(30, "riscy", true);
    core.mtype = Some(6);
    std::fs::write(
        dir.join("core-30.img"),
        image(ck2core::images::magic::CORE, &[core]),
    )
    .unwrap();
    let o = convert(&dir, &root.join("cores"));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(
            "core-30.img: core_entry.mtype is 6 (MIPS): this architecture is not supported yet"
        ),
        "{}",
        stderr(&o)
    );
    let mut core = x86_core(30, "odd", true);
    core.mtype = Some(42);
    std::fs::write(
        dir.join("core-30.img"),
        image(ck2core::images::magic::CORE, &[core]),
    )
    .unwrap();
    let o = convert(&dir, &root.join("cores"));
    assert!(
        stderr(&o).contains("core_entry.mtype is 42, which is no architecture CRIU knows"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn synthetic_registers_reach_gdb() {
    let root = scratch("synth-regs");
    let dir = root.join("dump");
    let mut p = Proc::new(40);
    p.threads = vec![40, 41];
    p.vmas = vec![anon_vma(BASE, BASE + PAGE)];
    write_images(&dir, &[p]);
    let out = root.join("cores");
    let o = convert(&dir, &out);
    assert!(o.status.success(), "{}", stderr(&o));
    let got = gdb(
        &out.join("core.40"),
        None,
        None,
        &[
            "thread apply all info registers r12 r15 rax fs_base",
            "thread apply all p/x $xmm1.v4_int32",
            "p/x $pkru",
        ],
    );
    assert_eq!(warnings(&got), Vec::<&str>::new(), "{got}");
    let t = parse_threads(&got);
    for tid in [40u64, 41] {
        let r = &t[&(tid as u32)].regs;
        assert_eq!(r["r12"], 0xc0c0_0000 + tid);
        assert_eq!(r["r15"], 0xf0f0_0000 + tid);
        assert_eq!(r["rax"], 0xa0a0_0000 + tid);
        assert_eq!(r["fs_base"], 0x7000_0000_0000 + tid);
        let w = |i: u64| format!("{:#x}", 0x1111_0000 + 4 + i + tid * 0x100);
        assert_eq!(
            t[&(tid as u32)].values[0],
            format!("{{{}, {}, {}, {}}}", w(0), w(1), w(2), w(3))
        );
    }
    assert!(got.contains("= 0x55555554"), "{got}");
    let _ = pb::PagemapHead::default();
}

#[test]
fn misaligned_and_overlapping_vmas_and_absurd_counts_are_refused() {
    let root = scratch("synth-vmas");
    let cases: Vec<(&str, Vec<pb::VmaEntry>, &str)> = vec![
        ("misaligned", vec![anon_vma(BASE + 10, BASE + PAGE)], "range 0x1000000a-0x10001000 is empty, reversed or not page aligned"),
        (
            "overlapping",
            vec![anon_vma(BASE, BASE + 2 * PAGE), anon_vma(BASE + PAGE, BASE + 3 * PAGE)],
            "vmas[1]: 0x10001000-0x10003000 overlaps or precedes the previous VMA (0x10000000-0x10002000)",
        ),
    ];
    for (name, vmas, msg) in cases {
        let dir = root.join(name);
        let mut p = Proc::new(80);
        p.vmas = vmas;
        write_images(&dir, &[p]);
        let out = root.join(format!("{name}-cores"));
        let o = convert(&dir, &out);
        assert_eq!(o.status.code(), Some(1), "{name}");
        assert!(stderr(&o).contains(msg), "{name}: {}", stderr(&o));
        assert_eq!(files_in(&out), Vec::<String>::new());
    }
    // A process claiming 100000 threads.
    let dir = root.join("threads");
    write_images(&dir, &[Proc::new(81)]);
    let tree = pb::PstreeEntry {
        pid: Some(81),
        ppid: Some(0),
        pgid: Some(81),
        sid: Some(81),
        threads: (81..100_081).collect(),
    };
    std::fs::write(
        dir.join("pstree.img"),
        image(ck2core::images::magic::PSTREE, &[tree]),
    )
    .unwrap();
    let o = convert(&dir, &root.join("threads-cores"));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("pstree.img: entry 0: 100000 threads, more than 65536"),
        "{}",
        stderr(&o)
    );
}
