//! Per-architecture register state: decoding from CRIU images and encoding as the
//! register notes the Linux kernel writes into a core. The architecture always comes
//! from `core_entry.mtype`, never from the machine running ck2core.

pub mod x86_64;
mod x86_64_syscalls;

use crate::error::{Error, Result};
use crate::images::pb;

/// An architecture CRIU records in `core_entry.mtype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// x86-64 (mtype 1).
    X86_64,
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
    /// The architecture of a thread's core image.
    pub fn from_mtype(member: &str, mtype: Option<u32>) -> Result<Arch> {
        match mtype {
            Some(1) => Ok(Arch::X86_64),
            Some(m) if (m as usize) < MTYPE_NAMES.len() && m != 0 => Err(Error::Unsupported(format!(
                "{member}: core_entry.mtype is {m} ({}): this architecture is not supported yet (x86_64 only)",
                MTYPE_NAMES[m as usize]
            ))),
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
        }
    }

    /// ELF e_machine of a core for this architecture.
    pub fn elf_machine(self) -> u16 {
        match self {
            Arch::X86_64 => 62,
        }
    }
}

/// A thread's registers, in the architecture's own terms.
#[derive(Debug, Clone)]
pub enum Registers {
    /// x86-64 general, FPU and extended state.
    X86_64(Box<x86_64::Regs>),
}

impl Registers {
    /// Decodes the registers of a thread's core entry.
    pub fn decode(member: &str, arch: Arch, core: &pb::CoreEntry) -> Result<Registers> {
        match arch {
            Arch::X86_64 => {
                let ti = core.thread_info.as_ref().ok_or_else(|| {
                    Error::image(member, "core_entry.thread_info (x86 registers) is missing")
                })?;
                Ok(Registers::X86_64(Box::new(x86_64::Regs::decode(
                    member, ti,
                )?)))
            }
        }
    }

    /// Program counter.
    pub fn pc(&self) -> u64 {
        match self {
            Registers::X86_64(r) => r.get("rip").unwrap_or(0),
        }
    }

    /// Stack pointer.
    pub fn sp(&self) -> u64 {
        match self {
            Registers::X86_64(r) => r.get("rsp").unwrap_or(0),
        }
    }

    /// The system call the thread was in when checkpointed, if any (number).
    pub fn syscall(&self) -> Option<u64> {
        match self {
            Registers::X86_64(r) => r.syscall(),
        }
    }

    /// The name of system call `nr` on this architecture.
    pub fn syscall_name(&self, nr: u64) -> Option<&'static str> {
        match self {
            Registers::X86_64(_) => x86_64_syscalls::name(nr),
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
        }
    }

    /// Every register, grouped as gdb groups them: (group, [(name, value)]),
    /// values as hex strings (vector registers as one wide number).
    pub fn groups(&self) -> Vec<(&'static str, Vec<(String, String)>)> {
        match self {
            Registers::X86_64(r) => r.groups(),
        }
    }
}
