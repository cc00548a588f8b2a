//! `ck2core completions SHELL`: a completion script generated from the command
//! line's own definition, so it offers exactly the commands and flags there are.

use std::fmt::Write;

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
    let mut script = String::from_utf8_lossy(&out).into_owned();
    if a.shell == Shell::Fish {
        script.push_str(&fish_positional_values(&cmd));
    }
    out!("{script}");
}

/// clap_complete's fish generator writes completions for options only, never for
/// positional arguments, so fish offered files after `ck2core completions `. This
/// adds, for each subcommand's positional argument with a fixed set of values, those
/// values (until one of them is on the line), as bash and zsh offer them.
fn fish_positional_values(cmd: &clap::Command) -> String {
    let mut s = String::new();
    for sub in cmd.get_subcommands() {
        for arg in sub.get_positionals() {
            let possible = arg.get_possible_values();
            let values: Vec<&str> = possible
                .iter()
                .filter(|v| !v.is_hide_set())
                .map(|v| v.get_name())
                .collect();
            if values.is_empty() {
                continue;
            }
            let list = values.join(" ");
            // The condition function is the one clap_complete's script defines
            // (tests/ecosystem.rs drives fish with it).
            let _ = writeln!(
                s,
                "complete -c ck2core -n \"__fish_ck2core_using_subcommand {}; \
                 and not __fish_seen_subcommand_from {list}\" -f -a \"{list}\"",
                sub.get_name()
            );
        }
    }
    s
}
