//! `ck2core report` against gdb: for every thread, the frames (function names and
//! pcs) must be what gdb's `bt` prints on the core ck2core wrote from the same
//! checkpoint; plus a thread stopped in a signal handler, built from the real ckfix
//! main thread, and a report with no root filesystem.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ck2core::images::pb;
use ck2core::model::memory::Source;
use ck2core::model::{Checkpoint, OpenOptions};
use common::*;
use prost::Message;
use serde_json::Value;

const MAIN: u32 = 31227;

fn rootfs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/host-rootfs")
}

fn report(images: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["report", images.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    let out = ck2core(&args);
    assert!(
        out.status.success(),
        "report failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("report --json is JSON")
}

fn hex(v: &Value) -> u64 {
    u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

/// The pc of a `<signal handler called>` frame, which gdb does not print.
const NO_PC: u64 = u64::MAX;

/// The report's frames with the trampoline's pc hidden, as gdb shows them.
fn as_gdb_shows(mut frames: BTreeMap<u64, Frames>) -> BTreeMap<u64, Frames> {
    for f in frames.values_mut().flatten() {
        if f.0 == "<signal handler called>" {
            f.1 = NO_PC;
        }
    }
    frames
}

/// A frame as compared with gdb: function name (or `<signal handler called>`), pc.
type Frames = Vec<(String, u64)>;

/// Frames per thread id from the report.
fn report_frames(r: &Value, pid: u32) -> BTreeMap<u64, Frames> {
    let p = r["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pid"] == pid)
        .expect("process in report");
    p["threads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let frames = t["frames"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| {
                    let name = if f["signal_handler_called"] == true {
                        "<signal handler called>".to_string()
                    } else {
                        f["function"].as_str().unwrap_or("??").to_string()
                    };
                    (name, hex(&f["pc"]))
                })
                .collect();
            (t["tid"].as_u64().unwrap(), frames)
        })
        .collect()
}

/// Frames per LWP from gdb's `thread apply all bt`. gdb leaves the pc out for a
/// frame whose pc is that of the frame before (inlined calls) or, for frame 0, when
/// it is at the start of a line; `pcs` gives each thread's pc for that case.
fn gdb_frames(out: &str, pcs: &BTreeMap<u64, u64>) -> BTreeMap<u64, Frames> {
    let mut all = BTreeMap::new();
    let mut cur: Option<(u64, Frames)> = None;
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix("Thread ") {
            if let Some(i) = rest.find("(LWP ") {
                if let Some((tid, f)) = cur.take() {
                    all.insert(tid, f);
                }
                let tid: u64 = rest[i + 5..].split(')').next().unwrap().parse().unwrap();
                cur = Some((tid, Vec::new()));
            }
            continue;
        }
        let Some((tid, frames)) = cur.as_mut() else {
            continue;
        };
        let Some(rest) = line.strip_prefix('#') else {
            continue;
        };
        let rest = rest.split_once(' ').unwrap().1.trim_start();
        let (pc, what) = if let Some(a) = rest.strip_prefix("0x") {
            let (pc, tail) = a.split_once(" in ").unwrap();
            (u64::from_str_radix(pc, 16).unwrap(), tail)
        } else {
            let pc = frames
                .last()
                .map(|f: &(String, u64)| f.1)
                .unwrap_or(pcs[tid]);
            (pc, rest)
        };
        if what.starts_with("<signal handler called>") {
            // gdb prints no pc for the trampoline frame.
            frames.push(("<signal handler called>".to_string(), NO_PC));
            continue;
        }
        frames.push((what.split(" (").next().unwrap().to_string(), pc));
    }
    if let Some((tid, f)) = cur {
        all.insert(tid, f);
    }
    all
}

/// Converts `images` and runs gdb's backtrace on the main process's core.
fn gdb_backtraces(images: &Path, scratch_dir: &Path) -> String {
    let cores = scratch_dir.join("cores");
    ck2core_ok(&[
        images.to_str().unwrap(),
        "-o",
        cores.to_str().unwrap(),
        "--rootfs",
        rootfs().to_str().unwrap(),
    ]);
    let out = gdb(
        &cores.join(format!("core.{MAIN}")),
        Some(&rootfs()),
        Some(&rootfs().join("ckfix/bin/ckfix")),
        &["set backtrace past-main on", "thread apply all bt"],
    );
    assert!(!out.contains("warning:"), "gdb warned:\n{out}");
    out
}

fn thread_pcs(r: &Value) -> BTreeMap<u64, u64> {
    r["processes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["threads"].as_array().unwrap())
        .map(|t| (t["tid"].as_u64().unwrap(), hex(&t["pc"])))
        .collect()
}

fn names(f: &Frames) -> Vec<&str> {
    f.iter().map(|(n, _)| n.as_str()).collect()
}

#[test]
fn ckfix_backtraces_equal_gdb() {
    let dir = scratch("report-ckfix");
    let images = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/ckfix/images");
    let r = report(&images, &["--rootfs", rootfs().to_str().unwrap()]);
    let ours = report_frames(&r, MAIN);
    let theirs = gdb_frames(&gdb_backtraces(&images, &dir), &thread_pcs(&r));
    assert_eq!(ours.len(), 5, "five threads");
    assert_eq!(ours, theirs, "report frames differ from gdb's bt");

    // What the issue names, spelled out.
    for tid in [31230, 31231, 31232] {
        assert_eq!(
            names(&ours[&tid]),
            [
                "spin_with_known_registers",
                "spinner",
                "start_thread",
                "clone3"
            ]
        );
    }
    let main = names(&ours[&(MAIN as u64)]);
    assert_eq!(main[..2], ["__libc_pause", "main"]);
    assert!(main[2..].iter().any(|f| f.starts_with("__libc_start_main")));
    assert_eq!(main.last(), Some(&"_start"));

    // How each frame was found: the thread's own registers, then CFI; the waiter's
    // third frame left nothing on the stack (a tail call, known from DWARF).
    let threads = r["processes"][0]["threads"].as_array().unwrap();
    let waiter = threads.iter().find(|t| t["name"] == "waiter").unwrap();
    let trust: Vec<&str> = waiter["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["trust"].as_str().unwrap())
        .collect();
    assert_eq!(
        trust,
        [
            "context",
            "context",
            "tail call",
            "cfi",
            "cfi",
            "cfi",
            "cfi",
            "cfi"
        ]
    );
    let f0 = &waiter["frames"][0];
    assert_eq!(f0["inlined"], true);
    assert_eq!(f0["line"], 57);
    assert!(f0["file"]
        .as_str()
        .unwrap()
        .ends_with("nptl/futex-internal.c"));
    let spin = threads.iter().find(|t| t["name"] == "spin-1").unwrap();
    assert_eq!(spin["frames"][1]["function_offset"], "0x42");
    assert_eq!(spin["frames"][1]["module_offset"], "0x13bd");
    assert_eq!(spin["registers"]["general"]["r12"], "0xc0de00000000010c");
    assert_eq!(
        spin["frames"][1]["module"], "/ckfix/bin/ckfix",
        "module is the container path"
    );
}

#[test]
fn report_text_names_frames_and_modules() {
    let images = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/ckfix/images");
    let out = ck2core_ok_stdout(&[
        "report",
        images.to_str().unwrap(),
        "--rootfs",
        rootfs().to_str().unwrap(),
        "--pid",
        "31227",
    ]);
    for want in [
        "Thread 31230 \"spin-1\"",
        "#1   0x000055a1c41c33bd in spinner+0x42 at ckfix.c:78  [ckfix +0x13bd]  (cfi)",
        "#2   0x00007f2460d02f7b in __GI___futex_abstimed_wait_cancelable64+0xb at futex-internal.c:139  [libc.so.6 +0x85f7b]  (tail call)",
        "0x00007f2420bfeea8  0x000055a1c41c33bd  ckfix!spinner+0x42",
        "/usr/lib/x86_64-linux-gnu/libc.so.6  93ac61ec5a8eb1396f9fbd350e3169a558528a40",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
}

fn ck2core_ok_stdout(args: &[&str]) -> String {
    let out = ck2core(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn without_rootfs_registers_stack_and_missing_files() {
    let images = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/ckfix/images");
    let r = report(&images, &["--pid", "31227", "--debug-dir", "/nonexistent"]);
    let p = &r["processes"][0];
    let missing: Vec<&str> = p["missing_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        missing,
        [
            "/ckfix/bin/ckfix",
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
            "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
        ]
    );
    let modules = p["modules"].as_array().unwrap();
    let vdso = modules.iter().find(|m| m["path"] == "[vdso]").unwrap();
    assert_eq!(
        vdso["found"], true,
        "the vDSO's bytes are in the checkpoint"
    );
    assert_eq!(vdso["symbols"], true);
    let libc = modules
        .iter()
        .find(|m| m["path"] == "/usr/lib/x86_64-linux-gnu/libc.so.6")
        .unwrap();
    assert_eq!(libc["found"], false);
    assert_eq!(libc["missing"], "no --rootfs or --image given");
    assert_eq!(libc["build_id"], "93ac61ec5a8eb1396f9fbd350e3169a558528a40");
    let spin = p["threads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "spin-1")
        .unwrap();
    assert_eq!(spin["registers"]["general"]["r15"], "0xc0de00000000010f");
    assert_eq!(spin["frames"][0]["pc"], "0x55a1c41c336e");
    assert_eq!(spin["frames"][0]["trust"], "context");
    assert_eq!(spin["frames"][0]["module"], "/ckfix/bin/ckfix");
    assert!(spin["frames"][0]["function"].is_null());
    // The stack words are still there: spinner's return address at sp+0x28.
    let stack = spin["stack"].as_array().unwrap();
    assert_eq!(stack.len(), 32);
    assert_eq!(stack[0]["address"], "0x7f2420bfee80");
    assert_eq!(stack[5]["value"], "0x55a1c41c33bd");
}

/// The ckfix main thread, moved into a signal handler: it now runs
/// `spin_with_known_registers` (as if called as a handler), whose return address is
/// glibc's `__restore_rt`, above which lies the ucontext the kernel would have
/// saved, holding the thread's real registers (in `pause`). gdb and the report must
/// both unwind through the signal frame into `__libc_pause`, `main`, and on.
#[test]
fn unwinds_through_a_signal_frame() {
    let dir = scratch("report-signal");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/ckfix/images");
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), images.join(e.file_name())).unwrap();
    }
    // The thread's registers at pause, and where its stack page is in the pages file.
    let core_path = images.join(format!("core-{MAIN}.img"));
    let raw = std::fs::read(&core_path).unwrap();
    let len = u32::from_le_bytes(raw[8..12].try_into().unwrap()) as usize;
    let mut core = pb::CoreEntry::decode(&raw[12..12 + len]).unwrap();
    let g = core.thread_info.as_ref().unwrap().gpregs.unwrap();
    let sp = g.sp.unwrap();
    let uc = (sp - 0x400) & !0xf;
    let handler_sp = uc - 48;
    let page = handler_sp & !0xfff;
    let ck = Checkpoint::open(
        &ck2core::archive::Input::parse(images.to_str().unwrap()),
        &OpenOptions::default(),
    )
    .unwrap();
    let p = ck.process(MAIN).unwrap();
    let mem = p.memory.as_ref().unwrap();
    let vma = mem.vma_at(page).unwrap();
    let ext = mem.extents(vma, page, page + 4096);
    let (pages_file, offset) = match &ext[..] {
        [e] => match &e.source {
            Source::Bytes { blob, offset, .. } => (blob.name().to_string(), *offset),
            other => panic!("stack page not saved: {other:?}"),
        },
        other => panic!("stack page in pieces: {other:?}"),
    };
    drop(p);
    drop(ck);

    // __restore_rt in that libc (a local symbol of its debug file), checked by bytes.
    let libc_base = 0x7f2460c7d000u64;
    let restore_rt = libc_base + 0x3c050;
    // The handler frame (CFI of spin_with_known_registers at 0x136e: CFA = rsp+48,
    // rbx r12 r13 r14 r15 saved below the return address), then the ucontext.
    let mut frame = Vec::new();
    for v in [1u64, 2, 3, 4, 5, restore_rt] {
        frame.extend_from_slice(&v.to_le_bytes());
    }
    frame.extend_from_slice(&[0u8; 40]); // uc_flags, uc_link, uc_stack
    let sc = [
        g.r8, g.r9, g.r10, g.r11, g.r12, g.r13, g.r14, g.r15, g.di, g.si, g.bp, g.bx, g.dx, g.ax,
        g.cx, g.sp, g.ip, g.flags,
    ];
    for v in sc {
        frame.extend_from_slice(&v.unwrap().to_le_bytes());
    }
    frame.extend_from_slice(&(0x33u64 | 0x2b << 48).to_le_bytes()); // cs, gs, fs, ss
    let pages_path = images.join(pages_file.rsplit('/').next().unwrap());
    let mut pages = std::fs::read(&pages_path).unwrap();
    let at = (offset + (handler_sp - page)) as usize;
    pages[at..at + frame.len()].copy_from_slice(&frame);
    std::fs::write(&pages_path, pages).unwrap();

    let regs = core.thread_info.as_mut().unwrap().gpregs.as_mut().unwrap();
    regs.ip = Some(0x55a1c41c336e);
    regs.sp = Some(handler_sp);
    regs.orig_ax = Some(u64::MAX);
    regs.ax = Some(0);
    let mut img = raw[..8].to_vec();
    let body = core.encode_to_vec();
    img.extend_from_slice(&(body.len() as u32).to_le_bytes());
    img.extend_from_slice(&body);
    std::fs::write(&core_path, img).unwrap();

    let r = report(&images, &["--rootfs", rootfs().to_str().unwrap()]);
    let ours = report_frames(&r, MAIN);
    let theirs = gdb_frames(&gdb_backtraces(&images, &dir), &thread_pcs(&r));
    let main = &ours[&(MAIN as u64)];
    assert_eq!(
        names(main)[..4],
        [
            "spin_with_known_registers",
            "<signal handler called>",
            "__libc_pause",
            "main"
        ]
    );
    assert_eq!(main[1].1, restore_rt);
    assert_eq!(main[2].1, g.ip.unwrap(), "the interrupted pc, exactly");
    assert_eq!(
        as_gdb_shows(ours),
        theirs,
        "report frames differ from gdb's bt"
    );
    let t = &r["processes"][0]["threads"][0]["frames"];
    assert_eq!(t[1]["function"], "__restore_rt");
    assert_eq!(t[2]["trust"], "context", "registers from the signal frame");
}
