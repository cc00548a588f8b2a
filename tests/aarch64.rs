//! AArch64 checkpoints, converted on whatever machine runs the tests: a synthetic one
//! (16 KiB pages, two threads, PAC) read back with gdb-multiarch, and the real
//! aarch64 fixture from ../shared when it exists (third-party data, not copied).

mod common;

use std::path::Path;

use ck2core::images::{magic, pb};
use common::synth::*;
use common::*;

const PAGE16K: u64 = 16384;
const BASE: u64 = 0x40_0000_0000;

fn a64_core(tid: u32, leader: bool) -> pb::CoreEntry {
    let t = tid as u64;
    let mut core = x86_core(tid, "a64", leader);
    core.mtype = Some(3);
    core.thread_info = None;
    core.ti_aarch64 = Some(pb::ThreadInfoAarch64 {
        clear_tid_addr: Some(0),
        tls: Some(0x7f00_0000_0000 + t),
        gpregs: Some(pb::UserAarch64RegsEntry {
            regs: (0..31).map(|i| 0x1000 * t + i).collect(),
            sp: Some(BASE + PAGE16K - 0x100),
            pc: Some(0x40_0000 + t),
            pstate: Some(0x6000_0000),
        }),
        fpsimd: Some(pb::UserAarch64FpsimdContextEntry {
            vregs: (0..64)
                .map(|i| 0x0101_0101_0000_0000 * (i % 2 + 1) + i + t * 0x100)
                .collect(),
            fpsr: Some(0x10),
            fpcr: Some(0x0300_0000),
        }),
        pac_keys: None,
    });
    core
}

#[test]
fn synthetic_aarch64_with_16k_pages_and_pac() {
    let dir = scratch("a64-synth").join("dump");
    let mut p = Proc::new(90);
    p.threads = vec![90, 91];
    write_images(&dir, &[p]);
    for (tid, leader) in [(90, true), (91, false)] {
        put(
            &dir,
            &format!("core-{tid}.img"),
            magic::CORE,
            &[a64_core(tid, leader)],
        );
    }
    // 16 KiB pages, AT_HWCAP with PACA (bit 30): gdb then reads the PAC mask.
    let vma = |s, e| pb::VmaEntry { ..anon_vma(s, e) };
    let mm = pb::MmEntry {
        mm_saved_auxv: vec![16, 1 << 30, 6, PAGE16K],
        vmas: vec![vma(BASE, BASE + 2 * PAGE16K)],
        ..Default::default()
    };
    put(&dir, "mm-90.img", magic::MM, &[mm]);
    std::fs::write(
        dir.join("pagemap-90.img"),
        pagemap(90, &[run(BASE + PAGE16K, 1, 4)]),
    )
    .unwrap();
    let mut page = vec![0u8; PAGE16K as usize];
    page[..13].copy_from_slice(b"AARCH64-PAGE\0");
    page[PAGE16K as usize - 8..].copy_from_slice(b"LASTWORD");
    std::fs::write(dir.join("pages-90.img"), page).unwrap();

    let out = dir.parent().unwrap().join("cores");
    ck2core_ok(&[dir.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    let core = CoreFile::open(&out.join("core.90"));
    let eh = core.at(0, 20);
    assert_eq!(u16::from_le_bytes([eh[18], eh[19]]), 183, "EM_AARCH64");
    let got = gdb_multiarch(
        &out.join("core.90"),
        &[
            "thread apply all info registers",
            "thread apply all p/x $v1.d.u",
            "p/x $pauth_dmask",
            "p/x $pauth_cmask",
            &format!("x/s {:#x}", BASE + PAGE16K),
            &format!("x/s {:#x}", BASE + 2 * PAGE16K - 8),
        ],
    );
    assert_eq!(warnings(&got), Vec::<&str>::new(), "{got}");
    let threads = parse_threads(&got);
    assert_eq!(threads.len(), 2, "{got}");
    // lldb-22 loads the core at once and agrees with gdb on every general register.
    let lldb_out = lldb_general_registers(&out.join("core.90"), threads.len());
    assert_lldb_agrees_with_gdb(&lldb_out, &threads, 33);
    for tid in [90u32, 91] {
        let r = &threads[&tid].regs;
        let t = tid as u64;
        for i in 0..31 {
            assert_eq!(r[&format!("x{i}")], 0x1000 * t + i, "x{i} of {tid}");
        }
        assert_eq!(r["sp"], BASE + PAGE16K - 0x100);
        assert_eq!(r["pc"], 0x40_0000 + t);
        assert_eq!(r["cpsr"], 0x6000_0000);
        assert_eq!(r["fpsr"], 0x10);
        assert_eq!(r["fpcr"], 0x0300_0000);
        assert_eq!(r["tpidr"], 0x7f00_0000_0000 + t);
        // v1 = vregs[2] (low), vregs[3] (high)
        let lo = 0x0101_0101_0000_0000u64 + 2 + t * 0x100;
        let hi = 0x0202_0202_0000_0000u64 + 3 + t * 0x100;
        assert_eq!(
            threads[&tid].values[0],
            format!("{{{lo:#x}, {hi:#x}}}"),
            "v1 of {tid}"
        );
    }
    assert!(got.contains("= 0x7f000000000000"), "PAC masks:\n{got}");
    assert!(got.contains("\"AARCH64-PAGE\""), "{got}");
    assert!(got.contains("\"LASTWORD\""), "{got}");
    // NT_FILE and the ELF layout use the checkpoint's page size.
    let notes = core.notes();
    let f = notes.iter().find(|n| n.ntype == 0x4649_4c45).unwrap();
    assert_eq!(
        u64::from_le_bytes(f.desc[8..16].try_into().unwrap()),
        PAGE16K
    );
    assert_eq!(notes[0].desc.len(), 392, "aarch64 prstatus");
    assert_eq!(
        notes.iter().find(|n| n.ntype == 2).unwrap().desc.len(),
        528,
        "user_fpsimd_state"
    );
}

/// The real aarch64 checkpoint (CRIU 3.x, old pagemap format, lazy pages), when the
/// shared fixtures are beside the repository. Its registers are checked against the
/// `crit show` output that comes with it.
#[test]
fn real_aarch64_fixture_when_present() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/aarch64-loop2");
    if !fixture.exists() {
        eprintln!(
            "{} not present: third-party data is not in the repository; nothing to check",
            fixture.display()
        );
        return;
    }
    let out = scratch("a64-real");
    ck2core_ok(&[
        fixture.join("images").to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    let crit: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture.join("crit-json/core-2956.txt")).unwrap(),
    )
    .unwrap();
    let g = &crit["entries"][0]["ti_aarch64"]["gpregs"];
    let got = gdb_multiarch(&out.join("core.2956"), &["info registers", "x/4xg $sp"]);
    let hex = |v: &serde_json::Value| {
        u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
    };
    for i in 0..31 {
        assert_eq!(reg(&got, &format!("x{i}")), hex(&g["regs"][i]), "x{i}");
    }
    assert_eq!(reg(&got, "sp"), hex(&g["sp"]));
    assert_eq!(reg(&got, "pc"), hex(&g["pc"]));
    assert_eq!(reg(&got, "cpsr"), hex(&g["pstate"]));
    assert_eq!(
        reg(&got, "tpidr"),
        crit["entries"][0]["ti_aarch64"]["tls"].as_u64().unwrap()
    );
    assert!(
        !got.contains("Cannot access memory"),
        "the stack is in the core:\n{got}"
    );
}

/// A synthetic aarch64 process as a minidump: Breakpad's ARM64 context (the one
/// its Linux writer and lldb read) with every register `ck2core threads --regs`
/// shows, as minidump-stackwalk prints it, and the stack around sp.
#[test]
fn synthetic_aarch64_minidump() {
    let dir = scratch("a64-minidump").join("dump");
    let f = Foreign {
        pid: 90,
        page: PAGE16K,
        base: BASE,
        auxv: vec![16, 1 << 30, 6, PAGE16K],
    };
    // sp (BASE + PAGE16K - 0x100) lies in the untouched first page: known zeros,
    // and the saved page after it.
    write_foreign(&dir, &f, "AARCH64", a64_core);
    let StackwalkedMinidump {
        file,
        dump,
        contexts: ctx,
    } = minidump_read_back(&dir, 90, "CONTEXT_ARM64_OLD", "arm64", 2);
    assert!(
        dump.contains("processor_architecture                     = 0x8003"),
        "{dump}"
    );
    let json = ck2core(&["threads", dir.to_str().unwrap(), "--regs", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let hex = |v: &serde_json::Value| {
        u128::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
    };
    let mut checked = 0;
    for t in json["threads"].as_array().unwrap() {
        let c = &ctx[&t["tid"].as_u64().unwrap()];
        let r = &t["registers"];
        for (k, v) in r["general"].as_object().unwrap() {
            let name = match k.as_str() {
                "x29" => "x29 (fp)",
                "x30" => "x30 (lr)",
                // The thread pointer is the thread's "TEB" in a minidump.
                "tpidr" => "teb",
                n => n,
            };
            assert_eq!(c[name] as u128, hex(v), "{k}");
            checked += 1;
        }
        for (k, v) in r["vector"].as_object().unwrap() {
            let Some(i) = k.strip_prefix('v') else {
                assert_eq!(c[k.as_str()] as u128, hex(v), "{k}");
                continue;
            };
            // --dump prints each 128-bit register as `dN = 0x...`; read it here.
            let line = dump
                .lines()
                .filter(|l| l.trim_start().starts_with(&format!("d{i} ")))
                .nth(t["tid"].as_u64().unwrap() as usize - 90)
                .unwrap();
            let got = u128::from_str_radix(line.split("0x").nth(1).unwrap(), 16).unwrap();
            assert_eq!(got, hex(v), "{k}");
            checked += 1;
        }
    }
    assert!(checked >= 2 * (34 + 32), "{checked}");
    // lldb reads the same context, and the stack memory (the saved page above sp).
    let got = lldb(
        &file,
        &[
            "register read x0 sp pc cpsr fpsr fpcr",
            &format!("memory read -s1 -c12 -f c {:#x}", f.text_at()),
        ],
    );
    for (name, want) in [
        ("x0", 0x5a000u64),
        ("sp", BASE + PAGE16K - 0x100),
        ("pc", 0x40_005a),
        ("cpsr", 0x6000_0000),
        ("fpsr", 0x10),
        ("fpcr", 0x0300_0000),
    ] {
        let line = format!(
            "{name} = {want:#0w$x}",
            w = if name.starts_with("fp") || name == "cpsr" {
                10
            } else {
                18
            }
        );
        assert!(got.contains(&line), "{line} not in:\n{got}");
    }
    assert!(got.contains("AARCH64-PAGE"), "{got}");
}
