//! Stack unwinding over a checkpointed thread: call-frame information (CFI) first,
//! then the frame-pointer chain, then a scan of the stack for return addresses, as
//! gdb and minidump-stackwalk do. Signal frames are recognised by the kernel's
//! sigreturn trampoline and unwound from the `ucontext` the kernel saved.

use std::cell::RefCell;
use std::collections::HashMap;

use gimli::{
    BaseAddresses, CfaRule, DebugFrame, EhFrame, EhFrameHdr, Register, RegisterRule, UnwindContext,
    UnwindSection,
};
use serde::Serialize;

use super::modules::{Cfi, Modules, Reader};
use crate::arch::{Arch, Registers};
use crate::core::layout::ElfLayout;
use crate::model::memory::AddressSpace;

/// How a frame's pc and sp were found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub enum Trust {
    /// From a full register context: the saved thread, or a signal frame.
    #[serde(rename = "context")]
    Context,
    /// From the caller's call-frame information.
    #[serde(rename = "cfi")]
    Cfi,
    /// From the frame-pointer chain.
    #[serde(rename = "frame pointer")]
    FramePointer,
    /// A stack word that points just after a call instruction.
    #[serde(rename = "scan")]
    Scan,
    /// A function that tail-called the next inner one, which left no frame on the
    /// stack; found from DWARF call-site information.
    #[serde(rename = "tail call")]
    TailCall,
}

impl Trust {
    /// As shown in text.
    pub fn name(self) -> &'static str {
        match self {
            Trust::Context => "context",
            Trust::Cfi => "cfi",
            Trust::FramePointer => "frame pointer",
            Trust::Scan => "scan",
            Trust::TailCall => "tail call",
        }
    }
}

/// One physical frame.
#[derive(Debug, Clone)]
pub struct RawFrame {
    /// Program counter (for callers: the return address).
    pub pc: u64,
    /// Stack pointer in this frame.
    pub sp: u64,
    /// How it was found.
    pub trust: Trust,
    /// `pc` is a return address: symbolize `pc - 1`, the call instruction.
    pub is_return_address: bool,
    /// This frame is the kernel's sigreturn trampoline: the next frame was interrupted
    /// by a signal (gdb's `<signal handler called>`).
    pub signal_trampoline: bool,
}

/// Most frames walked: deeper stacks are almost always a loop in bad data.
const MAX_FRAMES: usize = 256;
/// Words a scan looks at before giving up.
const SCAN_WORDS: u64 = 1024;

/// Reads of process memory, a page at a time, cached.
pub struct Memory<'a> {
    mem: &'a AddressSpace,
    pages: RefCell<HashMap<u64, Option<Box<[u8]>>>>,
}

const CACHE_PAGE: u64 = 4096;

impl<'a> Memory<'a> {
    /// A reader over `mem`.
    pub fn new(mem: &'a AddressSpace) -> Memory<'a> {
        Memory {
            mem,
            pages: RefCell::new(HashMap::new()),
        }
    }

    /// Reads `buf.len()` bytes at `addr`, or `None` if any of them is not available.
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Option<()> {
        let mut at = addr;
        let mut done = 0;
        while done < buf.len() {
            let page = at - at % CACHE_PAGE;
            let off = (at - page) as usize;
            let n = (CACHE_PAGE as usize - off).min(buf.len() - done);
            let mut pages = self.pages.borrow_mut();
            let p = pages.entry(page).or_insert_with(|| {
                let mut b = vec![0u8; CACHE_PAGE as usize].into_boxed_slice();
                match self.mem.read(page, &mut b) {
                    Ok(missing) if missing.is_empty() => Some(b),
                    _ => None,
                }
            });
            buf[done..done + n].copy_from_slice(&p.as_ref()?[off..off + n]);
            done += n;
            at = at.checked_add(n as u64)?;
        }
        Some(())
    }

    /// The 64-bit little-endian word at `addr` (x86-64 and arm64, the unwinder's).
    pub fn word(&self, addr: u64) -> Option<u64> {
        self.long(addr, ElfLayout::LE64)
    }

    /// The "long" of a process of `layout` (size and byte order) at `addr`.
    pub fn long(&self, addr: u64, layout: ElfLayout) -> Option<u64> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b[..layout.word()])?;
        Some(layout.get_word(&b))
    }

    fn executable(&self, addr: u64) -> bool {
        self.mem.vma_at(addr).is_some_and(|v| v.prot & 4 != 0)
    }
}

/// The registers an unwinder tracks, by DWARF number.
#[derive(Debug, Clone)]
struct Regs {
    v: [Option<u64>; 33],
    pc: u64,
}

/// What differs between architectures.
struct Desc {
    arch: Arch,
    sp: u16,
    fp: u16,
    ra: u16,
}

impl Desc {
    fn of(arch: Arch) -> Option<Desc> {
        match arch {
            // DWARF: rax 0, rdx 1, rcx 2, rbx 3, rsi 4, rdi 5, rbp 6, rsp 7, r8-r15,
            // return address 16.
            Arch::X86_64 => Some(Desc {
                arch,
                sp: 7,
                fp: 6,
                ra: 16,
            }),
            // x0-x30, sp 31; the return address column is x30 (lr).
            Arch::Aarch64 => Some(Desc {
                arch,
                sp: 31,
                fp: 29,
                ra: 30,
            }),
            // Registers and stack words are reported; frames beyond the first are not
            // looked for yet on these.
            Arch::I386
            | Arch::Arm
            | Arch::Ppc64le
            | Arch::Riscv64
            | Arch::S390x
            | Arch::Loongarch64 => None,
        }
    }
}

const X86_DWARF_NAMES: [&str; 16] = [
    "rax", "rdx", "rcx", "rbx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11", "r12", "r13",
    "r14", "r15",
];

fn initial(regs: &Registers) -> Regs {
    let mut r = Regs {
        v: [None; 33],
        pc: regs.pc(),
    };
    match regs {
        Registers::X86_64(x) => {
            for (i, n) in X86_DWARF_NAMES.iter().enumerate() {
                r.v[i] = x.get(n);
            }
        }
        Registers::Aarch64(a) => {
            for i in 0..31 {
                r.v[i] = Some(a.x[i]);
            }
            r.v[31] = Some(a.sp);
        }
        _ => {}
    }
    r
}

/// Walks the stack of a thread whose registers are `regs`. Returns the frames,
/// innermost first, and why the walk stopped if it stopped early.
pub fn unwind(
    arch: Arch,
    regs: &Registers,
    mem: &Memory<'_>,
    modules: &Modules,
) -> (Vec<RawFrame>, Option<String>) {
    let frame0 = RawFrame {
        pc: regs.pc(),
        sp: regs.sp(),
        trust: Trust::Context,
        is_return_address: false,
        signal_trampoline: false,
    };
    let Some(desc) = Desc::of(arch) else {
        return (
            vec![frame0],
            Some(format!("callers are not looked for on {} yet", arch.name())),
        );
    };
    let mut cur = initial(regs);
    let mut frames = vec![frame0];
    let mut ctx = Box::new(UnwindContext::new());
    loop {
        if frames.len() >= MAX_FRAMES {
            return (frames, Some(format!("stopped after {MAX_FRAMES} frames")));
        }
        let last = frames.last_mut().expect("at least one frame");
        let sp = last.sp;
        if let Some(next) = signal_frame(&desc, cur.pc, sp, mem) {
            last.signal_trampoline = true;
            frames.push(RawFrame {
                pc: next.pc,
                sp: next.v[desc.sp as usize].unwrap_or(0),
                trust: Trust::Context,
                is_return_address: false,
                signal_trampoline: false,
            });
            cur = next;
            continue;
        }
        let lookup = if last.is_return_address {
            cur.pc.wrapping_sub(1)
        } else {
            cur.pc
        };
        let step = match modules.at(lookup).and_then(|m| m.cfi(lookup)) {
            Some(cfi) => match step_cfi(&desc, &cur, &cfi, mem, &mut ctx) {
                Ok(Some(next)) => Some((next, Trust::Cfi)),
                // The CFI says this is the outermost frame (clone3, _start).
                Ok(None) => return (frames, None),
                Err(()) => None,
            },
            None => None,
        };
        let step = step
            .or_else(|| {
                step_frame_pointer(&desc, &cur, mem, modules).map(|n| (n, Trust::FramePointer))
            })
            .or_else(|| step_scan(&desc, &cur, mem, modules).map(|n| (n, Trust::Scan)));
        let Some((next, trust)) = step else {
            return (
                frames,
                Some("no unwind information, frame pointer or return address found".into()),
            );
        };
        let next_sp = next.v[desc.sp as usize].unwrap_or(0);
        if next.pc == 0 {
            return (frames, None);
        }
        if next_sp <= sp || !mem.executable(next.pc) {
            return (
                frames,
                Some(format!(
                    "{} gave pc {:#x} sp {:#x}, which can't be a caller",
                    trust.name(),
                    next.pc,
                    next_sp
                )),
            );
        }
        frames.push(RawFrame {
            pc: next.pc,
            sp: next_sp,
            trust,
            is_return_address: true,
            signal_trampoline: false,
        });
        cur = next;
    }
}

/// Inserts the frames of functions that tail-called the frame below them.
pub fn add_tail_calls(frames: Vec<RawFrame>, modules: &Modules) -> Vec<RawFrame> {
    let mut out: Vec<RawFrame> = Vec::with_capacity(frames.len());
    for f in frames {
        if let Some(callee) = out.last() {
            if f.is_return_address && !callee.signal_trampoline {
                let probe = callee.pc.wrapping_sub(callee.is_return_address as u64);
                let caller = modules.at(f.pc.wrapping_sub(1));
                if caller.is_some_and(|m| m.contains(probe)) {
                    let sp = callee.sp;
                    for pc in caller
                        .map(|m| m.tail_calls(f.pc, probe))
                        .unwrap_or_default()
                    {
                        out.push(RawFrame {
                            pc,
                            sp,
                            trust: Trust::TailCall,
                            is_return_address: true,
                            signal_trampoline: false,
                        });
                    }
                }
            }
        }
        out.push(f);
    }
    out
}

/// The register state before a signal, if `pc` is the kernel's sigreturn
/// trampoline (glibc's `__restore_rt` on x86-64, the vDSO's on arm64).
fn signal_frame(desc: &Desc, pc: u64, sp: u64, mem: &Memory<'_>) -> Option<Regs> {
    match desc.arch {
        Arch::X86_64 => {
            // mov $15, %rax (rt_sigreturn); syscall
            const CODE: [u8; 9] = [0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05];
            let mut b = [0u8; 9];
            let at_start = mem.read(pc, &mut b).is_some() && b == CODE;
            let at_syscall =
                !at_start && mem.read(pc.wrapping_sub(7), &mut b).is_some() && b == CODE;
            if !at_start && !at_syscall {
                return None;
            }
            // sp points at the ucontext; its uc_mcontext is 40 bytes in:
            // r8..r15, rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp, rip.
            let sc = sp + 40;
            let w = |i: u64| mem.word(sc + 8 * i);
            let mut r = Regs {
                v: [None; 33],
                pc: w(16)?,
            };
            for (i, n) in [8u16, 9, 10, 11, 12, 13, 14, 15, 5, 4, 6, 3, 1, 0, 2, 7]
                .iter()
                .enumerate()
            {
                r.v[*n as usize] = w(i as u64);
            }
            Some(r)
        }
        Arch::Aarch64 => {
            // mov x8, #139 (rt_sigreturn); svc #0
            let mut b = [0u8; 8];
            mem.read(pc, &mut b)?;
            if b != [0x68, 0x11, 0x80, 0xd2, 0x01, 0x00, 0x00, 0xd4] {
                return None;
            }
            // sp points at the rt_sigframe: siginfo (128), then the ucontext whose
            // uc_mcontext is at 176; in it, fault_address then x0..x30, sp, pc.
            let regs = sp + 128 + 176 + 8;
            let mut r = Regs {
                v: [None; 33],
                pc: mem.word(regs + 32 * 8)?,
            };
            for i in 0..32 {
                r.v[i] = mem.word(regs + 8 * i as u64);
            }
            Some(r)
        }
        _ => None,
    }
}

type Ctx = UnwindContext<usize>;

/// One step by CFI. `Ok(None)` means the return address is undefined: the end.
fn step_cfi(
    desc: &Desc,
    cur: &Regs,
    cfi: &Cfi<'_>,
    mem: &Memory<'_>,
    ctx: &mut Ctx,
) -> Result<Option<Regs>, ()> {
    let addr = cfi.svma;
    if let Some(eh) = cfi.eh_frame {
        let mut bases = BaseAddresses::default()
            .set_eh_frame(eh.addr)
            .set_text(cfi.text);
        let section = EhFrame::from(eh.data.clone());
        let fde = match cfi.eh_frame_hdr {
            Some(hdr) => {
                bases = bases.set_eh_frame_hdr(hdr.addr);
                EhFrameHdr::from(hdr.data.clone())
                    .parse(&bases, 8)
                    .ok()
                    .and_then(|p| {
                        p.table()?
                            .fde_for_address(&section, &bases, addr, EhFrame::cie_from_offset)
                            .ok()
                    })
            }
            None => section
                .fde_for_address(&bases, addr, EhFrame::cie_from_offset)
                .ok(),
        };
        if let Some(fde) = fde {
            if let Ok(row) = fde.unwind_info_for_address(&section, &bases, ctx, addr) {
                let row = row.clone();
                return apply(desc, cur, &row, &section, mem);
            }
        }
    }
    if let Some(df) = cfi.debug_frame {
        let bases = BaseAddresses::default();
        let mut section = DebugFrame::from(df.data.clone());
        section.set_address_size(8);
        if let Ok(fde) = section.fde_for_address(&bases, addr, DebugFrame::cie_from_offset) {
            if let Ok(row) = fde.unwind_info_for_address(&section, &bases, ctx, addr) {
                let row = row.clone();
                return apply(desc, cur, &row, &section, mem);
            }
        }
    }
    Err(())
}

fn apply<S: UnwindSection<Reader>>(
    desc: &Desc,
    cur: &Regs,
    row: &gimli::UnwindTableRow<usize>,
    section: &S,
    mem: &Memory<'_>,
) -> Result<Option<Regs>, ()> {
    let get = |r: Register| -> Option<u64> {
        if r.0 == desc.ra && desc.arch == Arch::X86_64 {
            Some(cur.pc)
        } else {
            cur.v.get(r.0 as usize).copied().flatten()
        }
    };
    let cfa = match row.cfa() {
        CfaRule::RegisterAndOffset { register, offset } => {
            get(*register).ok_or(())?.wrapping_add_signed(*offset)
        }
        CfaRule::Expression(e) => {
            let expr = e.get(section).map_err(|_| ())?;
            match evaluate(expr, None, &get, mem).ok_or(())? {
                Eval::Address(a) | Eval::Value(a) => a,
            }
        }
    };
    let mut next = Regs { v: cur.v, pc: 0 };
    next.v[desc.sp as usize] = Some(cfa);
    let mut ra_defined = false;
    let rule_value = |rule: &RegisterRule<usize>| -> Result<Option<u64>, ()> {
        Ok(match rule {
            RegisterRule::Undefined => None,
            RegisterRule::SameValue => None,
            RegisterRule::Offset(o) => mem.word(cfa.wrapping_add_signed(*o)),
            RegisterRule::ValOffset(o) => Some(cfa.wrapping_add_signed(*o)),
            RegisterRule::Register(r) => get(*r),
            RegisterRule::Expression(e) => {
                let expr = e.get(section).map_err(|_| ())?;
                match evaluate(expr, Some(cfa), &get, mem) {
                    Some(Eval::Address(a)) => mem.word(a),
                    _ => None,
                }
            }
            RegisterRule::ValExpression(e) => {
                let expr = e.get(section).map_err(|_| ())?;
                match evaluate(expr, Some(cfa), &get, mem) {
                    Some(Eval::Address(a) | Eval::Value(a)) => Some(a),
                    None => None,
                }
            }
            RegisterRule::Constant(c) => Some(*c),
            RegisterRule::Architectural => None,
            _ => None,
        })
    };
    for (reg, rule) in row.registers() {
        let value = match rule {
            RegisterRule::SameValue => get(*reg),
            _ => rule_value(rule)?,
        };
        if reg.0 == desc.ra {
            if matches!(rule, RegisterRule::Undefined) {
                return Ok(None);
            }
            ra_defined = true;
            next.pc = value.ok_or(())?;
            if desc.arch == Arch::X86_64 {
                continue;
            }
        }
        if let Some(slot) = next.v.get_mut(reg.0 as usize) {
            *slot = value;
        }
    }
    if !ra_defined {
        // arm64 leaf functions keep the return address in lr with no rule for it.
        if desc.arch == Arch::Aarch64 {
            next.pc = cur.v[30].ok_or(())?;
        } else {
            return Ok(None);
        }
    }
    if desc.arch == Arch::Aarch64 {
        // Strip pointer-authentication bits (48-bit user addresses).
        next.pc &= 0x0000_ffff_ffff_ffff;
    }
    Ok(Some(next))
}

enum Eval {
    Address(u64),
    Value(u64),
}

fn evaluate(
    expr: gimli::Expression<Reader>,
    initial: Option<u64>,
    get: &dyn Fn(Register) -> Option<u64>,
    mem: &Memory<'_>,
) -> Option<Eval> {
    let encoding = gimli::Encoding {
        format: gimli::Format::Dwarf32,
        version: 4,
        address_size: 8,
    };
    let mut eval = expr.evaluation(encoding);
    if let Some(v) = initial {
        eval.set_initial_value(v);
    }
    let mut res = eval.evaluate().ok()?;
    let mut steps = 0;
    loop {
        steps += 1;
        if steps > 1000 {
            return None;
        }
        res = match res {
            gimli::EvaluationResult::Complete => break,
            gimli::EvaluationResult::RequiresMemory { address, size, .. } => {
                let mut b = [0u8; 8];
                mem.read(address, &mut b[..size.min(8) as usize])?;
                eval.resume_with_memory(gimli::Value::Generic(u64::from_le_bytes(b)))
                    .ok()?
            }
            gimli::EvaluationResult::RequiresRegister { register, .. } => eval
                .resume_with_register(gimli::Value::Generic(get(register)?))
                .ok()?,
            _ => return None,
        };
    }
    let pieces = eval.result();
    match pieces.first()?.location {
        gimli::Location::Address { address } => Some(Eval::Address(address)),
        gimli::Location::Value { value } => Some(Eval::Value(value.to_u64(!0).ok()?)),
        _ => None,
    }
}

/// One step by the frame-pointer chain: [fp] is the caller's fp, [fp+8] the return
/// address, on both x86-64 and arm64.
fn step_frame_pointer(
    desc: &Desc,
    cur: &Regs,
    mem: &Memory<'_>,
    modules: &Modules,
) -> Option<Regs> {
    let fp = cur.v[desc.fp as usize]?;
    let sp = cur.v[desc.sp as usize]?;
    if fp < sp || fp % 8 != 0 || fp - sp > 8 << 20 {
        return None;
    }
    let ret = mem.word(fp + 8)?;
    if !is_call_site(desc, ret, mem, modules) {
        return None;
    }
    let mut next = Regs {
        v: [None; 33],
        pc: ret,
    };
    next.v[desc.fp as usize] = mem.word(fp);
    next.v[desc.sp as usize] = Some(fp + 16);
    Some(next)
}

/// One step by scanning the stack for a word that is a return address.
fn step_scan(desc: &Desc, cur: &Regs, mem: &Memory<'_>, modules: &Modules) -> Option<Regs> {
    let sp = cur.v[desc.sp as usize]?;
    // On x86-64 the return address of frame 0 may be at sp itself; callers' frames
    // start above their return address slot.
    for i in 0..SCAN_WORDS {
        let slot = sp.checked_add(8 * i)?;
        let Some(w) = mem.word(slot) else { break };
        if is_call_site(desc, w, mem, modules) {
            let mut next = Regs {
                v: [None; 33],
                pc: w,
            };
            next.v[desc.sp as usize] = Some(slot + 8);
            // Keep the frame pointer if it still points above: the caller's frame.
            next.v[desc.fp as usize] = cur.v[desc.fp as usize].filter(|fp| *fp > slot);
            return Some(next);
        }
    }
    None
}

/// True if `addr` is in a module's code, just after a call instruction.
fn is_call_site(desc: &Desc, addr: u64, mem: &Memory<'_>, modules: &Modules) -> bool {
    if !modules.at(addr).is_some_and(|m| m.executable(addr)) {
        return false;
    }
    match desc.arch {
        Arch::X86_64 => {
            let mut b = [0u8; 7];
            if mem.read(addr.wrapping_sub(7), &mut b).is_none() {
                return false;
            }
            // call rel32: e8 xx xx xx xx
            b[2] == 0xe8
                // call *%reg (ff d0-d7, optionally after a REX prefix)
                || (b[5] == 0xff && (0xd0..=0xd7).contains(&b[6]))
                // call *disp8(%reg): ff 50-57 xx (53 excluded: needs SIB 54)
                || (b[4] == 0xff && (0x50..=0x57).contains(&b[5]))
                // call *disp8(%reg,...): ff 54 sib xx
                || (b[3] == 0xff && b[4] == 0x54)
                // call *disp32(%rip) and *disp32(%reg): ff 15 / ff 90-97 xx xx xx xx
                || (b[1] == 0xff && (b[2] == 0x15 || (0x90..=0x97).contains(&b[2])))
                // call *(%reg): ff 10-17
                || (b[5] == 0xff && (0x10..=0x17).contains(&b[6]))
        }
        Arch::Aarch64 => {
            let mut b = [0u8; 4];
            if mem.read(addr.wrapping_sub(4), &mut b).is_none() {
                return false;
            }
            let insn = u32::from_le_bytes(b);
            // BL imm26, BLR Xn
            insn & 0xfc00_0000 == 0x9400_0000 || insn & 0xffff_fc1f == 0xd63f_0000
        }
        _ => false,
    }
}
