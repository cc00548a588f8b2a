//! x86-64 registers: CRIU's `thread_info_x86` to `user_regs_struct`, the FXSAVE
//! image (NT_PRFPREG) and a standard-format XSAVE buffer (NT_X86_XSTATE).
//!
//! CRIU stores each XSAVE component separately, not the CPU's buffer, so the layout
//! is ours to choose. We write the Intel standard layout with `xcr0` in the software
//! bytes: the only layout gdb 13 (fixed Intel offsets) and gdb >= 14 (layout guessed
//! from xcr0 and size) both accept for every component set CRIU can record.

use crate::error::{Error, Result};
use crate::images::pb;

/// Names of `user_regs_struct` fields, in kernel order (gdb's names).
pub const GP_NAMES: [&str; 27] = [
    "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx", "rsi",
    "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs",
    "gs",
];

/// XSAVE components CRIU can record: (xcr0 bit, Intel standard offset, size in bytes).
const YMM: (u64, usize, usize) = (1 << 2, 576, 256);
const BNDREGS: (u64, usize, usize) = (1 << 3, 960, 64);
const BNDCSR: (u64, usize, usize) = (1 << 4, 1024, 64);
const OPMASK: (u64, usize, usize) = (1 << 5, 1088, 64);
const ZMM_HI256: (u64, usize, usize) = (1 << 6, 1152, 512);
const HI16_ZMM: (u64, usize, usize) = (1 << 7, 1664, 1024);
const PKRU: (u64, usize, usize) = (1 << 9, 2688, 8);

/// Offset of `xcr0` in the XSAVE software-reserved bytes (what gdb reads).
const XCR0_OFFSET: usize = 464;

/// A thread's x86-64 register state.
#[derive(Debug, Clone)]
pub struct Regs {
    /// `user_regs_struct`, in kernel order (see [`GP_NAMES`]).
    pub gp: [u64; 27],
    /// CRIU's `mode`: true for a 32-bit (ia32 compat) task.
    pub compat: bool,
    /// FPU/SSE state, absent if CRIU recorded none.
    pub fpu: Option<Fpu>,
}

/// FXSAVE fields plus the extended components CRIU recorded.
#[derive(Debug, Clone)]
pub struct Fpu {
    /// The 512-byte FXSAVE image (bytes 416.. zero).
    pub fxsave: [u8; 512],
    /// XSAVE header and components, if the dumping CPU had XSAVE.
    pub xsave: Option<Xsave>,
}

/// Extended state: each component as raw little-endian bytes, empty if not recorded.
#[derive(Debug, Clone, Default)]
pub struct Xsave {
    /// XSTATE_BV as recorded.
    pub xstate_bv: u64,
    /// (component, bytes) for every component present in the image.
    pub components: Vec<((u64, usize, usize), Vec<u8>)>,
}

fn words32(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|w| w.to_le_bytes()).collect()
}

fn words64(v: &[u64]) -> Vec<u8> {
    v.iter().flat_map(|w| w.to_le_bytes()).collect()
}

impl Regs {
    /// Decodes `thread_info_x86`, checking every array length.
    pub fn decode(member: &str, ti: &pb::ThreadInfoX86) -> Result<Regs> {
        let g = ti
            .gpregs
            .as_ref()
            .ok_or_else(|| Error::image(member, "thread_info.gpregs is missing"))?;
        let gp = [
            g.r15, g.r14, g.r13, g.r12, g.bp, g.bx, g.r11, g.r10, g.r9, g.r8, g.ax, g.cx, g.dx,
            g.si, g.di, g.orig_ax, g.ip, g.cs, g.flags, g.sp, g.ss, g.fs_base, g.gs_base, g.ds,
            g.es, g.fs, g.gs,
        ]
        .map(|v| v.unwrap_or(0));
        // A 32-bit task's registers are in the same fields (upper halves zero);
        // arch::i386 writes them as i386's.
        let compat = g.mode == Some(2);
        let fpu = ti
            .fpregs
            .as_ref()
            .map(|f| decode_fpu(member, f))
            .transpose()?;
        Ok(Regs { gp, compat, fpu })
    }

    /// A general register by gdb name.
    pub fn get(&self, name: &str) -> Option<u64> {
        GP_NAMES.iter().position(|n| *n == name).map(|i| self.gp[i])
    }

    /// The system call number if the thread was inside one (orig_rax >= 0).
    pub fn syscall(&self) -> Option<u64> {
        let orig = self.gp[15] as i64;
        (orig >= 0).then_some(orig as u64)
    }

    /// `pr_reg` of NT_PRSTATUS: user_regs_struct, 216 bytes.
    pub fn prstatus_regs(&self) -> Vec<u8> {
        words64(&self.gp)
    }

    /// NT_PRFPREG payload: the FXSAVE image as the kernel writes it (512 bytes).
    pub fn fpregset(&self) -> Option<Vec<u8>> {
        self.fpu.as_ref().map(|f| f.fxsave.to_vec())
    }

    /// NT_X86_XSTATE payload in the Intel standard layout, if XSAVE state exists.
    pub fn xstate(&self) -> Option<Vec<u8>> {
        let fpu = self.fpu.as_ref()?;
        let xs = fpu.xsave.as_ref()?;
        let xcr0 = xs
            .components
            .iter()
            .fold(0x3u64, |m, ((bit, _, _), _)| m | bit);
        let size = xstate_size(xcr0);
        let mut buf = vec![0u8; size];
        buf[..416].copy_from_slice(&fpu.fxsave[..416]);
        buf[XCR0_OFFSET..XCR0_OFFSET + 8].copy_from_slice(&xcr0.to_le_bytes());
        // x87 and SSE always hold valid (possibly init) values in CRIU's image, so
        // they are marked in use; other bits only where the data is written.
        let bv = (xs.xstate_bv | 0x3) & xcr0;
        buf[512..520].copy_from_slice(&bv.to_le_bytes());
        for ((_, off, len), bytes) in &xs.components {
            if off + len <= size {
                buf[*off..off + len].copy_from_slice(bytes);
            }
        }
        Some(buf)
    }
}

impl Regs {
    /// Registers grouped as gdb shows them (`info registers`, then the float and
    /// vector groups), values as hex strings.
    pub fn groups(&self) -> Vec<(&'static str, Vec<(String, String)>)> {
        let hex = |v: u64| format!("{v:#x}");
        let general: Vec<(String, String)> = [
            "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11",
            "r12", "r13", "r14", "r15", "rip", "eflags", "cs", "ss", "ds", "es", "fs", "gs",
            "fs_base", "gs_base", "orig_rax",
        ]
        .iter()
        .map(|n| (n.to_string(), hex(self.get(n).unwrap_or(0))))
        .collect();
        let mut out = vec![("general", general)];
        let Some(fpu) = &self.fpu else { return out };
        let fx = &fpu.fxsave;
        let u16at = |o: usize| u16::from_le_bytes([fx[o], fx[o + 1]]) as u64;
        let u32at = |o: usize| u32::from_le_bytes(fx[o..o + 4].try_into().unwrap()) as u64;
        let u64at = |o: usize| u64::from_le_bytes(fx[o..o + 8].try_into().unwrap());
        let wide = |bytes: &[u8]| -> String {
            let digits: String = bytes.iter().rev().map(|b| format!("{b:02x}")).collect();
            let trimmed = digits.trim_start_matches('0');
            format!("0x{}", if trimmed.is_empty() { "0" } else { trimmed })
        };
        let mut float: Vec<(String, String)> = (0..8)
            .map(|i| (format!("st{i}"), wide(&fx[32 + 16 * i..42 + 16 * i])))
            .collect();
        float.extend([
            ("fctrl".to_string(), hex(u16at(0))),
            ("fstat".to_string(), hex(u16at(2))),
            // gdb shows the full i387 tag word, not FXSAVE's abridged one.
            ("ftag".to_string(), hex(tag_word(fx) as u64 & 0xffff)),
            ("fop".to_string(), hex(u16at(6))),
            ("fioff".to_string(), hex(u64at(8))),
            ("fooff".to_string(), hex(u64at(16))),
        ]);
        out.push(("float", float));
        let comp = |bit: u64| {
            fpu.xsave
                .as_ref()
                .and_then(|x| x.components.iter().find(|((b, _, _), _)| *b == bit))
        };
        let ymmh = comp(YMM.0);
        let mut vector: Vec<(String, String)> = Vec::new();
        for i in 0..16 {
            let lo = &fx[160 + 16 * i..176 + 16 * i];
            match ymmh {
                Some((_, hi)) => {
                    let v = [lo, &hi[16 * i..16 * i + 16]].concat();
                    vector.push((format!("ymm{i}"), wide(&v)));
                }
                None => vector.push((format!("xmm{i}"), wide(lo))),
            }
        }
        vector.push(("mxcsr".to_string(), hex(u32at(24))));
        if let Some((_, k)) = comp(OPMASK.0) {
            for i in 0..8 {
                vector.push((format!("k{i}"), wide(&k[8 * i..8 * i + 8])));
            }
        }
        if let Some((_, p)) = comp(PKRU.0) {
            vector.push(("pkru".to_string(), wide(&p[..4])));
        }
        out.push(("vector", vector));
        out
    }
}

/// The i387 tag word from FXSAVE's abridged tags (one bit per physical register,
/// set if not empty) and the register contents: 0 valid, 1 zero, 2 special,
/// 3 empty, two bits per physical register.
pub(crate) fn tag_word(fx: &[u8; 512]) -> u32 {
    let abridged = fx[4];
    let top = (u16::from_le_bytes([fx[2], fx[3]]) >> 11) & 7;
    let mut tw = 0u32;
    for phys in 0..8u16 {
        let tag = if abridged & (1 << phys) == 0 {
            3
        } else {
            // st(i) is physical register (top + i) mod 8.
            let st = ((phys + 8 - top) % 8) as usize;
            let reg = &fx[32 + 16 * st..42 + 16 * st];
            let mantissa = u64::from_le_bytes(reg[..8].try_into().unwrap());
            let exponent = u16::from_le_bytes([reg[8], reg[9]]) & 0x7fff;
            match exponent {
                0x7fff => 2,
                0 if mantissa == 0 => 1,
                0 => 2,
                _ if mantissa >> 63 == 1 => 0,
                _ => 2,
            }
        };
        tw |= tag << (2 * phys);
    }
    tw | 0xffff_0000
}

/// gdb's X86_XSTATE_SIZE(xcr0): the size gdb expects for a given feature set.
fn xstate_size(xcr0: u64) -> usize {
    if xcr0 & PKRU.0 != 0 {
        2696
    } else if xcr0 & (OPMASK.0 | ZMM_HI256.0 | HI16_ZMM.0) != 0 {
        2688
    } else if xcr0 & (BNDREGS.0 | BNDCSR.0) != 0 {
        1088
    } else if xcr0 & YMM.0 != 0 {
        832
    } else {
        576
    }
}

fn decode_fpu(member: &str, f: &pb::UserX86FpregsEntry) -> Result<Fpu> {
    let check = |field: &str, have: usize, want: usize| -> Result<()> {
        if have == want {
            Ok(())
        } else {
            Err(Error::image(
                member,
                format!("thread_info.fpregs.{field} has {have} words, expected {want}"),
            ))
        }
    };
    check("st_space", f.st_space.len(), 32)?;
    check("xmm_space", f.xmm_space.len(), 64)?;
    let mut fx = [0u8; 512];
    fx[0..2].copy_from_slice(&(f.cwd.unwrap_or(0) as u16).to_le_bytes());
    fx[2..4].copy_from_slice(&(f.swd.unwrap_or(0) as u16).to_le_bytes());
    fx[4..6].copy_from_slice(&(f.twd.unwrap_or(0) as u16).to_le_bytes());
    fx[6..8].copy_from_slice(&(f.fop.unwrap_or(0) as u16).to_le_bytes());
    fx[8..16].copy_from_slice(&f.rip.unwrap_or(0).to_le_bytes());
    fx[16..24].copy_from_slice(&f.rdp.unwrap_or(0).to_le_bytes());
    fx[24..28].copy_from_slice(&f.mxcsr.unwrap_or(0).to_le_bytes());
    fx[28..32].copy_from_slice(&f.mxcsr_mask.unwrap_or(0).to_le_bytes());
    fx[32..160].copy_from_slice(&words32(&f.st_space));
    fx[160..416].copy_from_slice(&words32(&f.xmm_space));
    let xsave = match &f.xsave {
        None => None,
        Some(x) => {
            let mut components = Vec::new();
            let mut add = |field: &str, comp: (u64, usize, usize), bytes: Vec<u8>| -> Result<()> {
                if bytes.is_empty() {
                    return Ok(());
                }
                // pkru is stored as {pkru, pad}; accept the value alone too.
                let bytes = if comp == PKRU && bytes.len() == 4 {
                    [bytes, vec![0; 4]].concat()
                } else {
                    bytes
                };
                if bytes.len() != comp.2 {
                    return Err(Error::image(
                        member,
                        format!(
                            "thread_info.fpregs.xsave.{field} has {} bytes, expected {}",
                            bytes.len(),
                            comp.2
                        ),
                    ));
                }
                components.push((comp, bytes));
                Ok(())
            };
            add("ymmh_space", YMM, words32(&x.ymmh_space))?;
            add("bndreg_state", BNDREGS, words64(&x.bndreg_state))?;
            add("bndcsr_state", BNDCSR, words64(&x.bndcsr_state))?;
            add("opmask_reg", OPMASK, words64(&x.opmask_reg))?;
            add("zmm_upper", ZMM_HI256, words64(&x.zmm_upper))?;
            add("hi16_zmm", HI16_ZMM, words64(&x.hi16_zmm))?;
            add("pkru", PKRU, words32(&x.pkru))?;
            Some(Xsave {
                xstate_bv: x.xstate_bv.unwrap_or(0),
                components,
            })
        }
    };
    Ok(Fpu { fxsave: fx, xsave })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xstate_sizes_follow_gdb() {
        assert_eq!(xstate_size(0x3), 576);
        assert_eq!(xstate_size(0x7), 832);
        assert_eq!(xstate_size(0x1f), 1088);
        assert_eq!(xstate_size(0xe7), 2688);
        assert_eq!(xstate_size(0x207), 2696);
    }

    #[test]
    fn tag_word_classifies_registers_from_the_top_of_stack() {
        let mut fx = [0u8; 512];
        // top = 6: st0 is physical 6, st1 physical 7, st2 physical 0.
        fx[2..4].copy_from_slice(&(6u16 << 11).to_le_bytes());
        fx[4] = 0b1100_0001; // physical 0, 6, 7 in use
                             // st0 = 1.0 (valid), st1 = 0.0 (zero), st2 = infinity (special)
        fx[32..40].copy_from_slice(&(1u64 << 63).to_le_bytes());
        fx[40..42].copy_from_slice(&0x3fffu16.to_le_bytes());
        fx[64..72].copy_from_slice(&(1u64 << 63).to_le_bytes());
        fx[72..74].copy_from_slice(&0x7fffu16.to_le_bytes());
        // physical 0: special (2), 1..5 empty (3), 6 valid (0), 7 zero (1)
        assert_eq!(tag_word(&fx), 0xffff_0000 | 0b01_00_11_11_11_11_11_10);
    }
}
