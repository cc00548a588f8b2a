//! `ck2core search`: find bytes in process memory, across every page source.

use clap::Args;
use serde::Serialize;

use super::{hexdump_row, print_json, selected, MemArgs, Source};
use ck2core::views::memory::{self, Match, Pattern};

#[derive(Args)]
pub struct SearchArgs {
    #[command(flatten)]
    source: Source,
    /// What to find: text (default), a regular expression (--regex) or hex bytes (--hex).
    pattern: String,
    /// The pattern is a regular expression over bytes.
    #[arg(long, conflicts_with = "hex")]
    regex: bool,
    /// The pattern is hex bytes, e.g. `deadbeef` or `de ad be ef`.
    #[arg(long)]
    hex: bool,
    /// Only this process (repeatable; default all).
    #[arg(long = "pid", value_name = "PID")]
    pids: Vec<u32>,
    /// Bytes of context to show around each match.
    #[arg(long, short = 'C', default_value_t = 16)]
    context: u64,
    /// Stop after this many matches.
    #[arg(long, default_value_t = 1000)]
    max: usize,
    /// Print JSON (docs/json.md).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    mem: MemArgs,
}

#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct Out {
    matches: Vec<Match>,
    truncated: bool,
}

fn parse_hex(s: &str) -> anyhow::Result<Vec<u8>> {
    let digits: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    let digits = digits.strip_prefix("0x").unwrap_or(&digits);
    if digits.len() % 2 != 0 || digits.is_empty() {
        anyhow::bail!("--hex wants an even number of hex digits, got {s:?}");
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&digits[i..i + 2], 16)
                .map_err(|_| anyhow::anyhow!("{s:?} is not hex"))
        })
        .collect()
}

pub fn run(a: SearchArgs) -> anyhow::Result<()> {
    let pat = if a.regex {
        Pattern::regex(&a.pattern)?
    } else if a.hex {
        Pattern::literal(&parse_hex(&a.pattern)?)?
    } else {
        Pattern::literal(a.pattern.as_bytes())?
    };
    let filter = a.mem.filter()?;
    let ck = a.source.open()?;
    let procs = selected(&ck, &a.pids)?;
    let mut matches = Vec::new();
    for p in &procs {
        let left = a.max.saturating_sub(matches.len());
        matches.extend(memory::search(p, &pat, a.context, left, &filter)?);
    }
    let truncated = matches.len() >= a.max;
    if a.json {
        return print_json(&Out { matches, truncated });
    }
    for m in &matches {
        outln!(
            "pid {} at {} ({} +{}, {})",
            m.pid,
            m.address,
            if m.mapping.is_empty() {
                "anonymous"
            } else {
                &m.mapping
            },
            m.offset,
            serde_json::to_value(m.kind)?.as_str().unwrap_or("")
        );
        for (i, row) in m.context.0.chunks(16).enumerate() {
            outln!(
                "  {}",
                hexdump_row(m.context_start.0 + 16 * i as u64, row, &|_| true)
            );
        }
    }
    outln!(
        "{} match{}{}",
        matches.len(),
        if matches.len() == 1 { "" } else { "es" },
        if truncated { " (stopped at --max)" } else { "" }
    );
    Ok(())
}
