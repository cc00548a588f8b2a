//! Per-architecture register state: decoding from CRIU images and encoding as the
//! register notes the Linux kernel writes into a core. The architecture always comes
//! from `core_entry.mtype`, never from the machine running ck2core.

pub mod aarch64;
pub mod arm;
pub mod i386;
pub mod loongarch64;
pub mod ppc64;
pub mod riscv64;
pub mod s390x;
pub mod x86_64;
mod x86_64_syscalls;

use crate::core::ElfLayout;
use crate::error::{Error, Result};
use crate::images::pb;

/// An architecture CRIU records in `core_entry.mtype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// x86-64 (mtype 1).
    X86_64,
    /// A 32-bit (ia32 compat) task of an x86-64 checkpoint (mtype 1, gpregs.mode
    /// COMPAT).
    I386,
    /// 32-bit ARM (mtype 2).
    Arm,
    /// AArch64 (mtype 3).
    Aarch64,
    /// 64-bit little-endian POWER (mtype 4, PPC64, as CRIU builds it for ppc64le).
    Ppc64le,
    /// RISC-V 64-bit (mtype 8).
    Riscv64,
    /// 64-bit IBM Z (mtype 5, S390; big-endian).
    S390x,
    /// LoongArch 64-bit (mtype 7).
    Loongarch64,
}

/// One register note a thread contributes after its NT_PRSTATUS.
#[derive(Debug, Clone)]
pub struct RegSet {
    /// Note owner ("CORE" or "LINUX").
    pub name: &'static str,
    /// Note type.
    pub ntype: u32,
    /// Payload.
    pub data: Vec<u8>,
}

/// CRIU's `march` names, indexed by mtype, for messages about unsupported ones.
const MTYPE_NAMES: [&str; 9] = [
    "UNKNOWN",
    "X86_64",
    "ARM",
    "AARCH64",
    "PPC64",
    "S390",
    "MIPS",
    "LOONGARCH64",
    "RISCV64",
];

impl Arch {
    /// The architecture of a thread's core entry: its mtype, and for x86-64 whether
    /// the task is a 32-bit one.
    pub fn of_core(member: &str, core: &pb::CoreEntry) -> Result<Arch> {
        let arch = Arch::from_mtype(member, core.mtype)?;
        let compat = core
            .thread_info
            .as_ref()
            .and_then(|t| t.gpregs.as_ref())
            .is_some_and(|g| g.mode == Some(2));
        Ok(if arch == Arch::X86_64 && compat {
            Arch::I386
        } else {
            arch
        })
    }

    /// The architecture of a thread's core image.
    pub fn from_mtype(member: &str, mtype: Option<u32>) -> Result<Arch> {
        match mtype {
            Some(1) => Ok(Arch::X86_64),
            Some(2) => Ok(Arch::Arm),
            Some(3) => Ok(Arch::Aarch64),
            Some(4) => Ok(Arch::Ppc64le),
            Some(5) => Ok(Arch::S390x),
            Some(7) => Ok(Arch::Loongarch64),
            Some(8) => Ok(Arch::Riscv64),
            Some(m) if (m as usize) < MTYPE_NAMES.len() && m != 0 => {
                Err(Error::Unsupported(format!(
                    "{member}: core_entry.mtype is {m} ({}): this architecture is not supported yet (x86_64 and its 32-bit tasks, arm, aarch64, ppc64le, riscv64, s390x and loongarch64 are supported)",
                    MTYPE_NAMES[m as usize]
                )))
            }
            Some(m) => Err(Error::image(
                member,
                format!("core_entry.mtype is {m}, which is no architecture CRIU knows"),
            )),
            None => Err(Error::image(member, "core_entry.mtype is missing")),
        }
    }

    /// Name as used in output.
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::I386 => "i386",
            Arch::Arm => "arm",
            Arch::Aarch64 => "aarch64",
            Arch::Ppc64le => "ppc64le",
            Arch::Riscv64 => "riscv64",
            Arch::S390x => "s390x",
            Arch::Loongarch64 => "loongarch64",
        }
    }

    /// ELF e_machine of a core for this architecture.
    pub fn elf_machine(self) -> u16 {
        match self {
            Arch::X86_64 => 62,
            Arch::I386 => 3,
            Arch::Arm => 40,
            Arch::Aarch64 => 183,
            Arch::Ppc64le => 21,
            Arch::Riscv64 => 243,
            Arch::S390x => 22,
            Arch::Loongarch64 => 258,
        }
    }

    /// ELF e_flags of a core.
    pub fn elf_flags(self) -> u32 {
        match self {
            // gdb takes the FP register width from the core's e_flags, and without
            // EF_RISCV_FLOAT_ABI_DOUBLE reads no FP registers. Kernels with
            // CORE_DUMP_USE_PROCESS_EFLAGS write the executable's flags; CRIU does
            // not record them, but a saved 64-bit f0..f31 means the D extension, and
            // Linux riscv64 distributions are all RV64GC lp64d: EF_RISCV_RVC |
            // EF_RISCV_FLOAT_ABI_DOUBLE.
            Arch::Riscv64 => 0x5,
            // ppc64: the kernel's regset view has no e_flags, so its cores carry 0
            // (ELF_CORE_EFLAGS, the ELFv2 bit, is only used without regsets); gdb
            // takes ELFv2 for every little-endian 64-bit core anyway.
            // arm and s390x: the kernel's regset views (user_arm_view,
            // user_s390_view) set no e_flags either.
            // loongarch64: user_loongarch64_view has no e_flags, so the kernel's cores
            // carry 0 (not the executable's ABI flags).
            Arch::X86_64
            | Arch::I386
            | Arch::Arm
            | Arch::Aarch64
            | Arch::Ppc64le
            | Arch::S390x
            | Arch::Loongarch64 => 0,
        }
    }

    /// ELF class and byte order of a core.
    pub fn layout(self) -> ElfLayout {
        match self {
            Arch::Arm | Arch::I386 => ElfLayout::LE32,
            Arch::X86_64 | Arch::Aarch64 | Arch::Ppc64le | Arch::Riscv64 | Arch::Loongarch64 => {
                ElfLayout::LE64
            }
            Arch::S390x => ElfLayout::BE64,
        }
    }
}

/// A thread's registers, in the architecture's own terms.
#[derive(Debug, Clone)]
pub enum Registers {
    /// x86-64 general, FPU and extended state.
    X86_64(Box<x86_64::Regs>),
    /// The same state of a 32-bit task, written as i386's.
    I386(Box<x86_64::Regs>),
    /// ARM general, VFP, TLS.
    Arm(Box<arm::Regs>),
    /// AArch64 general, FP/SIMD, TLS.
    Aarch64(Box<aarch64::Regs>),
    /// ppc64le general, FP, Altivec and VSX.
    Ppc64le(Box<ppc64::Regs>),
    /// riscv64 general and D-extension FP.
    Riscv64(Box<riscv64::Regs>),
    /// s390x general, access, FP and vector registers, control blocks.
    S390x(Box<s390x::Regs>),
    /// loongarch64 general and FP registers.
    Loongarch64(Box<loongarch64::Regs>),
}

impl Registers {
    /// Decodes the registers of a thread's core entry.
    pub fn decode(member: &str, arch: Arch, core: &pb::CoreEntry) -> Result<Registers> {
        match arch {
            Arch::X86_64 | Arch::I386 => {
                let ti = core.thread_info.as_ref().ok_or_else(|| {
                    Error::image(member, "core_entry.thread_info (x86 registers) is missing")
                })?;
                let r = Box::new(x86_64::Regs::decode(member, ti)?);
                Ok(if r.compat {
                    Registers::I386(r)
                } else {
                    Registers::X86_64(r)
                })
            }
            Arch::Arm => {
                let ti = core.ti_arm.as_ref().ok_or_else(|| {
                    Error::image(member, "core_entry.ti_arm (arm registers) is missing")
                })?;
                Ok(Registers::Arm(Box::new(arm::Regs::decode(member, ti)?)))
            }
            Arch::Aarch64 => {
                let ti = core.ti_aarch64.as_ref().ok_or_else(|| {
                    Error::image(
                        member,
                        "core_entry.ti_aarch64 (aarch64 registers) is missing",
                    )
                })?;
                Ok(Registers::Aarch64(Box::new(aarch64::Regs::decode(
                    member, ti,
                )?)))
            }
            Arch::Ppc64le => {
                let ti = core.ti_ppc64.as_ref().ok_or_else(|| {
                    Error::image(member, "core_entry.ti_ppc64 (ppc64 registers) is missing")
                })?;
                Ok(Registers::Ppc64le(Box::new(ppc64::Regs::decode(
                    member, ti,
                )?)))
            }
            Arch::Riscv64 => {
                let ti = core.ti_riscv64.as_ref().ok_or_else(|| {
                    Error::image(
                        member,
                        "core_entry.ti_riscv64 (riscv64 registers) is missing",
                    )
                })?;
                Ok(Registers::Riscv64(Box::new(riscv64::Regs::decode(
                    member, ti,
                )?)))
            }
            Arch::S390x => {
                let ti = core.ti_s390.as_ref().ok_or_else(|| {
                    Error::image(member, "core_entry.ti_s390 (s390x registers) is missing")
                })?;
                Ok(Registers::S390x(Box::new(s390x::Regs::decode(member, ti)?)))
            }
            Arch::Loongarch64 => {
                let ti = core.ti_loongarch64.as_ref().ok_or_else(|| {
                    Error::image(
                        member,
                        "core_entry.ti_loongarch64 (loongarch64 registers) is missing",
                    )
                })?;
                Ok(Registers::Loongarch64(Box::new(loongarch64::Regs::decode(
                    member, ti,
                )?)))
            }
        }
    }

    /// Program counter.
    pub fn pc(&self) -> u64 {
        match self {
            Registers::X86_64(r) => r.get("rip").unwrap_or(0),
            Registers::I386(r) => i386::get(r, "eip").unwrap_or(0) as u64,
            Registers::Arm(r) => r.gp[15] as u64,
            Registers::Aarch64(r) => r.pc,
            Registers::Ppc64le(r) => r.pc(),
            Registers::Riscv64(r) => r.gp[0],
            Registers::S390x(r) => r.psw_addr,
            Registers::Loongarch64(r) => r.pc,
        }
    }

    /// Stack pointer.
    pub fn sp(&self) -> u64 {
        match self {
            Registers::X86_64(r) => r.get("rsp").unwrap_or(0),
            Registers::I386(r) => i386::get(r, "esp").unwrap_or(0) as u64,
            Registers::Arm(r) => r.gp[13] as u64,
            Registers::Aarch64(r) => r.sp,
            Registers::Ppc64le(r) => r.pt[1],
            Registers::Riscv64(r) => r.gp[2],
            Registers::S390x(r) => r.gprs[15],
            Registers::Loongarch64(r) => r.gp[3],
        }
    }

    /// The system call the thread was in when checkpointed, if any (number).
    pub fn syscall(&self) -> Option<u64> {
        match self {
            Registers::X86_64(r) => r.syscall(),
            Registers::I386(r) => {
                let orig = i386::get(r, "orig_eax").unwrap_or(u32::MAX) as i32;
                (orig >= 0).then_some(orig as u64)
            }
            // arm's and aarch64's pt_regs keep no system call number and CRIU's
            // riscv image no orig_a0, so it can't be told; for ppc64 (trap 0xc00,
            // r0) and s390x (the system_call word) it is not derived yet. CRIU's
            // loongarch image has no orig_a0 either.
            Registers::Arm(_)
            | Registers::Aarch64(_)
            | Registers::Ppc64le(_)
            | Registers::Riscv64(_)
            | Registers::S390x(_)
            | Registers::Loongarch64(_) => None,
        }
    }

    /// The name of system call `nr` on this architecture.
    pub fn syscall_name(&self, nr: u64) -> Option<&'static str> {
        match self {
            Registers::X86_64(_) => x86_64_syscalls::name(nr),
            // i386 numbers its system calls differently; no table yet.
            Registers::I386(_)
            | Registers::Arm(_)
            | Registers::Aarch64(_)
            | Registers::Ppc64le(_)
            | Registers::Riscv64(_)
            | Registers::S390x(_)
            | Registers::Loongarch64(_) => None,
        }
    }

    /// Whether CRIU stored the registers rewound for restarting the system call:
    /// the result register holds the call number again (or -EINTR), and the pc
    /// points at the system call instruction.
    pub fn rewound_for_restart(&self) -> bool {
        match self {
            Registers::X86_64(r) => {
                let (ax, orig) = (r.gp[10], r.gp[15]);
                (orig as i64) >= 0 && (ax == orig || ax as i64 == -4)
            }
            Registers::I386(r) => {
                let (ax, orig) = (r.gp[10] as u32 as i32, r.gp[15] as u32 as i32);
                orig >= 0 && (ax == orig || ax == -4)
            }
            Registers::Arm(_)
            | Registers::Aarch64(_)
            | Registers::Ppc64le(_)
            | Registers::Riscv64(_)
            | Registers::S390x(_)
            | Registers::Loongarch64(_) => false,
        }
    }

    /// Every register, grouped as gdb groups them: (group, [(name, value)]),
    /// values as hex strings (vector registers as one wide number).
    pub fn groups(&self) -> Vec<(&'static str, Vec<(String, String)>)> {
        match self {
            Registers::X86_64(r) => r.groups(),
            Registers::I386(r) => i386::groups(r),
            Registers::Arm(r) => r.groups(),
            Registers::Aarch64(r) => r.groups(),
            Registers::Ppc64le(r) => r.groups(),
            Registers::Riscv64(r) => r.groups(),
            Registers::S390x(r) => r.groups(),
            Registers::Loongarch64(r) => r.groups(),
        }
    }

    /// `pr_reg` of NT_PRSTATUS, and whether an FP register note follows.
    pub fn prstatus(&self) -> (Vec<u8>, bool) {
        match self {
            Registers::X86_64(r) => (r.prstatus_regs(), r.fpu.is_some()),
            Registers::I386(r) => (i386::prstatus_regs(r), r.fpu.is_some()),
            // No NT_PRFPREG follows on arm (see arm.rs).
            Registers::Arm(r) => (r.prstatus_regs(), false),
            Registers::Aarch64(r) => (r.prstatus_regs(), r.fpsimd.is_some()),
            Registers::Ppc64le(r) => (r.prstatus_regs(), r.fp.is_some()),
            Registers::Riscv64(r) => (r.prstatus_regs(), r.fp.is_some()),
            Registers::S390x(r) => (r.prstatus_regs(), r.fp.is_some()),
            Registers::Loongarch64(r) => (r.prstatus_regs(), r.fp.is_some()),
        }
    }

    /// The register notes after NT_PRSTATUS, in the kernel's order. `hwcap` is the
    /// process's AT_HWCAP (some notes depend on CPU features).
    pub fn regsets(&self, hwcap: u64) -> Vec<RegSet> {
        match self {
            Registers::X86_64(r) => {
                let mut out = Vec::new();
                if let Some(fp) = r.fpregset() {
                    out.push(RegSet {
                        name: "CORE",
                        ntype: 2,
                        data: fp,
                    });
                }
                if let Some(xs) = r.xstate() {
                    out.push(RegSet {
                        name: "LINUX",
                        ntype: 0x202,
                        data: xs,
                    });
                }
                out
            }
            Registers::I386(r) => i386::regsets(r),
            Registers::Arm(r) => r.regsets(),
            Registers::Aarch64(r) => r.regsets(hwcap),
            Registers::Ppc64le(r) => r.regsets(),
            Registers::Riscv64(r) => r.regsets(),
            Registers::S390x(r) => r.regsets(),
            Registers::Loongarch64(r) => r.regsets(),
        }
    }
}
