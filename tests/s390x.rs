//! s390x checkpoints, converted on whatever machine runs the tests: a synthetic
//! two-thread checkpoint with big-endian framing, as CRIU writes it on s390x, read
//! back with gdb-multiarch and readelf.

mod common;

use std::path::Path;

use ck2core::images::pb;
use common::synth::*;
use common::*;

const BASE: u64 = 0x3ff_f7f0_0000;
/// AT_HWCAP of a z15: ESAN3 .. HIGH_GPRS, TE, VXRS, VXRS_BCD, VXRS_EXT, GS, ...
const HWCAP: u64 = 0x7fff;
/// A big-endian word stored in memory where r15 points (the stack pointer).
const STACK_WORD: u64 = 0x0123_4567_89ab_cdef;

fn gpr(t: u64, i: usize) -> u64 {
    match i {
        15 => BASE + PAGE + 0x200, // the stack pointer, in the saved page
        _ => 0x1000 * t + i as u64,
    }
}

fn psw(t: u64) -> (u64, u64) {
    (0x0705_0001_8000_0000, 0x2aa_0000_1000 + 4 * t)
}

fn acr(t: u64, i: usize) -> u32 {
    0xa000_0000 + ((t as u32) << 8) + i as u32
}

fn fpr(t: u64, i: usize) -> u64 {
    0x4000_0000_0000_0000 + (t << 16) + i as u64
}

fn fpc(t: u64) -> u32 {
    0x0008_0000 + t as u32
}

/// Right halves of v0..v15.
fn vlow(t: u64, i: usize) -> u64 {
    0x5555_0000_0000_0000 + (t << 16) + i as u64
}

/// v16..v31 as left, right doublewords.
fn vhigh(t: u64, j: usize) -> u64 {
    0x6666_0000_0000_0000 + (t << 16) + j as u64
}

fn gs_block(base: u64, t: u64) -> Vec<u64> {
    vec![0, base + t, base + 0x100 + t, base + 0x200 + t]
}

fn s390_core(tid: u32, leader: bool) -> pb::CoreEntry {
    let t = tid as u64;
    let (mask, addr) = psw(t);
    let mut core = x86_core(tid, "zz", leader);
    core.mtype = Some(5);
    core.thread_info = None;
    core.ti_s390 = Some(pb::ThreadInfoS390 {
        clear_tid_addr: Some(0),
        gpregs: Some(pb::UserS390RegsEntry {
            psw_mask: Some(mask),
            psw_addr: Some(addr),
            gprs: (0..16).map(|i| gpr(t, i)).collect(),
            acrs: (0..16).map(|i| acr(t, i)).collect(),
            orig_gpr2: Some(0x0726_0000 + t),
            system_call: Some(if leader { 162 } else { 0 }),
        }),
        fpregs: Some(pb::UserS390FpregsEntry {
            fpc: Some(fpc(t)),
            fprs: (0..16).map(|i| fpr(t, i)).collect(),
        }),
        vxrs_low: Some(pb::UserS390VxrsLowEntry {
            regs: (0..16).map(|i| vlow(t, i)).collect(),
        }),
        vxrs_high: Some(pb::UserS390VxrsHighEntry {
            regs: (0..32).map(|j| vhigh(t, j)).collect(),
        }),
        // Only the leader set up guarded storage and runtime instrumentation.
        gs_cb: leader.then(|| pb::UserS390GsCbEntry {
            regs: gs_block(0x1_0000, t),
        }),
        gs_bc: leader.then(|| pb::UserS390GsCbEntry {
            regs: gs_block(0x2_0000, t),
        }),
        ri_cb: leader.then(|| pb::UserS390RiEntry {
            ri_on: Some(1),
            regs: (0..8).map(|i| 0x7000 + i).collect(),
        }),
    });
    if !leader {
        // A pending SIGUSR1: CRIU keeps the raw siginfo, whose si_signo is a
        // big-endian int on s390x.
        let mut si = vec![0u8; 128];
        si[..4].copy_from_slice(&10i32.to_be_bytes());
        core.thread_core.as_mut().unwrap().signals_p = Some(pb::SignalQueueEntry {
            signals: vec![pb::SiginfoEntry { siginfo: Some(si) }],
        });
    }
    core
}

/// The container path of the mapped file.
const MAPPED: &str = "/opt/mapped.bin";

/// A private read-only mapping of the second page of [`MAPPED`], a file of the
/// container's root `rootfs` (so that NT_FILE names it and gdb opens it).
fn add_file_mapping(dir: &Path, f: &Foreign, rootfs: &Path) -> u64 {
    let mut content = vec![0u8; 2 * PAGE as usize];
    content[PAGE as usize..PAGE as usize + 12].copy_from_slice(b"FILE-PAGE-2\0");
    let file = rootfs.join(MAPPED.trim_start_matches('/'));
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(file, &content).unwrap();
    put(
        dir,
        "files.img",
        ck2core::images::magic::FILES,
        &[reg_file(7, MAPPED, content.len() as u64)],
    );
    let at = f.base + 8 * PAGE;
    let mut map = vma(at, at + PAGE, FILE_PRIVATE, 7, PAGE);
    map.prot = Some(1);
    map.flags = Some(2);
    let mm = pb::MmEntry {
        mm_saved_auxv: f.auxv.clone(),
        vmas: vec![
            anon_vma(f.base, f.base + 2 * f.page),
            anon_vma(f.second_at(), f.second_at() + f.page),
            map,
        ],
        ..Default::default()
    };
    put(
        dir,
        &format!("mm-{}.img", f.pid),
        ck2core::images::magic::MM,
        &[mm],
    );
    at
}

#[test]
fn synthetic_s390x_registers_memory_and_notes() {
    let root = scratch("s390x-synth");
    let dir = root.join("dump");
    let f = Foreign {
        pid: 90,
        page: PAGE,
        base: BASE,
        auxv: vec![6, PAGE, 16, HWCAP],
    };
    write_foreign(&dir, &f, "S390X", s390_core);
    let rootfs = root.join("rootfs");
    let file_at = add_file_mapping(&dir, &f, &rootfs);
    // A big-endian long where r15 points: s390x memory is big-endian.
    let pages = dir.join(format!("pages-{}.img", f.pid));
    let mut bytes = std::fs::read(&pages).unwrap();
    bytes[0x200..0x208].copy_from_slice(&STACK_WORD.to_be_bytes());
    std::fs::write(&pages, bytes).unwrap();
    reframe_big_endian(&dir);
    for img in [
        "inventory.img",
        "core-90.img",
        "mm-90.img",
        "pagemap-90.img",
    ] {
        let b = std::fs::read(dir.join(img)).unwrap();
        let want = if img == "inventory.img" {
            ck2core::images::magic::INVENTORY
        } else {
            ck2core::images::magic::COMMON
        };
        assert_eq!(b[..4], want.to_be_bytes(), "{img} is not big-endian");
    }

    let core = f.convert_with(&dir, &["--rootfs", rootfs.to_str().unwrap()]);

    // What the kernel writes for an s390x process: ELFCLASS64, big-endian,
    // EM_S390, e_flags 0, and the notes of s390_regsets with their sizes.
    let h = readelf_headers(&core);
    assert_eq!(header_field(&h, "Class"), "ELF64");
    assert!(header_field(&h, "Data").contains("big endian"), "{h}");
    assert_eq!(header_field(&h, "Machine"), "IBM S/390");
    assert_eq!(header_field(&h, "Flags"), "0x0");
    let notes = readelf_notes(&core);
    let sizes: Vec<(&str, usize)> = notes.iter().map(|(_, n, d)| (d.as_str(), *n)).collect();
    let nt_file = 16 + 24 + MAPPED.len() + 1;
    assert_eq!(
        &sizes[..17],
        [
            ("NT_PRSTATUS", 336),
            ("NT_PRPSINFO", 136),
            ("NT_SIGINFO", 128),
            ("NT_AUXV", 48),
            ("NT_FILE", nt_file),
            ("NT_FPREGSET", 136),
            ("NT_S390_SYSTEM_CALL", 4),
            ("NT_S390_VXRS_LOW", 128),
            ("NT_S390_VXRS_HIGH", 256),
            ("NT_S390_GS_CB", 32),
            ("NT_S390_GS_BC", 32),
            // readelf 2.40 has no name for NT_S390_RI_CB (0x30d).
            ("Unknown", 64),
            ("NT_PRSTATUS", 336),
            ("NT_FPREGSET", 136),
            ("NT_S390_SYSTEM_CALL", 4),
            ("NT_S390_VXRS_LOW", 128),
            ("NT_S390_VXRS_HIGH", 256),
        ],
        "{notes:?}"
    );
    assert!(readelf_notes_raw(&core).contains("Unknown note type: (0x0000030d)"));

    let (got, threads) = f.gdb(
        &core,
        "S390X",
        &[
            "thread apply all info registers all",
            "info proc mappings",
            &format!("x/gx {:#x}", gpr(0, 15)),
            &format!("x/s {:#x}", file_at),
        ],
    );
    // lldb-22 crashes (SIGSEGV in 'target create --core') on this synthetic core,
    // whatever note or segment is taken out of it, while it reads the real s390x
    // checkpoint's core (tests/vm_fixtures.rs) at once: lldb is checked there.
    eprintln!(
        "note: lldb-22 is not run on the synthetic s390x core (it crashes on it); tests/vm_fixtures.rs checks lldb on the real s390x one"
    );
    for (tid, view) in &threads {
        let t = *tid as u64;
        let r = &view.regs;
        let leader = t == 90;
        assert_eq!((r["pswm"], r["pswa"]), psw(t), "psw of {tid}");
        for i in 0..16 {
            assert_eq!(r[&format!("r{i}")], gpr(t, i), "r{i} of {tid}");
            assert_eq!(r[&format!("acr{i}")], acr(t, i) as u64, "acr{i} of {tid}");
            assert_eq!(r[&format!("f{i}")], fpr(t, i), "f{i} of {tid}");
        }
        assert_eq!(r["orig_r2"], 0x0726_0000 + t);
        assert_eq!(r["system_call"], if leader { 162 } else { 0 });
        assert_eq!(r["fpc"], fpc(t) as u64);
        for i in 0..32 {
            let (left, right) = if i < 16 {
                (fpr(t, i), vlow(t, i))
            } else {
                (vhigh(t, 2 * (i - 16)), vhigh(t, 2 * (i - 16) + 1))
            };
            let v = format!("{:#x}", (left as u128) << 64 | right as u128);
            assert!(
                got.contains(&format!("uint128 = {v}}}")),
                "v{i} of {tid} = {v}:\n{got}"
            );
        }
        // The guarded-storage registers of the thread that had a control block;
        // the other has none (unavailable in gdb, as for a kernel core).
        if leader {
            for (k, n) in ["gsd", "gssm", "gsepla"].iter().enumerate() {
                assert_eq!(r[*n], 0x1_0000 + 0x100 * k as u64 + t, "{n}");
                assert_eq!(r[&format!("bc_{n}")], 0x2_0000 + 0x100 * k as u64 + t);
            }
        } else {
            assert!(!r.contains_key("gsd"), "{got}");
        }
    }
    assert_threads_regs_match_gdb(&dir, &got, &["general", "float", "vector"]);
    assert!(got.contains(&format!(":\t{STACK_WORD:#018x}")), "{got}");
    // NT_FILE's big-endian words: the mapping, its offset (a page) and its path.
    assert!(got.contains("\"FILE-PAGE-2\""), "{got}");
    let row = got
        .lines()
        .find(|l| l.contains("mapped.bin"))
        .unwrap_or_else(|| panic!("no file mapping in:\n{got}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cols[..4],
        [
            format!("{file_at:#x}"),
            format!("{:#x}", file_at + PAGE),
            format!("{PAGE:#x}"),
            "0x1000".to_string()
        ],
        "{row}"
    );

    // The gdb helper finds its note in a big-endian core.
    let helper =
        gdb_multiarch_with_init(&core.with_file_name("gdbinit"), &core, &["ck2core threads"]);
    assert!(
        helper.contains("ck2core: pid 90 (zz), 2 threads named from CRIU."),
        "{helper}"
    );
    assert!(
        helper
            .lines()
            .any(|l| l.starts_with("2 ") && l.contains(" 91 ") && l.ends_with("pending SIGUSR1")),
        "{helper}"
    );

    // The inspection commands read the same byte order: the pending signal from
    // the big-endian siginfo, and the report's stack words.
    let threads = ck2core(&["threads", dir.to_str().unwrap(), "--json"]);
    assert!(
        threads.status.success(),
        "{}",
        String::from_utf8_lossy(&threads.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&threads.stdout).unwrap();
    let t91 = v["threads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tid"] == 91)
        .unwrap();
    assert_eq!(t91["pending"], serde_json::json!(["SIGUSR1"]), "{v}");
    let report = ck2core(&[
        "report",
        dir.to_str().unwrap(),
        "--json",
        "--stack-words",
        "2",
    ]);
    assert!(
        report.status.success(),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    let t = &r["processes"][0]["threads"][0];
    assert_eq!(
        t["registers"]["general"]["pswa"],
        format!("{:#x}", psw(90).1)
    );
    assert_eq!(t["stack"][0]["address"], format!("{:#x}", gpr(90, 15)));
    assert_eq!(t["stack"][0]["value"], format!("{STACK_WORD:#x}"));
}

#[test]
fn images_whose_byte_order_contradicts_the_architecture_are_refused() {
    let root = scratch("s390x-order");
    let dir = root.join("dump");
    let f = Foreign {
        pid: 92,
        page: PAGE,
        base: BASE,
        auxv: vec![6, PAGE, 16, HWCAP],
    };
    // s390x registers in little-endian images: no s390x CRIU writes these.
    write_foreign(&dir, &f, "S390X", s390_core);
    let out = ck2core(&[
        dir.to_str().unwrap(),
        "-o",
        root.join("c").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("core-92.img")
            && err.contains("mtype says s390x but the images are little-endian"),
        "{err}"
    );
}
