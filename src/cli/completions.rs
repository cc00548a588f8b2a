//! `ck2core completions SHELL`: a completion script generated from the command
//! line's own definition, so it offers exactly the commands and flags there are.

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::Cli;

#[derive(Args)]
pub struct CompletionsArgs {
    /// bash, zsh or fish (also elvish, powershell).
    #[arg(value_name = "SHELL")]
    shell: Shell,
}

pub fn run(a: CompletionsArgs) {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "ck2core", &mut out);
    out!("{}", String::from_utf8_lossy(&out));
}
