//! The core's bytes, read back with a parser written here (not ck2core's writer):
//! the layout Linux writes, exact note sizes and order, NT_FILE and auxv contents.

mod common;

use common::*;

const NT_PRSTATUS: u32 = 1;
const NT_PRFPREG: u32 = 2;
const NT_PRPSINFO: u32 = 3;
const NT_AUXV: u32 = 6;
const NT_X86_XSTATE: u32 = 0x202;
const NT_SIGINFO: u32 = 0x5349_4749;
const NT_FILE: u32 = 0x4649_4c45;

/// Converts ckfix into a directory of the test's own (tests run in parallel).
fn ckfix_core(test: &str) -> CoreFile {
    let out = scratch(&format!("structure-{test}"));
    let td = testdata();
    ck2core_ok(&[
        td.join("ckfix/images").to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--rootfs",
        td.join("host-rootfs").to_str().unwrap(),
    ]);
    CoreFile::open(&out.join("core.31227"))
}

fn u64s(b: &[u8]) -> Vec<u64> {
    b.chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn header_and_segments_are_laid_out_as_linux_does() {
    let core = ckfix_core("header_and_segments_are_laid_out_as_linux_does");
    let eh = core.at(0, 64);
    assert_eq!(
        &eh[..7],
        b"\x7fELF\x02\x01\x01",
        "ELFCLASS64, LSB, EV_CURRENT"
    );
    assert_eq!(u16::from_le_bytes([eh[16], eh[17]]), 4, "ET_CORE");
    assert_eq!(u16::from_le_bytes([eh[18], eh[19]]), 62, "EM_X86_64");
    let ph = core.phdrs();
    assert_eq!(ph[0].p_type, 4, "PT_NOTE first");
    assert_eq!(
        ph[0].offset,
        64 + 56 * ph.len() as u64,
        "notes right after the program headers"
    );
    assert_eq!(ph[0].align, 4);
    let loads = &ph[1..];
    assert!(loads.iter().all(|p| p.p_type == 1 && p.align == 4096));
    let data_start = (ph[0].offset + ph[0].filesz).next_multiple_of(4096);
    assert_eq!(
        loads[0].offset, data_start,
        "data starts at the next page after the notes"
    );
    let mut expect_off = data_start;
    for w in loads.windows(2) {
        assert!(
            w[0].vaddr + w[0].memsz <= w[1].vaddr,
            "segments in address order, disjoint"
        );
    }
    for p in loads {
        assert_eq!(
            p.offset, expect_off,
            "offsets are the running sum of p_filesz"
        );
        assert!(p.filesz <= p.memsz);
        expect_off += p.filesz;
    }
    let size = std::fs::metadata(
        scratch_path("structure-header_and_segments_are_laid_out_as_linux_does").join("core.31227"),
    )
    .unwrap()
    .len();
    assert_eq!(
        size, expect_off,
        "the file ends exactly after the last segment"
    );
    // CRIU saves nothing of [vvar] and [vsyscall]: no segment claims to hold them,
    // so gdb reports them unreadable instead of showing zeros.
    assert!(loads.iter().all(|p| p.vaddr != 0xffffffffff600000));
    // Text of libc, not saved but in the root: covered with p_filesz 0, so gdb reads
    // it from the file NT_FILE names.
    assert!(loads
        .iter()
        .any(|p| p.filesz == 0 && p.memsz > 0 && p.flags == 5));
    // The 1 GiB sparse mapping is one whole segment.
    let sparse = loads.iter().find(|p| p.vaddr == 0x7f2420c00000).unwrap();
    assert_eq!(
        (sparse.memsz, sparse.filesz, sparse.flags),
        (1 << 30, 1 << 30, 6)
    );
}

fn scratch_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name)
}

#[test]
fn notes_have_the_kernel_order_and_exact_sizes() {
    let core = ckfix_core("notes_have_the_kernel_order_and_exact_sizes");
    let notes = core.notes();
    let seq: Vec<(&str, u32, usize)> = notes
        .iter()
        .map(|n| (n.name.as_str(), n.ntype, n.desc.len()))
        .collect();
    let mut want = vec![
        ("CORE", NT_PRSTATUS, 336),
        ("CORE", NT_PRPSINFO, 136),
        ("CORE", NT_SIGINFO, 128),
        ("CORE", NT_AUXV, 23 * 16),
        ("CORE", NT_FILE, seq[4].2),
        ("CORE", NT_PRFPREG, 512),
        ("LINUX", NT_X86_XSTATE, 2696),
    ];
    for _ in 0..4 {
        want.extend([
            ("CORE", NT_PRSTATUS, 336),
            ("CORE", NT_PRFPREG, 512),
            ("LINUX", NT_X86_XSTATE, 2696),
        ]);
    }
    // ck2core's own metadata note comes last (docs/core-note.md).
    want.push(("CK2CORE", 0x434b_3201, seq.last().unwrap().2));
    assert_eq!(seq, want);
    let meta: serde_json::Value = serde_json::from_slice(&notes.last().unwrap().desc).unwrap();
    assert_eq!(meta["version"], 1);
    assert_eq!(meta["process"]["pid"], 31227);
    assert_eq!(meta["threads"][4]["name"], "waiter");
    // Threads: the leader first, then the others.
    let tids: Vec<u32> = notes
        .iter()
        .filter(|n| n.ntype == NT_PRSTATUS)
        .map(|n| u32::from_le_bytes(n.desc[32..36].try_into().unwrap()))
        .collect();
    assert_eq!(tids, [31227, 31230, 31231, 31232, 31233]);
    for n in notes.iter().filter(|n| n.ntype == NT_PRSTATUS) {
        assert_eq!(
            u32::from_le_bytes(n.desc[328..332].try_into().unwrap()),
            1,
            "pr_fpvalid"
        );
        // The dumped tree's root: CRIU records its parent (outside the dump) as 0.
        assert_eq!(
            u32::from_le_bytes(n.desc[36..40].try_into().unwrap()),
            0,
            "pr_ppid"
        );
    }
    // xcr0 in the software bytes, XSTATE_BV in the header.
    let xs = &notes[6].desc;
    assert_eq!(u64::from_le_bytes(xs[464..472].try_into().unwrap()), 0x207);
    // The main thread never used AVX (ymm in init state), the spinners did.
    assert_eq!(
        u64::from_le_bytes(xs[512..520].try_into().unwrap()) & !0x3,
        0x200
    );
    let spin = &notes[9].desc;
    assert_eq!(
        u64::from_le_bytes(spin[512..520].try_into().unwrap()) & !0x3,
        0x204
    );
    // psinfo: state 'T' (stopped), comm, the argument area with NULs as spaces.
    let ps = &notes[1].desc;
    assert_eq!((ps[0], ps[1]), (3, b'T'));
    assert_eq!(&ps[40..50], b"ckfix-main");
    let args: Vec<u8> = ps[56..136]
        .iter()
        .copied()
        .take_while(|b| *b != 0)
        .collect();
    assert_eq!(
        String::from_utf8(args).unwrap(),
        "/ckfix/bin/ckfix /ckfix/ready /ckfix/data.bin "
    );
}

#[test]
fn auxv_is_terminated_even_though_criu_truncated_it() {
    let core = ckfix_core("auxv_is_terminated_even_though_criu_truncated_it");
    let notes = core.notes();
    let auxv = u64s(&notes.iter().find(|n| n.ntype == NT_AUXV).unwrap().desc);
    assert_eq!(&auxv[auxv.len() - 2..], &[0, 0], "AT_NULL last");
    assert_eq!(auxv[0], 33, "AT_SYSINFO_EHDR first");
    assert_eq!(
        auxv.iter().step_by(2).filter(|t| **t == 0).count(),
        1,
        "one AT_NULL"
    );
}

#[test]
fn nt_file_is_exact_and_names_only_real_files() {
    let core = ckfix_core("nt_file_is_exact_and_names_only_real_files");
    let notes = core.notes();
    let d = &notes.iter().find(|n| n.ntype == NT_FILE).unwrap().desc;
    let count = u64::from_le_bytes(d[0..8].try_into().unwrap()) as usize;
    assert_eq!(
        u64::from_le_bytes(d[8..16].try_into().unwrap()),
        4096,
        "page size"
    );
    let names_at = 16 + 24 * count;
    let names: Vec<&str> = std::str::from_utf8(&d[names_at..d.len() - 1])
        .unwrap()
        .split('\0')
        .collect();
    assert_eq!(
        names.len(),
        count,
        "descsz is exact: count names, nothing after the last NUL"
    );
    assert_eq!(*d.last().unwrap(), 0);
    assert!(names.contains(&"/ckfix/bin/ckfix"));
    assert!(names.contains(&"/ckfix/data.bin"));
    assert!(names.contains(&"/usr/lib/x86_64-linux-gnu/libc.so.6"));
    assert!(names
        .iter()
        .all(|n| !n.starts_with("/memfd:") && !n.starts_with("/dev/zero")));
    // Each entry is a mapping of the core with the file offset in pages.
    let loads = core.phdrs();
    for i in 0..count {
        let e = u64s(&d[16 + 24 * i..16 + 24 * (i + 1)]);
        assert!(e[0] < e[1]);
        assert!(
            loads.iter().any(|p| p.vaddr == e[0]),
            "NT_FILE start {:#x} is a segment",
            e[0]
        );
    }
    // data.bin is mapped at the filemap address with offset 0.
    let filemap = 0x7f2460e63000u64;
    let i = (0..count)
        .find(|i| u64s(&d[16 + 24 * i..16 + 24 * i + 8])[0] == filemap)
        .unwrap();
    assert_eq!(names[i], "/ckfix/data.bin");
}

#[test]
fn elf_header_pages_are_included_for_build_id_matching() {
    let core = ckfix_core("elf_header_pages_are_included_for_build_id_matching");
    // libc's first mapping starts with its ELF header, read from the rootfs.
    let loads = core.phdrs();
    let elf_pages = loads
        .iter()
        .filter(|p| p.p_type == 1 && p.filesz >= 4)
        .filter(|p| core.read(p.vaddr, 4).as_deref() == Some(b"\x7fELF"))
        .count();
    assert!(
        elf_pages >= 3,
        "ckfix, libc and ld.so headers in the core ({elf_pages})"
    );
}
