//! ck2core as a checkpointctl plugin. checkpointctl finds every executable named
//! `checkpointctl-NAME` on PATH, lists it with the first line it prints for
//! `--plugin-description` (when it exits 42), and runs `checkpointctl NAME ARGS`
//! by executing it with ARGS. A link named `checkpointctl-coredump` to ck2core
//! makes `checkpointctl coredump checkpoint.tar -o cores/` a `ck2core convert`.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;

use super::convert::{self, ConvertArgs};
use super::{Chatter, EXIT_STATUS_HELP};

/// The program name that makes ck2core act as the plugin.
pub const NAME: &str = "checkpointctl-coredump";

/// The exit status checkpointctl requires with the description.
pub const DESCRIPTION_STATUS: u8 = 42;

/// What `checkpointctl plugin list` shows.
pub const DESCRIPTION: &str =
    "Write an ELF core file per process of a checkpoint, for gdb and lldb (ck2core)";

/// Convert a checkpoint into one ELF core per process (ck2core as a checkpointctl plugin).
#[derive(Parser)]
#[command(
    name = "checkpointctl coredump",
    bin_name = "checkpointctl coredump",
    version
)]
#[command(after_help = EXIT_STATUS_HELP)]
struct Plugin {
    #[command(flatten)]
    chatter: Chatter,
    #[command(flatten)]
    convert: ConvertArgs,
}

/// Runs the plugin with the program's arguments (`args[0]` is its path).
pub fn main(args: Vec<OsString>) -> anyhow::Result<ExitCode> {
    if args.len() == 2 && args[1] == "--plugin-description" {
        outln!("{DESCRIPTION}");
        return Ok(ExitCode::from(DESCRIPTION_STATUS));
    }
    let p = Plugin::parse_from(args);
    p.chatter.set();
    convert::run(p.convert)
}
