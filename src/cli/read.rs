//! `ck2core read`: process memory as hex, or raw.

use std::io::Write;

use clap::Args;
use serde::Serialize;

use super::{hexdump_row, parse_u64, print_json, selected, MemArgs, Source};
use ck2core::views::memory::{self, MemoryRead, MAX_READ};
use ck2core::views::Hex;

#[derive(Args)]
pub struct ReadArgs {
    #[command(flatten)]
    source: Source,
    /// The process.
    #[arg(long, value_name = "PID")]
    pid: u32,
    /// First address (0x hex or decimal). Without ADDRESS and LENGTH, every range the
    /// memory filter selects is read.
    #[arg(value_parser = parse_u64, requires = "length")]
    address: Option<u64>,
    /// Number of bytes.
    #[arg(value_parser = parse_u64)]
    length: Option<u64>,
    /// Write the raw bytes to stdout (unavailable bytes as zeros, said on stderr).
    #[arg(long, conflicts_with = "json")]
    raw: bool,
    /// Print JSON (docs/json.md).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    mem: MemArgs,
}

/// `read --json`: one read at ADDRESS, or every range a memory filter selects.
#[derive(Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Out {
    /// ADDRESS LENGTH given.
    One(MemoryRead),
    /// No address: the ranges the filter selects, in order.
    Regions {
        /// One read per range.
        regions: Vec<MemoryRead>,
    },
}

pub fn run(a: ReadArgs) -> anyhow::Result<()> {
    let filter = a.mem.filter()?;
    let ck = a.source.open()?;
    let p = selected(&ck, &[a.pid])?.remove(0);
    let reads = match (a.address, a.length) {
        (Some(address), Some(length)) => vec![memory::read(&p, address, length, &filter)?],
        _ => {
            if filter.is_empty() {
                anyhow::bail!(
                    "give ADDRESS and LENGTH, or a memory filter (--kind, --perm, --range, --path) saying what to read"
                );
            }
            let ranges = memory::selected_ranges(&p, &filter)?;
            let total: u64 = ranges.iter().map(|(s, e)| e - s).sum();
            if total > MAX_READ {
                anyhow::bail!(
                    "the filter selects {total} bytes in {} ranges; read at most {MAX_READ} at a time (narrow it with --range)",
                    ranges.len()
                );
            }
            ranges
                .iter()
                .map(|(s, e)| memory::read(&p, *s, e - s, &filter))
                .collect::<Result<_, _>>()?
        }
    };
    if a.json {
        let out = if a.address.is_some() {
            Out::One(reads.into_iter().next().expect("one read"))
        } else {
            Out::Regions { regions: reads }
        };
        return print_json(&out);
    }
    if a.raw {
        let mut missing = 0;
        for r in &reads {
            if let Err(e) = std::io::stdout().write_all(&r.bytes.0) {
                if e.kind() != std::io::ErrorKind::BrokenPipe {
                    return Err(e.into());
                }
                return Ok(());
            }
            missing += r.unavailable.iter().map(|u| u.length).sum::<u64>();
            if a.address.is_none() {
                eprintln!(
                    "ck2core: {}..{}: {} bytes",
                    r.address,
                    Hex(r.address.0 + r.bytes.0.len() as u64),
                    r.bytes.0.len()
                );
            }
        }
        if missing > 0 {
            eprintln!(
                "ck2core: {missing} of the bytes are not in the checkpoint or were filtered out; written as zeros"
            );
        }
        return Ok(());
    }
    for r in &reads {
        if a.address.is_none() {
            outln!(
                "{}..{}:",
                r.address,
                Hex(r.address.0 + r.bytes.0.len() as u64)
            );
        }
        hexdump(r);
    }
    Ok(())
}

fn hexdump(r: &MemoryRead) {
    let bytes = &r.bytes.0;
    let known = |off: usize| {
        let addr = r.address.0 + off as u64;
        !r.unavailable
            .iter()
            .any(|u| addr >= u.start.0 && addr < u.start.0 + u.length)
    };
    for (i, row) in bytes.chunks(16).enumerate() {
        let base = i * 16;
        outln!(
            "{}",
            hexdump_row(r.address.0 + base as u64, row, &|j| known(base + j))
        );
    }
    for u in &r.unavailable {
        let why = match u.reason {
            memory::Gap::Unmapped => "not mapped",
            memory::Gap::NotSaved => "not in the checkpoint",
            memory::Gap::Excluded => "left out by the memory filter",
        };
        outln!("?? {}..{}: {why}", u.start, Hex(u.start.0 + u.length));
    }
}
