//! AArch64 registers: CRIU's `thread_info_aarch64` to `user_pt_regs`
//! (NT_PRSTATUS), `user_fpsimd_state` (NT_PRFPREG), TPIDR_EL0 (NT_ARM_TLS) and the
//! pointer-authentication mask (NT_ARM_PAC_MASK), which gdb needs to strip PAC bits
//! from return addresses while unwinding.

use super::RegSet;
use crate::error::{Error, Result};
use crate::images::pb;

/// NT_ARM_TLS
pub const NT_ARM_TLS: u32 = 0x401;
/// NT_ARM_PAC_MASK
pub const NT_ARM_PAC_MASK: u32 = 0x406;
/// AT_HWCAP bit for address authentication.
const HWCAP_PACA: u64 = 1 << 30;
/// PAC bits for a 48-bit virtual address space: GENMASK(54, 48). CRIU does not
/// record the mask; 48-bit VA is what Linux uses by default on arm64.
const PAC_MASK_VA48: u64 = 0x007f_0000_0000_0000;

/// A thread's AArch64 register state.
#[derive(Debug, Clone)]
pub struct Regs {
    /// x0..x30.
    pub x: [u64; 31],
    /// Stack pointer.
    pub sp: u64,
    /// Program counter.
    pub pc: u64,
    /// PSTATE (gdb's cpsr).
    pub pstate: u64,
    /// v0..v31 (16 bytes each, little-endian), fpsr, fpcr; absent if not recorded.
    pub fpsimd: Option<([u8; 512], u32, u32)>,
    /// TPIDR_EL0.
    pub tls: u64,
    /// CRIU saved pointer-authentication keys: the CPU had PAC.
    pub pac: bool,
}

impl Regs {
    /// Decodes `thread_info_aarch64`, checking array lengths.
    pub fn decode(member: &str, ti: &pb::ThreadInfoAarch64) -> Result<Regs> {
        let g = ti
            .gpregs
            .as_ref()
            .ok_or_else(|| Error::image(member, "ti_aarch64.gpregs is missing"))?;
        if g.regs.len() != 31 {
            return Err(Error::image(
                member,
                format!(
                    "ti_aarch64.gpregs.regs has {} words, expected 31",
                    g.regs.len()
                ),
            ));
        }
        let mut x = [0u64; 31];
        x.copy_from_slice(&g.regs);
        let fpsimd = match &ti.fpsimd {
            None => None,
            Some(f) => {
                if f.vregs.len() != 64 {
                    return Err(Error::image(
                        member,
                        format!(
                            "ti_aarch64.fpsimd.vregs has {} words, expected 64",
                            f.vregs.len()
                        ),
                    ));
                }
                let mut v = [0u8; 512];
                for (i, w) in f.vregs.iter().enumerate() {
                    v[8 * i..8 * i + 8].copy_from_slice(&w.to_le_bytes());
                }
                Some((v, f.fpsr.unwrap_or(0), f.fpcr.unwrap_or(0)))
            }
        };
        Ok(Regs {
            x,
            sp: g.sp.unwrap_or(0),
            pc: g.pc.unwrap_or(0),
            pstate: g.pstate.unwrap_or(0),
            fpsimd,
            tls: ti.tls.unwrap_or(0),
            pac: ti.pac_keys.is_some(),
        })
    }

    /// `pr_reg`: user_pt_regs, 272 bytes.
    pub fn prstatus_regs(&self) -> Vec<u8> {
        self.x
            .iter()
            .chain([&self.sp, &self.pc, &self.pstate])
            .flat_map(|w| w.to_le_bytes())
            .collect()
    }

    /// The register notes after NT_PRSTATUS, as Linux writes them.
    pub fn regsets(&self, hwcap: u64) -> Vec<RegSet> {
        let mut out = Vec::new();
        if let Some((v, fpsr, fpcr)) = &self.fpsimd {
            let mut d = v.to_vec();
            d.extend_from_slice(&fpsr.to_le_bytes());
            d.extend_from_slice(&fpcr.to_le_bytes());
            d.extend_from_slice(&[0; 8]);
            out.push(RegSet {
                name: "CORE",
                ntype: 2,
                data: d,
            });
        }
        out.push(RegSet {
            name: "LINUX",
            ntype: NT_ARM_TLS,
            data: self.tls.to_le_bytes().to_vec(),
        });
        if self.pac || hwcap & HWCAP_PACA != 0 {
            let mask = [PAC_MASK_VA48.to_le_bytes(), PAC_MASK_VA48.to_le_bytes()].concat();
            out.push(RegSet {
                name: "LINUX",
                ntype: NT_ARM_PAC_MASK,
                data: mask,
            });
        }
        out
    }

    /// Registers grouped as gdb shows them, values as hex strings.
    pub fn groups(&self) -> Vec<(&'static str, Vec<(String, String)>)> {
        let hex = |v: u64| format!("{v:#x}");
        let mut general: Vec<(String, String)> =
            (0..31).map(|i| (format!("x{i}"), hex(self.x[i]))).collect();
        general.push(("sp".into(), hex(self.sp)));
        general.push(("pc".into(), hex(self.pc)));
        general.push(("cpsr".into(), hex(self.pstate)));
        general.push(("tpidr".into(), hex(self.tls)));
        let mut out = vec![("general", general)];
        if let Some((v, fpsr, fpcr)) = &self.fpsimd {
            let mut vector: Vec<(String, String)> = (0..32)
                .map(|i| {
                    let lo = u64::from_le_bytes(v[16 * i..16 * i + 8].try_into().unwrap());
                    let hi = u64::from_le_bytes(v[16 * i + 8..16 * i + 16].try_into().unwrap());
                    let s = if hi == 0 {
                        format!("{lo:#x}")
                    } else {
                        format!("{hi:#x}{lo:016x}")
                    };
                    (format!("v{i}"), s)
                })
                .collect();
            vector.push(("fpsr".into(), format!("{fpsr:#x}")));
            vector.push(("fpcr".into(), format!("{fpcr:#x}")));
            out.push(("vector", vector));
        }
        out
    }
}
