//! Helpers shared by the integration tests: paths, running ck2core and gdb, and
//! reading what gdb printed.
#![allow(dead_code)]

pub mod compress;
pub mod image_forms;
pub mod synth;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// testdata/ of this repository.
pub fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

/// A fresh empty directory under the target dir, unique per test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Copies the files of the flat directory `from` into `to` (created).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Runs the ck2core binary.
pub fn ck2core(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ck2core"))
        .args(args)
        .output()
        .expect("run ck2core")
}

/// Runs ck2core and insists it succeeded; returns stderr.
pub fn ck2core_ok(args: &[&str]) -> String {
    let out = ck2core(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "ck2core {args:?} failed: {err}");
    err
}

/// Runs ck2core with `args` (a `--json` command), asserts it succeeded, and parses
/// what it printed.
pub fn ck2core_json(args: &[&str]) -> serde_json::Value {
    let out = ck2core(args);
    assert!(
        out.status.success(),
        "ck2core {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e})"))
}

/// Runs `program` (gdb or gdb-multiarch) in batch mode: `init` are arguments that
/// act before the core loads (`-iex`, `-ix`), then the core, the executable and
/// `commands`. Returns stdout and stderr together.
fn run_gdb(
    program: &str,
    init: &[std::ffi::OsString],
    core: &Path,
    exe: Option<&Path>,
    commands: &[&str],
) -> String {
    let mut cmd = Command::new(program);
    cmd.args(["-nx", "-batch", "-iex", "set debuginfod enabled off"]);
    cmd.args(["-iex", "set pagination off", "-iex", "set width 0"]);
    cmd.args(init);
    cmd.arg("--core").arg(core);
    if let Some(e) = exe {
        cmd.arg(e);
    }
    for c in commands {
        cmd.args(["-ex", c]);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{program} must be installed (see .ci/run): {e}"));
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    s
}

/// gdb on `core` with `sysroot` and the executable `exe`, then `commands` (a gdb
/// command file's lines).
pub fn gdb(core: &Path, sysroot: Option<&Path>, exe: Option<&Path>, commands: &[&str]) -> String {
    let init: Vec<std::ffi::OsString> = sysroot
        .map(|s| vec!["-iex".into(), format!("set sysroot {}", s.display()).into()])
        .unwrap_or_default();
    run_gdb("gdb", &init, core, exe, commands)
}

/// gdb set up by the `gdbinit` ck2core writes beside its cores (`-ix`).
pub fn gdb_with_init(gdbinit: &Path, core: &Path, exe: Option<&Path>, commands: &[&str]) -> String {
    run_gdb("gdb", &["-ix".into(), gdbinit.into()], core, exe, commands)
}

/// gdb-multiarch on a core of another architecture.
pub fn gdb_multiarch(core: &Path, commands: &[&str]) -> String {
    run_gdb("gdb-multiarch", &[], core, None, commands)
}

/// gdb-multiarch set up by the `gdbinit` ck2core writes beside its cores.
pub fn gdb_multiarch_with_init(gdbinit: &Path, core: &Path, commands: &[&str]) -> String {
    run_gdb(
        "gdb-multiarch",
        &["-ix".into(), gdbinit.into()],
        core,
        None,
        commands,
    )
}

/// lldb-22 in batch mode on `core`, then `commands`; returns stdout and stderr
/// together. lldb is the oracle for loongarch64, which Debian's gdb-multiarch 13 does
/// not know, and a second oracle beside gdb for the other architectures.
pub fn lldb(core: &Path, commands: &[&str]) -> String {
    let create = format!("target create --core {}", core.display());
    let mut all = vec![create.as_str()];
    all.extend_from_slice(commands);
    lldb_with(&[], &all)
}

/// Most seconds lldb may take to load a core and run a few commands.
pub const LLDB_SECONDS: u64 = 30;

/// lldb-22 in batch mode with `args` (e.g. `-S lldbinit --core CORE EXE`), then
/// `commands`; returns stdout and stderr together. Fails unless lldb finished within
/// [`LLDB_SECONDS`] and loaded the core.
pub fn lldb_with(args: &[&str], commands: &[&str]) -> String {
    // lldb waits for ever on a core it believes it could resume: a time limit
    // turns that into a failed test instead of a stuck CI run.
    let mut cmd = Command::new("timeout");
    cmd.args([
        &(2 * LLDB_SECONDS).to_string(),
        "lldb-22",
        "--no-lldbinit",
        "--batch",
    ]);
    cmd.args(args);
    for c in commands {
        cmd.args(["-o", c]);
    }
    let start = std::time::Instant::now();
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("lldb-22 must be installed (see .ci/run): {e}"));
    let took = start.elapsed().as_secs();
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    assert_ne!(
        out.status.code(),
        Some(124),
        "lldb-22 did not finish in {} s:\n{s}",
        2 * LLDB_SECONDS
    );
    assert!(
        took <= LLDB_SECONDS,
        "lldb-22 took {took} s (at most {LLDB_SECONDS}):\n{s}"
    );
    assert!(
        s.lines()
            .any(|l| l.starts_with("Core file '") && l.ends_with(" was loaded.")),
        "lldb-22 did not load the core:\n{s}"
    );
    assert!(
        !s.contains("PLEASE submit a bug report"),
        "lldb-22 crashed:\n{s}"
    );
    s
}

/// The lldb commands that list the threads and read each one's general registers
/// (threads are numbered from 1).
pub fn lldb_register_commands(threads: usize) -> Vec<String> {
    let mut c = vec!["thread list".to_string()];
    for i in 1..=threads {
        c.push(format!("thread select {i}"));
        c.push("register read".into());
    }
    c
}

/// lldb-22 on `core` alone: its threads and their general registers.
pub fn lldb_general_registers(core: &Path, threads: usize) -> String {
    let c = lldb_register_commands(threads);
    lldb(core, &c.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Checks lldb's view of a core against gdb's: lldb (given `lldb_output` of
/// [`lldb_register_commands`]) lists the same thread ids, the first thread stopped
/// by SIGSTOP from the kernel as NT_SIGINFO says, and every general register both
/// name has the same value in both, at least `min_regs` of them in each thread.
pub fn assert_lldb_agrees_with_gdb(
    lldb_output: &str,
    gdb: &BTreeMap<u32, ThreadView>,
    min_regs: usize,
) {
    let lldb = lldb_threads(lldb_output);
    assert_eq!(
        lldb.keys().collect::<Vec<_>>(),
        gdb.keys().collect::<Vec<_>>(),
        "thread ids, lldb:\n{lldb_output}"
    );
    assert!(
        lldb_output.contains("stop reason = SIGSTOP: sent by kernel (SI_KERNEL)"),
        "{lldb_output}"
    );
    for (tid, regs) in &lldb {
        let g = &gdb[tid].regs;
        let mut same = Vec::new();
        for (name, v) in regs {
            // Where the two name a register differently (aarch64 fp/lr, x86-64 rflags).
            let alias = match name.as_str() {
                "fp" => "x29",
                "lr" => "x30",
                "rflags" => "eflags",
                n => n,
            };
            if let Some(want) = g.get(name).or_else(|| g.get(alias)) {
                assert_eq!(
                    v, want,
                    "thread {tid} register {name}: lldb {v:#x}, gdb {want:#x}"
                );
                same.push(name.as_str());
            }
        }
        assert!(
            same.len() >= min_regs,
            "thread {tid}: only {same:?} are shown by both lldb and gdb:\n{lldb_output}"
        );
    }
}

/// Registers per thread from lldb output of `thread list`, then for each thread
/// `thread select N` and `register read --all`: tid -> name -> value. lldb prints
/// every register as `name = 0x...` (fcc0..fcc7 as single bytes).
pub fn lldb_threads(out: &str) -> BTreeMap<u32, BTreeMap<String, u64>> {
    let mut tids: BTreeMap<u32, u32> = BTreeMap::new();
    for l in out.lines() {
        if let Some(rest) = l.trim_start_matches(['*', ' ']).strip_prefix("thread #") {
            if let Some((n, r)) = rest.split_once(": tid = ") {
                let tid = r.split(',').next().unwrap_or("").trim();
                if let (Ok(n), Ok(tid)) = (n.parse(), tid.parse()) {
                    tids.insert(n, tid);
                }
            }
        }
    }
    let mut map: BTreeMap<u32, BTreeMap<String, u64>> = BTreeMap::new();
    let mut cur: Option<u32> = None;
    for l in out.lines() {
        if let Some(n) = l.strip_prefix("(lldb) thread select ") {
            cur = n
                .trim()
                .parse()
                .ok()
                .and_then(|n: u32| tids.get(&n).copied());
            continue;
        }
        let Some(tid) = cur else { continue };
        if let Some((name, v)) = l.trim().split_once(" = ") {
            // The value may be followed by the symbol it points into.
            let v = v.split_whitespace().next().unwrap_or("");
            if let Some(Ok(v)) = v.strip_prefix("0x").map(|h| u64::from_str_radix(h, 16)) {
                map.entry(tid).or_default().insert(name.to_string(), v);
            }
        }
    }
    map
}

/// The value gdb printed for register `name` (first `name 0x...` line).
pub fn reg(out: &str, name: &str) -> u64 {
    let line = out
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no {name} in:\n{out}"));
    u64::from_str_radix(
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .trim_start_matches("0x"),
        16,
    )
    .unwrap_or_else(|_| panic!("{name} is not hex in {line:?}"))
}

/// The notes of `core` as readelf lists them: (owner, size, description).
/// readelf is an oracle independent of ck2core's writer and of the core's class
/// and byte order.
pub fn readelf_notes(core: &Path) -> Vec<(String, usize, String)> {
    let out = Command::new("readelf")
        .args(["-n", "-W"])
        .arg(core)
        .output()
        .expect("readelf must be installed (see .ci/run)");
    assert!(out.status.success(), "readelf -n failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let owner = it.next()?;
            let size = usize::from_str_radix(it.next()?.strip_prefix("0x")?, 16).ok()?;
            let desc = it.next()?.to_string();
            Some((owner.to_string(), size, desc))
        })
        .collect()
}

/// readelf -n of `core` as text (with the hex dump of unknown note payloads).
pub fn readelf_notes_raw(core: &Path) -> String {
    let out = Command::new("readelf")
        .args(["-n", "-W"])
        .arg(core)
        .output()
        .expect("readelf must be installed (see .ci/run)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// readelf -h -l of `core`, for assertions on the class, byte order, machine and
/// segments.
pub fn readelf_headers(core: &Path) -> String {
    let out = Command::new("readelf")
        .args(["-h", "-l", "-W"])
        .arg(core)
        .output()
        .expect("readelf must be installed (see .ci/run)");
    assert!(out.status.success(), "readelf -h -l failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value of a `readelf -h` field (e.g. "Class", "Machine", "Flags").
pub fn header_field(headers: &str, field: &str) -> String {
    headers
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix(field)
                .and_then(|r| r.trim_start().strip_prefix(':'))
        })
        .unwrap_or_else(|| panic!("no {field} in:\n{headers}"))
        .trim()
        .to_string()
}

/// The commands of a gdb command file from testdata/how-made.
pub fn oracle_commands(name: &str) -> Vec<String> {
    std::fs::read_to_string(testdata().join("how-made").join(name))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// Lines containing `warning:`.
pub fn warnings(gdb_output: &str) -> Vec<&str> {
    gdb_output
        .lines()
        .filter(|l| l.contains("warning:"))
        .collect()
}

/// One stack frame as gdb printed it: pc (absent when gdb omits it) and function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub pc: Option<u64>,
    pub function: String,
}

/// What gdb printed for one thread under `thread apply all`.
#[derive(Debug, Default, Clone)]
pub struct ThreadView {
    /// `info registers` lines: name -> value.
    pub regs: BTreeMap<String, u64>,
    /// `p` results, in order, without their `$N =`.
    pub values: Vec<String>,
    /// `bt` frames.
    pub frames: Vec<Frame>,
}

/// Splits gdb output into per-thread views, keyed by LWP.
pub fn parse_threads(out: &str) -> BTreeMap<u32, ThreadView> {
    let mut map: BTreeMap<u32, ThreadView> = BTreeMap::new();
    let mut cur: Option<u32> = None;
    for line in out.lines() {
        if line.starts_with("Thread ") && line.ends_with("):") {
            cur = line
                .split("(LWP ")
                .nth(1)
                .and_then(|r| r.split([')', ' ']).next())
                .and_then(|n| n.parse().ok());
            continue;
        }
        if line.is_empty()
            || line.starts_with("From ")
            || line.starts_with("0x0000") && line.contains("Yes")
        {
            if line.starts_with("From ") {
                cur = None;
            }
            continue;
        }
        let Some(lwp) = cur else { continue };
        let t = map.entry(lwp).or_default();
        if let Some(rest) = line.strip_prefix('$') {
            if let Some((_, v)) = rest.split_once(" = ") {
                t.values.push(v.to_string());
            }
        } else if let Some(rest) = line.strip_prefix('#') {
            let rest = rest.split_once(' ').map(|x| x.1).unwrap_or("").trim_start();
            let (pc, func) = match rest.split_once(" in ") {
                Some((a, b)) if a.starts_with("0x") => (u64::from_str_radix(&a[2..], 16).ok(), b),
                _ => (None, rest),
            };
            let function = func.split([' ', '(']).next().unwrap_or("").to_string();
            t.frames.push(Frame { pc, function });
        } else {
            let mut it = line.split_whitespace();
            if let (Some(name), Some(val)) = (it.next(), it.next()) {
                // Floating-point registers show their bits as "(raw 0x...)".
                let raw = line
                    .rsplit_once("(raw 0x")
                    .and_then(|(_, r)| r.strip_suffix(')'));
                if let Some(hex) = val.strip_prefix("0x").or(raw) {
                    if let Ok(v) = u64::from_str_radix(hex, 16) {
                        t.regs.insert(name.to_string(), v);
                    }
                }
            }
        }
    }
    map
}

/// Parses `info sharedlibrary` rows: (from, to, basename).
pub fn shared_libraries(out: &str) -> Vec<(String, String, String)> {
    out.lines()
        .filter(|l| l.starts_with("0x") && (l.contains(" Yes ") || l.contains(" No ")))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let base = f.last().unwrap().rsplit('/').next().unwrap().to_string();
            (f[0].to_string(), f[1].to_string(), base)
        })
        .collect()
}

/// A parsed core file, for structural checks independent of ck2core's writer.
pub struct CoreFile {
    file: std::fs::File,
}

/// A program header.
#[derive(Debug, Clone, Copy)]
pub struct Phdr {
    pub p_type: u32,
    pub flags: u32,
    pub offset: u64,
    pub vaddr: u64,
    pub filesz: u64,
    pub memsz: u64,
    pub align: u64,
}

/// A note.
#[derive(Debug, Clone)]
pub struct NoteView {
    pub name: String,
    pub ntype: u32,
    pub desc: Vec<u8>,
}

impl CoreFile {
    pub fn open(path: &Path) -> CoreFile {
        CoreFile {
            file: std::fs::File::open(path).unwrap(),
        }
    }

    /// `n` bytes at file offset `o` (the file is read by offset: cores are huge).
    pub fn at(&self, o: usize, n: usize) -> Vec<u8> {
        use std::os::unix::fs::FileExt;
        let mut b = vec![0u8; n];
        self.file.read_exact_at(&mut b, o as u64).unwrap();
        b
    }
    fn u16(&self, o: usize) -> u64 {
        u16::from_le_bytes(self.at(o, 2).try_into().unwrap()) as u64
    }
    fn u32(&self, o: usize) -> u64 {
        u32::from_le_bytes(self.at(o, 4).try_into().unwrap()) as u64
    }
    fn u64(&self, o: usize) -> u64 {
        u64::from_le_bytes(self.at(o, 8).try_into().unwrap())
    }

    /// Program headers, honouring PN_XNUM.
    pub fn phdrs(&self) -> Vec<Phdr> {
        let phoff = self.u64(32) as usize;
        let mut n = self.u16(56);
        if n == 0xffff {
            let shoff = self.u64(40) as usize;
            n = self.u32(shoff + 44);
        }
        (0..n as usize)
            .map(|i| {
                let o = phoff + i * 56;
                Phdr {
                    p_type: self.u32(o) as u32,
                    flags: self.u32(o + 4) as u32,
                    offset: self.u64(o + 8),
                    vaddr: self.u64(o + 16),
                    filesz: self.u64(o + 32),
                    memsz: self.u64(o + 40),
                    align: self.u64(o + 48),
                }
            })
            .collect()
    }

    /// The file names of NT_FILE, in its order (64-bit little-endian cores).
    pub fn nt_file_names(&self) -> Vec<String> {
        let d = self
            .notes()
            .into_iter()
            .find(|n| n.ntype == 0x4649_4c45)
            .expect("an NT_FILE note, as the kernel always writes")
            .desc;
        let count = u64::from_le_bytes(d[..8].try_into().unwrap()) as usize;
        d[16 + 24 * count..]
            .split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect()
    }

    /// Notes of the PT_NOTE segment, 4-byte aligned as in Linux cores.
    pub fn notes(&self) -> Vec<NoteView> {
        let ph = self.phdrs()[0];
        assert_eq!(ph.p_type, 4, "first program header must be PT_NOTE");
        let mut out = Vec::new();
        let mut p = ph.offset as usize;
        let end = p + ph.filesz as usize;
        while p < end {
            let namesz = self.u32(p) as usize;
            let descsz = self.u32(p + 4) as usize;
            let ntype = self.u32(p + 8) as u32;
            let name = String::from_utf8_lossy(&self.at(p + 12, namesz - 1)).into_owned();
            let d = p + 12 + namesz.next_multiple_of(4);
            out.push(NoteView {
                name,
                ntype,
                desc: self.at(d, descsz),
            });
            p = d + descsz.next_multiple_of(4);
        }
        assert_eq!(p, end, "notes must fill PT_NOTE exactly");
        out
    }

    /// Reads memory at `addr` from the PT_LOAD file bytes; `None` where absent.
    pub fn read(&self, addr: u64, len: usize) -> Option<Vec<u8>> {
        let ph = self.phdrs().into_iter().find(|p| {
            p.p_type == 1 && p.vaddr <= addr && addr + len as u64 <= p.vaddr + p.filesz
        })?;
        Some(self.at((ph.offset + addr - ph.vaddr) as usize, len))
    }
}

/// Blocks actually allocated on disk for `path`, in bytes.
pub fn disk_usage(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().blocks() * 512
}

/// Checks that `ck2core threads --regs` names every register of `groups` as gdb
/// does, with the value gdb printed: each listed register must be in `gdb` (the
/// output of `thread apply all info registers ...`) with the same value; values
/// wider than 64 bits as the `uint128` member gdb shows for vector registers.
pub fn assert_threads_regs_match_gdb(checkpoint: &Path, gdb: &str, groups: &[&str]) {
    let out = ck2core(&["threads", checkpoint.to_str().unwrap(), "--regs", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let views = parse_threads(gdb);
    let mut checked = 0;
    for t in json["threads"].as_array().unwrap() {
        let tid = t["tid"].as_u64().unwrap() as u32;
        let view = &views[&tid];
        for g in groups {
            let regs = t["registers"][*g]
                .as_object()
                .unwrap_or_else(|| panic!("no group {g} for {tid}: {t}"));
            for (name, v) in regs {
                let v = v.as_str().unwrap();
                if v.len() > 18 {
                    // A vector register: gdb shows it as a union with a uint128
                    // member (values in the tests differ per thread).
                    assert!(
                        gdb.contains(name.as_str()) && gdb.contains(&format!("uint128 = {v}")),
                        "ck2core threads says {name} = {v} for {tid}; gdb:\n{gdb}"
                    );
                    checked += 1;
                    continue;
                }
                let want = u64::from_str_radix(v.trim_start_matches("0x"), 16)
                    .unwrap_or_else(|_| panic!("{name} = {v}"));
                assert_eq!(
                    view.regs.get(name),
                    Some(&want),
                    "ck2core threads says {name} = {v} for {tid}; gdb:\n{gdb}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 0, "no register compared");
}

/// Conversion and gdb-multiarch checks every synthetic foreign-architecture test
/// makes (here, not in synth.rs, which the benchmark includes without gdb).
impl synth::Foreign {
    /// Converts the images in `dir` into `cores/` beside it; returns the core's path.
    pub fn convert(&self, dir: &Path) -> PathBuf {
        self.convert_with(dir, &[])
    }

    /// [`Self::convert`] with more arguments for ck2core.
    pub fn convert_with(&self, dir: &Path, args: &[&str]) -> PathBuf {
        let out = dir.parent().unwrap().join("cores");
        let mut all = vec![dir.to_str().unwrap(), "-o", out.to_str().unwrap()];
        all.extend(args);
        ck2core_ok(&all);
        out.join(format!("core.{}", self.pid))
    }

    /// Opens `core` in gdb-multiarch with the gdbinit beside it, runs `commands`, then reads the three known
    /// strings. Asserts that gdb warned about nothing, saw both threads and read the
    /// strings (the first one is "<tag>-PAGE"). Returns gdb's output and each
    /// thread's registers.
    pub fn gdb(
        &self,
        core: &Path,
        tag: &str,
        commands: &[&str],
    ) -> (String, BTreeMap<u32, ThreadView>) {
        let reads =
            [self.text_at(), self.last_word_at(), self.second_at()].map(|a| format!("x/s {a:#x}"));
        let mut all: Vec<&str> = commands.to_vec();
        all.extend(reads.iter().map(String::as_str));
        // As the converter prints it: with the gdbinit beside the core.
        let got = gdb_multiarch_with_init(&core.with_file_name("gdbinit"), core, &all);
        assert_eq!(warnings(&got), Vec::<&str>::new(), "{got}");
        let threads = parse_threads(&got);
        assert_eq!(
            threads.keys().copied().collect::<Vec<_>>(),
            [self.pid, self.pid + 1],
            "{got}"
        );
        for text in [
            format!("{tag}-PAGE"),
            "LASTWORD".into(),
            "SECOND-VMA".into(),
        ] {
            assert!(
                got.contains(&format!("\"{text}\"")),
                "{text} not in:\n{got}"
            );
        }
        (got, threads)
    }
}

/// Runs `minidump-stackwalk` with `args`; insists it succeeded and logged no error
/// or warning. Returns stdout.
///
/// At its `warn` level it says two things that are about itself, not the dump, and
/// those alone are allowed: of every Linux minidump that carries both the memory
/// info list and the maps stream (which the issue asks for: Crashpad's and
/// Breakpad's ways of saying the same), that it used the former; and of any
/// exception on a CPU other than x86, that its instruction analysis (a
/// disassembler) does not know that architecture.
pub fn stackwalk(args: &[&str]) -> String {
    let out = Command::new("minidump-stackwalk")
        .args(["--verbose", "warn", "--no-color"])
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("minidump-stackwalk must be installed (.ci/run installs it): {e}")
        });
    let err = String::from_utf8_lossy(&out.stderr)
        .replace(
            " WARN UnifiedMemoryInfoList got both kinds of info! (using InfoList)\n",
            "",
        )
        .replace(
            " WARN failed to analyze the thread context: unsupported CPU architecture\n",
            "",
        );
    assert!(
        out.status.success(),
        "minidump-stackwalk {args:?} failed: {err}"
    );
    assert!(
        !err.contains("WARN") && !err.contains("ERROR"),
        "minidump-stackwalk {args:?} complained:\n{err}"
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Each thread's context as `minidump-stackwalk --dump` prints it: tid -> name ->
/// value.
pub fn dumped_contexts(dump: &str) -> BTreeMap<u64, BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    let mut tid = None;
    for l in dump.lines() {
        let l = l.trim();
        if let Some(v) = l.strip_prefix("thread_id") {
            tid = v
                .trim_start_matches([' ', '='])
                .parse::<u64>()
                .ok()
                .or_else(|| {
                    u64::from_str_radix(
                        v.trim_start_matches([' ', '=']).trim_start_matches("0x"),
                        16,
                    )
                    .ok()
                });
            continue;
        }
        if l.starts_with("MDRawMemoryList") || l.starts_with("MinidumpModuleList") {
            tid = None;
        }
        let (Some(t), Some((k, v))) = (tid, l.split_once(" = ")) else {
            continue;
        };
        if let Some(h) = v.trim().strip_prefix("0x") {
            if let Ok(n) = u64::from_str_radix(h, 16) {
                out.entry(t)
                    .or_insert_with(BTreeMap::new)
                    .insert(k.trim().to_string(), n);
            }
        }
    }
    out
}

/// A minidump ck2core wrote, as minidump-stackwalk reads it.
pub struct StackwalkedMinidump {
    /// The dump file.
    pub file: PathBuf,
    /// What `minidump-stackwalk --dump --brief` printed.
    pub dump: String,
    /// Each thread's context in it, by thread id ([`dumped_contexts`]).
    pub contexts: BTreeMap<u64, BTreeMap<String, u64>>,
}

/// `ck2core minidump` on the checkpoint `images` (into `dumps/` beside it), then what
/// every architecture's minidump test checks first: minidump-stackwalk reads process
/// `pid`'s dump, names its thread context `context` (a line of `--dump`), and its
/// JSON says `cpu_arch` with `threads` threads.
pub fn minidump_read_back(
    images: &Path,
    pid: u32,
    context: &str,
    cpu_arch: &str,
    threads: u64,
) -> StackwalkedMinidump {
    let out = images.parent().unwrap().join("dumps");
    ck2core_ok(&[
        "minidump",
        images.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    let file = out.join(format!("{pid}.dmp"));
    let dump = stackwalk(&["--dump", "--brief", file.to_str().unwrap()]);
    assert!(dump.contains(&format!("{context}\n")), "{dump}");
    let json: serde_json::Value =
        serde_json::from_str(&stackwalk(&["--json", file.to_str().unwrap()])).unwrap();
    assert_eq!(json["system_info"]["cpu_arch"], cpu_arch);
    assert_eq!(json["thread_count"], threads);
    let contexts = dumped_contexts(&dump);
    StackwalkedMinidump {
        file,
        dump,
        contexts,
    }
}

/// Regular files under `dir`, relative, sorted (symbolic links are not followed).
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                todo.push(e.path());
            } else if ft.is_file() {
                let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

/// Whether `tool` runs (`tool --version`). When it does not, says on stderr that
/// `what` is NOT CHECKED and why, and fails under CI (`CI=true`, as .ci/run sets),
/// which installs every tool the tests drive.
pub fn tool_present(tool: &str, what: &str) -> bool {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        let msg = format!(
            "NOT CHECKED: {tool} is not installed here, so {what} is not checked \
             (.ci/run installs it)"
        );
        eprintln!("{msg}");
        assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "{msg}");
    }
    ok
}
