//! lldb-22 as an oracle beside gdb on the real x86-64 fixtures: every core says its
//! process was stopped by SIGSTOP (NT_SIGINFO and pr_cursig), so lldb loads it at
//! once instead of waiting to resume it; opened as the converter's summary says, with
//! its lldbinit, lldb lists every thread by tid, shows the general registers gdb
//! shows, and walks the ckfix spinners' stacks through the root's files.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;

const NT_PRSTATUS: u32 = 1;
const NT_SIGINFO: u32 = 0x5349_4749;

/// Converts `checkpoint` into a fresh `name` directory; returns it and the summary.
fn convert(name: &str, checkpoint: &Path, rootfs: Option<&Path>) -> (std::path::PathBuf, String) {
    let out = scratch(name);
    let mut args = vec![checkpoint.to_str().unwrap(), "-o", out.to_str().unwrap()];
    if let Some(r) = rootfs {
        args.extend(["--rootfs", r.to_str().unwrap()]);
    }
    let summary = ck2core_ok(&args);
    (out, summary)
}

/// The arguments of the lldb command line the summary prints for `core`.
fn lldb_line(summary: &str, core: &Path) -> Vec<String> {
    // The summary shows paths relative to the current directory, as the tests run.
    let name = core.file_name().unwrap().to_str().unwrap();
    let line = summary
        .lines()
        .map(str::trim)
        .find(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            l.starts_with("lldb")
                && w.windows(2)
                    .any(|p| p[0] == "--core" && Path::new(p[1]).ends_with(name))
        })
        .unwrap_or_else(|| panic!("no lldb command line for {}:\n{summary}", core.display()));
    line.split_whitespace()
        .skip(1)
        .map(str::to_string)
        .collect()
}

/// Every NT_PRSTATUS says SIGSTOP (pr_info.si_signo and pr_cursig), and the one
/// NT_SIGINFO is SIGSTOP sent by the kernel (si_code SI_KERNEL), as in the core
/// gdb's gcore writes of a process it stopped.
fn assert_sigstop_notes(core: &Path) {
    let notes = CoreFile::open(core).notes();
    let prstatus: Vec<_> = notes.iter().filter(|n| n.ntype == NT_PRSTATUS).collect();
    assert!(!prstatus.is_empty());
    for n in prstatus {
        assert_eq!(n.desc[0..4], 19u32.to_le_bytes(), "pr_info.si_signo");
        assert_eq!(n.desc[12..14], 19u16.to_le_bytes(), "pr_cursig");
    }
    let si: Vec<_> = notes.iter().filter(|n| n.ntype == NT_SIGINFO).collect();
    assert_eq!(si.len(), 1, "one NT_SIGINFO, as the kernel writes");
    let mut want = vec![0u8; 128];
    want[0] = 19;
    want[8] = 0x80;
    assert_eq!(
        si[0].desc, want,
        "si_signo SIGSTOP, si_errno 0, si_code SI_KERNEL"
    );
}

/// gdb (with the converter's gdbinit) and lldb (as the summary says) on one core:
/// gdb names SIGSTOP, lldb agrees with it on threads and general registers. Returns
/// lldb's output, with `extra` lldb commands run after the registers.
fn gdb_and_lldb(
    out: &Path,
    summary: &str,
    core: &Path,
    exe: Option<&Path>,
    extra: &[&str],
) -> (String, BTreeMap<u32, ThreadView>) {
    assert_sigstop_notes(core);
    let g = gdb_with_init(
        &out.join("gdbinit"),
        core,
        exe,
        &["thread apply all info registers"],
    );
    assert_eq!(warnings(&g), Vec::<&str>::new(), "{g}");
    assert!(
        g.contains("Program terminated with signal SIGSTOP, Stopped (signal)."),
        "{g}"
    );
    let threads = parse_threads(&g);
    assert!(!threads.is_empty(), "{g}");
    let args = lldb_line(summary, core);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmds = lldb_register_commands(threads.len());
    cmds.extend(extra.iter().map(|c| c.to_string()));
    let l = lldb_with(&args, &cmds.iter().map(String::as_str).collect::<Vec<_>>());
    // rax..r15, rip, rflags and six segment registers (gdb 13 shows no fs_base for
    // these cores: 24 in common).
    assert_lldb_agrees_with_gdb(&l, &threads, 24);
    (l, threads)
}

#[test]
fn ckfix_in_lldb_with_the_root() {
    let td = testdata();
    let rootfs = td.join("host-rootfs");
    let (out, summary) = convert("lldb-ckfix", &td.join("ckfix/images"), Some(&rootfs));
    let init = std::fs::read_to_string(out.join("lldbinit")).unwrap();
    // The sysroot beside the cores: the verified copies of the root's files.
    let root = std::fs::canonicalize(out.join("sysroot")).unwrap();
    assert!(
        init.contains(&format!(
            "platform select remote-linux --sysroot {}\n",
            root.display()
        )),
        "{init}"
    );
    let exe = root.join("ckfix/bin/ckfix");
    // The spinners are threads 2 to 4 (LWP 31230..31232), in the notes' order.
    let (l, threads) = gdb_and_lldb(
        &out,
        &summary,
        &out.join("core.31227"),
        Some(&exe),
        &["image list", BACKTRACES],
    );
    assert_eq!(
        threads.keys().copied().collect::<Vec<_>>(),
        [31227, 31230, 31231, 31232, 31233]
    );
    // lldb found the executable and libc in the sysroot, not on this machine.
    for lib in ["ckfix/bin/ckfix", "x86_64-linux-gnu/libc.so.6"] {
        assert!(
            l.lines()
                .any(|x| x.contains(&root.display().to_string()) && x.contains(lib)),
            "{lib} not from the root:\n{l}"
        );
    }
    // One line per thread, "T<index> f0 | f1 | ...", each written by a single print:
    // lldb prints the core's stop event from another thread, and it would otherwise
    // land between the lines of a `thread backtrace`.
    let frames: BTreeMap<u32, Vec<&str>> = l
        .lines()
        .filter_map(|x| {
            let (n, f) = x.strip_prefix('T')?.split_once(' ')?;
            Some((n.parse().ok()?, f.split(" | ").collect()))
        })
        .collect();
    for n in [2, 3, 4] {
        let f = frames
            .get(&n)
            .unwrap_or_else(|| panic!("no backtrace of thread #{n}:\n{l}"));
        let at = |name: &str| f.iter().position(|x| *x == name);
        let (Some(s), Some(st)) = (at("spinner"), at("start_thread")) else {
            panic!("thread #{n}'s backtrace misses spinner or start_thread: {f:?}");
        };
        assert!(f[0] == "spin_with_known_registers" && s < st, "{f:?}");
    }
}

/// Every thread's frames by function name, through lldb's Python API.
const BACKTRACES: &str = r#"script print("\n".join("T%d %s" % (t.GetIndexID(), " | ".join(str(f.GetFunctionName()) for f in t)) for t in lldb.process))"#;

#[test]
fn sleep_in_lldb_without_a_root() {
    let td = testdata();
    let (out, summary) = convert("lldb-sleep", &td.join("sleep/images"), None);
    let (_, threads) = gdb_and_lldb(&out, &summary, &out.join("core.30914"), None, &[]);
    assert_eq!(threads.keys().copied().collect::<Vec<_>>(), [30914]);
}

#[test]
fn podman_archive_in_lldb() {
    let td = testdata();
    let rootfs = td.join("podman-counter/rootfs");
    let (out, summary) = convert(
        "lldb-podman",
        &td.join("podman-counter/counter.tar.zst"),
        Some(&rootfs),
    );
    let exe = std::fs::canonicalize(rootfs.join("bin/busybox")).unwrap();
    let mut seen = Vec::new();
    for e in std::fs::read_dir(&out).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("core.") {
            let (_, threads) = gdb_and_lldb(&out, &summary, &out.join(&name), Some(&exe), &[]);
            assert_eq!(
                threads.keys().copied().collect::<Vec<_>>(),
                [pid.parse::<u32>().unwrap()]
            );
            seen.push(name);
        }
    }
    assert_eq!(seen.len(), 2, "sh and sleep");
}
