//! ppc64le checkpoints, converted on whatever machine runs the tests: a synthetic
//! two-thread checkpoint (64 KiB pages, Altivec and VSX, one thread inside a
//! hardware transaction) read back with gdb-multiarch and readelf.

mod common;

use ck2core::images::pb;
use common::synth::*;
use common::*;

const PAGE64K: u64 = 65536;
const BASE: u64 = 0x3fff_b000_0000;
/// AT_HWCAP of a POWER9 (32, 64, Altivec, FPU, MMU, ISA 2.05-2.07, VSX, true LE...).
const HWCAP: u64 = 0xdc00_65c2;

fn gpr(t: u64, i: usize) -> u64 {
    match i {
        1 => BASE + PAGE64K - 0x100, // r1 is the stack pointer
        _ => 0x1000 * t + i as u64,
    }
}

/// nip, msr, orig_gpr3, ctr, link, xer, ccr, trap
fn special(t: u64) -> [u64; 8] {
    [
        0x1000_0000 + 4 * t,
        0x8000_0000_0280_f033,
        0x300 + t,
        0xc7c + t,
        0x1000_4000 + t,
        0x2000_0000,
        0x2400_0000 + t,
        0xc00,
    ]
}

fn regs(t: u64, salt: u64) -> pb::UserPpc64RegsEntry {
    let s = special(t);
    pb::UserPpc64RegsEntry {
        gpr: (0..32).map(|i| gpr(t, i) ^ salt).collect(),
        nip: Some(s[0] ^ salt),
        msr: Some(s[1]),
        orig_gpr3: Some(s[2]),
        ctr: Some(s[3]),
        link: Some(s[4]),
        xer: Some(s[5]),
        ccr: Some(s[6]),
        trap: Some(s[7]),
        ..Default::default()
    }
}

fn fpr(t: u64, i: usize) -> u64 {
    0x4010_0000_0000_0000 + (t << 16) + i as u64
}

/// vr i as (low, high) doublewords.
fn vr(t: u64, i: usize) -> (u64, u64) {
    (
        0x1111_0000_0000_0000 + (t << 16) + i as u64,
        0x2222_0000_0000_0000 + i as u64,
    )
}

fn vsx(t: u64, i: usize) -> u64 {
    0x3333_0000_0000_0000 + (t << 16) + i as u64
}

fn fp_state(t: u64) -> pb::UserPpc64FpstateEntry {
    let mut fpregs: Vec<u64> = (0..32).map(|i| fpr(t, i)).collect();
    fpregs.push(0x8200_0000 + t); // fpscr
    pb::UserPpc64FpstateEntry { fpregs }
}

fn vr_state(t: u64) -> pb::UserPpc64VrstateEntry {
    let mut vrregs: Vec<u64> = (0..32)
        .flat_map(|i| {
            let (lo, hi) = vr(t, i);
            [lo, hi]
        })
        .collect();
    vrregs.extend([0x0001_0000 + t, 0]); // the vscr quadword: vscr in its low word
    pb::UserPpc64VrstateEntry {
        vrregs,
        vrsave: Some(0xffff_0000 + t as u32),
    }
}

fn vsx_state(t: u64) -> pb::UserPpc64VsxstateEntry {
    pb::UserPpc64VsxstateEntry {
        vsxregs: (0..32).map(|i| vsx(t, i)).collect(),
    }
}

fn ppc_core(tid: u32, leader: bool) -> pb::CoreEntry {
    let t = tid as u64;
    let mut core = x86_core(tid, "ppc", leader);
    core.mtype = Some(4);
    core.thread_info = None;
    core.ti_ppc64 = Some(if leader {
        pb::ThreadInfoPpc64 {
            clear_tid_addr: Some(0),
            gpregs: Some(regs(t, 0)),
            fpstate: Some(fp_state(t)),
            vrstate: Some(vr_state(t)),
            vsxstate: Some(vsx_state(t)),
            tmstate: None,
        }
    } else {
        // In a transaction: the running registers are in tmstate, the
        // checkpointed ones (garbage here) in the main fields.
        let junk = 0xdead_0000_0000_0000;
        pb::ThreadInfoPpc64 {
            clear_tid_addr: Some(0),
            gpregs: Some(regs(t, junk)),
            fpstate: Some(pb::UserPpc64FpstateEntry {
                fpregs: vec![junk; 33],
            }),
            vrstate: None,
            vsxstate: None,
            tmstate: Some(pb::UserPpc64TmRegsEntry {
                gpregs: Some(regs(t, 0)),
                fpstate: Some(fp_state(t)),
                vrstate: Some(vr_state(t)),
                vsxstate: Some(vsx_state(t)),
            }),
        }
    });
    core
}

#[test]
fn synthetic_ppc64le_registers_memory_and_notes() {
    let root = scratch("ppc64le-synth");
    let dir = root.join("dump");
    let f = Foreign {
        pid: 60,
        page: PAGE64K,
        base: BASE,
        auxv: vec![6, PAGE64K, 16, HWCAP],
    };
    write_foreign(&dir, &f, "POWER", ppc_core);
    let core = f.convert(&dir);

    let h = readelf_headers(&core);
    assert_eq!(header_field(&h, "Class"), "ELF64");
    assert!(header_field(&h, "Data").contains("little endian"), "{h}");
    assert_eq!(header_field(&h, "Machine"), "PowerPC64");
    assert_eq!(header_field(&h, "Flags"), "0x0");
    let notes = readelf_notes(&core);
    let sizes: Vec<(&str, usize)> = notes.iter().map(|(_, n, d)| (d.as_str(), *n)).collect();
    assert_eq!(
        &sizes[..12],
        [
            ("NT_PRSTATUS", 504),
            ("NT_PRPSINFO", 136),
            ("NT_SIGINFO", 128),
            ("NT_AUXV", 48),
            ("NT_FILE", 16),
            ("NT_FPREGSET", 264),
            ("NT_PPC_VMX", 544),
            ("NT_PPC_VSX", 256),
            ("NT_PRSTATUS", 504),
            ("NT_FPREGSET", 264),
            ("NT_PPC_VMX", 544),
            ("NT_PPC_VSX", 256),
        ],
        "{notes:?}"
    );

    let (got, threads) = f.gdb(
        &core,
        "POWER",
        &[
            "thread apply all info registers",
            "thread apply all info registers float",
            "thread apply all info registers vector",
            "thread apply all p/x $vr3.uint128",
            "thread apply all p/x $vs5.uint128",
        ],
    );
    // lldb-22 loads the core at once and agrees with gdb on every general register.
    let lldb_out = lldb_general_registers(&core, threads.len());
    assert_lldb_agrees_with_gdb(&lldb_out, &threads, 32);
    for (tid, view) in &threads {
        let t = *tid as u64;
        let r = &view.regs;
        for i in 0..32 {
            assert_eq!(r[&format!("r{i}")], gpr(t, i), "r{i} of {tid}");
            assert_eq!(r[&format!("f{i}")], fpr(t, i), "f{i} of {tid}");
        }
        let s = special(t);
        for (name, v) in [
            ("pc", s[0]),
            ("msr", s[1]),
            ("orig_r3", s[2]),
            ("ctr", s[3]),
            ("lr", s[4]),
            ("xer", s[5]),
            ("cr", s[6]),
            ("trap", s[7]),
            ("fpscr", 0x8200_0000 + t),
            ("vscr", 0x0001_0000 + t),
            ("vrsave", 0xffff_0000 + t),
        ] {
            assert_eq!(r[name], v, "{name} of {tid}");
        }
        let (lo, hi) = vr(t, 3);
        assert_eq!(view.values[0], format!("{hi:#x}{lo:016x}"), "vr3 of {tid}");
        // vs5 is f5 (high doubleword) and the VSX note's word 5 (low).
        assert_eq!(
            view.values[1],
            format!("{:#x}{:016x}", fpr(t, 5), vsx(t, 5)),
            "vs5 of {tid}"
        );
    }
    assert_threads_regs_match_gdb(&dir, &got, &["general", "float", "vector", "vsx"]);
}

#[test]
fn big_endian_ppc64_images_are_refused_clearly() {
    let root = scratch("ppc64be");
    let dir = root.join("dump");
    let f = Foreign {
        pid: 62,
        page: PAGE64K,
        base: BASE,
        auxv: vec![6, PAGE64K, 16, HWCAP],
    };
    write_foreign(&dir, &f, "POWER", ppc_core);
    // What CRIU on a big-endian ppc64 host writes: the same mtype, big-endian
    // framing, and registers whose vector layout ck2core does not know.
    reframe_big_endian(&dir);
    let out = ck2core(&[
        dir.to_str().unwrap(),
        "-o",
        root.join("c").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("core-62.img: core_entry.mtype is 4 (PPC64) and the images are big-endian: big-endian ppc64 is not supported"),
        "{err}"
    );
}
