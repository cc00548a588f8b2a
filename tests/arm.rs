//! 32-bit ARM checkpoints, converted on whatever machine runs the tests: a
//! synthetic two-thread checkpoint read back with gdb-multiarch and readelf, as an
//! ELFCLASS32 core.

mod common;

use ck2core::images::pb;
use common::synth::*;
use common::*;

const BASE: u64 = 0x7e00_0000;
/// AT_HWCAP of an ARMv7 with VFPv4-D32 and NEON (half thumb fastmult vfp edsp neon
/// vfpv3 tls vfpv4 idiva idivt vfpd32 lpae).
const HWCAP: u64 = 0x1fb0d6;

fn gp(t: u32, i: usize) -> u32 {
    match i {
        13 => (BASE + PAGE - 0x40) as u32, // sp
        15 => 0x1_0000 + 4 * t,            // pc
        16 => 0x6000_0010,                 // cpsr: user mode, Z and C
        _ => 0x1000 * t + i as u32,
    }
}

fn d(t: u32, i: usize) -> u64 {
    0x4000_0000_0000_0000 + ((t as u64) << 16) + i as u64
}

fn arm_core(tid: u32, leader: bool) -> pb::CoreEntry {
    let g: Vec<u32> = (0..18).map(|i| gp(tid, i)).collect();
    let mut core = x86_core(tid, "arm", leader);
    core.mtype = Some(2);
    core.thread_info = None;
    core.ti_arm = Some(pb::ThreadInfoArm {
        clear_tid_addr: Some(0),
        tls: Some(0xb6ff_0000 + tid),
        gpregs: Some(pb::UserArmRegsEntry {
            r0: Some(g[0]),
            r1: Some(g[1]),
            r2: Some(g[2]),
            r3: Some(g[3]),
            r4: Some(g[4]),
            r5: Some(g[5]),
            r6: Some(g[6]),
            r7: Some(g[7]),
            r8: Some(g[8]),
            r9: Some(g[9]),
            r10: Some(g[10]),
            fp: Some(g[11]),
            ip: Some(g[12]),
            sp: Some(g[13]),
            lr: Some(g[14]),
            pc: Some(g[15]),
            cpsr: Some(g[16]),
            orig_r0: Some(g[17]),
        }),
        fpstate: Some(pb::UserArmVfpstateEntry {
            vfp_regs: (0..32).map(|i| d(tid, i)).collect(),
            fpscr: Some(0x0300_0000 + tid),
            fpexc: Some(0x4000_0000),
            fpinst: Some(0),
            fpinst2: Some(0),
        }),
    });
    core
}

#[test]
fn synthetic_arm_registers_memory_and_notes() {
    let root = scratch("arm-synth");
    let dir = root.join("dump");
    let f = Foreign {
        pid: 50,
        page: PAGE,
        base: BASE,
        auxv: vec![6, PAGE, 16, HWCAP],
    };
    write_foreign(&dir, &f, "ARM32", arm_core);
    let core = f.convert(&dir);

    let h = readelf_headers(&core);
    assert_eq!(header_field(&h, "Class"), "ELF32");
    assert!(header_field(&h, "Data").contains("little endian"), "{h}");
    assert_eq!(header_field(&h, "Machine"), "ARM");
    assert_eq!(header_field(&h, "Flags"), "0x0");
    assert_eq!(header_field(&h, "Size of this header"), "52 (bytes)");
    assert_eq!(header_field(&h, "Size of program headers"), "32 (bytes)");
    assert!(
        h.contains("LOAD           0x001000 0x7e000000 0x00000000 0x02000 0x02000 RW  0x1000"),
        "{h}"
    );
    let notes = readelf_notes(&core);
    let sizes: Vec<(&str, usize)> = notes.iter().map(|(_, n, d)| (d.as_str(), *n)).collect();
    assert_eq!(
        &sizes[..10],
        [
            ("NT_PRSTATUS", 148),
            ("NT_PRPSINFO", 124),
            ("NT_SIGINFO", 128),
            ("NT_AUXV", 24),
            ("NT_FILE", 8),
            ("NT_ARM_VFP", 260),
            ("NT_ARM_TLS", 4),
            ("NT_PRSTATUS", 148),
            ("NT_ARM_VFP", 260),
            ("NT_ARM_TLS", 4),
        ],
        "{notes:?}"
    );

    let (got, threads) = f.gdb(
        &core,
        "ARM32",
        &["info threads", "thread apply all info all-registers"],
    );
    // lldb-22 loads the core at once and agrees with gdb on every general register.
    let lldb_out = lldb_general_registers(&core, threads.len());
    assert_lldb_agrees_with_gdb(&lldb_out, &threads, 16);
    for (tid, view) in &threads {
        let r = &view.regs;
        for (i, name) in ck2core::arch::arm::GP_NAMES.iter().enumerate() {
            assert_eq!(r[*name], gp(*tid, i) as u64, "{name} of {tid}");
        }
        for i in 0..32 {
            assert_eq!(r[&format!("d{i}")], d(*tid, i), "d{i} of {tid}");
        }
        assert_eq!(r["fpscr"], 0x0300_0000 + *tid as u64, "fpscr of {tid}");
    }
    assert_threads_regs_match_gdb(&dir, &got, &["general", "float"]);
    // gdb does not read NT_ARM_TLS from Linux arm cores; the note holds CRIU's value.
    let notes = readelf_notes_raw(&core);
    assert!(notes.contains("description data: 32 00 ff b6"), "{notes}");

    // The report speaks arm too: its register names, 32-bit stack words.
    let out = ck2core(&[
        "report",
        dir.to_str().unwrap(),
        "--json",
        "--stack-words",
        "4",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let t = &r["processes"][0]["threads"][1];
    assert_eq!(t["tid"], 51);
    for (i, name) in ck2core::arch::arm::GP_NAMES.iter().enumerate().take(16) {
        assert_eq!(
            t["registers"]["general"][*name],
            format!("{:#x}", gp(51, i)),
            "{name} in the report"
        );
    }
    assert_eq!(t["frames"][0]["pc"], format!("{:#x}", gp(51, 15)));
    assert_eq!(t["frames"][0]["trust"], "context");
    let words: Vec<u64> = t["stack"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            u64::from_str_radix(w["address"].as_str().unwrap().trim_start_matches("0x"), 16)
                .unwrap()
        })
        .collect();
    assert_eq!(
        words,
        (0..4)
            .map(|i| gp(51, 13) as u64 + 4 * i)
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_mapping_beyond_4_gib_is_refused_for_a_32_bit_task() {
    let root = scratch("arm-4g");
    let dir = root.join("dump");
    let f = Foreign {
        pid: 52,
        page: PAGE,
        base: 0xffff_f000,
        auxv: vec![6, PAGE, 16, HWCAP],
    };
    write_foreign(&dir, &f, "ARM32", arm_core);
    let o = ck2core(&[
        dir.to_str().unwrap(),
        "-o",
        root.join("cores").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("mm-52.img: vmas[0]: 0xfffff000-0x100001000 ends beyond the 4 GiB address space of a 32-bit task"),
        "{e}"
    );
}

/// A synthetic arm process as a minidump: CONTEXT_ARM with r0..r15, cpsr and the
/// VFP registers as `ck2core threads --regs` shows them, read by minidump-stackwalk.
#[test]
fn synthetic_arm_minidump() {
    let dir = scratch("arm-minidump").join("dump");
    let f = Foreign {
        pid: 50,
        page: PAGE,
        base: BASE,
        auxv: vec![6, PAGE, 16, HWCAP],
    };
    write_foreign(&dir, &f, "ARM32", arm_core);
    let ctx = minidump_read_back(&dir, 50, "CONTEXT_ARM", "arm", 2).contexts;
    for t in [50u32, 51] {
        let c = &ctx[&(t as u64)];
        for i in 0..16 {
            assert_eq!(c[&format!("iregs[{i:2}]")], gp(t, i) as u64, "r{i} of {t}");
        }
        assert_eq!(c["cpsr"], gp(t, 16) as u64);
        assert_eq!(c["float_save.fpscr"], 0x0300_0000 + t as u64);
        for i in [0usize, 17, 31] {
            assert_eq!(
                c[&format!("float_save.regs[{i:2}]")],
                d(t, i),
                "d{i} of {t}"
            );
        }
        assert_eq!(c["teb"], 0xb6ff_0000 + t as u64, "TPIDRURO");
    }
}
