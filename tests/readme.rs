//! Every example in README.md that shows a command and what it printed (a block
//! whose first line is `$ ck2core ...` or `$ gdb ...`) is run, and what it prints now
//! must be what README shows. A line `...` in README stands for any number of lines,
//! and `...` inside a line for any text. The commands run in a scratch directory
//! where `testdata` is this repository's, as a newcomer runs them in a checkout.
//!
//! `CK2CORE_REGENERATE=1 cargo test --test readme` rewrites the blocks that elide
//! nothing with what the commands print; blocks with `...` are fixed by hand.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::scratch;

/// A shown example: where its lines are in README, the command, the output.
struct Example {
    /// Index of the `$ ` line in README's lines.
    at: usize,
    /// Number of output lines after it.
    len: usize,
    command: String,
    expected: Vec<String>,
    /// Indentation to strip (indented code blocks).
    indent: usize,
}

fn readme_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")
}

/// The examples of README: fenced blocks and indented blocks starting with `$ `.
fn examples(text: &str) -> Vec<Example> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        let (start, indent, fenced) = if l.starts_with("```") {
            (i + 1, 0, true)
        } else if l.starts_with("    $ ") && (i == 0 || lines[i - 1].trim().is_empty()) {
            (i, 4, false)
        } else {
            i += 1;
            continue;
        };
        let mut end = start;
        while end < lines.len()
            && if fenced {
                !lines[end].starts_with("```")
            } else {
                lines[end].starts_with("    ")
                    || lines[end].is_empty()
                        && end + 1 < lines.len()
                        && lines[end + 1].starts_with("    ")
            }
        {
            end += 1;
        }
        let first = lines
            .get(start)
            .map(|s| s.get(indent..).unwrap_or(""))
            .unwrap_or("");
        if let Some(cmd) = first.strip_prefix("$ ") {
            if cmd.starts_with("ck2core ") || cmd.starts_with("gdb ") {
                out.push(Example {
                    at: start,
                    len: end - start - 1,
                    command: cmd.to_string(),
                    expected: lines[start + 1..end]
                        .iter()
                        .map(|s| s.get(indent..).unwrap_or("").trim_end().to_string())
                        .collect(),
                    indent,
                });
            }
        }
        i = end + 1;
    }
    out
}

/// `pattern` (with `...` as a wildcard) matches `s`.
fn line_matches(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split("...").collect();
    if parts.len() == 1 {
        return pattern == s;
    }
    let mut rest = match s.strip_prefix(parts[0]) {
        Some(r) => r,
        None => return false,
    };
    for (k, p) in parts[1..].iter().enumerate() {
        if k == parts.len() - 2 {
            return rest.ends_with(p);
        }
        match rest.find(p) {
            Some(at) => rest = &rest[at + p.len()..],
            None => return false,
        }
    }
    true
}

/// `expected` (lines `...` match any number of lines) matches `actual`.
fn block_matches(expected: &[String], actual: &[String]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((e, rest)) if e.trim() == "..." => {
            (0..=actual.len()).any(|k| block_matches(rest, &actual[k..]))
        }
        Some((e, rest)) => {
            !actual.is_empty() && line_matches(e, &actual[0]) && block_matches(rest, &actual[1..])
        }
    }
}

/// Splits a shell command line (single quotes only, as README uses).
fn words(cmd: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in cmd.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                any = true;
            }
            ' ' if !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

/// Runs an example's command in `dir`; its output as lines (stdout, then stderr).
fn run(dir: &Path, command: &str, expected: &[String]) -> Vec<String> {
    let w = words(command);
    let mut c = if w[0] == "ck2core" {
        Command::new(env!("CARGO_BIN_EXE_ck2core"))
    } else {
        // gdb, with the helper's commands: README shows them after a `(gdb) ` prompt.
        let mut c = Command::new("gdb");
        c.args(["-nx", "-batch", "-iex", "set debuginfod enabled off"]);
        c.args(["-iex", "set pagination off", "-iex", "set width 0"]);
        for e in expected.iter().filter_map(|l| l.strip_prefix("(gdb) ")) {
            c.args(["-ex", &format!("echo (gdb) {e}\\n"), "-ex", e]);
        }
        c
    };
    c.args(&w[1..]).current_dir(dir).env("NO_COLOR", "1");
    let out = c.output().unwrap_or_else(|e| panic!("{command}: {e}"));
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    text.lines().map(|l| l.trim_end().to_string()).collect()
}

#[test]
fn readme_examples_print_what_readme_shows() {
    let readme = std::fs::read_to_string(readme_path()).unwrap();
    // No path of the machine README was written on.
    let here = env!("CARGO_MANIFEST_DIR");
    for l in readme.lines() {
        assert!(
            !l.contains(here) && !l.contains("/work/"),
            "README shows a local path: {l}"
        );
    }
    let ex = examples(&readme);
    assert!(ex.len() >= 10, "found only {} examples in README", ex.len());
    let dir = scratch("readme");
    std::os::unix::fs::symlink(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata"),
        dir.join("testdata"),
    )
    .unwrap();
    let regenerate = std::env::var_os("CK2CORE_REGENERATE").is_some();
    let mut lines: Vec<String> = readme.lines().map(str::to_string).collect();
    let mut failures = Vec::new();
    // README's examples build on each other (convert, then gdb on its cores): in order.
    for e in ex.iter() {
        let got = run(&dir, &e.command, &e.expected);
        if block_matches(&e.expected, &got) {
            continue;
        }
        let elides = e.expected.iter().any(|l| l.contains("..."));
        if regenerate && !elides {
            let pad = " ".repeat(e.indent);
            for (k, g) in got.iter().enumerate() {
                let l = if g.is_empty() {
                    String::new()
                } else {
                    format!("{pad}{g}")
                };
                if k < e.len {
                    lines[e.at + 1 + k] = l;
                } else {
                    lines.insert(e.at + 1 + k, l);
                }
            }
            // Lengths change only here, so later blocks are re-read on the next run.
            for _ in got.len()..e.len {
                lines.remove(e.at + 1 + got.len());
            }
            std::fs::write(readme_path(), lines.join("\n") + "\n").unwrap();
            panic!(
                "README block `$ {}` regenerated; run the test again",
                e.command
            );
        }
        failures.push(format!(
            "README line {}: `$ {}` prints:\n{}\n",
            e.at + 1,
            e.command,
            got.join("\n")
        ));
    }
    assert!(
        failures.is_empty(),
        "README examples differ from what ck2core prints:\n{}",
        failures.join("\n")
    );
}

#[test]
fn elision_matching() {
    let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert!(block_matches(
        &v(&["a", "...", "d"]),
        &v(&["a", "b", "c", "d"])
    ));
    assert!(block_matches(&v(&["a", "...", "d"]), &v(&["a", "d"])));
    assert!(!block_matches(&v(&["a", "...", "d"]), &v(&["a", "b"])));
    assert!(block_matches(
        &v(&["x (...) at y"]),
        &v(&["x (p=1, q=2) at y"])
    ));
    assert!(!block_matches(&v(&["x (...) at y"]), &v(&["x (p=1) at z"])));
    assert!(!block_matches(&v(&["a"]), &v(&["a", "b"])));
}
