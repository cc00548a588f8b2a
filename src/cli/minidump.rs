//! `ck2core minidump`: one minidump per process, a line per process on stderr.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::{human, Source, EXIT_FAILURE, EXIT_PARTIAL};
use ck2core::minidump::{MinidumpOptions, Plan};
use ck2core::model::dump::DumpPolicy;

/// Sentry's limit for one minidump upload; larger files are refused there and
/// by pipelines with the same cap.
const UPLOAD_LIMIT: u64 = 20_000_000;

#[derive(Args)]
pub struct MinidumpArgs {
    #[command(flatten)]
    pub source: Source,
    /// Directory for the minidumps, `DIR/<pid>.dmp` (created if missing).
    #[arg(short, long, value_name = "DIR")]
    pub output: PathBuf,
    /// Only this process (repeatable).
    #[arg(long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,
    /// Every saved page too (Memory64List), for debuggers; not only the stacks.
    #[arg(long)]
    pub full_memory: bool,
    /// Include mappings the process marked MADV_DONTDUMP (left out by default, as
    /// from the cores), for forensics.
    #[arg(long)]
    pub include_dontdump: bool,
    /// With --full-memory, the pages of mapped files verified in --rootfs too, so
    /// that debuggers need no copy of the binaries.
    #[arg(long, requires = "full_memory")]
    pub self_contained: bool,
    /// Overwrite existing minidumps.
    #[arg(long)]
    pub force: bool,
}

pub fn run(a: MinidumpArgs) -> anyhow::Result<ExitCode> {
    let ckpt = a.source.open()?;
    for n in ckpt.archive().notes() {
        eprintln!("note: {n}");
    }
    let pids = super::selected_pids(&ckpt, &a.pids)?;
    std::fs::create_dir_all(&a.output).map_err(|e| {
        anyhow::anyhow!(
            "{}: cannot create the output directory: {e}",
            a.output.display()
        )
    })?;
    let opts = MinidumpOptions {
        full_memory: a.full_memory,
        policy: DumpPolicy {
            include_dontdump: a.include_dontdump,
            file_pages: a.self_contained,
            host_paths: false,
        },
    };
    let (mut done, mut failed) = (0, 0);
    for pid in pids {
        let Some(process) = super::dumpable(&ckpt, pid, "a minidump", &mut failed) else {
            continue;
        };
        match Plan::new(&process, &opts).and_then(|p| p.write(&a.output, pid, a.force)) {
            Ok(w) => {
                done += 1;
                say!(
                    "{:<10} pid {pid} ({}), {} thread{}, {} module{}, {} of memory, {}",
                    w.path.file_name().unwrap_or_default().to_string_lossy(),
                    process.comm,
                    w.threads,
                    if w.threads == 1 { "" } else { "s" },
                    w.modules,
                    if w.modules == 1 { "" } else { "s" },
                    human(w.memory_bytes),
                    human(w.file_size),
                );
                if w.file_size > UPLOAD_LIMIT {
                    eprintln!(
                        "warning: {} is {}, more than the 20 MB crash-reporting services such as Sentry accept per minidump{}",
                        w.path.display(),
                        human(w.file_size),
                        if a.full_memory { "; without --full-memory it holds only the stacks" } else { "" }
                    );
                }
            }
            Err(e) => {
                eprintln!("failed   pid {pid} ({}): {e}", process.comm);
                failed += 1;
            }
        }
    }
    Ok(match (done, failed) {
        (_, 0) => ExitCode::SUCCESS,
        (0, _) => ExitCode::from(EXIT_FAILURE),
        _ => ExitCode::from(EXIT_PARTIAL),
    })
}
