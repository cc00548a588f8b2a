//! riscv64 checkpoints, converted on whatever machine runs the tests: a synthetic
//! two-thread checkpoint read back with gdb-multiarch and readelf.

mod common;

use ck2core::images::pb;
use common::synth::*;
use common::*;

const BASE: u64 = 0x3f_0000_0000;

fn gp(t: u64, i: usize) -> u64 {
    match i {
        0 => 0x1_0000 + 4 * t,   // pc
        2 => BASE + PAGE - 0x40, // sp, in the saved page
        _ => 0x1000 * t + i as u64,
    }
}

fn fp(t: u64, i: usize) -> u64 {
    0x4000_0000_0000_0000 + (t << 16) + i as u64
}

fn rv_core(tid: u32, leader: bool) -> pb::CoreEntry {
    let t = tid as u64;
    let g: Vec<u64> = (0..32).map(|i| gp(t, i)).collect();
    let mut core = x86_core(tid, "rv", leader);
    core.mtype = Some(8);
    core.thread_info = None;
    core.ti_riscv64 = Some(pb::ThreadInfoRiscv64 {
        clear_tid_addr: Some(0),
        tls: Some(g[4]),
        gpregs: Some(pb::UserRiscv64RegsEntry {
            pc: Some(g[0]),
            ra: Some(g[1]),
            sp: Some(g[2]),
            gp: Some(g[3]),
            tp: Some(g[4]),
            t0: Some(g[5]),
            t1: Some(g[6]),
            t2: Some(g[7]),
            s0: Some(g[8]),
            s1: Some(g[9]),
            a0: Some(g[10]),
            a1: Some(g[11]),
            a2: Some(g[12]),
            a3: Some(g[13]),
            a4: Some(g[14]),
            a5: Some(g[15]),
            a6: Some(g[16]),
            a7: Some(g[17]),
            s2: Some(g[18]),
            s3: Some(g[19]),
            s4: Some(g[20]),
            s5: Some(g[21]),
            s6: Some(g[22]),
            s7: Some(g[23]),
            s8: Some(g[24]),
            s9: Some(g[25]),
            s10: Some(g[26]),
            s11: Some(g[27]),
            t3: Some(g[28]),
            t4: Some(g[29]),
            t5: Some(g[30]),
            t6: Some(g[31]),
        }),
        fpsimd: Some(pb::UserRiscv64DExtEntry {
            f: (0..32).map(|i| fp(t, i)).collect(),
            fcsr: Some(0x61 + t as u32 % 2 * 0x20), // frm 3 or 4, fflags 1
        }),
    });
    core
}

#[test]
fn synthetic_riscv64_registers_memory_and_notes() {
    let root = scratch("rv64-synth");
    let dir = root.join("dump");
    let f = Foreign {
        pid: 70,
        page: PAGE,
        base: BASE,
        auxv: vec![6, PAGE, 16, 0x112d],
    };
    write_foreign(&dir, &f, "RISCV", rv_core);
    let core = f.convert(&dir);

    let h = readelf_headers(&core);
    assert_eq!(header_field(&h, "Class"), "ELF64");
    assert!(header_field(&h, "Data").contains("little endian"), "{h}");
    assert_eq!(header_field(&h, "Machine"), "RISC-V");
    assert_eq!(header_field(&h, "Flags"), "0x5, RVC, double-float ABI");
    let notes = readelf_notes(&core);
    let sizes: Vec<(&str, usize)> = notes.iter().map(|(_, n, d)| (d.as_str(), *n)).collect();
    assert_eq!(
        &sizes[..7],
        [
            ("NT_PRSTATUS", 376),
            ("NT_PRPSINFO", 136),
            ("NT_SIGINFO", 128),
            ("NT_AUXV", 48),
            ("NT_FILE", 16),
            ("NT_FPREGSET", 264),
            ("NT_PRSTATUS", 376),
        ],
        "{notes:?}"
    );

    let (got, threads) = f.gdb(
        &core,
        "RISCV",
        &[
            "thread apply all info registers",
            "thread apply all info registers float",
        ],
    );
    // lldb-22 loads the core at once and agrees with gdb on every general register.
    let lldb_out = lldb_general_registers(&core, threads.len());
    assert_lldb_agrees_with_gdb(&lldb_out, &threads, 31);
    for (tid, view) in &threads {
        let t = *tid as u64;
        let r = &view.regs;
        for (i, name) in ck2core::arch::riscv64::GP_NAMES.iter().enumerate() {
            assert_eq!(r[*name], gp(t, i), "{name} of {tid}");
        }
        for (i, name) in ck2core::arch::riscv64::FP_NAMES.iter().enumerate() {
            assert_eq!(r[*name], fp(t, i), "{name} of {tid}");
        }
        let fcsr = 0x61 + t % 2 * 0x20;
        assert_eq!(r["fcsr"], fcsr, "fcsr of {tid}");
        assert_eq!(r["fflags"], 1);
        assert_eq!(r["frm"], fcsr >> 5);
    }
    assert_threads_regs_match_gdb(&dir, &got, &["general", "float"]);
}

/// The minidump format (as rust-minidump defines it) has no riscv64 context: the
/// process is refused with a message saying so, and no file is written.
#[test]
fn riscv64_minidump_is_refused_clearly() {
    let dir = scratch("rv-minidump").join("dump");
    let f = Foreign {
        pid: 70,
        page: PAGE,
        base: BASE,
        auxv: vec![6, PAGE, 16, 0x112d],
    };
    write_foreign(&dir, &f, "RISCV", rv_core);
    let out = dir.parent().unwrap().join("dumps");
    let o = ck2core(&[
        "minidump",
        dir.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("failed   pid 70 (rv): minidumps of riscv64 processes are not supported"),
        "{err}"
    );
    assert!(err.contains("no riscv64 thread context"), "{err}");
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        0,
        "nothing written"
    );
}
