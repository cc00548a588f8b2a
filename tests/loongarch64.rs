//! loongarch64 checkpoints, converted on whatever machine runs the tests: a synthetic
//! two-thread checkpoint read back with lldb-22 (Debian's gdb-multiarch 13 has no
//! loongarch target) and readelf.

mod common;

use ck2core::arch::loongarch64::{FCC_NAMES, FP_NAMES, GP_NAMES};
use ck2core::images::pb;
use common::synth::*;
use common::*;

const BASE: u64 = 0x3f_0000_0000;
/// loongarch64 Linux runs with 16 KiB pages.
const LPAGE: u64 = 16384;

fn gp(t: u64, i: usize) -> u64 {
    match i {
        0 => 0,                   // r0 is hardwired to zero
        3 => BASE + LPAGE - 0x40, // sp, in the saved page
        _ => 0x1000 * t + i as u64,
    }
}

/// In the second mapping's saved page: lldb reads the instruction at the pc and
/// reports an error if the core does not hold it.
fn pc(t: u64) -> u64 {
    BASE + 4 * LPAGE + 0x100 + 4 * t
}

fn fp(t: u64, i: usize) -> u64 {
    0x4000_0000_0000_0000 + (t << 16) + i as u64
}

/// fcc0..fcc7: 0 or 1 each, a different pattern per thread.
fn fcc(t: u64) -> u64 {
    if t % 2 == 0 {
        0x0001_0001_0001_0001
    } else {
        0x0100_0100_0001_0100
    }
}

fn fcsr(t: u64) -> u32 {
    // The rounding mode (bits 8-9): 3 for even threads, 1 for odd ones.
    if t % 2 == 0 {
        0x300
    } else {
        0x100
    }
}

fn la_core(tid: u32, leader: bool) -> pb::CoreEntry {
    let t = tid as u64;
    let regs: Vec<u64> = (0..32).map(|i| gp(t, i)).collect();
    let mut core = x86_core(tid, "la", leader);
    core.mtype = Some(7);
    core.thread_info = None;
    core.ti_loongarch64 = Some(pb::ThreadInfoLoongarch64 {
        clear_tid_addr: Some(0),
        tls: Some(regs[2]),
        gpregs: Some(pb::UserLoongarch64GpregsEntry {
            regs,
            pc: Some(pc(t)),
        }),
        fpregs: Some(pb::UserLoongarch64FpregsEntry {
            regs: (0..32).map(|i| fp(t, i)).collect(),
            fcc: Some(fcc(t)),
            fcsr: Some(fcsr(t)),
        }),
    });
    core
}

#[test]
fn synthetic_loongarch64_registers_memory_and_notes() {
    let root = scratch("la64-synth");
    let dir = root.join("dump");
    let f = Foreign {
        pid: 90,
        page: LPAGE,
        base: BASE,
        auxv: vec![6, LPAGE, 16, 0x3f7],
    };
    write_foreign(&dir, &f, "LOONG", la_core);
    let core = f.convert(&dir);

    let h = readelf_headers(&core);
    assert_eq!(header_field(&h, "Class"), "ELF64");
    assert!(header_field(&h, "Data").contains("little endian"), "{h}");
    assert_eq!(header_field(&h, "Machine"), "LoongArch");
    assert_eq!(header_field(&h, "Flags"), "0x0");
    let notes = readelf_notes(&core);
    let sizes: Vec<(&str, usize)> = notes.iter().map(|(_, n, d)| (d.as_str(), *n)).collect();
    assert_eq!(
        &sizes[..7],
        [
            ("NT_PRSTATUS", 480),
            ("NT_PRPSINFO", 136),
            ("NT_SIGINFO", 128),
            ("NT_AUXV", 48),
            ("NT_FILE", 16),
            ("NT_FPREGSET", 272),
            ("NT_PRSTATUS", 480),
        ],
        "{notes:?}"
    );

    let mut commands = vec!["thread list".to_string()];
    for n in 1..=2 {
        commands.push(format!("thread select {n}"));
        commands.push("register read --all".into());
    }
    commands.push(format!("x/s {:#x}", f.text_at()));
    // "LASTWORD" ends the mapping unterminated: x/s would read past it.
    commands.push(format!("memory read -f c -c 8 {:#x}", f.last_word_at()));
    commands.push(format!("x/s {:#x}", f.second_at()));
    let commands: Vec<&str> = commands.iter().map(String::as_str).collect();
    let got = lldb(&core, &commands);
    let bad: Vec<&str> = got
        .lines()
        .filter(|l| {
            let l = l.to_lowercase();
            l.contains("warning") || l.contains("error")
        })
        .collect();
    assert_eq!(bad, Vec::<&str>::new(), "{got}");
    assert!(got.contains("(loongarch64) was loaded"), "{got}");
    let threads = lldb_threads(&got);
    assert_eq!(
        threads.keys().copied().collect::<Vec<_>>(),
        [90, 91],
        "{got}"
    );
    for (tid, r) in &threads {
        let t = *tid as u64;
        for (i, name) in GP_NAMES.iter().enumerate() {
            assert_eq!(r[*name], gp(t, i), "{name} of {tid}");
        }
        assert_eq!(r["pc"], pc(t), "pc of {tid}");
        assert_eq!(r["orig_a0"], 0, "orig_a0 of {tid}");
        assert_eq!(r["badv"], 0, "badv of {tid}");
        for (i, name) in FP_NAMES.iter().enumerate() {
            assert_eq!(r[*name], fp(t, i), "{name} of {tid}");
        }
        for (i, name) in FCC_NAMES.iter().enumerate() {
            assert_eq!(r[*name], (fcc(t) >> (8 * i)) & 0xff, "{name} of {tid}");
        }
        assert_eq!(r["fcsr"], fcsr(t) as u64, "fcsr of {tid}");
    }
    assert!(got.contains("\"LOONG-PAGE\""), "{got}");
    assert!(
        got.contains(&format!("{:#x}: LASTWORD", f.last_word_at())),
        "{got}"
    );
    assert!(got.contains("\"SECOND-VMA\""), "{got}");

    // ck2core threads --regs names every register as lldb does, with its value.
    let out = ck2core(&["threads", dir.to_str().unwrap(), "--regs", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut checked = 0;
    for th in json["threads"].as_array().unwrap() {
        let tid = th["tid"].as_u64().unwrap() as u32;
        for g in ["general", "float"] {
            for (name, v) in th["registers"][g].as_object().unwrap() {
                let want =
                    u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
                assert_eq!(
                    threads[&tid].get(name),
                    Some(&want),
                    "ck2core threads says {name} = {v} for {tid}; lldb:\n{got}"
                );
                checked += 1;
            }
        }
    }
    // 35 general and 41 float registers per thread.
    assert_eq!(checked, 2 * (35 + 41));
}
