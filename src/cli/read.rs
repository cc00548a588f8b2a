//! `ck2core read`: process memory as hex, or raw.

use std::io::Write;

use clap::Args;

use super::{hexdump_row, parse_u64, print_json, selected, Source};
use ck2core::views::memory;

#[derive(Args)]
pub struct ReadArgs {
    #[command(flatten)]
    source: Source,
    /// The process.
    #[arg(long, value_name = "PID")]
    pid: u32,
    /// First address (0x hex or decimal).
    #[arg(value_parser = parse_u64)]
    address: u64,
    /// Number of bytes.
    #[arg(value_parser = parse_u64)]
    length: u64,
    /// Write the raw bytes to stdout (unavailable bytes as zeros, said on stderr).
    #[arg(long, conflicts_with = "json")]
    raw: bool,
    /// Print JSON (docs/json.md).
    #[arg(long)]
    json: bool,
}

pub fn run(a: ReadArgs) -> anyhow::Result<()> {
    let ck = a.source.open()?;
    let p = selected(&ck, &[a.pid])?.remove(0);
    let r = memory::read(&p, a.address, a.length)?;
    if a.json {
        return print_json(&r);
    }
    if a.raw {
        if let Err(e) = std::io::stdout().write_all(&r.bytes.0) {
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                return Err(e.into());
            }
        }
        let missing: u64 = r.unavailable.iter().map(|u| u.length).sum();
        if missing > 0 {
            eprintln!(
                "ck2core: {missing} of the bytes are not in the checkpoint; written as zeros"
            );
        }
        return Ok(());
    }
    let bytes = &r.bytes.0;
    let known = |off: usize| {
        let addr = a.address + off as u64;
        !r.unavailable
            .iter()
            .any(|u| addr >= u.start.0 && addr < u.start.0 + u.length)
    };
    for (i, row) in bytes.chunks(16).enumerate() {
        let base = i * 16;
        outln!(
            "{}",
            hexdump_row(a.address + base as u64, row, &|j| known(base + j))
        );
    }
    for u in &r.unavailable {
        let why = match u.reason {
            memory::Gap::Unmapped => "not mapped",
            memory::Gap::NotSaved => "not in the checkpoint",
        };
        outln!(
            "?? {}..{}: {why}",
            u.start,
            ck2core::views::Hex(u.start.0 + u.length)
        );
    }
    Ok(())
}
