//! Subcommands: flags and rendering only; everything else is in the library.

/// `println!` for command output: a closed pipe (`ck2core ps | head`) ends the
/// program quietly instead of panicking.
macro_rules! outln {
    () => { $crate::cli::emit(format_args!(""), true) };
    ($($t:tt)*) => { $crate::cli::emit(format_args!($($t)*), true) };
}

/// A message for stderr that `-q` silences (progress, notes, where to go next);
/// errors use `eprintln!` and are always shown.
macro_rules! say {
    ($($t:tt)*) => { if $crate::cli::chatter() >= 1 { eprintln!($($t)*) } };
}

/// A message for stderr shown only with `-v`.
macro_rules! detail {
    ($($t:tt)*) => { if $crate::cli::chatter() >= 2 { eprintln!($($t)*) } };
}

/// `print!` counterpart of [`outln!`].
macro_rules! out {
    ($($t:tt)*) => { $crate::cli::emit(format_args!($($t)*), false) };
}

mod completions;
mod convert;
mod diff;
mod env;
mod files;
mod gdb;
mod info;
#[cfg(test)]
mod man;
mod maps;
mod minidump;
pub mod plugin;
mod ps;
mod read;
mod report;
mod schema;
mod search;
mod threads;
mod tree;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU8, Ordering};

use clap::{Args, Parser, Subcommand};

use ck2core::archive::{Input, Limits};
use ck2core::model::filter::{FilterSpec, MemFilter};
use ck2core::model::{Checkpoint, OpenOptions, Process};

/// Exit status when nothing useful could be done.
pub const EXIT_FAILURE: u8 = 1;
/// Exit status when some processes converted and some failed.
pub const EXIT_PARTIAL: u8 = 3;

/// Exit statuses, for `--help`, the man page and README.
pub const EXIT_STATUS_HELP: &str = "\
Exit status:
  0   success (convert: every process converted; zombies are skipped)
  1   failure: nothing could be done (unreadable checkpoint, no such process,
      output not writable)
  2   usage error: bad arguments
  3   convert: some processes converted and some failed
  42  checkpointctl-coredump --plugin-description: the description was printed
`ck2core gdb` exits with gdb's status. `ck2core diff` exits as diff(1):
0 identical, 1 different, 2 trouble (unreadable checkpoint or bad arguments).";

/// Turn CRIU container checkpoints into ELF core files, and look inside them.
#[derive(Parser)]
#[command(name = "ck2core", version, about, long_about = None)]
#[command(after_help = EXIT_STATUS_HELP)]
pub struct Cli {
    #[command(flatten)]
    chatter: Chatter,
    #[command(subcommand)]
    command: Command,
}

/// How much to say on stderr; every command takes these.
#[derive(Args, Clone, Copy)]
pub struct Chatter {
    /// Print only errors: no progress, notes or gdb command lines.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Also say where each process's memory came from: the checkpoint's pages
    /// images, parent images, shared memory, and each file (from --rootfs,
    /// rootfs-diff.tar or a ghost image).
    #[arg(short, long, global = true)]
    verbose: bool,
}

/// 0 quiet, 1 normal, 2 verbose.
static CHATTER: AtomicU8 = AtomicU8::new(1);

impl Chatter {
    /// Makes this the level for the rest of the run.
    pub fn set(self) {
        let level = match (self.quiet, self.verbose) {
            (true, _) => 0,
            (false, true) => 2,
            (false, false) => 1,
        };
        CHATTER.store(level, Ordering::Relaxed);
    }
}

/// Loads one process for a writer of per-process files (cores, minidumps): a
/// process that can't be read is reported and counted in `failed`, a zombie is
/// reported as skipped, since it has no memory or registers to put in `what`.
pub(crate) fn dumpable(
    ckpt: &Checkpoint,
    pid: u32,
    what: &str,
    failed: &mut usize,
) -> Option<Process> {
    let process = match ckpt.process(pid) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("failed   pid {pid}: {e}");
            *failed += 1;
            return None;
        }
    };
    if process.state == ck2core::model::TaskState::Zombie {
        say!(
            "skipped  pid {pid} ({}): a zombie has no memory or registers to put in {what}",
            process.comm
        );
        return None;
    }
    Some(process)
}

/// The level [`Chatter::set`] chose.
pub fn chatter() -> u8 {
    CHATTER.load(Ordering::Relaxed)
}

/// A path as a person should read it: relative to the current directory when it is
/// under it (what the person typed, and the same on every machine), else absolute.
pub fn shown(p: &Path) -> String {
    // Lexically: a path reached through a link under the current directory stays
    // under it, as the person named it.
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let cwd = std::env::current_dir().and_then(std::fs::canonicalize);
    match cwd.as_ref().map(|c| abs.strip_prefix(c)) {
        Ok(Ok(rel)) if !rel.as_os_str().is_empty() => rel.display().to_string(),
        _ => abs.display().to_string(),
    }
}

#[derive(Subcommand)]
enum Command {
    /// Write one ELF core per process (the default command).
    Convert(convert::ConvertArgs),
    /// The container and the checkpoint: engine, image, network, sizes, CRIU statistics.
    Info(info::InfoArgs),
    /// The process tree.
    Ps(ps::PsArgs),
    /// Every thread: name, system call, signals; with --regs all registers.
    Threads(threads::ThreadsArgs),
    /// Memory mappings, and where each one's pages come from.
    Maps(maps::MapsArgs),
    /// Open files and sockets, working and root directories, mapped files.
    Files(files::FilesArgs),
    /// Arguments and environment, read from process memory.
    Env(env::EnvArgs),
    /// Write one minidump per process, for crash-reporting pipelines (docs/minidump.md).
    Minidump(minidump::MinidumpArgs),
    /// Convert one process to a temporary core and start gdb on it, set up.
    Gdb(gdb::GdbArgs),
    /// Find bytes or a regular expression in process memory.
    Search(search::SearchArgs),
    /// Dump process memory as hex (or raw bytes).
    Read(read::ReadArgs),
    /// Crash triage: every thread's registers, symbolized backtrace and stack.
    Report(report::ReportArgs),
    /// What changed between two checkpoints, down to the page (exit 0 identical,
    /// 1 different, 2 trouble).
    Diff(diff::DiffArgs),
    /// The JSON Schema of a command's --json output (docs/schema/).
    Schema(schema::SchemaArgs),
    /// A shell completion script for bash, zsh or fish, on stdout.
    Completions(completions::CompletionsArgs),
}

/// How to open the checkpoint; shared by every command.
#[derive(Args, Clone)]
pub struct Source {
    /// Image directory, checkpoint archive (tar, tar.gz, tar.zst) or checkpoint image
    /// (OCI layout, OCI archive, Docker archive); `-` for stdin.
    #[arg(value_name = "CHECKPOINT")]
    checkpoint: String,
    /// The container's root filesystem: file pages CRIU did not save are read from it
    /// (only when size and build-id match what the checkpoint recorded).
    #[arg(long, value_name = "DIR")]
    pub(crate) rootfs: Option<PathBuf>,
    /// The container's image instead of --rootfs: an OCI image layout directory, an
    /// OCI archive or a Docker archive (`podman save`, `docker save`), read in place.
    #[arg(long, value_name = "IMAGE", conflicts_with = "rootfs")]
    pub(crate) image: Option<PathBuf>,
    /// Most bytes a compressed or piped archive may expand to.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_unpacked)]
    max_unpacked: u64,
}

impl Source {
    fn input(&self) -> Input {
        Input::parse(&self.checkpoint)
    }

    fn options(&self) -> OpenOptions {
        OpenOptions {
            rootfs: self.rootfs.clone(),
            image: self.image.clone(),
            limits: Limits {
                max_unpacked: self.max_unpacked,
            },
        }
    }

    /// Whether the container's files were given (--rootfs or --image).
    pub(crate) fn has_root(&self) -> bool {
        self.rootfs.is_some() || self.image.is_some()
    }

    /// Opens the checkpoint.
    fn open(&self) -> anyhow::Result<Checkpoint> {
        let ck = Checkpoint::open(&self.input(), &self.options())?;
        for n in ck.rootfs().notes() {
            eprintln!("note: {n}");
        }
        if let Some(w) = image_mismatch(&ck) {
            eprintln!("warning: {w}");
        }
        Ok(ck)
    }
}

/// When the checkpoint's metadata names the image it ran from and `--image` is
/// another one, what to tell the user. Only a warning: each file is still used only
/// with the size and build-id CRIU recorded.
fn image_mismatch(ck: &Checkpoint) -> Option<String> {
    let image = ck.rootfs().image()?;
    let c = ck2core::model::container::Container::read(ck.archive())?;
    let recorded = c.image_id.as_deref()?;
    let bare = |s: &str| s.trim_start_matches("sha256:").to_string();
    if image.identity().iter().any(|i| bare(i) == bare(recorded)) {
        return None;
    }
    Some(format!(
        "the checkpoint was taken from image {}{}, but {} is {}{}; files are still used only when their size and build-id match",
        recorded,
        c.image.as_deref().map(|n| format!(" ({n})")).unwrap_or_default(),
        image.label(),
        image.identity().first().map(String::as_str).unwrap_or("?"),
        image.reference().map(|n| format!(" ({n})")).unwrap_or_default(),
    ))
}

/// A checkpoint, some of its processes, and the output format: what most
/// inspection commands take.
#[derive(Args, Clone)]
pub struct Select {
    #[command(flatten)]
    pub(crate) source: Source,
    /// Only this process (repeatable; default all).
    #[arg(long = "pid", value_name = "PID")]
    pub(crate) pids: Vec<u32>,
    /// Print JSON (docs/json.md).
    #[arg(long)]
    pub(crate) json: bool,
}

impl Select {
    /// Opens the checkpoint and loads the selected processes.
    fn load(&self) -> anyhow::Result<(Checkpoint, Vec<Process>)> {
        let ck = self.source.open()?;
        let procs = selected(&ck, &self.pids)?;
        Ok((ck, procs))
    }
}

/// Which memory a command looks at (docs/json.md, "Memory filters"); shared by
/// search, read, maps and diff.
#[derive(Args, Clone, Default)]
pub struct MemArgs {
    /// Only mappings of this kind: heap, stack, anon, file, shmem, vdso (and the other
    /// kinds `maps` shows); comma-separated or repeated: any of them.
    #[arg(long = "kind", value_name = "KIND")]
    kinds: Vec<String>,
    /// Only mappings with these permissions: `rw` = at least read and write;
    /// `r-xp` (maps' four columns) = exactly those.
    #[arg(long, value_name = "PERM")]
    perm: Option<String>,
    /// Only addresses in START-END (hex, end exclusive); repeatable: any of them.
    #[arg(long = "range", value_name = "START-END")]
    ranges: Vec<String>,
    /// Only mappings whose name (path, `[heap]`, `/memfd:...`) matches this glob
    /// (`*` also matches `/`); repeatable: any of them.
    #[arg(long = "path", value_name = "GLOB")]
    paths: Vec<String>,
}

impl MemArgs {
    /// The filter these flags describe.
    fn filter(&self) -> anyhow::Result<MemFilter> {
        Ok(MemFilter::parse(&FilterSpec {
            kinds: &self.kinds,
            perm: self.perm.as_deref(),
            ranges: &self.ranges,
            paths: &self.paths,
        })?)
    }
}

/// The pids a command is about: those named with --pid (which must exist), or all.
fn selected_pids(ck: &Checkpoint, pids: &[u32]) -> anyhow::Result<Vec<u32>> {
    for p in pids {
        if !ck.tree.iter().any(|t| t.pid == *p) {
            let all: Vec<String> = ck.tree.iter().map(|t| t.pid.to_string()).collect();
            anyhow::bail!(
                "no process {p} in the checkpoint (pids: {})",
                all.join(", ")
            );
        }
    }
    Ok(if pids.is_empty() {
        ck.tree.iter().map(|t| t.pid).collect()
    } else {
        pids.to_vec()
    })
}

/// The processes a command is about, loaded.
fn selected(ck: &Checkpoint, pids: &[u32]) -> anyhow::Result<Vec<Process>> {
    selected_pids(ck, pids)?
        .into_iter()
        .map(|p| Ok(ck.process(p)?))
        .collect()
}

/// Prints `value` as pretty JSON on stdout.
fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Writes command output to stdout; exits quietly when the reader has gone.
pub fn emit(args: std::fmt::Arguments<'_>, newline: bool) {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    let r = o
        .write_fmt(args)
        .and_then(|_| if newline { o.write_all(b"\n") } else { Ok(()) });
    if let Err(e) = r {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("ck2core: writing output: {e}");
        std::process::exit(EXIT_FAILURE as i32);
    }
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    cli.chatter.set();
    match cli.command {
        Command::Convert(a) => return convert::run(a),
        Command::Gdb(a) => return gdb::run(a),
        Command::Minidump(a) => return minidump::run(a),
        Command::Diff(a) => return Ok(diff::run(a)),
        Command::Schema(a) => return schema::run(a),
        Command::Completions(a) => completions::run(a),
        Command::Info(a) => info::run(a)?,
        Command::Ps(a) => ps::run(a)?,
        Command::Threads(a) => threads::run(a)?,
        Command::Maps(a) => maps::run(a)?,
        Command::Env(a) => env::run(a)?,
        Command::Files(a) => files::run(a)?,
        Command::Search(a) => search::run(a)?,
        Command::Read(a) => read::run(a)?,
        Command::Report(a) => report::run(a)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Bytes as a short human string (KiB, MiB, GiB).
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Parses an address or length: `0x` hex or decimal.
pub fn parse_u64(s: &str) -> Result<u64, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.map_err(|_| format!("{s:?} is not a number (use 0x for hex)"))
}

/// One hexdump row: address, 16 hex bytes (`??` where `known` is false), text.
pub fn hexdump_row(addr: u64, bytes: &[u8], known: &dyn Fn(usize) -> bool) -> String {
    let mut hex = String::new();
    let mut text = String::new();
    for i in 0..16 {
        if i == 8 {
            hex.push(' ');
        }
        match bytes.get(i) {
            Some(b) if known(i) => {
                hex += &format!("{b:02x} ");
                text.push(if b.is_ascii_graphic() || *b == b' ' {
                    *b as char
                } else {
                    '.'
                });
            }
            Some(_) => {
                hex += "?? ";
                text.push('?');
            }
            None => hex += "   ",
        }
    }
    format!("{addr:016x}  {hex} |{text}|")
}
