//! 32-bit (ia32 compat) tasks of x86_64 checkpoints: CRIU keeps them in
//! `thread_info_x86` with `gpregs.mode` COMPAT, and the kernel dumps them with its
//! `x86_32_regsets`: NT_PRSTATUS (i386 `user_regs_struct`, 17 words), NT_PRFPREG
//! (`user_i387_ia32_struct`, the 108-byte FSAVE image the kernel converts from
//! FXSAVE), NT_PRXFPREG (the 512-byte FXSAVE image) and NT_X86_XSTATE, in an
//! ELFCLASS32 EM_386 core.

use super::x86_64::{tag_word, Regs};
use super::RegSet;

/// NT_PRXFPREG
pub const NT_PRXFPREG: u32 = 0x46e6_2b7f;

/// gdb's names of the i386 `user_regs_struct` words, in kernel order, with the
/// index of the same register in x86-64's `user_regs_struct` (CRIU's field).
pub const GP: [(&str, usize); 17] = [
    ("ebx", 5),
    ("ecx", 11),
    ("edx", 12),
    ("esi", 13),
    ("edi", 14),
    ("ebp", 4),
    ("eax", 10),
    ("ds", 23),
    ("es", 24),
    ("fs", 25),
    ("gs", 26),
    ("orig_eax", 15),
    ("eip", 16),
    ("cs", 17),
    ("eflags", 18),
    ("esp", 19),
    ("ss", 20),
];

/// A general register by its i386 name.
pub fn get(r: &Regs, name: &str) -> Option<u32> {
    GP.iter()
        .find(|(n, _)| *n == name)
        .map(|(_, i)| r.gp[*i] as u32)
}

/// `pr_reg` of NT_PRSTATUS: 17 words, 68 bytes.
pub fn prstatus_regs(r: &Regs) -> Vec<u8> {
    GP.iter()
        .flat_map(|(_, i)| (r.gp[*i] as u32).to_le_bytes())
        .collect()
}

/// The register notes after NT_PRSTATUS, in `x86_32_regsets` order.
pub fn regsets(r: &Regs) -> Vec<RegSet> {
    let Some(fpu) = &r.fpu else {
        return Vec::new();
    };
    let mut out = vec![
        RegSet {
            name: "CORE",
            ntype: 2,
            data: fsave(r, &fpu.fxsave),
        },
        RegSet {
            name: "LINUX",
            ntype: NT_PRXFPREG,
            data: fpu.fxsave.to_vec(),
        },
    ];
    if let Some(xs) = r.xstate() {
        out.push(RegSet {
            name: "LINUX",
            ntype: 0x202,
            data: xs,
        });
    }
    out
}

/// `user_i387_ia32_struct` from the FXSAVE image, as the kernel's
/// convert_from_fxsr does on x86_64: the full tag word rebuilt from the abridged
/// one, fip/foo from the 64-bit pointers, fcs and fos from the task's cs and ds
/// (which a 64-bit FXSAVE does not keep), 80-bit registers packed.
fn fsave(r: &Regs, fx: &[u8; 512]) -> Vec<u8> {
    let u16at = |o: usize| u16::from_le_bytes([fx[o], fx[o + 1]]) as u32;
    let u32at = |o: usize| u32::from_le_bytes(fx[o..o + 4].try_into().unwrap());
    let mut d = Vec::with_capacity(108);
    let words = [
        u16at(0) | 0xffff_0000,
        u16at(2) | 0xffff_0000,
        tag_word(fx),
        u32at(8),
        r.gp[17] as u32,
        u32at(16),
        r.gp[23] as u32 | 0xffff_0000,
    ];
    for w in words {
        d.extend_from_slice(&w.to_le_bytes());
    }
    for i in 0..8 {
        d.extend_from_slice(&fx[32 + 16 * i..42 + 16 * i]);
    }
    d
}

/// Registers grouped as gdb shows them, values as hex strings.
pub fn groups(r: &Regs) -> Vec<(&'static str, Vec<(String, String)>)> {
    let hex = |v: u32| format!("{v:#x}");
    let general = [
        "eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", "eip", "eflags", "cs", "ss", "ds",
        "es", "fs", "gs", "orig_eax",
    ]
    .iter()
    .map(|n| (n.to_string(), hex(get(r, n).unwrap_or(0))))
    .collect();
    let mut out = vec![("general", general)];
    // The FPU and vector state is the 64-bit task's, minus the registers a 32-bit
    // task cannot name.
    for (group, regs) in r.groups().into_iter().skip(1) {
        let keep = |n: &str| {
            let idx: Option<usize> = n
                .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                .parse()
                .ok();
            !(n.starts_with("xmm") || n.starts_with("ymm")) || idx.is_some_and(|i| i < 8)
        };
        let regs = regs
            .into_iter()
            .filter(|(n, _)| keep(n))
            .map(|(n, v)| match n.as_str() {
                // fioff/fooff are 32-bit on i386.
                "fioff" | "fooff" => {
                    let x = u64::from_str_radix(v.trim_start_matches("0x"), 16).unwrap_or(0);
                    (n, hex(x as u32))
                }
                _ => (n, v),
            })
            .collect();
        out.push((group, regs));
    }
    out
}
