//! `ck2core threads`: every thread, what it was doing, and its registers.

use clap::Args;
use serde::Serialize;

use super::{print_json, Select};
use ck2core::model::TaskState;
use ck2core::views::{self, ThreadRow};

#[derive(Args)]
pub struct ThreadsArgs {
    #[command(flatten)]
    select: Select,
    /// Print every register, grouped as gdb groups them.
    #[arg(long)]
    regs: bool,
}

#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct Out {
    threads: Vec<ThreadRow>,
    zombies: Vec<Zombie>,
}

/// A zombie has no thread CRIU kept, so no row; it is listed on its own.
#[derive(Serialize, schemars::JsonSchema)]
struct Zombie {
    pid: u32,
    comm: String,
    exit_code: u32,
}

pub fn run(a: ThreadsArgs) -> anyhow::Result<()> {
    let (_, procs) = a.select.load()?;
    let rows: Vec<ThreadRow> = procs
        .iter()
        .flat_map(|p| views::threads(p, a.regs))
        .collect();
    if a.select.json {
        let zombies = procs
            .iter()
            .filter(|p| p.state == TaskState::Zombie)
            .map(|p| Zombie {
                pid: p.pid(),
                comm: p.comm.clone(),
                exit_code: p.exit_code,
            })
            .collect();
        return print_json(&Out {
            threads: rows,
            zombies,
        });
    }
    let mut any_rewound = false;
    for p in &procs {
        outln!("process {} ({}), {}", p.pid(), p.comm, p.state.name());
        if p.state == TaskState::Zombie {
            outln!(
                "  exit code {}; a zombie has no threads or registers in the checkpoint",
                p.exit_code
            );
            continue;
        }
        outln!(
            "  {:>7}  {:<16} {:<18} {:<22} SIGNALS",
            "TID",
            "NAME",
            "PC",
            "SYSCALL"
        );
        for t in rows.iter().filter(|t| t.pid == p.pid()) {
            let sys = match &t.syscall {
                Some(s) => {
                    any_rewound |= s.rewound_for_restart;
                    format!(
                        "{}{}",
                        s.label(),
                        if s.rewound_for_restart {
                            " (restart)"
                        } else {
                            ""
                        }
                    )
                }
                None => "-".into(),
            };
            let mut sig = Vec::new();
            if !t.blocked.is_empty() {
                sig.push(format!("blocked {}", t.blocked.join(",")));
            }
            if !t.pending.is_empty() {
                sig.push(format!("pending {}", t.pending.join(",")));
            }
            outln!(
                "  {:>7}  {:<16} {:<18} {:<22} {}",
                t.tid,
                t.name,
                t.pc.to_string(),
                sys,
                if sig.is_empty() {
                    "-".into()
                } else {
                    sig.join("; ")
                }
            );
            if let Some(groups) = &t.registers {
                for (g, regs) in &groups.0 {
                    outln!("    {g}:");
                    for (n, v) in regs {
                        outln!("      {n:<10} {v}");
                    }
                }
            }
        }
    }
    if any_rewound {
        outln!();
        outln!("(restart): the thread was blocked in this system call; CRIU stored its registers");
        outln!("rewound so that the call restarts on restore: the pc points at the syscall");
        outln!("instruction and the result register holds the call number (or -EINTR).");
    }
    Ok(())
}
