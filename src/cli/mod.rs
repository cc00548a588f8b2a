//! Subcommands: flags and rendering only; everything else is in the library.

mod convert;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use ck2core::archive::{Input, Limits};
use ck2core::model::OpenOptions;

/// Exit status when nothing useful could be done.
pub const EXIT_FAILURE: u8 = 1;
/// Exit status when some processes converted and some failed.
pub const EXIT_PARTIAL: u8 = 3;

/// Names of the subcommands, for the implicit `convert`.
pub const COMMANDS: &[&str] = &["convert"];

/// Turn CRIU container checkpoints into ELF core files, and look inside them.
#[derive(Parser)]
#[command(name = "ck2core", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write one ELF core per process (the default command).
    Convert(convert::ConvertArgs),
}

/// How to open the checkpoint; shared by every command.
#[derive(Args, Clone)]
pub struct Source {
    /// Image directory, or checkpoint archive (tar, tar.gz, tar.zst); `-` for stdin.
    #[arg(value_name = "CHECKPOINT")]
    checkpoint: String,
    /// The container's root filesystem: file pages CRIU did not save are read from it
    /// (only when size and build-id match what the checkpoint recorded).
    #[arg(long, value_name = "DIR")]
    rootfs: Option<PathBuf>,
    /// Most bytes a compressed or piped archive may expand to.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_unpacked)]
    max_unpacked: u64,
}

impl Source {
    fn input(&self) -> Input {
        Input::parse(&self.checkpoint)
    }

    fn options(&self) -> OpenOptions {
        OpenOptions {
            rootfs: self.rootfs.clone(),
            limits: Limits {
                max_unpacked: self.max_unpacked,
            },
        }
    }
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Convert(a) => convert::run(a),
    }
}

/// Bytes as a short human string (KiB, MiB, GiB).
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
