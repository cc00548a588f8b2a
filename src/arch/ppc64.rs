//! ppc64le registers: CRIU's `thread_info_ppc64` to the kernel's `pt_regs` as
//! ELF_NGREG (48) longs (NT_PRSTATUS), fpr0..fpr31 and fpscr (NT_PRFPREG, 33
//! doubles), the Altivec state (NT_PPC_VMX: vr0..vr31, vscr, vrsave, 34 quadwords)
//! and the low halves of vs0..vs31 (NT_PPC_VSX), in the order of the kernel's
//! `native_regsets`. Only little-endian images are read (ppc64le; CRIU stores
//! vector registers as the raw memory of each quadword, in host order).

use super::RegSet;
use crate::error::{Error, Result};
use crate::images::pb;

/// NT_PPC_VMX
pub const NT_PPC_VMX: u32 = 0x100;
/// NT_PPC_VSX
pub const NT_PPC_VSX: u32 = 0x102;

/// Indexes in `pt_regs` (arch/powerpc/include/uapi/asm/ptrace.h).
const PT_NIP: usize = 32;
const PT_MSR: usize = 33;
const PT_ORIG_R3: usize = 34;
const PT_CTR: usize = 35;
const PT_LNK: usize = 36;
const PT_XER: usize = 37;
const PT_CCR: usize = 38;
const PT_SOFTE: usize = 39;
const PT_TRAP: usize = 40;

/// A thread's ppc64 register state.
#[derive(Debug, Clone)]
pub struct Regs {
    /// `pt_regs` as the kernel's gpr_get writes it: 48 longs.
    pub pt: [u64; 48],
    /// fpr0..fpr31, fpscr.
    pub fp: Option<[u64; 33]>,
    /// vr0..vr31 and the vscr slot (33 quadwords, memory bytes), and vrsave.
    pub vmx: Option<(Vec<u8>, u32)>,
    /// Low doublewords of vs0..vs31.
    pub vsx: Option<[u64; 32]>,
}

fn words<const N: usize>(member: &str, field: &str, v: &[u64]) -> Result<[u64; N]> {
    v.try_into().map_err(|_| {
        Error::image(
            member,
            format!("{field} has {} words, expected {N}", v.len()),
        )
    })
}

impl Regs {
    /// Decodes `thread_info_ppc64`, checking every array length.
    ///
    /// A thread inside a hardware transaction has its running registers in
    /// `tmstate` and the transaction's checkpointed ones in the main fields (CRIU
    /// swaps them to build its restore frame). The running ones are what the
    /// kernel's NT_PRSTATUS and FP/vector notes hold, so they are taken; the
    /// checkpointed state (the kernel's NT_PPC_TM_* notes) is not written.
    pub fn decode(member: &str, ti: &pb::ThreadInfoPpc64) -> Result<Regs> {
        let (prefix, g, fpstate, vrstate, vsxstate) = match &ti.tmstate {
            Some(tm) => (
                "ti_ppc64.tmstate",
                tm.gpregs.as_ref(),
                tm.fpstate.as_ref(),
                tm.vrstate.as_ref(),
                tm.vsxstate.as_ref(),
            ),
            None => (
                "ti_ppc64",
                ti.gpregs.as_ref(),
                ti.fpstate.as_ref(),
                ti.vrstate.as_ref(),
                ti.vsxstate.as_ref(),
            ),
        };
        let g = g.ok_or_else(|| Error::image(member, format!("{prefix}.gpregs is missing")))?;
        let gpr: [u64; 32] = words(member, &format!("{prefix}.gpregs.gpr"), &g.gpr)?;
        let mut pt = [0u64; 48];
        pt[..32].copy_from_slice(&gpr);
        for (i, v) in [
            (PT_NIP, g.nip),
            (PT_MSR, g.msr),
            (PT_ORIG_R3, g.orig_gpr3),
            (PT_CTR, g.ctr),
            (PT_LNK, g.link),
            (PT_XER, g.xer),
            (PT_CCR, g.ccr),
            (PT_TRAP, g.trap),
        ] {
            pt[i] = v.unwrap_or(0);
        }
        // The kernel always reports interrupts soft-enabled to user space.
        pt[PT_SOFTE] = 1;
        let fp = fpstate
            .map(|f| words::<33>(member, &format!("{prefix}.fpstate.fpregs"), &f.fpregs))
            .transpose()?;
        let vmx = vrstate
            .map(|v| -> Result<(Vec<u8>, u32)> {
                let w: [u64; 66] = words(member, &format!("{prefix}.vrstate.vrregs"), &v.vrregs)?;
                let bytes = w.iter().flat_map(|x| x.to_le_bytes()).collect();
                Ok((bytes, v.vrsave.unwrap_or(0)))
            })
            .transpose()?;
        let vsx = vsxstate
            .map(|v| words::<32>(member, &format!("{prefix}.vsxstate.vsxregs"), &v.vsxregs))
            .transpose()?;
        Ok(Regs { pt, fp, vmx, vsx })
    }

    /// `pr_reg` of NT_PRSTATUS: 48 longs, 384 bytes.
    pub fn prstatus_regs(&self) -> Vec<u8> {
        self.pt.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    /// Program counter (nip).
    pub fn pc(&self) -> u64 {
        self.pt[PT_NIP]
    }

    /// The register notes after NT_PRSTATUS, as Linux writes them.
    pub fn regsets(&self) -> Vec<RegSet> {
        let mut out = Vec::new();
        if let Some(fp) = &self.fp {
            out.push(RegSet {
                name: "CORE",
                ntype: 2,
                data: fp.iter().flat_map(|w| w.to_le_bytes()).collect(),
            });
        }
        if let Some((vr, vrsave)) = &self.vmx {
            // vr_get: the 33 quadwords, then vrsave in the low word of a 34th.
            let mut d = vr.clone();
            d.extend_from_slice(&vrsave.to_le_bytes());
            d.extend_from_slice(&[0; 12]);
            out.push(RegSet {
                name: "LINUX",
                ntype: NT_PPC_VMX,
                data: d,
            });
        }
        if let Some(vs) = &self.vsx {
            out.push(RegSet {
                name: "LINUX",
                ntype: NT_PPC_VSX,
                data: vs.iter().flat_map(|w| w.to_le_bytes()).collect(),
            });
        }
        out
    }

    /// Registers grouped as gdb shows them, values as hex strings.
    pub fn groups(&self) -> Vec<(&'static str, Vec<(String, String)>)> {
        let hex = |v: u64| format!("{v:#x}");
        let mut general: Vec<(String, String)> = (0..32)
            .map(|i| (format!("r{i}"), hex(self.pt[i])))
            .collect();
        for (name, i) in [
            ("pc", PT_NIP),
            ("msr", PT_MSR),
            ("cr", PT_CCR),
            ("lr", PT_LNK),
            ("ctr", PT_CTR),
            ("xer", PT_XER),
            ("orig_r3", PT_ORIG_R3),
            ("trap", PT_TRAP),
        ] {
            // gdb shows cr and xer as 32-bit registers.
            let v = if matches!(name, "cr" | "xer") {
                self.pt[i] & 0xffff_ffff
            } else {
                self.pt[i]
            };
            general.push((name.into(), hex(v)));
        }
        let mut out = vec![("general", general)];
        if let Some(fp) = &self.fp {
            let mut float: Vec<(String, String)> =
                (0..32).map(|i| (format!("f{i}"), hex(fp[i]))).collect();
            float.push(("fpscr".into(), hex(fp[32])));
            out.push(("float", float));
        }
        if let Some((vr, vrsave)) = &self.vmx {
            let mut vector: Vec<(String, String)> = (0..32)
                .map(|i| (format!("vr{i}"), wide(&vr[16 * i..16 * i + 16])))
                .collect();
            let vscr = u32::from_le_bytes(vr[512..516].try_into().unwrap());
            vector.push(("vscr".into(), hex(vscr as u64)));
            vector.push(("vrsave".into(), hex(*vrsave as u64)));
            out.push(("vector", vector));
        }
        if let Some(vs) = &self.vsx {
            // vs0..vs31 as gdb shows them: the FP register is the high doubleword,
            // the VSX note's word the low one (vs32..vs63 are vr0..vr31).
            let vsx = (0..32)
                .map(|i| {
                    let hi = self.fp.map_or(0, |f| f[i]);
                    let q = [vs[i].to_le_bytes(), hi.to_le_bytes()].concat();
                    (format!("vs{i}"), wide(&q))
                })
                .collect();
            out.push(("vsx", vsx));
        }
        out
    }
}

/// A little-endian quadword as one hex number.
fn wide(bytes: &[u8]) -> String {
    let digits: String = bytes.iter().rev().map(|b| format!("{b:02x}")).collect();
    let trimmed = digits.trim_start_matches('0');
    format!("0x{}", if trimmed.is_empty() { "0" } else { trimmed })
}
