//! The runtimes' own post-mortem tools as oracles, on real CRIU checkpoints of a
//! Python, a Go and a Java process (testdata/runtimes, with what each tool printed
//! on the live process): py-spy, delve and jhsdb show the same threads, frames,
//! line numbers and values on the cores as they did live.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;

fn runtime(name: &str) -> PathBuf {
    testdata().join("runtimes").join(name)
}

/// Converts a runtime fixture with `args`; returns the core.
fn convert(name: &str, out: &str, pid: u32, args: &[&str]) -> PathBuf {
    let out = scratch(out);
    let input = runtime(name).join("images.tar.zst");
    let mut all = vec![input.to_str().unwrap(), "-o", out.to_str().unwrap()];
    all.extend_from_slice(args);
    ck2core_ok(&all);
    out.join(format!("core.{pid}"))
}

/// Runs a tool; panics naming .ci/run when it is not installed.
fn run(program: &str, args: &[&std::ffi::OsStr], stdin: Option<&Path>) -> String {
    let mut cmd = Command::new(program);
    cmd.args(args);
    if let Some(f) = stdin {
        cmd.stdin(Stdio::from(std::fs::File::open(f).unwrap()));
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{program} must be installed (see .ci/run): {e}"));
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{program} {args:?} failed:\n{s}");
    s
}

/// py-spy's dump from the first thread on, in the form it takes for a live process:
/// its core mode adds a header, omits "(idle)" and prints full source paths.
fn pyspy_threads(out: &str) -> Vec<String> {
    out.lines()
        .skip_while(|l| !l.starts_with("Thread "))
        .map(|l| {
            let l = l.replace(" (idle):", ":");
            // "    func (/usr/lib/python3.11/threading.py:1132)" -> "(threading.py:1132)"
            match (l.rfind(" ("), l.ends_with(')')) {
                (Some(i), true) if l[i + 2..].contains('/') && !l.trim_start().starts_with('-') => {
                    let inner = &l[i + 2..l.len() - 1];
                    format!("{} ({})", &l[..i], inner.rsplit('/').next().unwrap())
                }
                _ => l,
            }
        })
        .collect()
}

fn pyspy(core: &Path, locals: bool) -> String {
    let mut args: Vec<&std::ffi::OsStr> = vec!["dump".as_ref(), "--core".as_ref(), core.as_ref()];
    if locals {
        args.push("--locals".as_ref());
    }
    run("py-spy", &args, None)
}

/// py-spy has no sysroot: it opens the python binary NT_FILE names where it runs.
/// `--host-paths` names the verified copy in the sysroot beside the core, so py-spy
/// reads that one and not whatever this machine has at /usr/bin/python3.11.
#[test]
fn pyspy_shows_the_live_threads_frames_and_lines() {
    let root = runtime("python/root");
    let core = convert(
        "python",
        "rt-py",
        2141,
        &["--rootfs", root.to_str().unwrap(), "--host-paths"],
    );
    // NT_FILE names the container's python (the sysroot's copy of the fixture's),
    // not /usr/bin/python3.11.
    let nt_file = CoreFile::open(&core)
        .notes()
        .into_iter()
        .find(|n| n.ntype == 0x4649_4c45)
        .unwrap()
        .desc;
    let sysroot = core.parent().unwrap().join("sysroot");
    let python = std::fs::canonicalize(sysroot.join("usr/bin/python3.11")).unwrap();
    assert_eq!(
        std::fs::read(&python).unwrap(),
        std::fs::read(root.join("usr/bin/python3.11")).unwrap()
    );
    let python = format!("{}\0", python.display());
    assert!(
        nt_file
            .windows(python.len())
            .any(|w| w == python.as_bytes()),
        "{python} not in NT_FILE"
    );
    assert!(!nt_file.windows(20).any(|w| w == b"\0/usr/bin/python3.11"));
    let got = pyspy(&core, false);
    let live = std::fs::read_to_string(runtime("python/live-pyspy.txt")).unwrap();
    assert_eq!(pyspy_threads(&got), pyspy_threads(&live), "{got}");
    assert!(got.contains("Thread 2144: \"ck-server\""), "{got}");
    assert!(got.contains("handle_request (/ckfix/app.py:14)"), "{got}");
}

/// py-spy's `--locals` reads `None`, `True` and type names from python's read-only
/// data, which a core leaves out like the kernel's: only a self-contained core
/// shows every value as live.
#[test]
fn pyspy_locals_on_a_self_contained_core_equal_the_live_ones() {
    let root = runtime("python/root");
    let core = convert(
        "python",
        "rt-py-locals",
        2141,
        &[
            "--rootfs",
            root.to_str().unwrap(),
            "--host-paths",
            "--self-contained",
        ],
    );
    let got = pyspy(&core, true);
    let live = std::fs::read_to_string(runtime("python/live-pyspy-locals.txt")).unwrap();
    assert_eq!(pyspy_threads(&got), pyspy_threads(&live), "{got}");
    for v in [
        "secret: \"CK2CORE-PY-SECRET-91b2\"",
        "count: 294",
        "timeout: None",
        "block: True",
        "gotit: False",
        "f: <_io.TextIOWrapper at 0x7f9602898110>",
    ] {
        assert!(got.contains(v), "{v} not in:\n{got}");
    }
}

/// The output of each command of a dlv session, in order (dlv prints its prompt
/// before each).
fn dlv_blocks(out: &str) -> Vec<String> {
    out.split("(dlv) ").skip(1).map(str::to_string).collect()
}

fn dlv_core(core: &Path, commands: &[&str], name: &str) -> Vec<String> {
    let cmds = core.with_file_name(name);
    std::fs::write(&cmds, format!("{}\nexit\n", commands.join("\n"))).unwrap();
    let exe = runtime("go/root/ckfix/gofix");
    let out = run(
        "dlv",
        &[
            "core".as_ref(),
            exe.as_os_str(),
            core.as_os_str(),
            "--allow-non-terminal-interactive=true".as_ref(),
        ],
        Some(&cmds),
    );
    dlv_blocks(&out)
}

#[test]
fn delve_shows_the_live_goroutines_backtraces_and_secret() {
    let root = runtime("go/root");
    let core = convert("go", "rt-go", 3380, &["--rootfs", root.to_str().unwrap()]);
    // The commands of live-dlv.txt, then those of live-dlv-bt.txt.
    let first = [
        "goroutines",
        "goroutines -t 30",
        "threads",
        "print main.Secret",
    ];
    let got = dlv_core(&core, &first, "dlv-1.cmds");
    let live = dlv_blocks(&std::fs::read_to_string(runtime("go/live-dlv.txt")).unwrap());
    for (i, cmd) in first.iter().enumerate() {
        if *cmd == "threads" {
            continue;
        }
        assert_eq!(got[i], live[i], "{cmd}");
    }
    assert!(got[0].contains("[8 goroutines]"), "{}", got[0]);
    assert_eq!(got[3].trim(), "\"CK2CORE-GO-SECRET-3c1d\"");
    // Threads: the same, except that a thread in a restartable futex shows the
    // syscall instruction (CRIU stores its registers rewound for restart).
    let (g, l): (Vec<&str>, Vec<&str>) = (got[2].lines().collect(), live[2].lines().collect());
    assert_eq!(g.len(), l.len(), "{}", got[2]);
    for (g, l) in g.iter().zip(&l) {
        if g == l {
            continue;
        }
        assert!(
            g.ends_with("sys_linux_amd64.s:559 runtime.futex")
                && l.ends_with("sys_linux_amd64.s:560 runtime.futex"),
            "{g} vs live {l}"
        );
    }
    let second = [
        "goroutine 1 bt",
        "goroutine 18 bt",
        "goroutine 19 bt",
        "goroutine 20 bt",
        "print main.Secret",
    ];
    let got = dlv_core(&core, &second, "dlv-2.cmds");
    let live = dlv_blocks(&std::fs::read_to_string(runtime("go/live-dlv-bt.txt")).unwrap());
    for (i, cmd) in second.iter().enumerate() {
        assert_eq!(got[i], live[i], "{cmd}");
    }
    assert!(got[1].contains("main.parkHere\n   at /ckfix/main.go:19"));
}

/// The Java process ran on Debian's OpenJDK 17.0.15+6-1~deb12u1; its libjvm.so is
/// too large for the repository, so the machine's own JDK is the root, and only
/// when it is that very build.
const LIBJVM: &str = "/usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so";
const LIBJVM_BUILD_ID: &str = "97da31b249941f25ff26a6126471221bb579d67f";

#[test]
fn jhsdb_shows_the_live_java_threads_and_frames() {
    let id = std::fs::File::open(LIBJVM).ok().and_then(|f| {
        let len = f.metadata().ok()?.len();
        ck2core::rootfs::build_id(&ck2core::archive::Blob::from_file(LIBJVM, f, len))
    });
    let id = id.map(|b| ck2core::rootfs::hex(&b));
    if id.as_deref() != Some(LIBJVM_BUILD_ID) {
        eprintln!(
            "NOT CHECKED: jhsdb on the Java fixture needs this machine's {LIBJVM} to be the \
             one the process ran on (build-id {LIBJVM_BUILD_ID}, Debian openjdk-17-jre-headless \
             17.0.15+6-1~deb12u1, and openjdk-17-jdk-headless for jhsdb); found {}",
            id.as_deref().unwrap_or("no such file")
        );
        return;
    }
    let core = convert("java", "rt-java", 4288, &["--rootfs", "/"]);
    let got = run(
        "jhsdb",
        &[
            "jstack".as_ref(),
            "--exe".as_ref(),
            "/usr/bin/java".as_ref(),
            "--core".as_ref(),
            core.as_os_str(),
        ],
        None,
    );
    let live = std::fs::read_to_string(runtime("java/live-jstack.txt")).unwrap();
    // The first line says what was attached to: the process, or the core.
    assert!(got.starts_with("Attaching to core "), "{got}");
    let tail = |s: &str| s.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_eq!(tail(&got), tail(&live));
    assert!(got.contains("\"ck-worker-1\""), "{got}");
    assert!(
        got.contains("Worker.parkHere(long) @bci=1, line=8"),
        "{got}"
    );

    // As README shows it for a container's root: the launcher from the root, and
    // the root as SA_ALTROOT. This root is links to this machine's JDK and libraries.
    let root = scratch("rt-java-root");
    std::fs::create_dir_all(root.join("usr/lib/jvm")).unwrap();
    let link = |target: &str, at: &str| std::os::unix::fs::symlink(target, root.join(at)).unwrap();
    link(
        "/usr/lib/jvm/java-17-openjdk-amd64",
        "usr/lib/jvm/java-17-openjdk-amd64",
    );
    link("/usr/lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu");
    link("usr/lib", "lib");
    // The dynamic linker by the name the link map gives it, /lib64/ld-linux-x86-64.so.2.
    std::fs::create_dir_all(root.join("usr/lib64")).unwrap();
    link(
        "../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
        "usr/lib64/ld-linux-x86-64.so.2",
    );
    link("usr/lib64", "lib64");
    let out = Command::new("jhsdb")
        .env("SA_ALTROOT", &root)
        .args(["jstack", "--exe"])
        .arg(root.join("usr/lib/jvm/java-17-openjdk-amd64/bin/java"))
        .arg("--core")
        .arg(&core)
        .output()
        .unwrap();
    let with_root = String::from_utf8_lossy(&out.stdout);
    assert_eq!(tail(&with_root), tail(&live), "{with_root}");
}
