//! `ck2core report`: every thread's registers, backtrace and stack, and the modules,
//! as text for an incident report or JSON for a pipeline (docs/report.md).

use std::path::PathBuf;

use clap::Args;

use super::{print_json, selected_pids, Select};
use ck2core::report::modules::{default_debug_dirs, DebugDirs};
use ck2core::report::{self, Frame, ProcessReport, ReportOptions, ThreadReport};

#[derive(Args)]
pub struct ReportArgs {
    #[command(flatten)]
    select: Select,
    /// Stack words to show per thread, from the stack pointer up.
    #[arg(long, value_name = "N", default_value_t = 32)]
    stack_words: usize,
    /// Directory of separate debug files, found by build-id as
    /// DIR/.build-id/xx/rest.debug (repeatable; default /usr/lib/debug, as gdb).
    #[arg(long = "debug-dir", value_name = "DIR")]
    debug_dirs: Vec<PathBuf>,
}

pub fn run(a: ReportArgs) -> anyhow::Result<()> {
    let ck = a.select.source.open()?;
    let pids = selected_pids(&ck, &a.select.pids)?;
    let opts = ReportOptions {
        stack_words: a.stack_words,
        debug: DebugDirs {
            host: if a.debug_dirs.is_empty() {
                default_debug_dirs()
            } else {
                a.debug_dirs.clone()
            },
        },
    };
    let r = report::build(&ck, &pids, &opts);
    if a.select.json {
        return print_json(&r);
    }
    let i = &r.checkpoint;
    outln!(
        "Checkpoint {} ({}), {} process{}, {} thread{}, {}",
        i.checkpoint,
        i.format,
        i.processes,
        if i.processes == 1 { "" } else { "es" },
        i.threads,
        if i.threads == 1 { "" } else { "s" },
        i.arch.unwrap_or("unknown architecture")
    );
    if let Some(c) = &i.container {
        let c = serde_json::to_value(c)?;
        let field = |k: &str| c.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let parts: Vec<String> = [
            field("engine"),
            field("name"),
            field("image").map(|s| format!("image {s}")),
            field("id").map(|s| format!("id {}", &s[..s.len().min(12)])),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !parts.is_empty() {
            outln!("Container {}", parts.join(", "));
        }
    }
    outln!();
    outln!(
        "  {:>7} {:>7}  {:<8} {:>7}  COMMAND",
        "PID",
        "PPID",
        "STATE",
        "THREADS"
    );
    for p in &r.processes {
        outln!(
            "  {:>7} {:>7}  {:<8} {:>7}  {}",
            p.pid,
            p.ppid,
            p.state.unwrap_or("?"),
            p.threads.len(),
            p.cmdline
                .as_ref()
                .map(|a| a.join(" "))
                .or_else(|| p.comm.clone())
                .unwrap_or_else(|| "(unreadable)".into())
        );
    }
    for p in &r.processes {
        outln!();
        process(p);
    }
    Ok(())
}

fn process(p: &ProcessReport) {
    outln!(
        "Process {} ({}), parent {}, {}, {}",
        p.pid,
        p.comm.as_deref().unwrap_or("?"),
        p.ppid,
        p.state.unwrap_or("unreadable"),
        p.arch.unwrap_or("?")
    );
    if let Some(e) = &p.error {
        outln!("  cannot read it: {e}");
        return;
    }
    if let Some(args) = &p.cmdline {
        outln!("  {}", args.join(" "));
    }
    if !p.missing_files.is_empty() {
        outln!(
            "  files not found (no symbols or unwind tables for them): {}",
            p.missing_files.join(", ")
        );
    }
    for t in &p.threads {
        outln!();
        thread(t);
    }
    outln!();
    outln!("  Modules:");
    for m in &p.modules {
        let mut what = Vec::new();
        if m.found {
            for (has, name) in [(m.symbols, "symbols"), (m.cfi, "cfi"), (m.dwarf, "dwarf")] {
                if has {
                    what.push(name);
                }
            }
        }
        outln!(
            "    {:#018x}-{:#018x}  {}  {}",
            m.base.0,
            m.end.0,
            m.path,
            m.build_id.as_deref().unwrap_or("(no build-id)")
        );
        match &m.missing {
            Some(why) => outln!("        missing: {why}"),
            None => outln!(
                "        {}{}",
                if what.is_empty() {
                    "no symbols, no unwind tables".to_string()
                } else {
                    what.join(", ")
                },
                m.debug_file
                    .as_deref()
                    .map(|d| format!("; debug file {d}"))
                    .unwrap_or_default()
            ),
        }
    }
}

fn thread(t: &ThreadReport) {
    let row = &t.thread;
    let sys = match &row.syscall {
        Some(s) => format!(
            ", in system call {}{}",
            s.label(),
            if s.rewound_for_restart {
                " (registers rewound for restart)"
            } else {
                ""
            }
        ),
        None => String::new(),
    };
    outln!("  Thread {} \"{}\"{}", row.tid, row.name, sys);
    if let Some(groups) = &row.registers {
        for (_, regs) in &groups.0 {
            for chunk in regs.chunks(3) {
                let line: Vec<String> = chunk
                    .iter()
                    .map(|(n, v)| format!("{n:>8} {v:<20}"))
                    .collect();
                outln!("  {}", line.join(" ").trim_end());
            }
        }
    }
    outln!("    Backtrace:");
    for f in &t.frames {
        outln!("    {}", frame_line(f));
    }
    if let Some(why) = &t.unwind_stopped {
        outln!("    (backtrace stopped: {why})");
    }
    if !t.stack.is_empty() {
        outln!("    Stack:");
        for w in &t.stack {
            match w.value {
                Some(v) => match &w.symbol {
                    Some(sym) => outln!("      {:#018x}  {:#018x}  {sym}", w.address.0, v.0),
                    None => outln!("      {:#018x}  {:#018x}", w.address.0, v.0),
                },
                None => outln!("      {:#018x}  (not in the checkpoint)", w.address.0),
            }
        }
    }
}

fn frame_line(f: &Frame) -> String {
    let mut s = format!("#{:<3} {:#018x}", f.frame, f.pc.0);
    if f.signal_handler_called {
        s.push_str("  <signal handler called>");
    }
    match (&f.function, f.function_offset) {
        (Some(name), Some(off)) => s.push_str(&format!(" in {name}+{off}")),
        (Some(name), None) => s.push_str(&format!(" in {name}")),
        (None, _) => s.push_str(" in ??"),
    }
    if let (Some(file), Some(line)) = (&f.file, f.line) {
        let short = file.rsplit('/').next().unwrap_or(file);
        s.push_str(&format!(" at {short}:{line}"));
    }
    if let (Some(m), Some(off)) = (&f.module, f.module_offset) {
        let short = m.rsplit('/').next().unwrap_or(m);
        s.push_str(&format!("  [{short} +{off}]"));
    }
    let how = if f.inlined { "inlined" } else { f.trust.name() };
    s.push_str(&format!("  ({how})"));
    s
}
