//! `ck2core env`: argv and environment, read from process memory.

use clap::Args;
use serde::Serialize;

use super::{print_json, Select};
use ck2core::views::memory::{self, Environment};

#[derive(Args)]
pub struct EnvArgs {
    #[command(flatten)]
    select: Select,
}

#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct Out {
    processes: Vec<Environment>,
}

pub fn run(a: EnvArgs) -> anyhow::Result<()> {
    let (_, procs) = a.select.load()?;
    let out = Out {
        processes: procs.iter().map(memory::environment).collect(),
    };
    if a.select.json {
        return print_json(&out);
    }
    for e in &out.processes {
        outln!("process {}", e.pid);
        match &e.argv {
            Some(a) => outln!(
                "  argv: {}",
                a.iter()
                    .map(|s| format!("{s:?}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            None => outln!("  argv: (not readable from the checkpoint)"),
        }
        match &e.environ {
            Some(env) => {
                outln!("  environment:");
                for v in env {
                    outln!("    {v}");
                }
            }
            None => outln!("  environment: (not readable from the checkpoint)"),
        }
    }
    Ok(())
}
