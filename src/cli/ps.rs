//! `ck2core ps`: the process tree.

use clap::Args;
use serde::Serialize;

use super::{print_json, Source};
use ck2core::views::{self, ProcessRow};

#[derive(Args)]
pub struct PsArgs {
    #[command(flatten)]
    source: Source,
    /// Print JSON (docs/json.md).
    #[arg(long)]
    json: bool,
}

#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct Out {
    processes: Vec<ProcessRow>,
}

pub fn run(a: PsArgs) -> anyhow::Result<()> {
    let ck = a.source.open()?;
    let rows = views::processes(&ck);
    if a.json {
        return print_json(&Out { processes: rows });
    }
    outln!(
        "{:>6} {:>6} {:>6} {:>6} {:<7} {:>3} {:>5} {:<15} COMMAND",
        "PID",
        "PPID",
        "PGID",
        "SID",
        "STATE",
        "THR",
        "UID",
        "COMM"
    );
    // Children under their parent, in tree order; orphans (parent not dumped) as roots.
    let roots: Vec<&ProcessRow> = rows
        .iter()
        .filter(|r| !rows.iter().any(|p| p.pid == r.ppid))
        .collect();
    for r in roots {
        print_subtree(&rows, r, 0);
    }
    Ok(())
}

fn print_subtree(rows: &[ProcessRow], r: &ProcessRow, depth: usize) {
    let opt = |v: Option<u32>| v.map_or("-".to_string(), |v| v.to_string());
    let command = match (&r.cmdline, &r.comm, &r.error) {
        (Some(c), _, _) if !c.is_empty() => c.join(" "),
        (_, Some(_), _) => "(argument area not saved)".to_string(),
        (_, _, Some(e)) => format!("(unreadable: {e})"),
        _ => String::new(),
    };
    let indent = if depth == 0 {
        String::new()
    } else {
        format!("{}└─ ", "   ".repeat(depth - 1))
    };
    outln!(
        "{:>6} {:>6} {:>6} {:>6} {:<7} {:>3} {:>5} {:<15} {indent}{command}",
        r.pid,
        r.ppid,
        r.pgid,
        r.sid,
        r.state.unwrap_or("?"),
        r.threads,
        opt(r.uid),
        r.comm.as_deref().unwrap_or("?")
    );
    for c in rows.iter().filter(|c| c.ppid == r.pid && c.pid != r.pid) {
        print_subtree(rows, c, depth + 1);
    }
}
