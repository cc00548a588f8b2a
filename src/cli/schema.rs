//! `ck2core schema`: the JSON Schema of each command's `--json` output, generated
//! from the types the command prints (docs/schema/ holds a copy of each).

use clap::{Args, CommandFactory};
use schemars::{JsonSchema, Schema};

use super::{Cli, EXIT_FAILURE};

#[derive(Args)]
pub struct SchemaArgs {
    /// The command whose `--json` output to describe; without it, the commands that
    /// have one are listed.
    #[arg(value_name = "COMMAND")]
    command: Option<String>,
}

/// The commands that take `--json`, as the command line defines them.
pub fn json_commands() -> Vec<String> {
    Cli::command()
        .get_subcommands()
        .filter(|c| c.get_arguments().any(|a| a.get_id() == "json"))
        .map(|c| c.get_name().to_string())
        .collect()
}

/// The schema of what serialising a `T` produces: a field that is always written
/// (even as null) is required, unlike in a schema for what may be read.
fn of<T: JsonSchema>() -> Schema {
    schemars::generate::SchemaSettings::default()
        .for_serialize()
        .into_generator()
        .into_root_schema_for::<T>()
}

/// The schema of `command`'s `--json` output, from the type it prints; None for a
/// command without one.
pub fn schema(command: &str) -> Option<Schema> {
    let mut s = match command {
        "info" => of::<ck2core::views::Info>(),
        "ps" => of::<super::ps::Out>(),
        "threads" => of::<super::threads::Out>(),
        "maps" => of::<super::maps::Out>(),
        "files" => of::<super::files::Out>(),
        "env" => of::<super::env::Out>(),
        "search" => of::<super::search::Out>(),
        "read" => of::<super::read::Out>(),
        "diff" => of::<ck2core::views::diff::Diff>(),
        "report" => of::<ck2core::report::Report>(),
        _ => return None,
    };
    s.insert("title".into(), format!("ck2core {command} --json").into());
    Some(s)
}

pub fn run(a: SchemaArgs) -> anyhow::Result<std::process::ExitCode> {
    let commands = json_commands();
    let Some(command) = a.command else {
        for c in &commands {
            outln!("{c}");
        }
        return Ok(std::process::ExitCode::SUCCESS);
    };
    if !commands.contains(&command) {
        anyhow::bail!(
            "{command:?} has no --json output (these do: {})",
            commands.join(", ")
        );
    }
    match schema(&command) {
        Some(s) => {
            outln!("{}", serde_json::to_string_pretty(&s)?);
            Ok(std::process::ExitCode::SUCCESS)
        }
        None => {
            // A command gained --json without a schema: a bug, which the schema
            // test catches before a release.
            eprintln!("ck2core: no schema for the --json output of {command:?}");
            Ok(std::process::ExitCode::from(EXIT_FAILURE))
        }
    }
}
