//! `ck2core minidump` against the tools that read minidumps: rust-minidump's
//! `minidump-stackwalk` (threads, registers, modules with build-ids, every stream;
//! with Breakpad symbols made by Mozilla's `dump_syms` from the fixture's root, the
//! same function names as gdb's `bt` on the core of the same checkpoint), and
//! lldb-22 on a `--full-memory` dump (threads, registers, the heap secret). Plus
//! size, and damaged images.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use minidump_common::format as md;
use scroll::Pread;
use serde_json::Value;

const MAIN: u32 = 31227;
const CHILD: u32 = 31229;
const SECRET_AT: u64 = 0x55a1e47962a0;

fn rootfs() -> PathBuf {
    testdata().join("host-rootfs")
}

/// Writes the minidumps of `checkpoint` into `out`; returns ck2core's stderr.
fn minidump(checkpoint: &Path, out: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "minidump",
        checkpoint.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    ck2core_ok(&args)
}

fn hex(v: &Value) -> u64 {
    u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

/// `ck2core threads --regs --json`: tid -> (name, general registers).
fn threads_json(checkpoint: &Path, extra: &[&str]) -> BTreeMap<u64, (String, Value)> {
    let mut args = vec!["threads", checkpoint.to_str().unwrap(), "--regs", "--json"];
    args.extend_from_slice(extra);
    let out = ck2core(&args);
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["threads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["tid"].as_u64().unwrap(),
                (
                    t["name"].as_str().unwrap().to_string(),
                    t["registers"].clone(),
                ),
            )
        })
        .collect()
}

/// A minidump read with minidump-common's own definitions, for the bytes no tool
/// prints (the FXSAVE area, the link map).
struct Dump(Vec<u8>);

impl Dump {
    fn open(path: &Path) -> Dump {
        Dump(std::fs::read(path).unwrap())
    }

    fn stream(&self, ty: md::MINIDUMP_STREAM_TYPE) -> Option<&[u8]> {
        let h: md::MINIDUMP_HEADER = self.0.pread_with(0, scroll::LE).unwrap();
        assert_eq!(h.signature, md::MINIDUMP_SIGNATURE);
        (0..h.stream_count as usize).find_map(|i| {
            let d: md::MINIDUMP_DIRECTORY = self
                .0
                .pread_with(h.stream_directory_rva as usize + 12 * i, scroll::LE)
                .unwrap();
            (d.stream_type == ty as u32).then(|| {
                let at = d.location.rva as usize;
                &self.0[at..at + d.location.data_size as usize]
            })
        })
    }

    fn threads(&self) -> Vec<md::MINIDUMP_THREAD> {
        let s = self
            .stream(md::MINIDUMP_STREAM_TYPE::ThreadListStream)
            .unwrap();
        let n: u32 = s.pread_with(0, scroll::LE).unwrap();
        (0..n as usize)
            .map(|i| s.pread_with(4 + 48 * i, scroll::LE).unwrap())
            .collect()
    }

    fn at(&self, l: md::MINIDUMP_LOCATION_DESCRIPTOR) -> &[u8] {
        &self.0[l.rva as usize..(l.rva + l.data_size) as usize]
    }

    /// A MINIDUMP_STRING at `rva`.
    fn string(&self, rva: u32) -> String {
        let len: u32 = self.0.pread_with(rva as usize, scroll::LE).unwrap();
        let units: Vec<u16> = (0..len as usize / 2)
            .map(|i| {
                self.0
                    .pread_with(rva as usize + 4 + 2 * i, scroll::LE)
                    .unwrap()
            })
            .collect();
        String::from_utf16(&units).unwrap()
    }
}

/// The ckfix process through minidump-stackwalk: thread count and names, every
/// register of every thread equal to `ck2core threads --regs --json`, the requested
/// dump on the leader, the modules with their build-ids, and the Linux streams.
#[test]
fn ckfix_minidump_through_stackwalk() {
    let dir = scratch("minidump-ckfix");
    let images = testdata().join("ckfix/images");
    let err = minidump(&images, &dir, &["--rootfs", rootfs().to_str().unwrap()]);
    assert!(
        err.contains("31227.dmp  pid 31227 (ckfix-main), 5 threads"),
        "{err}"
    );
    assert!(!err.contains("warning"), "{err}");
    let regs = threads_json(&images, &["--pid", "31227"]);
    let path = dir.join(format!("{MAIN}.dmp"));
    let file = path.to_str().unwrap();

    let json: Value = serde_json::from_str(&stackwalk(&["--json", file])).unwrap();
    assert_eq!(json["pid"], MAIN);
    assert_eq!(json["thread_count"], 5);
    assert_eq!(json["system_info"]["os"], "Linux");
    assert_eq!(json["system_info"]["cpu_arch"], "amd64");
    assert_eq!(json["crash_info"]["type"], "DUMP_REQUESTED");
    assert_eq!(json["crash_info"]["crashing_thread"], 0);
    let names: Vec<(u64, String)> = json["threads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["thread_id"].as_u64().unwrap(),
                t["thread_name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want: Vec<(u64, String)> = regs.iter().map(|(t, (n, _))| (*t, n.clone())).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(sorted, want, "thread ids and names");
    assert_eq!(names[0].0, MAIN as u64, "the leader first");
    // The requesting (leader) thread's registers, in stackwalk's JSON.
    let leader = &json["crashing_thread"]["frames"][0]["registers"];
    for (k, v) in leader.as_object().unwrap() {
        assert_eq!(
            hex(v),
            hex(&regs[&(MAIN as u64)].1["general"][k]),
            "leader register {k}"
        );
    }
    assert_eq!(leader.as_object().unwrap().len(), 17, "{leader}");

    // Modules: the executable first, each with its GNU build-id as code id and
    // Breakpad's debug id.
    let mods: BTreeMap<String, (String, String, u64)> = json["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["filename"].as_str().unwrap().to_string(),
                (
                    m["code_id"].as_str().unwrap().to_string(),
                    m["debug_id"].as_str().unwrap().to_string(),
                    hex(&m["base_addr"]),
                ),
            )
        })
        .collect();
    assert_eq!(json["modules"][0]["filename"], "ckfix");
    assert_eq!(
        mods["ckfix"],
        (
            "93fb1340110d67574a7e16b7f12c4f481bc8f7da".into(),
            "4013FB930D1157674A7E16B7F12C4F480".into(),
            0x55a1c41c2000
        )
    );
    assert_eq!(
        mods["libc.so.6"].0,
        "93ac61ec5a8eb1396f9fbd350e3169a558528a40"
    );
    assert_eq!(
        mods["ld-linux-x86-64.so.2"].0,
        "7ebc65e52f2bbea498b4040fa92f7238377aaba9"
    );
    // The vDSO, with the build-id of the image in memory.
    assert_eq!(mods["linux-vdso.so.1"].0.len(), 40, "{mods:?}");
    assert_eq!(mods.len(), 4, "{mods:?}");

    // Every thread's context, as --dump prints it.
    let dump = stackwalk(&["--dump", "--brief", file]);
    let ctx = dumped_contexts(&dump);
    assert_eq!(ctx.len(), 5, "{dump}");
    for (tid, (_, r)) in &regs {
        let c = &ctx[tid];
        for (k, v) in r["general"].as_object().unwrap() {
            if matches!(k.as_str(), "fs_base" | "gs_base" | "orig_rax") {
                continue; // no such field in CONTEXT_AMD64
            }
            assert_eq!(c.get(k.as_str()), Some(&hex(v)), "{k} of {tid}");
        }
        assert_eq!(c["mx_csr"], hex(&r["vector"]["mxcsr"]), "mxcsr of {tid}");
        assert_eq!(c["context_flags"], 0x10000f, "{tid}");
    }
    // The raw Linux streams.
    for text in [
        "LinuxCmdLine",
        "/ckfix/bin/ckfix\\0\n/ckfix/ready\\0\n/ckfix/data.bin\\0\n",
        "CKFIX_ENV_MARK=ck2core-env-marker",
        "Name:\tckfix-main",
        "Threads:\t5",
        "55a1c41c2000-55a1c41c3000 r--p 00000000 00:00 0",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
        "spin-1",
        "waiter",
    ] {
        assert!(dump.contains(text), "{text:?} not in --dump:\n{dump}");
    }

    // The FXSAVE area: xmm registers are the low halves of the ymm ones.
    let d = Dump::open(&path);
    for t in d.threads() {
        let c: md::CONTEXT_AMD64 = d.at(t.thread_context).pread_with(0, scroll::LE).unwrap();
        let ymm = &regs[&(t.thread_id as u64)].1["vector"];
        for i in [0usize, 7, 15] {
            // The low 128 bits of the 256-bit value: its last 32 hex digits.
            let digits = format!("{:0>64}", &ymm[format!("ymm{i}")].as_str().unwrap()[2..]);
            let want = digits[32..].to_string();
            let got =
                u128::from_le_bytes(c.float_save[160 + 16 * i..176 + 16 * i].try_into().unwrap());
            assert_eq!(format!("{got:032x}"), want, "xmm{i} of {}", t.thread_id);
        }
        // The stack holds sp and stays within the documented bound.
        let sp = c.rsp;
        let lo = t.stack.start_of_memory_range;
        let len = t.stack.memory.data_size as u64;
        assert!(lo <= sp && sp < lo + len, "stack of {}", t.thread_id);
        assert!(sp - lo <= 128 && len <= 128 + 64 * 1024, "{lo:#x}+{len:#x}");
    }
    // The link map: every library, the executable's entry first (empty name).
    let dso = d
        .stream(md::MINIDUMP_STREAM_TYPE::LinuxDsoDebug)
        .expect("DSO_DEBUG");
    let r: md::DSO_DEBUG_64 = dso.pread_with(0, scroll::LE).unwrap();
    assert_eq!(r.version, 1);
    assert_eq!(r.dso_count, 4);
    let names: Vec<String> = (0..r.dso_count as usize)
        .map(|i| {
            let l: md::LINK_MAP_64 = d.0.pread_with(r.map as usize + 20 * i, scroll::LE).unwrap();
            d.string(l.name)
        })
        .collect();
    assert_eq!(
        names,
        [
            "",
            "linux-vdso.so.1",
            "/lib/x86_64-linux-gnu/libc.so.6",
            "/lib64/ld-linux-x86-64.so.2"
        ]
    );
    // The executable's dynamic section follows the 36-byte struct, as Breakpad
    // writes it; `dynamic` is its address, and its DT_DEBUG entry points at r_debug.
    assert!(
        dso.len() > 36 && (dso.len() - 36) % 16 == 0,
        "{}",
        dso.len()
    );

    // Small: stacks only; the 1 GiB sparse mapping costs nothing.
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size < 256 << 10, "{size} bytes");
}

/// Every fixture in testdata/, every process: minidump-stackwalk processes the dump
/// without complaint, with the right threads and registers, and modules that carry
/// the build-ids CRIU recorded.
#[test]
fn every_fixture_reads_in_stackwalk() {
    let pc = testdata().join("podman-counter");
    let fixtures: Vec<(PathBuf, PathBuf)> = vec![
        (testdata().join("ckfix/images"), rootfs()),
        (testdata().join("sleep/images"), rootfs()),
        (pc.join("counter.tar"), pc.join("rootfs")),
        (pc.join("counter.tar.gz"), pc.join("rootfs")),
        (pc.join("counter.tar.zst"), pc.join("rootfs")),
    ];
    let mut dumps = 0;
    for (i, (ck, root)) in fixtures.iter().enumerate() {
        let dir = scratch(&format!("minidump-fixture-{i}"));
        minidump(ck, &dir, &["--rootfs", root.to_str().unwrap()]);
        let regs = threads_json(ck, &[]);
        let maps = ck2core(&["maps", ck.to_str().unwrap(), "--json"]);
        let maps: Value = serde_json::from_slice(&maps.stdout).unwrap();
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            let pid: u64 = path.file_stem().unwrap().to_str().unwrap().parse().unwrap();
            let file = path.to_str().unwrap();
            let json: Value = serde_json::from_str(&stackwalk(&["--json", file])).unwrap();
            let tids: Vec<u64> = json["threads"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["thread_id"].as_u64().unwrap())
                .collect();
            let ctx = dumped_contexts(&stackwalk(&["--dump", "--brief", file]));
            assert_eq!(ctx.len(), tids.len(), "{file}");
            for tid in &tids {
                let general = &regs[tid].1["general"];
                for k in ["rip", "rsp", "rax", "rbx", "r12", "r15", "eflags", "cs"] {
                    assert_eq!(ctx[tid][k], hex(&general[k]), "{file}: {k} of {tid}");
                }
            }
            // Every build-id CRIU recorded for this process is a module's code id.
            let proc_maps = maps["processes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["pid"] == pid)
                .unwrap();
            let mut ids: Vec<&str> = proc_maps["maps"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|m| m["build_id"].as_str())
                .collect();
            ids.sort();
            ids.dedup();
            let codes: Vec<&str> = json["modules"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["code_id"].as_str().unwrap())
                .collect();
            assert!(!ids.is_empty(), "{file}");
            for id in ids {
                assert!(
                    codes.contains(&id),
                    "{file}: build-id {id} in no module: {codes:?}"
                );
            }
            dumps += 1;
        }
    }
    assert_eq!(dumps, 2 + 1 + 3 * 2, "every process of every fixture");
}

/// Breakpad symbol files for every ELF of the fixture's root, made by dump_syms
/// and stored as symbol servers serve them (`NAME/DEBUGID/NAME.sym`). libc's
/// merges the library (its unwind tables) with its separate debug file (its
/// functions), as gdb reads them.
fn symbols(dir: &Path) -> PathBuf {
    let syms = dir.join("symbols");
    let r = rootfs();
    let libc_debug =
        r.join("usr/lib/debug/.build-id/93/ac61ec5a8eb1396f9fbd350e3169a558528a40.debug");
    for files in [
        vec![r.join("ckfix/bin/ckfix")],
        vec![r.join("usr/lib/x86_64-linux-gnu/libc.so.6"), libc_debug],
        vec![r.join("usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")],
    ] {
        let out = Command::new("dump_syms")
            .args(&files)
            .arg("--store")
            .arg(&syms)
            .output()
            .unwrap_or_else(|e| panic!("dump_syms must be installed (.ci/run installs it): {e}"));
        assert!(
            out.status.success(),
            "dump_syms {files:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    syms
}

/// Every name the ELF symbol tables of `files` give each address.
fn aliases(files: &[PathBuf]) -> BTreeMap<String, u64> {
    use object::{Object, ObjectSymbol};
    let mut out = BTreeMap::new();
    for f in files {
        let data = std::fs::read(f).unwrap();
        let elf = object::File::parse(&*data).unwrap();
        for s in elf.symbols().chain(elf.dynamic_symbols()) {
            if let Ok(name) = s.name() {
                if s.address() != 0 {
                    out.insert(name.split('@').next().unwrap().to_string(), s.address());
                }
            }
        }
    }
    out
}

/// Lists every frame of every thread with gdb's frame type: the same frames `bt`
/// prints, and whether gdb made each up (an inlined call, or a tail call known
/// from DWARF call-site data) or found it on the stack.
const GDB_FRAME_TYPES: &str = "\
import gdb
for t in sorted(gdb.selected_inferior().threads(), key=lambda t: t.ptid[1]):
    t.switch()
    f = gdb.newest_frame()
    while f is not None:
        print('FRAME', t.ptid[1], f.type(), f.name())
        f = f.older()
";

/// gdb's `bt` function names per thread on the core of the same checkpoint, for
/// the frames that are on the stack: those gdb infers from debug information
/// (inlined calls, and tail calls, which left no frame) are left out, since a
/// minidump processor sees inlined calls only as part of their caller's frame and
/// tail calls not at all.
fn gdb_functions(dir: &Path) -> BTreeMap<u64, Vec<String>> {
    let cores = dir.join("cores");
    ck2core_ok(&[
        testdata().join("ckfix/images").to_str().unwrap(),
        "-o",
        cores.to_str().unwrap(),
        "--rootfs",
        rootfs().to_str().unwrap(),
    ]);
    let script = dir.join("frames.py");
    std::fs::write(&script, GDB_FRAME_TYPES).unwrap();
    let source = format!("source {}", script.display());
    let out = gdb(
        &cores.join(format!("core.{MAIN}")),
        Some(&rootfs()),
        Some(&rootfs().join("ckfix/bin/ckfix")),
        &["set backtrace past-main on", "thread apply all bt", &source],
    );
    assert!(!out.contains("warning:"), "gdb warned:\n{out}");
    // bt's names, per thread.
    let mut bt: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut cur = None;
    for line in out.lines() {
        if line.starts_with("Thread ") {
            if let Some(i) = line.find("(LWP ") {
                cur = line[i + 5..].split(')').next().unwrap().parse().ok();
            }
            continue;
        }
        let (Some(tid), Some(rest)) = (cur, line.strip_prefix('#')) else {
            continue;
        };
        let rest = rest.split_once(' ').unwrap().1.trim_start();
        let what = match rest.strip_prefix("0x") {
            Some(r) => r.split_once(" in ").unwrap().1,
            None => rest,
        };
        let name = what.split([' ', '(']).next().unwrap().to_string();
        bt.entry(tid).or_default().push(name);
    }
    let mut all: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut listed: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for line in out.lines() {
        let Some(rest) = line.strip_prefix("FRAME ") else {
            continue;
        };
        let f: Vec<&str> = rest.splitn(3, ' ').collect();
        let tid: u64 = f[0].parse().unwrap();
        listed.entry(tid).or_default().push(f[2].to_string());
        // gdb.NORMAL_FRAME 0, SIGTRAMP_FRAME 4; INLINE_FRAME 2, TAILCALL_FRAME 3.
        if matches!(f[1], "0" | "4") {
            all.entry(tid).or_default().push(f[2].to_string());
        }
    }
    assert_eq!(listed, bt, "the listed frames are bt's:\n{out}");
    all
}

/// With symbols from dump_syms, minidump-stackwalk names the same functions as gdb
/// on the core, for every thread (inlined and tail-call frames aside).
#[test]
fn stackwalk_with_dump_syms_symbols_agrees_with_gdb() {
    let dir = scratch("minidump-symbols");
    let out = dir.join("dumps");
    minidump(
        &testdata().join("ckfix/images"),
        &out,
        &["--rootfs", rootfs().to_str().unwrap(), "--pid", "31227"],
    );
    let syms = symbols(&dir);
    let file = out.join(format!("{MAIN}.dmp"));
    let json: Value = serde_json::from_str(&stackwalk(&[
        "--json",
        file.to_str().unwrap(),
        "--symbols-path",
        syms.to_str().unwrap(),
    ]))
    .unwrap();
    // Symbols were found for every module a frame is in (the symbol files matched
    // the modules' debug ids), and none was looked for in vain.
    for m in json["modules"].as_array().unwrap() {
        let name = m["filename"].as_str().unwrap();
        if matches!(name, "ckfix" | "libc.so.6") {
            assert_eq!(m["loaded_symbols"], true, "symbols for {m}");
        }
        if name != "linux-vdso.so.1" {
            assert_ne!(m["missing_symbols"], true, "symbols for {m}");
        }
    }
    // (function, how the frame was found) per thread.
    let walked: BTreeMap<u64, Vec<(String, String)>> = json["threads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let frames = t["frames"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| {
                    let name = f["function"].as_str().unwrap_or("??");
                    let name = name.split('(').next().unwrap().to_string();
                    (name, f["trust"].as_str().unwrap().to_string())
                })
                .collect();
            (t["thread_id"].as_u64().unwrap(), frames)
        })
        .collect();
    let gdbs = gdb_functions(&dir);
    assert_eq!(walked.len(), 5);
    assert_eq!(gdbs.len(), 5);
    // A function with several names (an assembly entry point and its alias)
    // may be named by either: two names agree when they are one address in the
    // libraries' symbol tables.
    let r = rootfs();
    let names = aliases(&[
        r.join("usr/lib/x86_64-linux-gnu/libc.so.6"),
        r.join("usr/lib/debug/.build-id/93/ac61ec5a8eb1396f9fbd350e3169a558528a40.debug"),
    ]);
    let same = |a: &str, b: &str| a == b || names.get(a).is_some_and(|x| names.get(b) == Some(x));
    let mut ours = BTreeMap::new();
    for (tid, theirs) in &gdbs {
        let all = &walked[tid];
        // gdb stops at the entry point, whose CFI says there is no caller;
        // minidump-stackwalk then scans the rest of the stack for return
        // addresses. Those guesses (trust "scan") after gdb's last frame are not
        // frames of the program.
        let (mine, after) = all.split_at(theirs.len().min(all.len()));
        assert!(
            after.iter().all(|(_, trust)| trust == "scan"),
            "thread {tid}: frames past gdb's: {after:?}"
        );
        let mine: Vec<String> = mine.iter().map(|(n, _)| n.clone()).collect();
        assert!(
            mine.len() == theirs.len() && mine.iter().zip(theirs).all(|(a, b)| same(a, b)),
            "thread {tid}: stackwalk {all:?}, gdb {theirs:?}"
        );
        // Every frame gdb shows was found from the registers or by CFI.
        assert!(
            all[..theirs.len()]
                .iter()
                .all(|(_, trust)| trust == "context" || trust == "cfi"),
            "thread {tid}: {all:?}"
        );
        ours.insert(*tid, mine);
    }
    // What the fixture's threads do, spelled out (dump_syms names the clone3
    // entry point by its alias __clone3).
    for tid in [31230u64, 31231, 31232] {
        assert_eq!(
            ours[&tid],
            [
                "spin_with_known_registers",
                "spinner",
                "start_thread",
                "__clone3"
            ]
        );
    }
}

/// lldb-22 opens a --full-memory minidump: five threads with their registers, and
/// the heap secret (and a page of the 1 GiB sparse mapping) readable. The sparse
/// mapping still costs nothing.
#[test]
fn lldb_reads_a_full_memory_minidump() {
    let dir = scratch("minidump-lldb");
    let images = testdata().join("ckfix/images");
    minidump(&images, &dir, &["--full-memory"]);
    let regs = threads_json(&images, &["--pid", "31227"]);
    let path = dir.join(format!("{MAIN}.dmp"));
    let mut cmds = vec![
        "thread list".to_string(),
        format!("memory read -s1 -c27 -f c {SECRET_AT:#x}"),
        "memory read -s1 -c16 -f c 0x7f2420c00000".to_string(),
    ];
    for i in 1..=5 {
        cmds.push(format!("thread select {i}"));
        cmds.push("register read rip rsp rbp rax r12 r13 r14 r15 rflags".into());
    }
    let cmds: Vec<&str> = cmds.iter().map(String::as_str).collect();
    let out = lldb(&path, &cmds);
    assert!(!out.contains("error:"), "{out}");
    assert!(out.contains("CK2CORE-SECRET-5f1e2d3c4b5a"), "{out}");
    assert!(out.contains("CK2CORE-SPARSE-"), "{out}");
    let threads = lldb_threads(&out);
    assert_eq!(threads.len(), 5, "{out}");
    for (tid, (_, r)) in &regs {
        let got = &threads[&(*tid as u32)];
        for k in ["rip", "rsp", "rbp", "rax", "r12", "r13", "r14", "r15"] {
            assert_eq!(got[k], hex(&r["general"][k]), "{k} of {tid}:\n{out}");
        }
        assert_eq!(got["rflags"], hex(&r["general"]["eflags"]), "{tid}");
    }
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size < 1 << 20, "a full-memory ckfix dump is {size} bytes");

    // The child's own secret is in its own dump.
    let out = lldb(
        &dir.join(format!("{CHILD}.dmp")),
        &[
            "thread list",
            "memory find -s CK2CORE-CHILD 0x55a1e4796000 0x55a1e47b7000",
        ],
    );
    assert!(out.contains("data found at location"), "{out}");
}

/// Damaged images: a clear error naming an image, no partial file, and the other
/// process still written.
#[test]
fn damaged_images_leave_no_partial_minidump() {
    let work = scratch("minidump-damaged");
    let src = testdata().join("ckfix/images");
    let dir = work.join("images");
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    // The child's memory map cut in half.
    let mm = std::fs::read(src.join(format!("mm-{CHILD}.img"))).unwrap();
    std::fs::write(dir.join(format!("mm-{CHILD}.img")), &mm[..mm.len() / 2]).unwrap();
    let out = work.join("dumps");
    let o = ck2core(&[
        "minidump",
        dir.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--full-memory",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains(&format!("failed   pid {CHILD}")), "{err}");
    assert!(err.contains(&format!("mm-{CHILD}.img")), "{err}");
    let files: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(files, [format!("{MAIN}.dmp")]);

    // A pages file cut short: the main process fails with the pagemap named, and
    // nothing is left behind.
    std::fs::copy(
        src.join(format!("mm-{CHILD}.img")),
        dir.join(format!("mm-{CHILD}.img")),
    )
    .unwrap();
    let pages = std::fs::read(src.join("pages-1.img")).unwrap();
    std::fs::write(dir.join("pages-1.img"), &pages[..pages.len() / 3]).unwrap();
    let out = work.join("dumps2");
    let o = ck2core(&[
        "minidump",
        dir.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_ne!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("pages-1.img"), "{err}");
    let left: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
