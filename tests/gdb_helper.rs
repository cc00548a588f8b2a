//! The gdb helper (gdb-scripts/ck2core.py), loaded through the gdbinit that
//! `ck2core convert` writes, on real cores; and on a core without ck2core's note.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// Runs gdb the way the converter says to: `-ix DIR/gdbinit --core CORE EXE`.
fn gdb_helper(dir: &Path, core: &str, exe: Option<&Path>, cmds: &[&str]) -> String {
    gdb_with_init(&dir.join("gdbinit"), &dir.join(core), exe, cmds)
}

fn convert(input: &Path, out: &Path, rootfs: &Path) -> String {
    ck2core_ok(&[
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--rootfs",
        rootfs.to_str().unwrap(),
    ])
}

#[test]
fn threads_are_named_and_syscalls_shown() {
    let td = testdata();
    let out = scratch("helper-ckfix");
    let rootfs = td.join("host-rootfs");
    let summary = convert(&td.join("ckfix/images"), &out, &rootfs);
    // Printed relative to the current directory, where it is under it.
    let gdbinit = out.join("gdbinit");
    let cwd = std::env::current_dir().unwrap();
    let shown = gdbinit.strip_prefix(&cwd).unwrap_or(&gdbinit);
    assert!(
        summary.contains(&format!("gdb -ix {} --core", shown.display())),
        "{summary}"
    );
    let got = gdb_helper(
        &out,
        "core.31227",
        Some(&rootfs.join("ckfix/bin/ckfix")),
        &[
            "info threads",
            "ck2core threads",
            "ck2core fds",
            "ck2core maps",
            "ck2core info",
        ],
    );
    assert_eq!(warnings(&got), Vec::<&str>::new(), "{got}");
    for (lwp, name) in [
        (31227, "ckfix-main"),
        (31230, "spin-1"),
        (31231, "spin-2"),
        (31232, "spin-3"),
        (31233, "waiter"),
    ] {
        assert!(
            got.contains(&format!("(LWP {lwp}) \"{name}\"")),
            "thread {lwp} not named {name}:\n{got}"
        );
    }
    let row = |tid: &str| {
        got.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(tid))
            .unwrap_or_else(|| panic!("{got}"))
    };
    assert!(row("31227").contains("pause (restart)"), "{got}");
    assert!(row("31233").contains("futex (restart)"), "{got}");
    assert!(row("31230").contains("spin-1") && row("31230").contains(" - "));
    assert!(
        got.contains("pipe:[66504]") && got.contains("/dev/null"),
        "ck2core fds:\n{got}"
    );
    assert!(
        got.lines()
            .any(|l| l.contains("/ckfix/data.bin") && l.contains("1 saved")),
        "ck2core maps:\n{got}"
    );
    assert!(
        got.contains("Command:      /ckfix/bin/ckfix /ckfix/ready /ckfix/data.bin"),
        "{got}"
    );
}

#[test]
fn info_shows_the_podman_container() {
    let td = testdata();
    let out = scratch("helper-podman");
    let rootfs = td.join("podman-counter/rootfs");
    convert(&td.join("podman-counter/counter.tar.zst"), &out, &rootfs);
    let got = gdb_helper(
        &out,
        "core.1",
        Some(&rootfs.join("bin/busybox")),
        &["ck2core info", "info threads"],
    );
    assert_eq!(warnings(&got), Vec::<&str>::new(), "{got}");
    assert!(got.contains("Engine:       Podman"), "{got}");
    assert!(got.contains("Container:    counter"), "{got}");
    assert!(got.contains("Image:        localhost/bbox:latest"), "{got}");
    assert!(got.contains("LWP 1 \"sh\""), "{got}");
    // Podman's default capability set, and the cgroup CRIU recorded (cgroup.img).
    let caps = "chown, dac_override, fowner, fsetid, kill, setgid, setuid, setpcap, \
                net_bind_service, sys_chroot, setfcap";
    assert!(got.contains(&format!("Caps (eff):   {caps}\n")), "{got}");
    assert!(got.contains(&format!("Caps (bnd):   {caps}\n")), "{got}");
    assert!(
        got.contains(
            "Cgroup:       /libpod_parent/libpod-96a6b8d31cd5aea133201a240fbce2c007dc200521a10f44a1a046175564365b \
             (unified, blkio, cpu, cpuacct, cpuset, devices, freezer, memory, name=systemd, pids)"
        ),
        "{got}"
    );
}

#[test]
fn a_core_without_the_note_gets_one_line_and_no_change() {
    use ck2core::archive::Input;
    use ck2core::core::{CoreOptions, Plan};
    use ck2core::model::{Checkpoint, OpenOptions};
    let td = testdata();
    let out = scratch("helper-foreign");
    // The gdbinit and helper, as convert writes them; then a core without the note.
    convert(&td.join("sleep/images"), &out, &td.join("host-rootfs"));
    let ck = Checkpoint::open(
        &Input::Path(td.join("sleep/images")),
        &OpenOptions::default(),
    )
    .unwrap();
    let p = ck.process(30914).unwrap();
    let plan = Plan::new(
        &p,
        &CoreOptions {
            metadata: None,
            policy: Default::default(),
        },
    )
    .unwrap();
    std::fs::remove_file(out.join("core.30914")).unwrap();
    plan.write(&out, 30914, false, &mut |_| {}).unwrap();
    let got = gdb_helper(
        &out,
        "core.30914",
        None,
        &["info threads", "ck2core threads"],
    );
    let lines: Vec<&str> = got.lines().filter(|l| l.starts_with("ck2core:")).collect();
    assert_eq!(
        lines.len(),
        2,
        "one line on load, one for the command:\n{got}"
    );
    assert!(
        lines[0].contains("was not written by ck2core (it has no CK2CORE note)"),
        "{got}"
    );
    assert!(!got.contains("\"sleep\""), "thread names unchanged:\n{got}");
}

#[test]
fn readelf_lists_the_note() {
    let td = testdata();
    let out = scratch("helper-readelf");
    convert(&td.join("sleep/images"), &out, &td.join("host-rootfs"));
    let r = Command::new("readelf")
        .args(["-n", "-W"])
        .arg(out.join("core.30914"))
        .output()
        .expect("readelf (binutils)");
    let text = String::from_utf8_lossy(&r.stdout);
    assert!(
        r.status.success() && r.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert!(
        text.lines().any(|l| l.trim_start().starts_with("CK2CORE")),
        "{text}"
    );
}

#[test]
fn ck2core_gdb_starts_gdb_on_a_temporary_core() {
    let td = testdata();
    let tmp = scratch("helper-gdb-cmd");
    let out = Command::new(env!("CARGO_BIN_EXE_ck2core"))
        .args([
            "gdb",
            td.join("ckfix/images").to_str().unwrap(),
            "--pid",
            "31227",
            "--rootfs",
        ])
        .arg(td.join("host-rootfs"))
        .args(["--", "-nx", "-batch", "-ex", "info threads"])
        .env("TMPDIR", &tmp)
        .output()
        .unwrap();
    let got = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        got.contains("\"spin-2\"") && got.contains("__libc_pause"),
        "{got}"
    );
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "the temporary directory is removed"
    );
}
