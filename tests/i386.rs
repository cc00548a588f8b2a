//! 32-bit (ia32 compat) tasks of x86_64 checkpoints: a synthetic two-thread
//! checkpoint converted into an ELFCLASS32 EM_386 core, read back with gdb and
//! readelf.

mod common;

use ck2core::images::pb;
use common::synth::*;
use common::*;

const BASE: u64 = 0xf7f0_0000;

/// (gdb name, value) of the general registers of thread `t`.
fn regs(t: u32) -> [(&'static str, u32); 17] {
    [
        ("eax", 0xa0a0_0000 + t),
        ("ecx", 0xc1c1_0000 + t),
        ("edx", 0xd1d1_0000 + t),
        ("ebx", 0xb0b0_0000 + t),
        ("esp", (BASE + PAGE - 0x40) as u32),
        ("ebp", (BASE + PAGE - 0x20) as u32),
        ("esi", 0x5151_0000 + t),
        ("edi", 0xd1d1_8000 + t),
        ("eip", 0x0804_9000 + t),
        ("eflags", 0x246),
        ("cs", 0x23),
        ("ss", 0x2b),
        ("ds", 0x2b),
        ("es", 0x2b),
        ("fs", 0),
        ("gs", 0x63),
        ("orig_eax", 0xffff_ffff),
    ]
}

fn i386_core(tid: u32, leader: bool) -> pb::CoreEntry {
    let r: std::collections::HashMap<_, _> = regs(tid).into_iter().collect();
    let v = |n: &str| Some(r[n] as u64);
    let mut core = x86_core(tid, "ia32", leader);
    let ti = core.thread_info.as_mut().unwrap();
    ti.gpregs = Some(pb::UserX86RegsEntry {
        r15: Some(0),
        r14: Some(0),
        r13: Some(0),
        r12: Some(0),
        bp: v("ebp"),
        bx: v("ebx"),
        r11: Some(0),
        r10: Some(0),
        r9: Some(0),
        r8: Some(0),
        ax: v("eax"),
        cx: v("ecx"),
        dx: v("edx"),
        si: v("esi"),
        di: v("edi"),
        orig_ax: v("orig_eax"),
        ip: v("eip"),
        cs: v("cs"),
        flags: v("eflags"),
        sp: v("esp"),
        ss: v("ss"),
        fs_base: Some(0),
        gs_base: Some(0xf7d0_0000),
        ds: v("ds"),
        es: v("es"),
        fs: v("fs"),
        gs: v("gs"),
        mode: Some(2),
    });
    let fp = ti.fpregs.as_mut().unwrap();
    // st0 = 1.0 in physical register 7 (top 7), the others empty.
    fp.swd = Some(7 << 11);
    fp.twd = Some(0x80);
    fp.st_space[0..4].copy_from_slice(&[0, 0x8000_0000, 0x3fff, 0]);
    core
}

#[test]
fn synthetic_ia32_task_becomes_an_i386_core() {
    let root = scratch("i386-synth");
    let dir = root.join("dump");
    // x86-64 CRIU stores a 32-bit task's auxv as the kernel's 64-bit words, each
    // holding one (type, value) pair of 32-bit words.
    let pair = |t: u64, v: u64| t | v << 32;
    let f = Foreign {
        pid: 40,
        page: PAGE,
        base: BASE,
        auxv: vec![pair(6, PAGE), pair(16, 0x178b_fbff), pair(0, 0)],
    };
    write_foreign(&dir, &f, "I386", i386_core);
    let core = f.convert(&dir);

    let h = readelf_headers(&core);
    assert_eq!(header_field(&h, "Class"), "ELF32");
    assert_eq!(
        header_field(&h, "Machine"),
        "Intel 80386",
        "EM_386, as the kernel's x86_32 regset view"
    );
    let notes = readelf_notes(&core);
    let sizes: Vec<(&str, usize)> = notes.iter().map(|(_, n, d)| (d.as_str(), *n)).collect();
    assert_eq!(
        &sizes[..12],
        [
            ("NT_PRSTATUS", 144),
            ("NT_PRPSINFO", 124),
            ("NT_SIGINFO", 128),
            ("NT_AUXV", 24),
            ("NT_FILE", 8),
            ("NT_FPREGSET", 108),
            ("NT_PRXFPREG", 512),
            ("NT_X86_XSTATE", 2696),
            ("NT_PRSTATUS", 144),
            ("NT_FPREGSET", 108),
            ("NT_PRXFPREG", 512),
            ("NT_X86_XSTATE", 2696),
        ],
        "{notes:?}"
    );

    let (got, threads) = f.gdb(
        &core,
        "I386",
        &[
            "thread apply all info all-registers",
            "thread apply all info registers system",
            "thread apply all p $st0",
            "thread apply all p/x $xmm1.uint128",
            "info auxv",
        ],
    );
    // lldb-22 loads the core at once and agrees with gdb on every general register.
    let lldb_out = lldb_general_registers(&core, threads.len());
    assert_lldb_agrees_with_gdb(&lldb_out, &threads, 16);
    for (tid, view) in &threads {
        for (name, v) in regs(*tid) {
            assert_eq!(view.regs[name], v as u64, "{name} of {tid}");
        }
        let t = *tid as u128;
        // xmm1 is xmm_space words 4..8.
        let xmm1 = (0..4).fold(0u128, |v, k| v | (0x1111_0004 + k + t * 0x100) << (32 * k));
        assert_eq!(
            view.values,
            ["1".to_string(), format!("{xmm1:#x}")],
            "st0, xmm1 of {tid}"
        );
        // st0 in physical register 7 (top 7), valid; the others empty.
        for (name, v) in [
            ("fctrl", 0x37f),
            ("fstat", 0x3800),
            ("ftag", 0x3fff),
            ("mxcsr", 0x1f80),
        ] {
            assert_eq!(view.regs[name], v, "{name} of {tid}");
        }
    }
    assert_threads_regs_match_gdb(&dir, &got, &["general"]);
    // The auxv, unpacked from CRIU's words, as gdb decodes it.
    assert!(
        got.lines()
            .any(|l| l.starts_with("6    AT_PAGESZ") && l.ends_with(" 4096")),
        "{got}"
    );
    assert!(
        got.lines()
            .any(|l| l.starts_with("16   AT_HWCAP") && l.contains("0x178bfbff")),
        "{got}"
    );
}

/// A 32-bit task as a minidump: CONTEXT_X86 with every general register and the
/// FSAVE area as the kernel's NT_PRFPREG holds it, read by minidump-stackwalk.
#[test]
fn synthetic_ia32_task_minidump() {
    let dir = scratch("i386-minidump").join("dump");
    let pair = |t: u64, v: u64| t | v << 32;
    let f = Foreign {
        pid: 40,
        page: PAGE,
        base: BASE,
        auxv: vec![pair(6, PAGE), pair(16, 0x178b_fbff), pair(0, 0)],
    };
    write_foreign(&dir, &f, "I386", i386_core);
    let ctx = minidump_read_back(&dir, 40, "CONTEXT_X86", "x86", 2).contexts;
    for t in [40u32, 41] {
        let c = &ctx[&(t as u64)];
        for (name, v) in regs(t) {
            if name == "orig_eax" {
                continue; // not in the format
            }
            assert_eq!(c[name], v as u64, "{name} of {t}");
        }
        // st0 = 1.0 in physical register 7: the full tag word marks 0..6 empty.
        assert_eq!(c["float_save.tag_word"] & 0xffff, 0x3fff, "{t}");
        assert_eq!(c["float_save.status_word"] & 0xffff, 7 << 11, "{t}");
        assert_eq!(c["float_save.control_word"] & 0xffff, 0x37f, "{t}");
    }
}
