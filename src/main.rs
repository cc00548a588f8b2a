//! ck2core command line: parse arguments, run one command, map errors to exit codes.

mod cli;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

fn main() -> ExitCode {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let name = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("ck2core");
    // Installed as a checkpointctl plugin: `checkpointctl coredump ...` runs this
    // program as `checkpointctl-coredump ...`.
    let result = if name == cli::plugin::NAME {
        cli::plugin::main(args)
    } else {
        // `ck2core CHECKPOINT -o DIR` is `ck2core convert CHECKPOINT -o DIR`.
        if let Some(first) = args.get(1).and_then(|a| a.to_str()) {
            let known = cli::Cli::command()
                .get_subcommands()
                .any(|c| c.get_name() == first)
                || matches!(first, "-h" | "--help" | "-V" | "--version" | "help");
            if !known {
                args.insert(1, "convert".into());
            }
        }
        cli::run(cli::Cli::parse_from(args))
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ck2core: {e:#}");
            ExitCode::from(cli::EXIT_FAILURE)
        }
    }
}
