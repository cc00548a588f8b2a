//! 32-bit ARM registers: CRIU's `thread_info_arm` to the kernel's `pt_regs` (18
//! words, NT_PRSTATUS), `struct user_vfp` (NT_ARM_VFP: d0..d31 and fpscr, 260
//! bytes) and the TLS register TPIDRURO (NT_ARM_TLS, one word).
//!
//! A native arm kernel also writes NT_PRFPREG with the legacy FPA state, which
//! CRIU does not save (and gdb does not read when VFP is present), so it is left
//! out and `pr_fpvalid` is 0, as the kernel sets it when that note is absent.
//!
//! NT_ARM_TLS is in no arm kernel's core regsets (native or compat), and gdb (13
//! and later) does not read it from Linux arm cores: it lists `tpidruro` as
//! unavailable for every arm core. It is written anyway, after NT_ARM_VFP, so that
//! the TLS value CRIU saved is in the core for tools that do read it; gdb ignores
//! it without a warning.

use super::RegSet;
use crate::error::{Error, Result};
use crate::images::pb;

/// NT_ARM_VFP
pub const NT_ARM_VFP: u32 = 0x400;
/// NT_ARM_TLS
pub const NT_ARM_TLS: u32 = 0x401;

/// gdb's names of `pt_regs` words 0..16 (orig_r0, word 17, is no gdb register).
pub const GP_NAMES: [&str; 17] = [
    "r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9", "r10", "r11", "r12", "sp", "lr",
    "pc", "cpsr",
];

/// A thread's ARM register state.
#[derive(Debug, Clone)]
pub struct Regs {
    /// `pt_regs`: r0..r15, cpsr, orig_r0.
    pub gp: [u32; 18],
    /// d0..d31 and fpscr, absent if CRIU recorded none.
    pub vfp: Option<([u64; 32], u32)>,
    /// TPIDRURO.
    pub tls: u32,
}

impl Regs {
    /// Decodes `thread_info_arm`, checking the VFP array length.
    pub fn decode(member: &str, ti: &pb::ThreadInfoArm) -> Result<Regs> {
        let g = ti
            .gpregs
            .as_ref()
            .ok_or_else(|| Error::image(member, "ti_arm.gpregs is missing"))?;
        let gp = [
            g.r0, g.r1, g.r2, g.r3, g.r4, g.r5, g.r6, g.r7, g.r8, g.r9, g.r10, g.fp, g.ip, g.sp,
            g.lr, g.pc, g.cpsr, g.orig_r0,
        ]
        .map(|v| v.unwrap_or(0));
        let vfp = match &ti.fpstate {
            None => None,
            Some(f) => {
                let d: [u64; 32] = f.vfp_regs.as_slice().try_into().map_err(|_| {
                    Error::image(
                        member,
                        format!(
                            "ti_arm.fpstate.vfp_regs has {} words, expected 32",
                            f.vfp_regs.len()
                        ),
                    )
                })?;
                Some((d, f.fpscr.unwrap_or(0)))
            }
        };
        Ok(Regs {
            gp,
            vfp,
            tls: ti.tls.unwrap_or(0),
        })
    }

    /// `pr_reg` of NT_PRSTATUS: 18 words, 72 bytes.
    pub fn prstatus_regs(&self) -> Vec<u8> {
        self.gp.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    /// The register notes after NT_PRSTATUS.
    pub fn regsets(&self) -> Vec<RegSet> {
        let mut out = Vec::new();
        if let Some((d, fpscr)) = &self.vfp {
            let mut data: Vec<u8> = d.iter().flat_map(|w| w.to_le_bytes()).collect();
            data.extend_from_slice(&fpscr.to_le_bytes());
            out.push(RegSet {
                name: "LINUX",
                ntype: NT_ARM_VFP,
                data,
            });
        }
        out.push(RegSet {
            name: "LINUX",
            ntype: NT_ARM_TLS,
            data: self.tls.to_le_bytes().to_vec(),
        });
        out
    }

    /// Registers grouped as gdb shows them, values as hex strings.
    pub fn groups(&self) -> Vec<(&'static str, Vec<(String, String)>)> {
        let hex = |v: u64| format!("{v:#x}");
        let general: Vec<(String, String)> = GP_NAMES
            .iter()
            .zip(self.gp)
            .map(|(n, v)| (n.to_string(), hex(v as u64)))
            .collect();
        let mut out = vec![
            ("general", general),
            ("tls", vec![("tpidruro".into(), hex(self.tls as u64))]),
        ];
        if let Some((d, fpscr)) = &self.vfp {
            let mut float: Vec<(String, String)> =
                (0..32).map(|i| (format!("d{i}"), hex(d[i]))).collect();
            float.push(("fpscr".into(), hex(*fpscr as u64)));
            out.push(("float", float));
        }
        out
    }
}
