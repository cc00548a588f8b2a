//! ck2core where checkpoints are handled: as a checkpointctl plugin, with shell
//! completions, quiet and verbose, without colour, with every exit status said.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ck2core, scratch, testdata};

/// A PATH directory holding `checkpointctl-coredump`, a link to ck2core, as the
/// README says to install it.
fn plugin_dir(name: &str) -> PathBuf {
    let dir = scratch(name);
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_ck2core"),
        dir.join("checkpointctl-coredump"),
    )
    .unwrap();
    dir
}

/// What checkpointctl's plugin discovery does (cmd/plugin.go): look through PATH for
/// `checkpointctl-NAME`, first match wins, and keep its absolute path.
fn find_plugin(path_env: &str, name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path_env)
        .filter(|d| !d.as_os_str().is_empty())
        .map(|d| d.join(format!("checkpointctl-{name}")))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .map(|p| std::path::absolute(p).unwrap())
}

fn cores_in(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().starts_with("core."))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn checkpointctl_runs_ck2core_as_its_coredump_plugin() {
    let dir = plugin_dir("plugin-path");
    let path_env = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let plugin = find_plugin(&path_env, "coredump").expect("plugin found on PATH");

    // The description probe: argv [path, "--plugin-description"], stdin closed,
    // stdout read, exit status 42, answered within checkpointctl's 500 ms.
    let t = Instant::now();
    let out = Command::new(&plugin)
        .arg("--plugin-description")
        .env("PATH", &path_env)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let took = t.elapsed();
    assert_eq!(out.status.code(), Some(42), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let first = stdout.trim().lines().next().unwrap_or("");
    assert_eq!(
        first,
        "Write an ELF core file per process of a checkpoint, for gdb and lldb (ck2core)"
    );
    assert!(
        took < Duration::from_millis(500),
        "description took {took:?}"
    );

    // `checkpointctl coredump ARGS` executes the plugin with argv [path, ARGS...]
    // and the same environment.
    for (input, rootfs) in [
        ("podman-counter/counter.tar", "podman-counter/rootfs"),
        ("ckfix/images", "host-rootfs"),
    ] {
        let input = testdata().join(input).display().to_string();
        let rootfs = testdata().join(rootfs).display().to_string();
        let via_plugin = scratch("plugin-cores");
        let out = Command::new(&plugin)
            .args([
                &input,
                "-o",
                via_plugin.to_str().unwrap(),
                "--rootfs",
                &rootfs,
            ])
            .env("PATH", &path_env)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let direct = scratch("plugin-direct");
        let d = ck2core(&[
            "convert",
            &input,
            "-o",
            direct.to_str().unwrap(),
            "--rootfs",
            &rootfs,
        ]);
        assert!(d.status.success());
        let (a, b) = (cores_in(&via_plugin), cores_in(&direct));
        assert!(!a.is_empty(), "the plugin wrote no cores for {input}");
        let names = |v: &[(String, Vec<u8>)]| v.iter().map(|c| c.0.clone()).collect::<Vec<_>>();
        assert_eq!(names(&a), names(&b), "{input}");
        for ((n, x), (_, y)) in a.iter().zip(&b) {
            assert!(
                x == y,
                "{input}: {n} from the plugin differs from ck2core convert's"
            );
        }
        // Progress lines are those of convert.
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("open with:"), "{err}");
    }

    // Its help names it as checkpointctl's subcommand, and bad arguments are a
    // usage error (2), as for ck2core.
    let out = Command::new(&plugin).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("Usage: checkpointctl coredump [OPTIONS] --output <DIR> <CHECKPOINT>"),
        "{help}"
    );
    let out = Command::new(&plugin).arg("--bogus").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Bash with `ck2core completions bash` loaded completes commands, their flags and
/// values, the way bash calls a completion function (COMP_WORDS, COMP_CWORD).
#[test]
fn bash_completes_commands_and_flags() {
    let dir = scratch("completions");
    let script = dir.join("ck2core.bash");
    let out = ck2core(&["completions", "bash"]);
    assert!(out.status.success());
    std::fs::write(&script, &out.stdout).unwrap();
    let driver = format!(
        r#"source {}
fn=$(complete -p ck2core | sed -E 's/.*-F ([^ ]+) .*/\1/')
try() {{
    COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); COMP_LINE="$*"; COMP_POINT=${{#COMP_LINE}}
    COMPREPLY=()
    "$fn" ck2core "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
    echo "$*|${{COMPREPLY[*]}}"
}}
try ck2core th
try ck2core re
try ck2core threads --re
try ck2core convert --o
try ck2core convert --inc
try ck2core completions ''
try ck2core ps -
"#,
        script.display()
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &driver])
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let got: std::collections::BTreeMap<&str, Vec<&str>> = text
        .lines()
        .filter_map(|l| l.split_once('|'))
        .map(|(k, v)| (k, v.split_whitespace().collect()))
        .collect();
    assert_eq!(got["ck2core th"], ["threads"]);
    assert_eq!(got["ck2core re"], ["read", "report"]);
    assert_eq!(got["ck2core threads --re"], ["--regs"]);
    assert_eq!(got["ck2core convert --o"], ["--output"]);
    assert_eq!(got["ck2core convert --inc"], ["--include-dontdump"]);
    for shell in ["bash", "zsh", "fish"] {
        assert!(got["ck2core completions "].contains(&shell), "{text}");
    }
    for flag in ["--json", "--pid", "--rootfs", "--quiet", "--verbose"] {
        assert!(
            got["ck2core ps -"].contains(&flag) || flag == "--pid",
            "{flag}: {text}"
        );
    }
}

/// The command lines the zsh and fish tests complete (as if TAB followed each); the
/// last two complete file names in `files`.
fn completion_lines(files: &Path) -> Vec<String> {
    let d = files.display();
    [
        "ck2core ".to_string(),
        "ck2core re".into(),
        "ck2core -q th".into(),
        "ck2core convert --".into(),
        "ck2core threads --re".into(),
        "ck2core completions ".into(),
        format!("ck2core convert {d}/"),
        format!("ck2core convert --output {d}/i"),
    ]
    .into()
}

/// A folder for file completion: a checkpoint archive, an image folder, a note.
fn completion_files(dir: &Path) -> PathBuf {
    let files = dir.join("here");
    std::fs::create_dir_all(files.join("images")).unwrap();
    std::fs::write(files.join("checkpoint.tar"), b"").unwrap();
    std::fs::write(files.join("notes.txt"), b"").unwrap();
    files
}

/// The first word of each line of `ck2core ARGS --help`'s `section:` (`Commands` or
/// `Options`) that starts with `prefix`: what the command line defines, read from
/// the help rather than from a completion script.
fn help_words(args: &[&str], section: &str, prefix: &str) -> Vec<String> {
    let mut all = args.to_vec();
    all.push("--help");
    let out = ck2core(&all);
    let help = String::from_utf8(out.stdout).unwrap();
    let mut words: Vec<String> = help
        .lines()
        .skip_while(|l| *l != format!("{section}:"))
        .skip(1)
        .take_while(|l| l.starts_with(' '))
        .filter_map(|l| {
            l.split_whitespace()
                .map(|w| w.trim_end_matches(','))
                .find(|w| w.starts_with(prefix))
        })
        .map(str::to_string)
        .collect();
    words.sort();
    assert!(words.len() > 3, "{section} of {args:?}:\n{help}");
    words
}

/// Reads `LINE|candidate` lines into each line's sorted candidates.
fn candidates(text: &str) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut got = std::collections::BTreeMap::<String, Vec<String>>::new();
    for l in text.lines() {
        let (line, word) = l.split_once('|').unwrap_or_else(|| panic!("{l:?}"));
        got.entry(line.into()).or_default().push(word.into());
    }
    got.values_mut().for_each(|v| v.sort());
    got
}

/// Runs `shell` with `args` and `env` under a time limit: a shell that waits for
/// input it never gets must fail the test, not stall it.
fn run_shell(shell: &str, args: &[&std::ffi::OsStr], env: &[(&str, &std::ffi::OsStr)]) {
    let mut cmd = Command::new("timeout");
    cmd.arg("60").arg(shell).args(args);
    cmd.env("TERM", "xterm");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("timeout");
    assert_ne!(
        out.status.code(),
        Some(124),
        "{shell} did not finish in 60 s"
    );
    assert!(
        out.status.success(),
        "{shell}: {:?}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Checks what a shell offered (`LINE|candidate` lines, `text`) for the first six of
/// [`completion_lines`]: the commands and `convert`'s flags as `--help` lists them,
/// commands and flags from a prefix (also after a global flag), and the shells
/// `completions` takes. Returns the candidates of each of `lines`.
fn assert_offers_commands_flags_and_values<'a>(
    text: &str,
    lines: &'a [String],
) -> impl Fn(usize) -> Vec<String> + 'a {
    let got = candidates(text);
    let want = move |i: usize| got.get(&lines[i]).cloned().unwrap_or_default();
    assert_eq!(want(0), help_words(&[], "Commands", ""), "{text}");
    assert_eq!(want(1), ["read", "report"], "{text}");
    assert_eq!(want(2), ["threads"], "{text}");
    assert_eq!(want(3), help_words(&["convert"], "Options", "--"), "{text}");
    assert_eq!(want(4), ["--regs"], "{text}");
    assert_eq!(
        want(5),
        ["bash", "elvish", "fish", "powershell", "zsh"],
        "{text}"
    );
    want
}

fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

/// zsh, set up as README says (the script as `_ck2core` in a folder of `fpath`, then
/// `compinit`), completes real command lines typed into an interactive zsh: what its
/// completion system offers after each TAB is compared with the command line's
/// definition.
#[test]
fn zsh_completes_commands_flags_values_and_files() {
    if !common::tool_present("zsh", "the zsh completion script") {
        return;
    }
    let dir = scratch("completions-zsh");
    let fndir = dir.join("functions");
    std::fs::create_dir_all(&fndir).unwrap();
    let out = ck2core(&["completions", "zsh"]);
    assert!(out.status.success());
    std::fs::write(fndir.join("_ck2core"), &out.stdout).unwrap();
    let files = completion_files(&dir);
    let lines = completion_lines(&files);
    let result = dir.join("offered");
    let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/complete.zsh");
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "-f".as_ref(),
        driver.as_ref(),
        fndir.as_ref(),
        result.as_ref(),
    ];
    args.extend(lines.iter().map(std::ffi::OsStr::new));
    run_shell("zsh", &args, &[("HOME", dir.as_ref())]);
    let text = std::fs::read_to_string(&result).unwrap();
    let want = assert_offers_commands_flags_and_values(&text, &lines);
    // zsh offers the names within the folder typed.
    assert_eq!(want(6), ["checkpoint.tar", "images", "notes.txt"], "{text}");
    assert_eq!(want(7), ["images"], "{text}");
}

/// fish, set up as README says (the script in `~/.config/fish/completions/`, ck2core
/// on PATH), completes real command lines (`complete -C`, what fish offers at TAB);
/// the candidates are compared with the command line's definition.
#[test]
fn fish_completes_commands_flags_values_and_files() {
    if !common::tool_present("fish", "the fish completion script") {
        return;
    }
    let dir = scratch("completions-fish");
    let config = dir.join("config");
    std::fs::create_dir_all(config.join("fish/completions")).unwrap();
    let out = ck2core(&["completions", "fish"]);
    assert!(out.status.success());
    std::fs::write(config.join("fish/completions/ck2core.fish"), &out.stdout).unwrap();
    let files = completion_files(&dir);
    let lines = completion_lines(&files);
    let list = dir.join("lines");
    std::fs::write(&list, lines.join("\n") + "\n").unwrap();
    let result = dir.join("offered");
    let script = format!(
        "for l in (cat {}); complete -C $l | string replace -r '\\t.*' '' | \
         string replace -r '^' \"$l|\"; end > {}",
        list.display(),
        result.display()
    );
    let bin = Path::new(env!("CARGO_BIN_EXE_ck2core")).parent().unwrap();
    let path = std::env::join_paths(std::iter::once(bin.to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    run_shell(
        "fish",
        &["-c".as_ref(), script.as_ref()],
        &[
            ("HOME", dir.as_ref()),
            ("XDG_CONFIG_HOME", config.as_ref()),
            ("XDG_DATA_HOME", dir.join("data").as_ref()),
            ("XDG_CACHE_HOME", dir.join("cache").as_ref()),
            ("PATH", path.as_ref()),
        ],
    );
    let text = std::fs::read_to_string(&result).unwrap();
    let want = assert_offers_commands_flags_and_values(&text, &lines);
    // fish offers whole paths, folders with their slash.
    let d = files.display();
    assert_eq!(
        want(6),
        strings(&[
            &format!("{d}/checkpoint.tar"),
            &format!("{d}/images/"),
            &format!("{d}/notes.txt")
        ]),
        "{text}"
    );
    assert_eq!(want(7), strings(&[&format!("{d}/images/")]), "{text}");
}

fn stderr_of(args: &[&str]) -> (Option<i32>, String) {
    let out = ck2core(args);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn quiet_prints_only_errors_and_verbose_says_where_memory_came_from() {
    let ckfix = testdata().join("ckfix/images").display().to_string();
    let root = testdata().join("host-rootfs").display().to_string();
    let dir = scratch("quiet");
    let out = dir.to_str().unwrap();

    let (code, err) = stderr_of(&["-q", &ckfix, "-o", out, "--rootfs", &root]);
    assert_eq!((code, err.as_str()), (Some(0), ""));
    assert_eq!(cores_in(&dir).len(), 2, "-q still converts");
    // After the subcommand too, and as the plugin would take it.
    let (code, err) = stderr_of(&[
        "convert", &ckfix, "-o", out, "--force", "--quiet", "--rootfs", &root,
    ]);
    assert_eq!((code, err.as_str()), (Some(0), ""));

    // Errors still show with -q: a core that exists is not overwritten.
    let (code, err) = stderr_of(&["-q", &ckfix, "-o", out, "--rootfs", &root]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("failed   pid 31227") && err.contains("core.31227"),
        "{err}"
    );

    let (code, normal) = stderr_of(&[&ckfix, "-o", out, "--force", "--rootfs", &root]);
    assert_eq!(code, Some(0));
    let (code, verbose) = stderr_of(&["-v", &ckfix, "-o", out, "--force", "--rootfs", &root]);
    assert_eq!(code, Some(0));
    // -v adds lines, it changes none.
    for l in normal.lines() {
        assert!(verbose.lines().any(|v| v == l), "-v lost {l:?}");
    }
    // The pages CRIU saved for pid 31227 (its maps: 56 saved, one shared page), and
    // each file with where it was found.
    assert!(
        verbose.contains(
            "memory: 56 pages from pages-*.img, 0 from parent images, 1 from shared-memory images"
        ),
        "{verbose}"
    );
    assert!(
        verbose.contains("/ckfix/bin/ckfix: 2 pages, from --rootfs ")
            && verbose.contains("host-rootfs/ckfix/bin/ckfix"),
        "{verbose}"
    );
    assert!(
        verbose.contains("/usr/lib/x86_64-linux-gnu/libc.so.6: 463 pages, from --rootfs"),
        "{verbose}"
    );

    // A file of the container's rootfs-diff.tar is named as coming from there.
    let counter = testdata()
        .join("podman-counter/counter.tar")
        .display()
        .to_string();
    let (_, v) = stderr_of(&["-v", &counter, "-o", out, "--force"]);
    assert!(
        v.contains("memory: ") && v.contains("/bin/busybox: 0 pages, not used: "),
        "{v}"
    );

    assert_eq!(
        stderr_of(&["-q", "-v", "ps", &ckfix]).0,
        Some(2),
        "-q and -v conflict"
    );
}

/// ck2core itself writes no colour; clap colours help and errors only on a
/// terminal or when forced, and NO_COLOR wins over forcing.
#[test]
fn no_color_is_honoured_and_outputs_have_no_colour() {
    let run = |env: &[(&str, &str)], args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ck2core"));
        c.args(args)
            .env_remove("NO_COLOR")
            .env_remove("CLICOLOR_FORCE");
        for (k, v) in env {
            c.env(k, v);
        }
        let o = c.output().unwrap();
        [o.stdout, o.stderr].concat()
    };
    let esc = |b: &[u8]| b.contains(&0x1b);
    assert!(
        esc(&run(&[("CLICOLOR_FORCE", "1")], &["--help"])),
        "forced colour shows"
    );
    assert!(!esc(&run(
        &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")],
        &["--help"]
    )));
    assert!(!esc(&run(
        &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")],
        &["ps", "--bogus"]
    )));
    // Every command's output, forced or not.
    let ckfix = testdata().join("ckfix/images").display().to_string();
    let dir = scratch("nocolor");
    for args in [
        vec!["info", &ckfix],
        vec!["ps", &ckfix],
        vec!["threads", &ckfix],
        vec!["maps", &ckfix],
        vec!["files", &ckfix],
        vec!["env", &ckfix],
        vec!["search", &ckfix, "CK2CORE"],
        vec!["report", &ckfix],
        vec!["convert", &ckfix, "-o", dir.to_str().unwrap(), "--force"],
    ] {
        assert!(
            !esc(&run(&[("CLICOLOR_FORCE", "1")], &args)),
            "{args:?} wrote an escape"
        );
    }
}

/// Every exit status is in `--help` and in README, with the same numbers.
#[test]
fn exit_statuses_are_documented() {
    let help = String::from_utf8(ck2core(&["--help"]).stdout).unwrap();
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    for code in ["0", "1", "2", "3", "42"] {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(&format!("{code} "))),
            "--help lacks exit status {code}:\n{help}"
        );
        assert!(
            readme.contains(&format!("`{code}`")),
            "README lacks exit status {code}"
        );
    }
    // What the statuses say is what happens.
    let ckfix = testdata().join("ckfix/images").display().to_string();
    assert_eq!(ck2core(&["ps", &ckfix]).status.code(), Some(0));
    assert_eq!(ck2core(&["ps", "/nonexistent"]).status.code(), Some(1));
    assert_eq!(ck2core(&["ps", &ckfix, "--bogus"]).status.code(), Some(2));
}

/// The Job in deploy/kubernetes runs ck2core with options it has: its command line,
/// taken from the manifest, converts a checkpoint in the layout the kubelet's
/// runtime writes (CRI-O's) with the container's root.
#[test]
fn kubernetes_job_command_line_converts() {
    let manifest = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes/ck2core-job.yaml"),
    )
    .unwrap();
    let args_line = manifest
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("args: "))
        .expect("the Job's args line");
    // A YAML flow sequence of quoted strings is a JSON array.
    let args: Vec<String> = serde_json::from_str(args_line).unwrap();
    let cores = scratch("k8s-job");
    let archive = testdata().join("podman-counter/counter.tar");
    let root = testdata().join("podman-counter/rootfs");
    let args: Vec<String> = args
        .iter()
        .map(|a| match a.as_str() {
            "/checkpoints/${ARCHIVE}" => archive.display().to_string(),
            "/cores/${JOB}" => cores.join("counter").display().to_string(),
            "/rootfs" => root.display().to_string(),
            other => {
                assert!(
                    !other.contains('$') && !other.starts_with('/'),
                    "unexpected {other}"
                );
                other.to_string()
            }
        })
        .collect();
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = ck2core(&argv);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?}: {err}");
    assert_eq!(
        cores_in(&cores.join("counter"))
            .iter()
            .map(|c| c.0.as_str())
            .collect::<Vec<_>>(),
        ["core.1", "core.774"]
    );
    // The root was used: busybox was found there by its build-id.
    assert!(!err.contains("not in --rootfs"), "{err}");
}
