//! `ck2core diff`: what changed between two checkpoints. Exit status as diff(1):
//! 0 identical, 1 different, 2 trouble.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::{print_json, MemArgs};
use ck2core::archive::{Input, Limits};
use ck2core::model::{Checkpoint, OpenOptions};
use ck2core::views::diff::{self, Change, Diff, DiffOptions, Entries, PidMap};
use ck2core::views::Hex;

/// Exit status when the checkpoints differ.
const EXIT_DIFFERENT: u8 = 1;
/// Exit status on trouble (as diff(1) and clap's usage errors).
const EXIT_TROUBLE: u8 = 2;

#[derive(Args)]
pub struct DiffArgs {
    /// The first checkpoint (A): image directory, archive, or `-` for stdin.
    #[arg(value_name = "A")]
    a: String,
    /// The second checkpoint (B).
    #[arg(value_name = "B")]
    b: String,
    /// The container's root filesystem, for file pages CRIU did not save (both sides).
    #[arg(long, value_name = "DIR")]
    rootfs: Option<PathBuf>,
    /// Another root for B (default: --rootfs).
    #[arg(long, value_name = "DIR")]
    rootfs_b: Option<PathBuf>,
    /// Most bytes a compressed or piped archive may expand to.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_unpacked)]
    max_unpacked: u64,
    /// How to pair processes: `auto` (by pid, else by command line and place in the
    /// tree), or pairs `PA:PB,...` (the rest as with auto).
    #[arg(long, value_name = "auto|PA:PB,...", default_value = "auto")]
    pid_map: String,
    /// Also compare every register of every thread.
    #[arg(long)]
    regs: bool,
    /// Print JSON (docs/diff.md).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    mem: MemArgs,
}

fn pid_map(s: &str) -> anyhow::Result<PidMap> {
    if s == "auto" {
        return Ok(PidMap::Auto);
    }
    let mut pairs = Vec::new();
    for p in s.split(',') {
        let parsed = p
            .split_once(':')
            .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)));
        match parsed {
            Some(pair) => pairs.push(pair),
            None => anyhow::bail!("--pid-map {s:?}: give `auto` or pairs like 1:1,9:774"),
        }
    }
    Ok(PidMap::Given(pairs))
}

pub fn run(a: DiffArgs) -> ExitCode {
    match compare(&a) {
        Ok(d) => {
            if a.json {
                if let Err(e) = print_json(&d) {
                    eprintln!("ck2core: {e:#}");
                    return ExitCode::from(EXIT_TROUBLE);
                }
            } else {
                render(&d);
            }
            if d.identical {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_DIFFERENT)
            }
        }
        Err(e) => {
            eprintln!("ck2core: {e:#}");
            ExitCode::from(EXIT_TROUBLE)
        }
    }
}

fn compare(a: &DiffArgs) -> anyhow::Result<Diff> {
    if a.a == "-" && a.b == "-" {
        anyhow::bail!("only one of A and B can be `-` (stdin)");
    }
    let opts = DiffOptions {
        pid_map: pid_map(&a.pid_map)?,
        regs: a.regs,
        filter: a.mem.filter()?,
    };
    let limits = Limits {
        max_unpacked: a.max_unpacked,
    };
    let open = |path: &str, rootfs: Option<PathBuf>, side: &str| {
        Checkpoint::open(
            &Input::parse(path),
            &OpenOptions {
                rootfs,
                limits,
                ..Default::default()
            },
        )
        .map_err(|e| anyhow::anyhow!("{side}: {e}"))
    };
    let ca = open(&a.a, a.rootfs.clone(), "A")?;
    let cb = open(&a.b, a.rootfs_b.clone().or(a.rootfs.clone()), "B")?;
    Ok(diff::diff(&ca, &cb, &opts)?)
}

fn opt(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("(none)")
}

fn changes(indent: &str, list: &[Change]) {
    for c in list {
        outln!("{indent}{}: {} -> {}", c.what, opt(&c.a), opt(&c.b));
    }
}

fn entries(indent: &str, what: &str, e: &Entries) {
    for c in &e.added {
        outln!("{indent}+ {what}{}  {}", c.what, opt(&c.b));
    }
    for c in &e.removed {
        outln!("{indent}- {what}{}  {}", c.what, opt(&c.a));
    }
    for c in &e.changed {
        outln!("{indent}~ {what}{}  {} -> {}", c.what, opt(&c.a), opt(&c.b));
    }
}

fn plural(n: u64, one: &str) -> String {
    format!("{n} {one}{}", if n == 1 { "" } else { "s" })
}

fn render(d: &Diff) {
    let s = &d.summary;
    outln!("A: {}", d.a);
    outln!("B: {}", d.b);
    outln!(
        "{}: {} compared ({} differ{}), {} added, {} removed; container: {}; memory: {} differ, {} unknown",
        if d.identical { "identical" } else { "different" },
        plural(s.processes_compared as u64, "process pair"),
        s.processes_differ,
        if s.processes_differ == 1 { "s" } else { "" },
        s.processes_added,
        s.processes_removed,
        plural(s.container_changes as u64, "change"),
        plural(s.pages_differ, "page"),
        s.pages_unknown
    );
    if !d.container.is_empty() || !d.rootfs_diff.is_empty() {
        outln!();
        outln!("container");
        changes("  ", &d.container);
        entries("  ", "rootfs-diff ", &d.rootfs_diff);
    }
    for p in &d.processes {
        outln!();
        let pid = if p.a_pid == p.b_pid {
            String::new()
        } else {
            format!(", pid {} in B", p.b_pid)
        };
        outln!(
            "process {} ({}){pid}, matched by {}{}",
            p.a_pid,
            p.comm,
            p.matched_by,
            if p.identical { ": identical" } else { "" }
        );
        if let Some(e) = &p.error {
            outln!("  could not compare: {e}");
        }
        changes("  ", &p.changes);
        for t in &p.threads.added {
            outln!("  + thread {} ({})", t.tid, t.name);
        }
        for t in &p.threads.removed {
            outln!("  - thread {} ({})", t.tid, t.name);
        }
        for t in &p.threads.changed {
            let tid = if t.a_tid == t.b_tid {
                t.a_tid.to_string()
            } else {
                format!("{} -> {}", t.a_tid, t.b_tid)
            };
            outln!("  thread {tid} ({})", t.name);
            changes("    ", &t.changes);
        }
        entries("  ", "", &p.files);
        entries("  ", "env ", &p.environment);
        let m = &p.mappings;
        for (sign, v) in m
            .added
            .iter()
            .map(|v| ('+', v))
            .chain(m.removed.iter().map(|v| ('-', v)))
        {
            outln!(
                "  {sign} mapping {:012x}-{:012x} {} {} {}",
                v.start.0,
                v.end.0,
                v.perms,
                v.kind.name(),
                v.name
            );
        }
        for c in &m.changed {
            outln!(
                "  ~ mapping {:012x}-{:012x} {} {}",
                c.a.start.0,
                c.a.end.0,
                c.a.kind.name(),
                c.a.name
            );
            changes("      ", &c.changes);
        }
        for md in &p.memory {
            let pg = &md.pages;
            let moved = if md.b_start != md.a.start {
                format!(" (in B at {:012x})", md.b_start.0)
            } else {
                String::new()
            };
            outln!(
                "  memory {:012x}-{:012x} {}{}{moved}: {} differ, {} unknown, of {} compared",
                md.a.start.0,
                md.a.end.0,
                md.a.kind.name(),
                if md.a.name.is_empty() {
                    String::new()
                } else {
                    format!(" {}", md.a.name)
                },
                plural(pg.differ, "page"),
                pg.unknown,
                pg.compared
            );
            for r in &pg.differing {
                outln!("      differ   {}", range(r, md));
            }
            for r in &pg.unknown_ranges {
                outln!(
                    "      unknown  {}, not in {}",
                    range(r, md),
                    r.missing_in.unwrap_or("?").to_uppercase()
                );
            }
        }
    }
    let added = d.added_processes.iter().map(|p| ("+", "B", p));
    let removed = d.removed_processes.iter().map(|p| ("-", "A", p));
    for (sign, side, p) in added.chain(removed) {
        outln!();
        outln!(
            "{sign} process {} ({}) in {side} only, parent {}: {}",
            p.pid,
            p.comm.as_deref().unwrap_or("?"),
            p.ppid,
            p.cmdline.as_ref().map(|c| c.join(" ")).unwrap_or_default()
        );
    }
}

fn range(r: &diff::pages::PageRange, md: &diff::MemoryDiff) -> String {
    let end = r.a.0 + r.pages * md.pages.page_size;
    let b = if r.b != r.a {
        format!("  (B {})", Hex(r.b.0))
    } else {
        String::new()
    };
    format!(
        "{:012x}-{:012x}  {}{b}",
        r.a.0,
        end,
        plural(r.pages, "page")
    )
}
