//! The JSON Schemas in docs/schema/: one per command with `--json`, equal to what
//! `ck2core schema` generates from the Rust types, and every real output of every
//! command on every checkpoint in testdata/ valid against it, checked by an
//! independent validator (the `jsonschema` crate).

mod common;

use std::path::{Path, PathBuf};

use common::{ck2core, testdata};
use serde_json::Value;

fn schema_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/schema")
}

/// The commands that take `--json`, as the binary's command line defines them.
fn json_commands() -> Vec<String> {
    let out = ck2core(&["schema"]);
    assert!(out.status.success(), "ck2core schema failed");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn shipped_schema(command: &str) -> Value {
    let path = schema_dir().join(format!("{command}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; every command with --json needs its schema there \
             (ck2core schema {command} > docs/schema/{command}.json)",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap()
}

fn validator(command: &str) -> jsonschema::Validator {
    jsonschema::validator_for(&shipped_schema(command))
        .unwrap_or_else(|e| panic!("docs/schema/{command}.json is not a valid schema: {e}"))
}

/// Every checkpoint in testdata/: image directories (with a pstree.img) and archives.
fn fixtures() -> Vec<PathBuf> {
    fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        if entries.iter().any(|p| p.ends_with("pstree.img")) {
            out.push(dir.to_path_buf());
            return;
        }
        // An OCI image layout is a checkpoint when it holds one (not a container
        // image): ck2core tells which.
        if entries.iter().any(|p| p.ends_with("oci-layout")) {
            let d = dir.to_str().unwrap();
            if ck2core(&["ps", d]).status.success() {
                out.push(dir.to_path_buf());
            }
            return;
        }
        for p in entries {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            // Root filesystems hold container files, not checkpoints.
            if p.is_symlink() || name.contains("rootfs") {
                continue;
            }
            if p.is_dir() && depth > 0 {
                walk(&p, depth - 1, out);
            } else if [".tar", ".tar.gz", ".tar.zst"]
                .iter()
                .any(|s| name.ends_with(s))
            {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&testdata(), 3, &mut out);
    out
}

/// The root filesystem a fixture's files come from: a `rootfs` beside it (the
/// container archives), else the host root the image directories were made on.
fn rootfs_for(fixture: &Path) -> PathBuf {
    let beside = fixture.parent().unwrap().join("rootfs");
    if beside.is_dir() {
        beside
    } else {
        testdata().join("host-rootfs")
    }
}

fn run_json(args: &[String]) -> Value {
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = ck2core(&argv);
    assert!(
        out.status.success(),
        "ck2core {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("ck2core {args:?} printed no JSON: {e}"))
}

/// The argument lists to run `command` with on `fixture` (before `--json`). A new
/// command with `--json` must be given its invocations here.
fn invocations(command: &str, fixture: &str, rootfs: &str) -> Vec<Vec<String>> {
    let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let plain = v(&[command, fixture]);
    let rooted = v(&[command, fixture, "--rootfs", rootfs]);
    match command {
        "info" | "ps" | "maps" | "files" | "env" | "report" => vec![plain, rooted],
        "threads" => vec![plain, v(&[command, fixture, "--regs"])],
        "search" => vec![
            v(&[command, fixture, "--hex", "00", "--max", "3"]),
            v(&[
                command,
                fixture,
                "--regex",
                "[A-Z]{4,}",
                "--max",
                "2",
                "-C",
                "5",
            ]),
        ],
        "read" => {
            // A mapping of the first process, read at its start and across its end
            // (where bytes may be unavailable).
            let maps = run_json(&v(&["maps", fixture, "--json"]));
            let p = &maps["processes"][0];
            let pid = p["pid"].as_u64().unwrap().to_string();
            let m = &p["maps"][0];
            let hex = |k: &str| u64::from_str_radix(&m[k].as_str().unwrap()[2..], 16).unwrap();
            let (start, end) = (hex("start"), hex("end"));
            vec![
                v(&[
                    command,
                    fixture,
                    "--pid",
                    &pid,
                    &format!("{start:#x}"),
                    "64",
                ]),
                v(&[
                    command,
                    fixture,
                    "--pid",
                    &pid,
                    &format!("{:#x}", end - 8),
                    "24",
                ]),
                // No address: the ranges a memory filter selects.
                v(&[
                    command,
                    fixture,
                    "--pid",
                    &pid,
                    "--range",
                    &format!("{start:x}-{:x}", start + 64),
                ]),
            ]
        }
        // A checkpoint against itself (exit 0); tests/diff.rs validates outputs that
        // differ.
        "diff" => vec![
            v(&[command, fixture, fixture]),
            v(&[command, fixture, fixture, "--regs", "--kind", "heap,stack"]),
        ],
        _ => panic!(
            "ck2core {command} has --json: add its invocations to tests/schema.rs so its \
             output is validated against docs/schema/{command}.json"
        ),
    }
}

#[test]
fn shipped_schemas_are_the_generated_ones() {
    let commands = json_commands();
    assert!(
        commands.len() >= 9,
        "too few commands with --json: {commands:?}"
    );
    for c in &commands {
        let out = ck2core(&["schema", c]);
        assert!(
            out.status.success(),
            "ck2core {c} takes --json but has no schema: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let generated: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            shipped_schema(c),
            generated,
            "docs/schema/{c}.json differs from the types: regenerate it with \
             `cargo run -- schema {c} > docs/schema/{c}.json`"
        );
    }
    // No schema for a command that is gone.
    for e in std::fs::read_dir(schema_dir()).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if let Some(c) = name.strip_suffix(".json") {
            assert!(
                commands.iter().any(|x| x == c),
                "docs/schema/{name}: no such command"
            );
        }
    }
}

#[test]
fn every_json_output_on_every_fixture_is_valid() {
    let fixtures = fixtures();
    let names: Vec<String> = fixtures
        .iter()
        .map(|f| f.strip_prefix(testdata()).unwrap().display().to_string())
        .collect();
    for must in [
        "ckfix/images",
        "sleep/images",
        "podman-counter/counter.tar",
        "ckbox/ckbox-checkpoint.oci-dir",
        "ckbox/ckbox.containerd.tar",
    ] {
        assert!(
            names.iter().any(|n| n == must),
            "fixture {must} not found in {names:?}"
        );
    }
    let mut checked = 0;
    let mut failures = Vec::new();
    for c in json_commands() {
        let validator = validator(&c);
        for f in &fixtures {
            let fx = f.display().to_string();
            let root = rootfs_for(f).display().to_string();
            for mut args in invocations(&c, &fx, &root) {
                args.push("--json".into());
                let doc = run_json(&args);
                for e in validator.iter_errors(&doc) {
                    failures.push(format!(
                        "ck2core {}: {e} at {}",
                        args.join(" "),
                        e.instance_path()
                    ));
                }
                checked += 1;
            }
        }
    }
    assert!(
        failures.is_empty(),
        "outputs not valid against docs/schema/:\n{}",
        failures.join("\n")
    );
    eprintln!(
        "{checked} outputs valid on {} fixtures: {names:?}",
        fixtures.len()
    );
}

/// The schemas are strict enough to catch a broken output: a missing field, a
/// machine word not written as `0x` hex, an unknown kind, a number as a string.
#[test]
fn broken_outputs_fail_validation() {
    let fx = testdata().join("ckfix/images").display().to_string();
    type Break = fn(&mut Value);
    let cases: [(&str, &[&str], Break); 5] = [
        ("ps", &[], |d| {
            d["processes"][0].as_object_mut().unwrap().remove("pid");
        }),
        ("threads", &[], |d| {
            d["threads"][0]["pc"] = "7f2460d50df0".into()
        }),
        ("maps", &[], |d| {
            d["processes"][0]["maps"][0]["kind"] = "bogus".into()
        }),
        ("info", &[], |d| d["processes"] = "2".into()),
        ("read", &["--pid", "31227", "0x55a1e47962a0", "16"], |d| {
            d["bytes"] = "CK2CORE".into()
        }),
    ];
    for (command, extra, breaks) in cases {
        let v = validator(command);
        let mut args: Vec<String> = vec![command.into(), fx.clone()];
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push("--json".into());
        let mut doc = run_json(&args);
        assert!(
            v.is_valid(&doc),
            "ck2core {args:?} should be valid before breaking it"
        );
        breaks(&mut doc);
        assert!(
            !v.is_valid(&doc),
            "a broken `ck2core {command}` output passed validation: {doc}"
        );
    }
}
