//! `ck2core maps`: mappings like /proc/PID/maps, with where their pages come from.

use clap::Args;
use serde::Serialize;

use super::{print_json, MemArgs, Select};
use ck2core::views::memory::{self, MapRow, PageCounts};

#[derive(Args)]
pub struct MapsArgs {
    #[command(flatten)]
    select: Select,
    #[command(flatten)]
    mem: MemArgs,
}

#[derive(Serialize, schemars::JsonSchema)]
struct ProcessMaps {
    pid: u32,
    maps: Vec<MapRow>,
}

#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct Out {
    processes: Vec<ProcessMaps>,
}

fn sources(c: &PageCounts) -> String {
    let parts: Vec<String> = [
        ("saved", c.pages),
        ("parent", c.parent),
        ("shmem", c.shmem),
        ("rootfs", c.rootfs),
        ("zero", c.zero),
        ("absent", c.absent),
    ]
    .iter()
    .filter(|(_, n)| *n > 0)
    .map(|(k, n)| format!("{n} {k}"))
    .collect();
    parts.join(", ")
}

pub fn run(a: MapsArgs) -> anyhow::Result<()> {
    let filter = a.mem.filter()?;
    let (_, procs) = a.select.load()?;
    let out = Out {
        processes: procs
            .iter()
            .map(|p| ProcessMaps {
                pid: p.pid(),
                maps: memory::maps(p, &filter),
            })
            .collect(),
    };
    if a.select.json {
        return print_json(&out);
    }
    for (p, pm) in procs.iter().zip(&out.processes) {
        outln!("process {} ({})", p.pid(), p.comm);
        for m in &pm.maps {
            outln!(
                "{:012x}-{:012x} {} {:08x} {:<11} {:>6} page{}: {}{}",
                m.start.0,
                m.end.0,
                m.perms,
                m.offset.0,
                serde_json::to_value(m.kind)?.as_str().unwrap_or(""),
                m.pages.total,
                if m.pages.total == 1 { "" } else { "s" },
                sources(&m.pages),
                if m.dontdump { "  DONTDUMP" } else { "" }
            );
            if !m.name.is_empty() {
                outln!(
                    "    {}{}",
                    m.name,
                    m.build_id
                        .as_ref()
                        .map(|b| format!("  build-id {b}"))
                        .unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}
