//! Converted without `--rootfs`, a core names no files (NT_FILE is empty) and the
//! gdbinit beside it keeps gdb from using this machine's libraries for the
//! container's: gdb opens every core as the converter prints it without a warning,
//! and the summary says once what a root would add.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// Converts `input` without a root into a fresh `name` directory; returns it and
/// the converter's stderr.
fn convert_without_root(input: &Path, name: &str) -> (PathBuf, String) {
    let out = scratch(name);
    let err = ck2core_ok(&[input.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    (out, err)
}

/// The cores the converter wrote, with the gdb it printed for each. Every gdb
/// line is followed by an lldb line for the same core, which is not returned.
fn printed_commands(stderr: &str) -> Vec<(String, PathBuf)> {
    let lines: Vec<&str> = stderr
        .lines()
        .skip_while(|l| *l != "open with:")
        .skip(1)
        .collect();
    assert_eq!(
        lines.len() % 2,
        0,
        "a gdb and an lldb line per core:\n{stderr}"
    );
    for pair in lines.chunks(2) {
        let core_of = |l: &str| l.split_whitespace().last().unwrap_or("").to_string();
        assert!(pair[1].trim_start().starts_with("lldb"), "{stderr}");
        assert_eq!(core_of(pair[0]), core_of(pair[1]), "{stderr}");
    }
    lines
        .iter()
        .step_by(2)
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let core = words
                .iter()
                .position(|w| *w == "--core")
                .map(|i| PathBuf::from(words[i + 1]))
                .unwrap_or_else(|| panic!("no --core in {l:?}"));
            assert_eq!(
                words.len(),
                5,
                "without a root no executable is suggested: {l:?}"
            );
            (words[0].to_string(), core)
        })
        .collect()
}

/// Opens every core of `stderr` as printed; asserts gdb warned about nothing and
/// saw the process's threads.
fn open_as_printed(out: &Path, stderr: &str) -> usize {
    let cmds = printed_commands(stderr);
    for (gdb, core) in &cmds {
        assert!(
            CoreFile::open(core).nt_file_names().is_empty(),
            "{}: NT_FILE names files though no root was given: {:?}",
            core.display(),
            CoreFile::open(core).nt_file_names()
        );
        let got = if gdb == "gdb" {
            gdb_with_init(&out.join("gdbinit"), core, None, &["info threads"])
        } else {
            gdb_multiarch_with_init(&out.join("gdbinit"), core, &["info threads"])
        };
        assert_eq!(warnings(&got), Vec::<&str>::new(), "{got}");
        assert!(!got.contains("Can't open"), "{got}");
        let pid = core.extension().unwrap().to_str().unwrap();
        assert!(got.contains(&format!("LWP {pid} ")), "{got}");
    }
    cmds.len()
}

#[test]
fn fixtures_without_a_root_open_without_warnings() {
    let td = testdata();
    let mut runtimes = Vec::new();
    for r in ["python", "go", "java"] {
        runtimes.push(td.join(format!("runtimes/{r}/images.tar.zst")));
    }
    let mut inputs = vec![
        td.join("ckfix/images"),
        td.join("sleep/images"),
        td.join("podman-counter/counter.tar"),
    ];
    inputs.extend(runtimes.into_iter().filter(|p| p.exists()));
    for (i, input) in inputs.iter().enumerate() {
        let (out, err) = convert_without_root(input, &format!("noroot-{i}"));
        let n = open_as_printed(&out, &err);
        assert!(n >= 1, "{}: no core:\n{err}", input.display());
        // Said once, however many processes.
        assert_eq!(
            err.matches("symbols and the file pages CRIU did not save need the container's files (--rootfs DIR or --image IMAGE)").count(),
            1,
            "{err}"
        );
        assert!(!err.contains("not in the container's files"), "{err}");
    }
}

/// Given an executable of this machine, gdb reads the link map in the core and
/// looks for the libraries it names: under the gdbinit's sysroot it finds none,
/// rather than this machine's own libc.
#[test]
fn the_gdbinit_keeps_gdb_from_loading_this_machines_libraries() {
    let td = testdata();
    let (out, _) = convert_without_root(&td.join("sleep/images"), "noroot-libs");
    // Any executable will do; this one has the dynamic section gdb follows.
    let exe = td.join("host-rootfs/usr/bin/sleep");
    let got = gdb_with_init(
        &out.join("gdbinit"),
        &out.join("core.30914"),
        Some(&exe),
        &["info sharedlibrary"],
    );
    let rows: Vec<&str> = got
        .lines()
        .filter(|l| l.contains("/lib/x86_64-linux-gnu/libc.so.6") || l.contains("/ld-linux"))
        .filter(|l| l.contains(" Yes ") || l.contains(" No "))
        .collect();
    assert_eq!(rows.len(), 2, "libc and ld.so in the link map:\n{got}");
    for r in &rows {
        // Loaded libraries show their address range and "Yes".
        assert!(
            r.trim_start().starts_with("No "),
            "gdb loaded a library of this machine: {r}\n{got}"
        );
    }
    assert!(!got.contains("Reading symbols from /lib"), "{got}");
}

/// The real aarch64 checkpoint from an Android device, whose program
/// (`/data/local/tmp/loop2`) exists nowhere here: gdb-multiarch used to warn that
/// it can't open it. Third-party data, read only when the shared fixtures are
/// beside the repository (or named by CK2CORE_SHARED_FIXTURES).
#[test]
fn real_aarch64_fixture_without_a_root_when_present() {
    let base = std::env::var_os("CK2CORE_SHARED_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"));
    let fixture = base.join("aarch64-loop2/images");
    if !fixture.exists() {
        eprintln!(
            "NOT CHECKED: {} is not present (third-party data, never in the repository; \
             set CK2CORE_SHARED_FIXTURES to the shared fixtures folder to check it)",
            fixture.display()
        );
        return;
    }
    let (out, err) = convert_without_root(&fixture, "noroot-a64");
    assert!(err.contains("gdb-multiarch"), "{err}");
    assert_eq!(open_as_printed(&out, &err), 1);
}
