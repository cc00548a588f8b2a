//! `ck2core convert`: one core per process, a line per process on stderr, and
//! beside the cores a gdbinit (the sysroot and the gdb helper) and an lldbinit (the
//! sysroot).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use super::{human, Source, EXIT_FAILURE, EXIT_PARTIAL};
use ck2core::arch::Arch;
use ck2core::core::{CoreOptions, Plan};
use ck2core::model::dump::DumpPolicy;
use ck2core::model::Process;
use ck2core::rootfs::sysroot::Sysroot;
use ck2core::rootfs::{resolve_in_root, Layered, NO_ROOT};

/// A path under the output directory that is never created: gdb's sysroot when no
/// root was given.
const NO_SYSROOT: &str = "no-rootfs";

/// The gdb helper, written beside the cores so the output directory is self-contained.
pub const HELPER: &str = include_str!("../../gdb-scripts/ck2core.py");

#[derive(Args)]
pub struct ConvertArgs {
    #[command(flatten)]
    pub source: Source,
    /// Directory for the cores (created if missing).
    #[arg(short, long, value_name = "DIR")]
    pub output: PathBuf,
    /// Convert only this process (repeatable).
    #[arg(long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,
    /// Overwrite existing core files.
    #[arg(long)]
    pub force: bool,
    /// Write no DIR/sysroot: point the debuggers at --rootfs itself instead of a
    /// verified copy of the files the processes mapped.
    #[arg(long)]
    pub no_sysroot: bool,
    #[command(flatten)]
    pub dump: DumpArgs,
}

/// What goes into the cores beyond what the kernel's own cores carry.
#[derive(Args, Clone, Default)]
pub struct DumpArgs {
    /// Include mappings the process marked MADV_DONTDUMP (left without data by
    /// default, as in the kernel's cores), for forensics.
    #[arg(long)]
    pub include_dontdump: bool,
    /// Put the pages of mapped files verified in --rootfs into the cores, for tools
    /// that read memory only from the core (py-spy --locals).
    #[arg(long)]
    pub self_contained: bool,
    /// Name the files in NT_FILE by their absolute paths under --rootfs instead of
    /// their container paths, for tools without a sysroot setting (py-spy).
    #[arg(long)]
    pub host_paths: bool,
}

impl DumpArgs {
    fn policy(&self) -> DumpPolicy {
        DumpPolicy {
            include_dontdump: self.include_dontdump,
            file_pages: self.self_contained,
            host_paths: self.host_paths,
        }
    }
}

/// A core that was written, and how to open it.
pub struct Converted {
    /// The gdb to use: `gdb`, or `gdb-multiarch` for another architecture.
    pub gdb: &'static str,
    /// gdb's arguments, without the program name.
    pub gdb_args: Vec<String>,
    /// lldb's arguments, without the program name.
    pub lldb_args: Vec<String>,
}

pub fn run(a: ConvertArgs) -> anyhow::Result<ExitCode> {
    let (done, failed) = convert(&a)?;
    if !done.is_empty() && a.dump.host_paths {
        // gdb would look for those paths under its sysroot, the root, and warn.
        say!(
            "--host-paths: NT_FILE names files by their paths on this machine, for tools without a sysroot setting (py-spy dump --core CORE); for gdb, convert without --host-paths"
        );
    } else if !done.is_empty() {
        say!("open with:");
        let lldb = lldb_program();
        let line = |program: &str, args: &[String]| {
            let words: Vec<String> = args.iter().map(|w| shell_quote(w)).collect();
            say!("  {program} {}", words.join(" "));
        };
        for c in &done {
            line(c.gdb, &c.gdb_args);
            line(&lldb, &c.lldb_args);
        }
    }
    Ok(match (done.len(), failed) {
        (_, 0) => ExitCode::SUCCESS,
        (0, _) => ExitCode::from(EXIT_FAILURE),
        _ => ExitCode::from(EXIT_PARTIAL),
    })
}

/// Converts the selected processes into `a.output`; returns the cores written and
/// the number of processes that failed.
pub fn convert(a: &ConvertArgs) -> anyhow::Result<(Vec<Converted>, usize)> {
    if a.no_sysroot && a.source.image.is_some() {
        anyhow::bail!(
            "--no-sysroot leaves the debuggers only --rootfs to read the container's files; with --image, the sysroot is the only way (drop --no-sysroot, or unpack the image and give --rootfs)"
        );
    }
    if a.dump.host_paths && !a.source.has_root() {
        anyhow::bail!("--host-paths needs the container's files: --rootfs DIR or --image IMAGE");
    }
    let ckpt = a.source.open()?;
    for n in ckpt.archive().notes() {
        say!("note: {n}");
    }
    let pids: Vec<u32> = super::selected_pids(&ckpt, &a.pids)?;
    std::fs::create_dir_all(&a.output).map_err(|e| {
        anyhow::anyhow!(
            "{}: cannot create the output directory: {e}",
            a.output.display()
        )
    })?;
    let out_dir = abs(&a.output);
    let root = debugger_root(a);
    let mut sysroot = match (&root, a.source.has_root() && !a.no_sysroot) {
        (Some(r), true) => Some(Sysroot::create(r)?),
        _ => None,
    };
    // The engine's metadata is the same for every process: read it once.
    let container = ck2core::model::container::Container::read(ckpt.archive());
    let mut done = Vec::new();
    let mut failed = 0;
    let tty = std::io::stderr().is_terminal() && super::chatter() >= 1;
    for pid in pids {
        let Some(mut process) = super::dumpable(&ckpt, pid, "a core", &mut failed) else {
            continue;
        };
        let mut metadata = ck2core::views::core_metadata(&ckpt, &process, container.as_ref());
        metadata.dump = a.dump.policy();
        let metadata = serde_json::to_vec(&metadata)?;
        let opts = CoreOptions {
            policy: a.dump.policy(),
            metadata: Some(metadata),
        };
        // Where each file came from, said before the sysroot takes its place.
        let sources =
            (super::chatter() >= 2).then(|| contributions(&process, ckpt.rootfs().image()));
        // The sysroot first: the core's NT_FILE names exactly what it holds.
        if let Some(s) = sysroot.as_mut() {
            if let Err(e) = s.add(ckpt.rootfs(), &mut process) {
                eprintln!("failed   pid {pid} ({}): sysroot: {e}", process.comm);
                failed += 1;
                continue;
            }
        }
        let result = Plan::new(&process, &opts).and_then(|plan| {
            let total = plan.content_bytes();
            let mut shown = 0u64;
            let mut progress = |n: u64| {
                // Only for people watching, and only when it takes a while.
                if tty && total >= 256 << 20 && (n - shown >= 64 << 20 || n == total) {
                    shown = n;
                    eprint!("\r  core.{pid}: {} of {}\x1b[K", human(n), human(total));
                }
            };
            let w = plan.write(&a.output, pid, a.force, &mut progress);
            if tty && shown > 0 {
                eprint!("\r\x1b[K");
            }
            w
        });
        match result {
            Ok(w) => {
                let threads = process.threads.len();
                say!(
                    "{:<10} pid {pid} ({}), {threads} thread{}, {} written, {} in the file",
                    w.path.file_name().unwrap_or_default().to_string_lossy(),
                    process.comm,
                    if threads == 1 { "" } else { "s" },
                    human(w.data_bytes),
                    human(w.file_size),
                );
                let mut no_root = 0;
                for (why, bytes) in &w.left_out.by_reason {
                    // Said once for all processes, below.
                    if why.ends_with(NO_ROOT) {
                        no_root += bytes;
                        continue;
                    }
                    say!("           left out {}: {why}", human(*bytes));
                }
                if no_root > 0 {
                    say!(
                        "           left out {} of file pages: {NO_ROOT}",
                        human(no_root)
                    );
                }
                if w.left_out.dontdump > 0 {
                    say!(
                        "           left out {}: mappings the process marked MADV_DONTDUMP (no data, as in a kernel core; --include-dontdump adds them)",
                        human(w.left_out.dontdump)
                    );
                }
                for line in sources.iter().flatten() {
                    detail!("           {line}");
                }
                let unlisted = &w.left_out.unlisted_files;
                if !unlisted.is_empty() && a.source.has_root() {
                    say!(
                        "           {} mapped file{} not in the container's files (or different there), left out of NT_FILE:",
                        unlisted.len(),
                        if unlisted.len() == 1 { "" } else { "s" },
                    );
                    for path in unlisted.iter().take(3) {
                        say!("             {}", unlisted_reason(&process, path));
                    }
                    if unlisted.len() > 3 {
                        say!("             and {} more", unlisted.len() - 3);
                    }
                }
                let exe = root.as_deref().and_then(|r| exe_in_root(r, &process));
                let core = abs(&w.path);
                done.push(Converted {
                    gdb: gdb_for(process.arch),
                    gdb_args: debugger_args("-ix", &out_dir.join(GDBINIT), &core, exe.as_deref()),
                    lldb_args: debugger_args("-S", &out_dir.join(LLDBINIT), &core, exe.as_deref()),
                });
            }
            Err(e) => {
                eprintln!("failed   pid {pid} ({}): {e}", process.comm);
                failed += 1;
            }
        }
    }
    if let Some(s) = &sysroot {
        let sum = s.summary();
        let reflinked = match sum.reflinked {
            0 => String::new(),
            n => format!(", {n} reflinked"),
        };
        say!(
            "sysroot    {}: {} file{} ({} linked{reflinked}, {} separate debug), {}",
            super::shown(s.dir()),
            sum.files,
            if sum.files == 1 { "" } else { "s" },
            sum.linked,
            sum.debug_files,
            human(sum.bytes),
        );
    }
    if !done.is_empty() {
        if !a.source.has_root() {
            say!(
                "no --rootfs or --image: the cores name no mapped files, so debuggers read none of this machine's in their place; symbols and the file pages CRIU did not save need the container's files (--rootfs DIR or --image IMAGE)"
            );
        }
        write_gdbinit(&out_dir, root.as_deref())?;
        write_lldbinit(&out_dir, root.as_deref())?;
    }
    Ok((done, failed))
}

/// The init files' names in the output directory.
const GDBINIT: &str = "gdbinit";
const LLDBINIT: &str = "lldbinit";

/// `p` made absolute, so that the init files work from anywhere. Lexically: a path
/// through a link stays as the person named it (the command lines show it relative
/// to the current directory when it is under it).
fn abs(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Where the debuggers find the container's files (their sysroot), if anywhere: the
/// one place that decides it for both init files and both command lines.
fn debugger_root(a: &ConvertArgs) -> Option<PathBuf> {
    if a.source.has_root() && !a.no_sysroot {
        return Some(abs(&a.output.join("sysroot")));
    }
    a.source.rootfs.as_deref().map(abs)
}

/// `path: why its bytes could not be used`, from the resolver's answer.
fn unlisted_reason(p: &Process, path: &str) -> String {
    let why = p
        .memory
        .iter()
        .flat_map(|m| &m.vmas)
        .filter_map(|v| v.file.as_ref())
        .find(|f| f.path == path)
        .and_then(|f| f.content.as_ref().err());
    match why {
        Some(w) => format!(
            "{path}: {}",
            w.strip_prefix(&format!("{path}: ")).unwrap_or(w)
        ),
        None => path.to_string(),
    }
}

/// The debuggers' sysroot: the root, or without one a path under the output
/// directory that is never created. gdb and lldb open the libraries the core's link
/// map names under their sysroot (this machine's / by default); where nothing exists,
/// they can't take this machine's libraries for the container's.
fn sysroot(dir: &Path, root: Option<&Path>) -> PathBuf {
    root.map_or_else(|| dir.join(NO_SYSROOT), Path::to_path_buf)
}

/// The process's executable inside `root`, when the checkpoint's copy was verified
/// there: given to the debuggers, it lets them relocate a PIE and find the libraries.
fn exe_in_root(root: &Path, p: &Process) -> Option<PathBuf> {
    let exe = p.exe.as_ref().filter(|e| e.content.is_ok())?;
    resolve_in_root(root, exe.path.trim_start_matches('/')).map(|p| abs(&p))
}

/// Writes `DIR/gdbinit` (sysroot, then the helper) and `DIR/ck2core.py`. The
/// gdbinit is meant for `gdb -ix`: the sysroot must be set before the core loads,
/// or gdb resolves the mapped files against this machine's root.
fn write_gdbinit(dir: &Path, root: Option<&Path>) -> anyhow::Result<()> {
    let helper = dir.join("ck2core.py");
    std::fs::write(&helper, HELPER).map_err(|e| anyhow::anyhow!("{}: {e}", helper.display()))?;
    let mut init = String::from(
        "# Written by ck2core for the cores in this directory. Use it before the core loads:\n\
         #   gdb -ix THIS-FILE --core core.PID [EXECUTABLE]\n",
    );
    if root.is_none() {
        init += "# No --rootfs or --image was given: nothing of the container's files is here.\n";
    }
    init += &format!("set sysroot {}\n", sysroot(dir, root).display());
    if let Some(r) = root {
        // Separate debug files: the container's first, then this machine's (as
        // gdb's default; gdb uses one only when its build-id or CRC matches).
        init += &format!(
            "set debug-file-directory {}:/usr/lib/debug\n",
            r.join("usr/lib/debug").display()
        );
    }
    init += &format!("source {}\n", helper.display());
    write_file(&dir.join(GDBINIT), &init)
}

/// Writes `DIR/lldbinit`, lldb's counterpart of the gdbinit, for `lldb -S`: the
/// root as the platform's sysroot (lldb looks the mapped files up there, by the
/// build-ids it reads from the core) and its separate debug files. No helper: the
/// gdb helper is written against gdb's Python API, and `ck2core threads`, `info`
/// and `files` show the same outside any debugger.
fn write_lldbinit(dir: &Path, root: Option<&Path>) -> anyhow::Result<()> {
    let mut init = String::from(
        "# Written by ck2core for the cores in this directory. Use it before the core loads:\n\
         #   lldb -S THIS-FILE --core core.PID [EXECUTABLE]\n",
    );
    if root.is_none() {
        init += "# No --rootfs or --image was given: nothing of the container's files is here.\n";
    }
    let r = sysroot(dir, root);
    init += &format!("platform select remote-linux --sysroot {}\n", r.display());
    if root.is_some() {
        init += &format!(
            "settings append target.debug-file-search-paths {}\n",
            r.join("usr/lib/debug").display()
        );
    }
    write_file(&dir.join(LLDBINIT), &init)
}

fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// A debugger's arguments for a core: its init file first (gdb `-ix`, lldb `-S`),
/// the core, the executable. Relative to the current directory where possible: the
/// line is for a person in this directory, and so it reads the same on every machine.
fn debugger_args(init_flag: &str, init: &Path, core: &Path, exe: Option<&Path>) -> Vec<String> {
    let mut args = vec![
        init_flag.to_string(),
        super::shown(init),
        "--core".into(),
        super::shown(core),
    ];
    args.extend(exe.map(super::shown));
    args
}

/// The lldb to print: `lldb` when this machine has it, else the newest versioned
/// one it has (Debian installs `lldb-NN` only, unless the `lldb` package is there).
fn lldb_program() -> String {
    let Some(path) = std::env::var_os("PATH") else {
        return "lldb".into();
    };
    let mut best: Option<(u32, String)> = None;
    for dir in std::env::split_paths(&path) {
        if dir.join("lldb").is_file() {
            return "lldb".into();
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(v) = name
                .strip_prefix("lldb-")
                .and_then(|v| v.parse::<u32>().ok())
            {
                if best.as_ref().is_none_or(|(b, _)| v > *b) {
                    best = Some((v, name));
                }
            }
        }
    }
    best.map_or_else(|| "lldb".into(), |(_, name)| name)
}

/// What each source gave the process's memory, in pages, for `-v`: the
/// checkpoint's own images, then every mapped file and where its bytes were found.
fn contributions(p: &Process, image: Option<&Layered>) -> Vec<String> {
    let maps = ck2core::views::memory::maps(p, &ck2core::model::filter::MemFilter::all());
    let mut total = ck2core::views::memory::PageCounts::default();
    for m in &maps {
        let c = &m.pages;
        total.pages += c.pages;
        total.parent += c.parent;
        total.shmem += c.shmem;
        total.zero += c.zero;
        total.absent += c.absent;
    }
    let mut lines = vec![format!(
        "memory: {} pages from pages-*.img, {} from parent images, {} from shared-memory images, {} never touched, {} in no source",
        total.pages, total.parent, total.shmem, total.zero, total.absent
    )];
    let vmas = p.memory.iter().flat_map(|m| &m.vmas);
    let mut files: Vec<(&str, u64, String)> = Vec::new();
    // (layer, files, bytes) in stacking order, the diff on top.
    let mut layers: Vec<(String, usize, u64)> = image
        .map(|l| l.layer_names().map(|n| (n.to_string(), 0, 0)).collect())
        .unwrap_or_default();
    layers.push(("rootfs-diff.tar".into(), 0, 0));
    for (v, row) in vmas.zip(&maps) {
        let Some(f) = &v.file else { continue };
        if let Some(e) = files.iter_mut().find(|e| e.0 == f.path) {
            e.1 += row.pages.rootfs;
            continue;
        }
        let from = match &f.content {
            Ok(d) => match (&d.in_root, &d.from) {
                (Some(r), _) => format!("from --rootfs {}", super::shown(&r.path)),
                (None, Some(layer)) => {
                    if let Some(e) = layers.iter_mut().find(|e| e.0 == *layer) {
                        e.1 += 1;
                        e.2 += d.size;
                    }
                    if layer == "rootfs-diff.tar" {
                        format!("from {layer}")
                    } else {
                        format!("from {layer} of --image")
                    }
                }
                (None, None) => "from its ghost image in the checkpoint".into(),
            },
            Err(why) => format!(
                "not used: {}",
                why.strip_prefix(&format!("{}: ", f.path)).unwrap_or(why)
            ),
        };
        files.push((&f.path, row.pages.rootfs, from));
    }
    for (path, pages, from) in files {
        lines.push(format!("{path}: {pages} pages, {from}"));
    }
    if image.is_some() {
        for (layer, n, bytes) in layers {
            lines.push(match n {
                0 => format!("{layer}: no mapped file"),
                1 => format!("{layer}: 1 mapped file, {}", human(bytes)),
                n => format!("{layer}: {n} mapped files, {}", human(bytes)),
            });
        }
    }
    lines
}

/// A native gdb reads cores of its own architecture only.
fn gdb_for(arch: Arch) -> &'static str {
    let native = match arch {
        Arch::X86_64 => cfg!(target_arch = "x86_64"),
        // gdb built for x86-64 reads i386 cores too.
        Arch::I386 => cfg!(any(target_arch = "x86_64", target_arch = "x86")),
        Arch::Arm => cfg!(target_arch = "arm"),
        Arch::Aarch64 => cfg!(target_arch = "aarch64"),
        Arch::Ppc64le => cfg!(all(target_arch = "powerpc64", target_endian = "little")),
        Arch::Riscv64 => cfg!(target_arch = "riscv64"),
        Arch::S390x => cfg!(target_arch = "s390x"),
        // Elsewhere a gdb-multiarch built with the loongarch target (Debian's 13.1 has
        // none; lldb 22 reads these cores too).
        Arch::Loongarch64 => cfg!(target_arch = "loongarch64"),
    };
    if native {
        "gdb"
    } else {
        "gdb-multiarch"
    }
}

fn shell_quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+=:@".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}
