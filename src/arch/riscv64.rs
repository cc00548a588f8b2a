//! riscv64 registers: CRIU's `thread_info_riscv64` to the kernel's
//! `user_regs_struct` (NT_PRSTATUS: pc, then x1..x31) and `__riscv_d_ext_state`
//! (NT_PRFPREG: f0..f31, fcsr, padded to 264 bytes as the kernel's ELF_NFPREG of
//! 33 longs makes it, which is also the size gdb expects for 64-bit FP registers).

use super::RegSet;
use crate::error::{Error, Result};
use crate::images::pb;

/// gdb's names of the general registers in `user_regs_struct` order (x8 is `fp`).
pub const GP_NAMES: [&str; 32] = [
    "pc", "ra", "sp", "gp", "tp", "t0", "t1", "t2", "fp", "s1", "a0", "a1", "a2", "a3", "a4", "a5",
    "a6", "a7", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11", "t3", "t4", "t5",
    "t6",
];

/// gdb's names of f0..f31 (the ABI names).
pub const FP_NAMES: [&str; 32] = [
    "ft0", "ft1", "ft2", "ft3", "ft4", "ft5", "ft6", "ft7", "fs0", "fs1", "fa0", "fa1", "fa2",
    "fa3", "fa4", "fa5", "fa6", "fa7", "fs2", "fs3", "fs4", "fs5", "fs6", "fs7", "fs8", "fs9",
    "fs10", "fs11", "ft8", "ft9", "ft10", "ft11",
];

/// A thread's riscv64 register state.
#[derive(Debug, Clone)]
pub struct Regs {
    /// `user_regs_struct`: pc, then x1..x31.
    pub gp: [u64; 32],
    /// f0..f31 and fcsr, absent if CRIU recorded none.
    pub fp: Option<([u64; 32], u32)>,
}

impl Regs {
    /// Decodes `thread_info_riscv64`, checking the FP array length.
    pub fn decode(member: &str, ti: &pb::ThreadInfoRiscv64) -> Result<Regs> {
        let g = ti
            .gpregs
            .as_ref()
            .ok_or_else(|| Error::image(member, "ti_riscv64.gpregs is missing"))?;
        let gp = [
            g.pc, g.ra, g.sp, g.gp, g.tp, g.t0, g.t1, g.t2, g.s0, g.s1, g.a0, g.a1, g.a2, g.a3,
            g.a4, g.a5, g.a6, g.a7, g.s2, g.s3, g.s4, g.s5, g.s6, g.s7, g.s8, g.s9, g.s10, g.s11,
            g.t3, g.t4, g.t5, g.t6,
        ]
        .map(|v| v.unwrap_or(0));
        let fp = match &ti.fpsimd {
            None => None,
            Some(d) => {
                let f: [u64; 32] = d.f.as_slice().try_into().map_err(|_| {
                    Error::image(
                        member,
                        format!("ti_riscv64.fpsimd.f has {} words, expected 32", d.f.len()),
                    )
                })?;
                Some((f, d.fcsr.unwrap_or(0)))
            }
        };
        Ok(Regs { gp, fp })
    }

    /// `pr_reg` of NT_PRSTATUS: 32 longs, 256 bytes.
    pub fn prstatus_regs(&self) -> Vec<u8> {
        self.gp.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    /// The register notes after NT_PRSTATUS, as Linux writes them.
    pub fn regsets(&self) -> Vec<RegSet> {
        let Some((f, fcsr)) = &self.fp else {
            return Vec::new();
        };
        let mut d: Vec<u8> = f.iter().flat_map(|w| w.to_le_bytes()).collect();
        d.extend_from_slice(&fcsr.to_le_bytes());
        d.extend_from_slice(&[0; 4]);
        vec![RegSet {
            name: "CORE",
            ntype: 2,
            data: d,
        }]
    }

    /// Registers grouped as gdb shows them, values as hex strings.
    pub fn groups(&self) -> Vec<(&'static str, Vec<(String, String)>)> {
        let hex = |v: u64| format!("{v:#x}");
        // gdb lists pc after x1..x31.
        let mut general: Vec<(String, String)> = (1..32)
            .map(|i| (GP_NAMES[i].to_string(), hex(self.gp[i])))
            .collect();
        general.push(("pc".into(), hex(self.gp[0])));
        let mut out = vec![("general", general)];
        if let Some((f, fcsr)) = &self.fp {
            let mut float: Vec<(String, String)> = FP_NAMES
                .iter()
                .zip(f)
                .map(|(n, v)| (n.to_string(), hex(*v)))
                .collect();
            float.push(("fflags".into(), hex((fcsr & 0x1f) as u64)));
            float.push(("frm".into(), hex(((fcsr >> 5) & 7) as u64)));
            float.push(("fcsr".into(), hex(*fcsr as u64)));
            out.push(("float", float));
        }
        out
    }
}
