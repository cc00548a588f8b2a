//! `ck2core gdb`: convert into a temporary directory and start gdb on a core with
//! the sysroot and the helper set up; a convenience for a person at a terminal.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::convert::{convert, ConvertArgs};
use super::Source;

#[derive(Args)]
pub struct GdbArgs {
    #[command(flatten)]
    source: Source,
    /// The process to debug (default: the root of the process tree).
    #[arg(long, value_name = "PID")]
    pid: Option<u32>,
    /// Point gdb at --rootfs itself instead of a verified copy of the mapped files.
    #[arg(long)]
    no_sysroot: bool,
    /// Further arguments for gdb, after `--`.
    #[arg(last = true)]
    gdb_args: Vec<String>,
}

pub fn run(a: GdbArgs) -> anyhow::Result<ExitCode> {
    let ck = a.source.open()?;
    let pid = match a.pid {
        Some(p) => p,
        None => {
            let root = ck.tree.first().map(|t| t.pid).unwrap_or(0);
            if ck.tree.len() > 1 {
                say!(
                    "ck2core: debugging pid {root}, the root of {} processes (choose with --pid)",
                    ck.tree.len()
                );
            }
            root
        }
    };
    drop(ck);
    let dir = std::env::temp_dir().join(format!("ck2core-gdb-{}", std::process::id()));
    let _cleanup = RemoveDir(dir.clone());
    let args = ConvertArgs {
        source: a.source.clone(),
        output: dir,
        pids: vec![pid],
        force: true,
        no_sysroot: a.no_sysroot,
        dump: Default::default(),
    };
    let (done, _) = convert(&args)?;
    let Some(core) = done.into_iter().next() else {
        anyhow::bail!("process {pid} could not be converted (see above)");
    };
    let status = std::process::Command::new(core.gdb)
        .args(&core.gdb_args)
        .args(&a.gdb_args)
        .status()
        .map_err(|e| anyhow::anyhow!("cannot start {}: {e} (is it installed?)", core.gdb))?;
    Ok(ExitCode::from(
        status.code().unwrap_or(1).clamp(0, 255) as u8
    ))
}

struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
