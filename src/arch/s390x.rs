//! s390x registers: CRIU's `thread_info_s390` to the notes of the kernel's
//! `s390_regsets`, big-endian like everything in an s390x core: `s390_regs`
//! (NT_PRSTATUS: PSW mask and address, r0..r15, the 32-bit a0..a15, orig_gpr2; 27
//! longs, 216 bytes), `s390_fp_regs` (NT_PRFPREG: fpc, a pad word, f0..f15; 136
//! bytes), NT_S390_SYSTEM_CALL (4 bytes), NT_S390_VXRS_LOW (the right halves of
//! v0..v15, 128 bytes) and NT_S390_VXRS_HIGH (v16..v31, 256 bytes), and the
//! guarded-storage (NT_S390_GS_CB, NT_S390_GS_BC: 32 bytes each) and
//! runtime-instrumentation (NT_S390_RI_CB, 64 bytes) control blocks when the thread
//! had them.
//!
//! The kernel also writes NT_S390_LAST_BREAK (the last breaking-event address)
//! for every thread and NT_S390_TDB after a transaction abort; CRIU saves neither,
//! so they are left out rather than invented, and gdb shows `last_break` and the
//! TDB registers as unavailable.

use super::RegSet;
use crate::error::{Error, Result};
use crate::images::pb;

/// NT_S390_SYSTEM_CALL
pub const NT_S390_SYSTEM_CALL: u32 = 0x307;
/// NT_S390_VXRS_LOW
pub const NT_S390_VXRS_LOW: u32 = 0x309;
/// NT_S390_VXRS_HIGH
pub const NT_S390_VXRS_HIGH: u32 = 0x30a;
/// NT_S390_GS_CB
pub const NT_S390_GS_CB: u32 = 0x30b;
/// NT_S390_GS_BC
pub const NT_S390_GS_BC: u32 = 0x30c;
/// NT_S390_RI_CB
pub const NT_S390_RI_CB: u32 = 0x30d;

/// gdb's names of the three guarded-storage registers of a control block (the
/// first word is reserved); the broadcast block's are these prefixed with `bc_`.
pub const GS_NAMES: [&str; 3] = ["gsd", "gssm", "gsepla"];

/// A thread's s390x register state.
#[derive(Debug, Clone)]
pub struct Regs {
    /// PSW mask.
    pub psw_mask: u64,
    /// PSW address (the pc).
    pub psw_addr: u64,
    /// r0..r15.
    pub gprs: [u64; 16],
    /// Access registers a0..a15.
    pub acrs: [u32; 16],
    /// r2 on entry to the system call the thread was in.
    pub orig_gpr2: u64,
    /// The NT_S390_SYSTEM_CALL word.
    pub system_call: u32,
    /// fpc and f0..f15, absent if CRIU recorded none.
    pub fp: Option<(u32, [u64; 16])>,
    /// Right halves of v0..v15, and v16..v31 as (left, right) doubleword pairs.
    pub vxrs: Option<([u64; 16], [u64; 32])>,
    /// Guarded-storage control block.
    pub gs_cb: Option<[u64; 4]>,
    /// Guarded-storage broadcast control block.
    pub gs_bc: Option<[u64; 4]>,
    /// Runtime-instrumentation control block.
    pub ri_cb: Option<[u64; 8]>,
}

fn words<T: Copy, const N: usize>(member: &str, field: &str, v: &[T]) -> Result<[T; N]> {
    v.try_into().map_err(|_| {
        Error::image(
            member,
            format!("{field} has {} words, expected {N}", v.len()),
        )
    })
}

fn be_words(w: &[u64]) -> Vec<u8> {
    w.iter().flat_map(|x| x.to_be_bytes()).collect()
}

impl Regs {
    /// Decodes `thread_info_s390`, checking every array length.
    pub fn decode(member: &str, ti: &pb::ThreadInfoS390) -> Result<Regs> {
        let g = ti
            .gpregs
            .as_ref()
            .ok_or_else(|| Error::image(member, "ti_s390.gpregs is missing"))?;
        let fp = ti
            .fpregs
            .as_ref()
            .map(|f| -> Result<(u32, [u64; 16])> {
                Ok((
                    f.fpc.unwrap_or(0),
                    words(member, "ti_s390.fpregs.fprs", &f.fprs)?,
                ))
            })
            .transpose()?;
        let vxrs = match (&ti.vxrs_low, &ti.vxrs_high) {
            (None, None) => None,
            (Some(lo), Some(hi)) => Some((
                words(member, "ti_s390.vxrs_low.regs", &lo.regs)?,
                words(member, "ti_s390.vxrs_high.regs", &hi.regs)?,
            )),
            // CRIU saves both or neither; half a vector file can't be written as
            // the kernel would.
            (lo, _) => {
                return Err(Error::image(
                    member,
                    format!(
                        "ti_s390.{} is present without ti_s390.{}",
                        if lo.is_some() {
                            "vxrs_low"
                        } else {
                            "vxrs_high"
                        },
                        if lo.is_some() {
                            "vxrs_high"
                        } else {
                            "vxrs_low"
                        },
                    ),
                ))
            }
        };
        let gs = |field: &str, e: &Option<pb::UserS390GsCbEntry>| {
            e.as_ref()
                .map(|e| words::<u64, 4>(member, &format!("ti_s390.{field}.regs"), &e.regs))
                .transpose()
        };
        Ok(Regs {
            psw_mask: g.psw_mask.unwrap_or(0),
            psw_addr: g.psw_addr.unwrap_or(0),
            gprs: words(member, "ti_s390.gpregs.gprs", &g.gprs)?,
            acrs: words(member, "ti_s390.gpregs.acrs", &g.acrs)?,
            orig_gpr2: g.orig_gpr2.unwrap_or(0),
            system_call: g.system_call.unwrap_or(0),
            fp,
            vxrs,
            gs_cb: gs("gs_cb", &ti.gs_cb)?,
            gs_bc: gs("gs_bc", &ti.gs_bc)?,
            ri_cb: ti
                .ri_cb
                .as_ref()
                .map(|r| words::<u64, 8>(member, "ti_s390.ri_cb.regs", &r.regs))
                .transpose()?,
        })
    }

    /// `pr_reg` of NT_PRSTATUS: `s390_regs`, 216 bytes.
    pub fn prstatus_regs(&self) -> Vec<u8> {
        let mut d = Vec::with_capacity(216);
        d.extend_from_slice(&self.psw_mask.to_be_bytes());
        d.extend_from_slice(&self.psw_addr.to_be_bytes());
        d.extend_from_slice(&be_words(&self.gprs));
        for a in self.acrs {
            d.extend_from_slice(&a.to_be_bytes());
        }
        d.extend_from_slice(&self.orig_gpr2.to_be_bytes());
        d
    }

    /// The register notes after NT_PRSTATUS, in the order of the kernel's
    /// `s390_regsets`.
    pub fn regsets(&self) -> Vec<RegSet> {
        let mut out = Vec::new();
        if let Some((fpc, fprs)) = &self.fp {
            let mut d = fpc.to_be_bytes().to_vec();
            d.extend_from_slice(&[0; 4]);
            d.extend_from_slice(&be_words(fprs));
            out.push(RegSet {
                name: "CORE",
                ntype: 2,
                data: d,
            });
        }
        out.push(RegSet {
            name: "LINUX",
            ntype: NT_S390_SYSTEM_CALL,
            data: self.system_call.to_be_bytes().to_vec(),
        });
        if let Some((lo, hi)) = &self.vxrs {
            out.push(RegSet {
                name: "LINUX",
                ntype: NT_S390_VXRS_LOW,
                data: be_words(lo),
            });
            // Each 128-bit register is its left doubleword, then its right one.
            out.push(RegSet {
                name: "LINUX",
                ntype: NT_S390_VXRS_HIGH,
                data: be_words(hi),
            });
        }
        for (ntype, block) in [(NT_S390_GS_CB, &self.gs_cb), (NT_S390_GS_BC, &self.gs_bc)] {
            if let Some(b) = block {
                out.push(RegSet {
                    name: "LINUX",
                    ntype,
                    data: be_words(b),
                });
            }
        }
        if let Some(ri) = &self.ri_cb {
            out.push(RegSet {
                name: "LINUX",
                ntype: NT_S390_RI_CB,
                data: be_words(ri),
            });
        }
        out
    }

    /// Registers grouped as gdb shows them, values as hex strings.
    pub fn groups(&self) -> Vec<(&'static str, Vec<(String, String)>)> {
        let hex = |v: u64| format!("{v:#x}");
        let mut general = vec![
            ("pswm".to_string(), hex(self.psw_mask)),
            ("pswa".to_string(), hex(self.psw_addr)),
        ];
        general.extend((0..16).map(|i| (format!("r{i}"), hex(self.gprs[i]))));
        general.extend((0..16).map(|i| (format!("acr{i}"), hex(self.acrs[i] as u64))));
        general.push(("orig_r2".into(), hex(self.orig_gpr2)));
        general.push(("system_call".into(), hex(self.system_call as u64)));
        // gdb lists the guarded-storage registers with the general ones.
        for (prefix, block) in [("", &self.gs_cb), ("bc_", &self.gs_bc)] {
            if let Some(b) = block {
                for (n, v) in GS_NAMES.iter().zip(&b[1..]) {
                    general.push((format!("{prefix}{n}"), hex(*v)));
                }
            }
        }
        let mut out = vec![("general", general)];
        if let Some((fpc, fprs)) = &self.fp {
            let mut float = vec![("fpc".to_string(), hex(*fpc as u64))];
            float.extend((0..16).map(|i| (format!("f{i}"), hex(fprs[i]))));
            out.push(("float", float));
        }
        if let Some((lo, hi)) = &self.vxrs {
            // v0..v15 overlay f0..f15 (their left halves).
            let left = |i: usize| self.fp.map_or(0, |(_, f)| f[i]);
            let vector = (0..32)
                .map(|i| {
                    let (l, r) = if i < 16 {
                        (left(i), lo[i])
                    } else {
                        (hi[2 * (i - 16)], hi[2 * (i - 16) + 1])
                    };
                    (format!("v{i}"), wide(l, r))
                })
                .collect();
            out.push(("vector", vector));
        }
        out
    }
}

/// A 128-bit register from its left and right doublewords, as one hex number.
fn wide(left: u64, right: u64) -> String {
    format!("{:#x}", (left as u128) << 64 | right as u128)
}
