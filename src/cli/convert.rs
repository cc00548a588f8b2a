//! `ck2core convert`: one core per process, a line per process on stderr.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use super::{human, Source, EXIT_FAILURE, EXIT_PARTIAL};
use ck2core::core::{CoreOptions, Plan};
use ck2core::model::{Checkpoint, Process, TaskState};
use ck2core::rootfs::resolve_in_root;

#[derive(Args)]
pub struct ConvertArgs {
    #[command(flatten)]
    source: Source,
    /// Directory for the cores (created if missing).
    #[arg(short, long, value_name = "DIR")]
    output: PathBuf,
    /// Convert only this process (repeatable).
    #[arg(long = "pid", value_name = "PID")]
    pids: Vec<u32>,
    /// Overwrite existing core files.
    #[arg(long)]
    force: bool,
}

pub fn run(a: ConvertArgs) -> anyhow::Result<ExitCode> {
    let ckpt = Checkpoint::open(&a.source.input(), &a.source.options())?;
    for n in ckpt.archive().notes() {
        eprintln!("note: {n}");
    }
    let pids: Vec<u32> = if a.pids.is_empty() {
        ckpt.tree.iter().map(|t| t.pid).collect()
    } else {
        for p in &a.pids {
            if !ckpt.tree.iter().any(|t| t.pid == *p) {
                let all: Vec<String> = ckpt.tree.iter().map(|t| t.pid.to_string()).collect();
                anyhow::bail!(
                    "no process {p} in the checkpoint (pids: {})",
                    all.join(", ")
                );
            }
        }
        a.pids.clone()
    };
    std::fs::create_dir_all(&a.output).map_err(|e| {
        anyhow::anyhow!(
            "{}: cannot create the output directory: {e}",
            a.output.display()
        )
    })?;
    let (mut ok, mut failed) = (0, 0);
    let mut open_with = Vec::new();
    let tty = std::io::stderr().is_terminal();
    for pid in pids {
        let process = match ckpt.process(pid) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("failed   pid {pid}: {e}");
                failed += 1;
                continue;
            }
        };
        if process.state == TaskState::Zombie {
            eprintln!(
                "skipped  pid {pid} ({}): a zombie has no memory or registers to put in a core",
                process.comm
            );
            continue;
        }
        let metadata = serde_json::to_vec(&ck2core::views::core_metadata(&ckpt, &process))?;
        let opts = CoreOptions {
            only_verified_files: a.source.rootfs.is_some(),
            metadata: Some(metadata),
        };
        let result = Plan::new(&process, &opts).and_then(|plan| {
            let total = plan.content_bytes();
            let mut shown = 0u64;
            let mut progress = |done: u64| {
                // Only for people watching, and only when it takes a while.
                if tty && total >= 256 << 20 && (done - shown >= 64 << 20 || done == total) {
                    shown = done;
                    eprint!("\r  core.{pid}: {} of {}\x1b[K", human(done), human(total));
                }
            };
            let w = plan.write(&a.output, pid, a.force, &mut progress);
            if tty && shown > 0 {
                eprint!("\r\x1b[K");
            }
            w
        });
        match result {
            Ok(w) => {
                ok += 1;
                open_with.push(gdb_command(&w.path, a.source.rootfs.as_deref(), &process));
                let threads = process.threads.len();
                eprintln!(
                    "{:<10} pid {pid} ({}), {threads} thread{}, {} written, {} in the file",
                    w.path.file_name().unwrap_or_default().to_string_lossy(),
                    process.comm,
                    if threads == 1 { "" } else { "s" },
                    human(w.data_bytes),
                    human(w.file_size),
                );
                for (why, bytes) in &w.left_out.by_reason {
                    eprintln!("           left out {}: {why}", human(*bytes));
                }
                let unlisted = &w.left_out.unlisted_files;
                if !unlisted.is_empty() {
                    let shown: Vec<&str> = unlisted.iter().take(3).map(String::as_str).collect();
                    let more = unlisted.len().saturating_sub(3);
                    eprintln!(
                        "           {} mapped file{} not in --rootfs (or different there), left out of NT_FILE: {}{}",
                        unlisted.len(),
                        if unlisted.len() == 1 { "" } else { "s" },
                        shown.join(", "),
                        if more > 0 { format!(" and {more} more") } else { String::new() }
                    );
                }
            }
            Err(e) => {
                eprintln!("failed   pid {pid} ({}): {e}", process.comm);
                failed += 1;
            }
        }
    }
    if !open_with.is_empty() {
        eprintln!("open with:");
        for c in open_with {
            eprintln!("  {c}");
        }
    }
    Ok(match (ok, failed) {
        (_, 0) => ExitCode::SUCCESS,
        (0, _) => ExitCode::from(EXIT_FAILURE),
        _ => ExitCode::from(EXIT_PARTIAL),
    })
}

/// The gdb command line for a core: the sysroot must be set before the core loads
/// (`-iex`), and the executable from the root lets gdb relocate a PIE and find the
/// shared libraries.
fn gdb_command(core: &Path, rootfs: Option<&Path>, p: &Process) -> String {
    let mut cmd = format!("gdb --core {}", shell_quote(&core.display().to_string()));
    if let Some(root) = rootfs {
        cmd += &format!(
            " -iex {}",
            shell_quote(&format!("set sysroot {}", root.display()))
        );
        let exe = p.exe.as_ref().filter(|e| e.content.is_ok());
        if let Some(path) = exe.and_then(|e| resolve_in_root(root, e.path.trim_start_matches('/')))
        {
            cmd += &format!(" {}", shell_quote(&path.display().to_string()));
        }
    }
    cmd
}

fn shell_quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+=:@".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}
