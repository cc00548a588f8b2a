//! ck2core command line: parse arguments, run one command, map errors to exit codes.

mod cli;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

fn main() -> ExitCode {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
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
    let cli = cli::Cli::parse_from(args);
    match cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ck2core: {e:#}");
            ExitCode::from(cli::EXIT_FAILURE)
        }
    }
}
