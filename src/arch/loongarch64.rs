//! loongarch64 registers: CRIU's `thread_info_loongarch64` to the kernel's
//! `user_pt_regs` (NT_PRSTATUS: r0..r31, orig_a0, csr_era, csr_badv and 10 reserved
//! words, the 45 longs of ELF_NGREG) and `user_fp_state` (NT_PRFPREG: f0..f31, fcc,
//! fcsr, padded to the 34 longs of ELF_NFPREG, 272 bytes).
//!
//! CRIU saves neither orig_a0 nor csr_badv, so both are written as 0. Its `tls` is the
//! thread pointer as its parasite read it, which is r2 (`tp`); the core carries r2 from
//! `gpregs` (the register the thread was stopped with) and `tls` is not used, so if the
//! two ever disagreed the debugger would see what the thread's registers held.
//! CRIU saves no LSX/LASX/LBT state and no CPUCFG words, so those notes are not written.

use super::RegSet;
use crate::error::{Error, Result};
use crate::images::pb;

/// The general register names gdb and lldb give r0..r31 (`user_pt_regs` order).
pub const GP_NAMES: [&str; 32] = [
    "r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9", "r10", "r11", "r12", "r13", "r14",
    "r15", "r16", "r17", "r18", "r19", "r20", "r21", "r22", "r23", "r24", "r25", "r26", "r27",
    "r28", "r29", "r30", "r31",
];

/// The names of f0..f31.
pub const FP_NAMES: [&str; 32] = [
    "f0", "f1", "f2", "f3", "f4", "f5", "f6", "f7", "f8", "f9", "f10", "f11", "f12", "f13", "f14",
    "f15", "f16", "f17", "f18", "f19", "f20", "f21", "f22", "f23", "f24", "f25", "f26", "f27",
    "f28", "f29", "f30", "f31",
];

/// The FP condition flags fcc0..fcc7, one byte each of the saved `fcc` word.
pub const FCC_NAMES: [&str; 8] = [
    "fcc0", "fcc1", "fcc2", "fcc3", "fcc4", "fcc5", "fcc6", "fcc7",
];

/// loongarch64 FP state: f0..f31, the eight condition flags, fcsr.
#[derive(Debug, Clone)]
pub struct Fp {
    /// f0..f31 (the low 64 bits of the vector registers).
    pub f: [u64; 32],
    /// fcc0..fcc7, fcc0 in the lowest byte.
    pub fcc: u64,
    /// The FP control and status register.
    pub fcsr: u32,
}

/// A thread's loongarch64 register state.
#[derive(Debug, Clone)]
pub struct Regs {
    /// r0..r31.
    pub gp: [u64; 32],
    /// The pc (the kernel's csr_era).
    pub pc: u64,
    /// FP state, absent if CRIU recorded none.
    pub fp: Option<Fp>,
}

impl Regs {
    /// Decodes `thread_info_loongarch64`, checking the array lengths.
    pub fn decode(member: &str, ti: &pb::ThreadInfoLoongarch64) -> Result<Regs> {
        let g = ti
            .gpregs
            .as_ref()
            .ok_or_else(|| Error::image(member, "ti_loongarch64.gpregs is missing"))?;
        let gp: [u64; 32] = g.regs.as_slice().try_into().map_err(|_| {
            Error::image(
                member,
                format!(
                    "ti_loongarch64.gpregs.regs has {} words, expected 32",
                    g.regs.len()
                ),
            )
        })?;
        let fp = match &ti.fpregs {
            None => None,
            Some(d) => {
                let f: [u64; 32] = d.regs.as_slice().try_into().map_err(|_| {
                    Error::image(
                        member,
                        format!(
                            "ti_loongarch64.fpregs.regs has {} words, expected 32",
                            d.regs.len()
                        ),
                    )
                })?;
                Some(Fp {
                    f,
                    fcc: d.fcc.unwrap_or(0),
                    fcsr: d.fcsr.unwrap_or(0),
                })
            }
        };
        Ok(Regs {
            gp,
            pc: g.pc.unwrap_or(0),
            fp,
        })
    }

    /// `pr_reg` of NT_PRSTATUS: `user_pt_regs`, 45 longs (360 bytes).
    pub fn prstatus_regs(&self) -> Vec<u8> {
        let mut words = self.gp.to_vec();
        // orig_a0 and csr_badv: not in CRIU's images.
        words.extend_from_slice(&[0, self.pc, 0]);
        words.resize(45, 0);
        words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    /// The register notes after NT_PRSTATUS, as Linux writes them.
    pub fn regsets(&self) -> Vec<RegSet> {
        let Some(fp) = &self.fp else {
            return Vec::new();
        };
        let mut d: Vec<u8> = fp.f.iter().flat_map(|w| w.to_le_bytes()).collect();
        d.extend_from_slice(&fp.fcc.to_le_bytes());
        d.extend_from_slice(&fp.fcsr.to_le_bytes());
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
        let mut general: Vec<(String, String)> = GP_NAMES
            .iter()
            .zip(self.gp)
            .map(|(n, v)| (n.to_string(), hex(v)))
            .collect();
        general.push(("orig_a0".into(), hex(0)));
        general.push(("pc".into(), hex(self.pc)));
        general.push(("badv".into(), hex(0)));
        let mut out = vec![("general", general)];
        if let Some(fp) = &self.fp {
            let mut float: Vec<(String, String)> = FP_NAMES
                .iter()
                .zip(fp.f)
                .map(|(n, v)| (n.to_string(), hex(v)))
                .collect();
            for (i, n) in FCC_NAMES.iter().enumerate() {
                float.push((n.to_string(), hex((fp.fcc >> (8 * i)) & 0xff)));
            }
            float.push(("fcsr".into(), hex(fp.fcsr as u64)));
            out.push(("float", float));
        }
        out
    }
}
