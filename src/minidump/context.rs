//! Thread contexts: a thread's registers as the minidump CPU context its
//! architecture has, in the layouts `minidump-common` defines and Breakpad's Linux
//! writer fills: CONTEXT_AMD64 (with the FXSAVE image as its float area),
//! CONTEXT_X86 (FSAVE area and the FXSAVE image as its extended registers),
//! Breakpad's ARM64 context (the one its Linux writer and lldb read, with
//! v0..v31, fpsr and fpcr) and CONTEXT_ARM (with VFP's d0..d31 and fpscr).

use minidump_common::format::{
    ContextFlagsAmd64, ContextFlagsArm, ContextFlagsArm64Old, ContextFlagsX86,
    ProcessorArchitecture, CONTEXT_AMD64, CONTEXT_ARM, CONTEXT_ARM64_OLD, CONTEXT_X86,
    FLOATING_SAVE_AREA_X86,
};
use scroll::{Pwrite, LE};

use crate::arch::{i386, Arch, Registers};
use crate::error::{Error, Result};

/// The minidump processor architecture of `arch`, or why it has none.
pub fn processor(arch: Arch) -> Result<ProcessorArchitecture> {
    use ProcessorArchitecture::*;
    match arch {
        Arch::X86_64 => Ok(PROCESSOR_ARCHITECTURE_AMD64),
        Arch::I386 => Ok(PROCESSOR_ARCHITECTURE_INTEL),
        // Breakpad's own arm64 id (0x8003) goes with the context layout its Linux
        // writer uses; Microsoft's (12) would need the Windows layout, which lldb
        // does not read.
        Arch::Aarch64 => Ok(PROCESSOR_ARCHITECTURE_ARM64_OLD),
        Arch::Arm => Ok(PROCESSOR_ARCHITECTURE_ARM),
        Arch::Ppc64le => Err(Error::Unsupported(
            "minidumps of ppc64le processes are not supported: the format's only 64-bit \
             POWER context (Breakpad's CONTEXT_PPC64) is the big-endian Mac OS one, which \
             rust-minidump cannot print and no Linux writer uses"
                .into(),
        )),
        Arch::Riscv64 | Arch::S390x | Arch::Loongarch64 => Err(Error::Unsupported(format!(
            "minidumps of {} processes are not supported: the minidump format as \
             rust-minidump defines it has no {} thread context (write an ELF core instead)",
            arch.name(),
            arch.name()
        ))),
    }
}

/// The context of one thread, encoded.
pub fn encode(regs: &Registers) -> Result<Vec<u8>> {
    match regs {
        Registers::X86_64(r) => {
            let g = |n: &str| r.get(n).unwrap_or(0);
            let mut c = CONTEXT_AMD64 {
                context_flags: (ContextFlagsAmd64::CONTEXT_AMD64_FULL
                    | ContextFlagsAmd64::CONTEXT_AMD64_SEGMENTS)
                    .bits(),
                cs: g("cs") as u16,
                ds: g("ds") as u16,
                es: g("es") as u16,
                fs: g("fs") as u16,
                gs: g("gs") as u16,
                ss: g("ss") as u16,
                eflags: g("eflags") as u32,
                rax: g("rax"),
                rcx: g("rcx"),
                rdx: g("rdx"),
                rbx: g("rbx"),
                rsp: g("rsp"),
                rbp: g("rbp"),
                rsi: g("rsi"),
                rdi: g("rdi"),
                r8: g("r8"),
                r9: g("r9"),
                r10: g("r10"),
                r11: g("r11"),
                r12: g("r12"),
                r13: g("r13"),
                r14: g("r14"),
                r15: g("r15"),
                rip: g("rip"),
                ..Default::default()
            };
            if let Some(f) = &r.fpu {
                // XMM_SAVE_AREA32 is the FXSAVE image, byte for byte.
                c.float_save = f.fxsave;
                c.mx_csr = u32::from_le_bytes(f.fxsave[24..28].try_into().unwrap());
            } else {
                c.context_flags = (ContextFlagsAmd64::CONTEXT_AMD64_CONTROL
                    | ContextFlagsAmd64::CONTEXT_AMD64_INTEGER
                    | ContextFlagsAmd64::CONTEXT_AMD64_SEGMENTS)
                    .bits();
            }
            bytes(&c)
        }
        Registers::I386(r) => {
            let g = |n: &str| i386::get(r, n).unwrap_or(0);
            let mut c = CONTEXT_X86 {
                context_flags: ContextFlagsX86::CONTEXT_X86_FULL.bits(),
                gs: g("gs"),
                fs: g("fs"),
                es: g("es"),
                ds: g("ds"),
                edi: g("edi"),
                esi: g("esi"),
                ebx: g("ebx"),
                edx: g("edx"),
                ecx: g("ecx"),
                eax: g("eax"),
                ebp: g("ebp"),
                eip: g("eip"),
                cs: g("cs"),
                eflags: g("eflags"),
                esp: g("esp"),
                ss: g("ss"),
                ..Default::default()
            };
            if let Some(f) = &r.fpu {
                // The kernel's FSAVE image (NT_PRFPREG) is FLOATING_SAVE_AREA's first
                // 108 bytes; the FXSAVE image is the extended-registers area.
                let fsave = i386::regsets(r)
                    .into_iter()
                    .find(|s| s.ntype == 2)
                    .map(|s| s.data)
                    .unwrap_or_default();
                if fsave.len() == 108 {
                    let w =
                        |i: usize| u32::from_le_bytes(fsave[4 * i..4 * i + 4].try_into().unwrap());
                    let mut area = FLOATING_SAVE_AREA_X86 {
                        control_word: w(0),
                        status_word: w(1),
                        tag_word: w(2),
                        error_offset: w(3),
                        error_selector: w(4),
                        data_offset: w(5),
                        data_selector: w(6),
                        ..Default::default()
                    };
                    area.register_area.copy_from_slice(&fsave[28..108]);
                    c.float_save = area;
                    c.context_flags |= ContextFlagsX86::CONTEXT_X86_FLOATING_POINT.bits();
                }
                c.extended_registers = f.fxsave;
                c.context_flags |= ContextFlagsX86::CONTEXT_X86_EXTENDED_REGISTERS.bits();
            }
            bytes(&c)
        }
        Registers::Aarch64(r) => {
            let mut c = CONTEXT_ARM64_OLD {
                context_flags: ContextFlagsArm64Old::CONTEXT_ARM64_OLD_INTEGER.bits() as u64,
                iregs: r.x,
                sp: r.sp,
                pc: r.pc,
                cpsr: r.pstate as u32,
                ..Default::default()
            };
            if let Some((v, fpsr, fpcr)) = &r.fpsimd {
                for (i, reg) in c.float_regs.iter_mut().enumerate() {
                    *reg = u128::from_le_bytes(v[16 * i..16 * i + 16].try_into().unwrap());
                }
                c.fpsr = *fpsr;
                c.fpcr = *fpcr;
                c.context_flags = ContextFlagsArm64Old::CONTEXT_ARM64_OLD_FULL.bits() as u64;
            }
            bytes(&c)
        }
        Registers::Arm(r) => {
            let mut c = CONTEXT_ARM {
                context_flags: (ContextFlagsArm::CONTEXT_ARM_CONTROL
                    | ContextFlagsArm::CONTEXT_ARM_INTEGER)
                    .bits(),
                cpsr: r.gp[16],
                ..Default::default()
            };
            c.iregs.copy_from_slice(&r.gp[..16]);
            if let Some((d, fpscr)) = &r.vfp {
                c.float_save.regs = *d;
                c.float_save.fpscr = *fpscr as u64;
                c.context_flags |= ContextFlagsArm::CONTEXT_ARM_FLOATING_POINT.bits();
            }
            bytes(&c)
        }
        Registers::Ppc64le(_)
        | Registers::Riscv64(_)
        | Registers::S390x(_)
        | Registers::Loongarch64(_) => {
            // processor() refuses these first; this keeps the error if called alone.
            let arch = match regs {
                Registers::Ppc64le(_) => Arch::Ppc64le,
                Registers::Riscv64(_) => Arch::Riscv64,
                Registers::S390x(_) => Arch::S390x,
                _ => Arch::Loongarch64,
            };
            processor(arch).map(|_| Vec::new())
        }
    }
}

/// A `minidump-common` structure as little-endian bytes.
pub(crate) fn bytes<T>(v: &T) -> Result<Vec<u8>>
where
    T: scroll::ctx::SizeWith<scroll::Endian>
        + scroll::ctx::TryIntoCtx<scroll::Endian, Error = scroll::Error>
        + Clone,
{
    let mut out = vec![0u8; T::size_with(&LE)];
    out.pwrite_with(v.clone(), 0, LE)
        .map_err(|e| Error::Unsupported(format!("encoding a minidump structure: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_sizes_are_the_formats() {
        // The sizes every reader checks a context's stream size against.
        assert_eq!(CONTEXT_AMD64::size_with(&LE), 1232);
        assert_eq!(CONTEXT_X86::size_with(&LE), 716);
        assert_eq!(CONTEXT_ARM64_OLD::size_with(&LE), 796);
        assert_eq!(CONTEXT_ARM::size_with(&LE), 368);
    }

    use scroll::ctx::SizeWith;
}
