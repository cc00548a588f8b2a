//! The crash-triage report: for every thread of every process, the registers, a
//! symbolized backtrace and the words around the stack pointer, plus the modules
//! (mapped ELF files) each process had and which of them could be read. It reads the
//! same model as every other view; docs/report.md documents its JSON.

pub mod modules;
mod tailcall;
pub mod unwind;

use serde::Serialize;

use crate::arch::Arch;
use crate::model::{Checkpoint, Process};
use crate::rootfs::{hex, RootFs};
use crate::views::{self, Hex, ThreadRow};
use modules::{DebugDirs, Module, Modules};
use unwind::{Memory, RawFrame, Trust};

/// Version of the report's JSON schema (docs/report.md).
pub const REPORT_VERSION: u32 = 1;

/// What a report looks at.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// Stack words shown per thread, from the stack pointer up.
    pub stack_words: usize,
    /// Where separate debug files are looked for.
    pub debug: DebugDirs,
}

/// The whole report.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Report {
    /// Schema version.
    pub version: u32,
    /// The checkpoint and its container (as `ck2core info`).
    pub checkpoint: views::Info,
    /// One entry per process asked for.
    pub processes: Vec<ProcessReport>,
}

/// One process.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ProcessReport {
    /// Pid.
    pub pid: u32,
    /// Parent pid.
    pub ppid: u32,
    /// Command name.
    pub comm: Option<String>,
    /// alive, stopped or zombie.
    pub state: Option<&'static str>,
    /// Architecture.
    pub arch: Option<&'static str>,
    /// Command line, from memory.
    pub cmdline: Option<Vec<String>>,
    /// Why the process could not be read, if it could not.
    pub error: Option<String>,
    /// Threads, leader first.
    pub threads: Vec<ThreadReport>,
    /// Mapped ELF files, by address.
    pub modules: Vec<ModuleRow>,
    /// Paths of modules whose file could not be read (so frames in them have no
    /// function names or CFI).
    pub missing_files: Vec<String>,
}

/// One thread.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ThreadReport {
    /// Thread facts and general registers, as `ck2core threads --regs --json`.
    #[serde(flatten)]
    pub thread: ThreadRow,
    /// The backtrace, innermost first; inlined calls are frames of their own.
    pub frames: Vec<Frame>,
    /// Why the backtrace ends where it does, if not at the outermost frame.
    pub unwind_stopped: Option<String>,
    /// Stack words from the stack pointer up.
    pub stack: Vec<StackWord>,
}

/// One frame of a backtrace.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Frame {
    /// Index, as gdb numbers frames.
    pub frame: usize,
    /// Program counter (a return address for callers, as gdb shows them).
    pub pc: Hex,
    /// Stack pointer (absent for inlined frames, which share their caller's).
    pub sp: Option<Hex>,
    /// How the frame was found: context, cfi, frame pointer, scan.
    pub trust: Trust,
    /// Path of the module `pc` is in.
    pub module: Option<String>,
    /// `pc` minus the module's base.
    pub module_offset: Option<Hex>,
    /// Function name (demangled).
    pub function: Option<String>,
    /// `pc` minus the function's start (absent for inlined frames).
    pub function_offset: Option<Hex>,
    /// Source file, from DWARF.
    pub file: Option<String>,
    /// Source line, from DWARF.
    pub line: Option<u32>,
    /// This frame is a function inlined into the next one.
    pub inlined: bool,
    /// This frame is the signal trampoline: the next frame was interrupted by a signal.
    pub signal_handler_called: bool,
}

/// One word of stack memory.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct StackWord {
    /// Address.
    pub address: Hex,
    /// Value, or null if that memory is not in the checkpoint.
    pub value: Option<Hex>,
    /// `module!function+offset` when the value points into code.
    pub symbol: Option<String>,
}

/// One mapped ELF file.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ModuleRow {
    /// Path in the container, or `[vdso]`.
    pub path: String,
    /// Lowest mapped address.
    pub base: Hex,
    /// End of the highest mapping.
    pub end: Hex,
    /// GNU build-id (hex).
    pub build_id: Option<String>,
    /// The file's bytes were found (checkpoint, --rootfs, rootfs-diff.tar, memory).
    pub found: bool,
    /// Why not, if not.
    pub missing: Option<String>,
    /// Separate debug file used.
    pub debug_file: Option<String>,
    /// Has a symbol table.
    pub symbols: bool,
    /// Has unwind tables (.eh_frame or .debug_frame).
    pub cfi: bool,
    /// Has DWARF debug information.
    pub dwarf: bool,
}

/// Builds the report for `pids` (all processes if empty).
pub fn build(ck: &Checkpoint, pids: &[u32], opts: &ReportOptions) -> Report {
    let processes = ck
        .tree
        .iter()
        .filter(|t| pids.is_empty() || pids.contains(&t.pid))
        .map(|t| match ck.process(t.pid) {
            Ok(p) => process_report(&p, opts, ck.rootfs()),
            Err(e) => ProcessReport {
                pid: t.pid,
                ppid: t.ppid,
                comm: None,
                state: None,
                arch: None,
                cmdline: None,
                error: Some(e.to_string()),
                threads: Vec::new(),
                modules: Vec::new(),
                missing_files: Vec::new(),
            },
        })
        .collect();
    Report {
        version: REPORT_VERSION,
        checkpoint: views::info(ck),
        processes,
    }
}

/// The report of one loaded process; `root` serves the container's debug files.
pub fn process_report(p: &Process, opts: &ReportOptions, root: &RootFs) -> ProcessReport {
    let empty = Modules { list: Vec::new() };
    let modules = p
        .memory
        .as_ref()
        .map(|m| Modules::load(m, &opts.debug, root));
    let modules = modules.as_ref().unwrap_or(&empty);
    let mem = p.memory.as_ref().map(Memory::new);
    let rows = views::threads(p, true);
    let threads = p
        .threads
        .iter()
        .zip(rows)
        .map(|(t, mut row)| {
            if let Some(groups) = &mut row.registers {
                groups.0.retain(|(g, _)| *g == "general");
            }
            let (frames, unwind_stopped, stack) = match &mem {
                Some(mem) => {
                    let (raw, stopped) = unwind::unwind(p.arch, &t.regs, mem, modules);
                    let raw = unwind::add_tail_calls(raw, modules);
                    (
                        frames(&raw, modules),
                        stopped,
                        stack_words(p.arch, t.regs.sp(), opts.stack_words, mem, modules),
                    )
                }
                None => (
                    Vec::new(),
                    Some("the process has no memory".into()),
                    Vec::new(),
                ),
            };
            ThreadReport {
                thread: row,
                frames,
                unwind_stopped,
                stack,
            }
        })
        .collect();
    ProcessReport {
        pid: p.pid(),
        ppid: p.tree.ppid,
        comm: Some(p.comm.clone()),
        state: Some(p.state.name()),
        arch: Some(p.arch.name()),
        cmdline: p.args(),
        error: None,
        threads,
        missing_files: modules
            .list
            .iter()
            .filter(|m| m.missing.is_some())
            .map(|m| m.path.clone())
            .collect(),
        modules: modules.list.iter().map(module_row).collect(),
    }
}

fn module_row(m: &Module) -> ModuleRow {
    let (symbols, cfi, dwarf) = m.has();
    ModuleRow {
        path: m.path.clone(),
        base: Hex(m.base),
        end: Hex(m.end),
        build_id: m.build_id.as_deref().map(hex),
        found: m.missing.is_none(),
        missing: m.missing.clone(),
        debug_file: m.debug_file.as_ref().map(|p| p.display().to_string()),
        symbols,
        cfi,
        dwarf,
    }
}

/// Physical frames to report frames: inlined calls expanded, innermost first.
fn frames(raw: &[RawFrame], modules: &Modules) -> Vec<Frame> {
    let mut out = Vec::new();
    for f in raw {
        // A return address points after the call; the call is what the frame is in.
        // The signal trampoline is entered by a return, but starts exactly at pc.
        let adjust = (f.is_return_address && !f.signal_trampoline) as u64;
        let probe = f.pc.wrapping_sub(adjust);
        let module = modules.at(probe);
        let sym = module.map(|m| m.symbolize(probe)).unwrap_or_default();
        let base = Frame {
            frame: 0,
            pc: Hex(f.pc),
            sp: None,
            trust: f.trust,
            module: module.map(|m| m.path.clone()),
            module_offset: module.map(|m| Hex(f.pc - m.base)),
            function: None,
            function_offset: None,
            file: None,
            line: None,
            inlined: false,
            signal_handler_called: f.signal_trampoline,
        };
        if sym.frames.is_empty() {
            out.push(Frame {
                frame: out.len(),
                sp: Some(Hex(f.sp)),
                ..base
            });
            continue;
        }
        let n = sym.frames.len();
        for (i, (function, file, line)) in sym.frames.into_iter().enumerate() {
            let outermost = i + 1 == n;
            out.push(Frame {
                frame: out.len(),
                sp: outermost.then_some(Hex(f.sp)),
                function,
                function_offset: if outermost {
                    sym.function_offset.map(|o| Hex(o + adjust))
                } else {
                    None
                },
                file,
                line,
                inlined: !outermost,
                module: base.module.clone(),
                ..base
            });
        }
    }
    out
}

/// `n` words (of the architecture's size and byte order) from `sp` up, code
/// pointers symbolized.
fn stack_words(
    arch: Arch,
    sp: u64,
    n: usize,
    mem: &Memory<'_>,
    modules: &Modules,
) -> Vec<StackWord> {
    let layout = arch.layout();
    let size = layout.word() as u64;
    (0..n as u64)
        .map_while(|i| sp.checked_add(size * i))
        .map(|addr| {
            let value = mem.long(addr, layout);
            StackWord {
                address: Hex(addr),
                value: value.map(Hex),
                symbol: value.and_then(|v| code_symbol(v, modules)),
            }
        })
        .collect()
}

/// `module!function+0xoff` (or `module+0xoff`) for an address in a module's code.
pub fn code_symbol(addr: u64, modules: &Modules) -> Option<String> {
    let m = modules.at(addr).filter(|m| m.executable(addr))?;
    let name = m.path.rsplit('/').next().unwrap_or(&m.path);
    let sym = m.symbolize(addr);
    match (
        sym.frames.last().and_then(|f| f.0.as_ref()),
        sym.function_offset,
    ) {
        (Some(f), Some(off)) => Some(format!("{name}!{f}+{off:#x}")),
        (Some(f), None) => Some(format!("{name}!{f}")),
        _ => Some(format!("{name}+{:#x}", addr - m.base)),
    }
}
