//! `ck2core diff`: what changed between two checkpoints, from the container down to
//! the page. Processes are paired (by pid, or by command line and place in the tree),
//! then compared part by part; mappings are paired (by address, or by what they map
//! when they moved), then compared page by page ([`pages`]).
//!
//! The schema is in docs/diff.md.

pub mod pages;

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::archive::Archive;
use crate::error::{Error, Result};
use crate::model::container::Container;
use crate::model::filter::MemFilter;
use crate::model::memory::{Vma, VmaKind};
use crate::model::{Checkpoint, Process};
use crate::views::{capability_names, Hex};
use pages::PageComparison;

/// How processes of A are paired with processes of B.
#[derive(Debug, Clone, Default)]
pub enum PidMap {
    /// By pid when the command lines agree, else by command line and tree position.
    #[default]
    Auto,
    /// These pairs (A pid, B pid) as given; the others as with `Auto`.
    Given(Vec<(u32, u32)>),
}

/// What to compare.
#[derive(Debug, Clone, Default)]
pub struct DiffOptions {
    /// Process pairing.
    pub pid_map: PidMap,
    /// Compare every register of every thread.
    pub regs: bool,
    /// Which mappings and addresses to compare.
    pub filter: MemFilter,
}

/// One value that differs: what, and its value on each side (`None`: absent there).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Change {
    /// What changed, e.g. `state`, `uid`, `syscall`, `rip`.
    pub what: String,
    /// The value in A.
    pub a: Option<String>,
    /// The value in B.
    pub b: Option<String>,
}

fn change(
    what: &str,
    a: impl Into<Option<String>>,
    b: impl Into<Option<String>>,
) -> Option<Change> {
    let (a, b) = (a.into(), b.into());
    (a != b).then(|| Change {
        what: what.to_string(),
        a,
        b,
    })
}

/// Entries keyed by name (files of rootfs-diff.tar, descriptors, variables): those
/// only in B, only in A, and those whose value differs.
#[derive(Debug, Default, Serialize, schemars::JsonSchema)]
pub struct Entries {
    /// Only in B: `key: value`.
    pub added: Vec<Change>,
    /// Only in A.
    pub removed: Vec<Change>,
    /// In both, with different values.
    pub changed: Vec<Change>,
}

/// Key -> (what people see, what is compared).
type Keyed = BTreeMap<String, (String, String)>;

fn keyed(m: BTreeMap<String, String>) -> Keyed {
    m.into_iter().map(|(k, v)| (k, (v.clone(), v))).collect()
}

impl Entries {
    fn of(a: &Keyed, b: &Keyed) -> Entries {
        let mut e = Entries::default();
        let entry = |k: &str, a: Option<&String>, b: Option<&String>| Change {
            what: k.to_string(),
            a: a.cloned(),
            b: b.cloned(),
        };
        for (k, (da, ca)) in a {
            match b.get(k) {
                None => e.removed.push(entry(k, Some(da), None)),
                Some((db, cb)) if cb != ca => e.changed.push(entry(k, Some(da), Some(db))),
                _ => {}
            }
        }
        for (k, (db, _)) in b {
            if !a.contains_key(k) {
                e.added.push(entry(k, None, Some(db)));
            }
        }
        e
    }

    /// True when nothing differs.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// A process as listed among those added or removed.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ProcessId {
    /// Pid.
    pub pid: u32,
    /// Parent pid.
    pub ppid: u32,
    /// Command name.
    pub comm: Option<String>,
    /// Command line, read from memory.
    pub cmdline: Option<Vec<String>>,
}

/// A thread as listed among those added or removed.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ThreadId {
    /// Thread id.
    pub tid: u32,
    /// Thread name.
    pub name: String,
}

/// A thread present on both sides that changed.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ThreadDiff {
    /// Tid in A.
    pub a_tid: u32,
    /// Tid in B.
    pub b_tid: u32,
    /// Name in A.
    pub name: String,
    /// What differs.
    pub changes: Vec<Change>,
}

/// Threads of a process pair.
#[derive(Debug, Default, Serialize, schemars::JsonSchema)]
pub struct ThreadsDiff {
    /// Only in B.
    pub added: Vec<ThreadId>,
    /// Only in A.
    pub removed: Vec<ThreadId>,
    /// In both, changed.
    pub changed: Vec<ThreadDiff>,
}

/// A mapping as listed in a diff.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct MappingId {
    /// Start address.
    pub start: Hex,
    /// End address (exclusive).
    pub end: Hex,
    /// rwxp / rwxs.
    pub perms: String,
    /// Kind, as `maps` shows it.
    pub kind: VmaKind,
    /// What /proc/PID/maps would name it.
    pub name: String,
}

impl MappingId {
    fn of(v: &Vma) -> MappingId {
        MappingId {
            start: Hex(v.start),
            end: Hex(v.end),
            perms: crate::views::memory::perms(v),
            kind: v.kind,
            name: v.name(),
        }
    }
}

/// A mapping present on both sides whose description changed.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct MappingDiff {
    /// The mapping in A.
    pub a: MappingId,
    /// The mapping in B.
    pub b: MappingId,
    /// What differs: `start` (moved), `size`, `perms`, `offset`, `file`, `build-id`.
    pub changes: Vec<Change>,
}

/// Mappings of a process pair.
#[derive(Debug, Default, Serialize, schemars::JsonSchema)]
pub struct MappingsDiff {
    /// Only in B.
    pub added: Vec<MappingId>,
    /// Only in A.
    pub removed: Vec<MappingId>,
    /// In both, changed.
    pub changed: Vec<MappingDiff>,
}

/// The pages of a mapping pair that differ or can't be compared.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct MemoryDiff {
    /// The mapping in A.
    pub a: MappingId,
    /// Its start in B.
    pub b_start: Hex,
    /// The comparison.
    #[serde(flatten)]
    pub pages: PageComparison,
}

/// A pair of processes and what differs between them.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ProcessDiff {
    /// Pid in A.
    pub a_pid: u32,
    /// Pid in B.
    pub b_pid: u32,
    /// Command name (A's).
    pub comm: String,
    /// How the pair was made: `pid and command line`, `command line and tree
    /// position`, `command
    /// line`, `pid (command line differs)` or `--pid-map`.
    pub matched_by: &'static str,
    /// True when nothing below differs.
    pub identical: bool,
    /// A side that could not be read, and why (nothing else is compared then).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Process-wide values: comm, command line, state, parent, credentials,
    /// capabilities, cgroups, cwd, root, executable.
    pub changes: Vec<Change>,
    /// Threads.
    pub threads: ThreadsDiff,
    /// Open descriptors, keyed `fd N` (kernel object ids such as pipe and socket
    /// inode numbers are not compared: every run gets new ones).
    pub files: Entries,
    /// Environment variables, keyed by name.
    pub environment: Entries,
    /// Mappings.
    pub mappings: MappingsDiff,
    /// Mapping pairs whose pages differ or can't be compared.
    pub memory: Vec<MemoryDiff>,
}

/// Totals, for the first lines of the text and for scripts.
#[derive(Debug, Default, Serialize, schemars::JsonSchema)]
pub struct Summary {
    /// Process pairs compared.
    pub processes_compared: usize,
    /// Of those, how many differ.
    pub processes_differ: usize,
    /// Processes only in B.
    pub processes_added: usize,
    /// Processes only in A.
    pub processes_removed: usize,
    /// Container values and rootfs-diff.tar entries that differ.
    pub container_changes: usize,
    /// Pages whose content differs, in all pairs.
    pub pages_differ: u64,
    /// Pages one side has and the other does not, in all pairs.
    pub pages_unknown: u64,
}

/// The whole comparison (`ck2core diff --json`).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Diff {
    /// A as named.
    pub a: String,
    /// B as named.
    pub b: String,
    /// True when nothing differs and no page is unknown (exit status 0).
    pub identical: bool,
    /// Totals.
    pub summary: Summary,
    /// Container values that differ (engine, name, id, image, image id, runtime,
    /// command, hostname, pod, namespace).
    pub container: Vec<Change>,
    /// rootfs-diff.tar entries (by path; value: kind and size) and deleted.files.
    pub rootfs_diff: Entries,
    /// Process pairs, in A's tree order.
    pub processes: Vec<ProcessDiff>,
    /// Processes only in B.
    pub added_processes: Vec<ProcessId>,
    /// Processes only in A.
    pub removed_processes: Vec<ProcessId>,
}

/// One side: the tree, and each process loaded (or why not).
struct Side<'a> {
    ck: &'a Checkpoint,
    procs: Vec<std::result::Result<Process, String>>,
    /// What identifies each process across runs: its command line, else its name.
    keys: Vec<Option<Vec<String>>>,
}

impl<'a> Side<'a> {
    fn load(ck: &'a Checkpoint) -> Side<'a> {
        let procs = ck
            .tree
            .iter()
            .map(|t| ck.process(t.pid).map_err(|e| e.to_string()))
            .collect::<Vec<_>>();
        let keys = procs
            .iter()
            .map(|p| {
                let p = p.as_ref().ok()?;
                p.args()
                    .filter(|a| !a.is_empty())
                    .or_else(|| Some(vec![p.comm.clone()]))
            })
            .collect();
        Side { ck, procs, keys }
    }

    fn pid(&self, i: usize) -> u32 {
        self.ck.tree[i].pid
    }

    fn index(&self, pid: u32) -> Option<usize> {
        self.ck.tree.iter().position(|t| t.pid == pid)
    }

    fn parent(&self, i: usize) -> Option<usize> {
        self.index(self.ck.tree[i].ppid)
    }

    fn id(&self, i: usize) -> ProcessId {
        let t = &self.ck.tree[i];
        let p = self.procs[i].as_ref().ok();
        ProcessId {
            pid: t.pid,
            ppid: t.ppid,
            comm: p.map(|p| p.comm.clone()),
            cmdline: p.and_then(Process::args),
        }
    }
}

/// A's process i's partner in B (its index) and how it was found.
type Paired = Option<(usize, &'static str)>;

/// Pairs processes: `pairs[i]` is A's process i's partner in B and how it was found.
fn pair_processes(a: &Side, b: &Side, map: &PidMap) -> Result<Vec<Paired>> {
    let n = a.ck.tree.len();
    let mut pairs: Vec<Paired> = vec![None; n];
    let mut taken = vec![false; b.ck.tree.len()];
    if let PidMap::Given(list) = map {
        for (pa, pb) in list {
            let (Some(i), Some(j)) = (a.index(*pa), b.index(*pb)) else {
                return Err(Error::Usage(format!(
                    "--pid-map {pa}:{pb}: {} has no process {}",
                    if a.index(*pa).is_none() { "A" } else { "B" },
                    if a.index(*pa).is_none() { pa } else { pb }
                )));
            };
            if pairs[i].is_some() || taken[j] {
                return Err(Error::Usage(format!(
                    "--pid-map {pa}:{pb}: a process is paired twice"
                )));
            }
            pairs[i] = Some((j, "--pid-map"));
            taken[j] = true;
        }
    }
    let pair = |pairs: &mut Vec<Paired>,
                taken: &mut Vec<bool>,
                how: &'static str,
                ok: &dyn Fn(usize, usize, &[Paired]) -> bool| {
        for i in 0..n {
            if pairs[i].is_some() {
                continue;
            }
            if let Some(j) = (0..taken.len()).find(|j| !taken[*j] && ok(i, *j, pairs)) {
                pairs[i] = Some((j, how));
                taken[j] = true;
            }
        }
    };
    let same_key = |i: usize, j: usize| a.keys[i].is_some() && a.keys[i] == b.keys[j];
    let same_place = |i: usize, j: usize, pairs: &[Paired]| match (a.parent(i), b.parent(j)) {
        (None, None) => true,
        (Some(pi), Some(pj)) => pairs[pi].is_some_and(|(q, _)| q == pj),
        _ => false,
    };
    pair(
        &mut pairs,
        &mut taken,
        "pid and command line",
        &|i, j, _| a.pid(i) == b.pid(j) && same_key(i, j),
    );
    // In tree order, so a parent is paired before its children are looked at.
    pair(
        &mut pairs,
        &mut taken,
        "command line and tree position",
        &|i, j, p| same_key(i, j) && same_place(i, j, p),
    );
    pair(&mut pairs, &mut taken, "command line", &|i, j, _| {
        same_key(i, j)
    });
    pair(
        &mut pairs,
        &mut taken,
        "pid (command line differs)",
        &|i, j, _| a.pid(i) == b.pid(j),
    );
    Ok(pairs)
}

/// Compares checkpoint `a` with checkpoint `b`.
pub fn diff(a: &Checkpoint, b: &Checkpoint, opts: &DiffOptions) -> Result<Diff> {
    let (sa, sb) = (Side::load(a), Side::load(b));
    let pairs = pair_processes(&sa, &sb, &opts.pid_map)?;
    let container = container_changes(
        Container::read(a.archive()).as_ref(),
        Container::read(b.archive()).as_ref(),
    );
    let rootfs_diff = rootfs_diff(a.archive(), b.archive())?;
    let mut processes = Vec::new();
    let mut bufs = (Vec::new(), Vec::new());
    for (i, p) in pairs.iter().enumerate() {
        let Some((j, how)) = *p else { continue };
        processes.push(process_diff(&sa, i, &sb, j, how, &pairs, opts, &mut bufs)?);
    }
    let paired_b: Vec<usize> = pairs.iter().flatten().map(|(j, _)| *j).collect();
    let added_processes: Vec<ProcessId> = (0..sb.ck.tree.len())
        .filter(|j| !paired_b.contains(j))
        .map(|j| sb.id(j))
        .collect();
    let removed_processes: Vec<ProcessId> = (0..sa.ck.tree.len())
        .filter(|i| pairs[*i].is_none())
        .map(|i| sa.id(i))
        .collect();
    let summary = Summary {
        processes_compared: processes.len(),
        processes_differ: processes.iter().filter(|p| !p.identical).count(),
        processes_added: added_processes.len(),
        processes_removed: removed_processes.len(),
        container_changes: container.len()
            + rootfs_diff.added.len()
            + rootfs_diff.removed.len()
            + rootfs_diff.changed.len(),
        pages_differ: processes
            .iter()
            .flat_map(|p| &p.memory)
            .map(|m| m.pages.differ)
            .sum(),
        pages_unknown: processes
            .iter()
            .flat_map(|p| &p.memory)
            .map(|m| m.pages.unknown)
            .sum(),
    };
    let identical = summary.processes_differ == 0
        && summary.processes_added == 0
        && summary.processes_removed == 0
        && summary.container_changes == 0;
    Ok(Diff {
        a: a.archive().label().to_string(),
        b: b.archive().label().to_string(),
        identical,
        summary,
        container,
        rootfs_diff,
        processes,
        added_processes,
        removed_processes,
    })
}

fn container_changes(a: Option<&Container>, b: Option<&Container>) -> Vec<Change> {
    let d = Container::default();
    let (a, b) = (a.unwrap_or(&d), b.unwrap_or(&d));
    let cmd = |c: &Container| (!c.command.is_empty()).then(|| c.command.join(" "));
    [
        change("engine", a.engine.clone(), b.engine.clone()),
        change("name", a.name.clone(), b.name.clone()),
        change("id", a.id.clone(), b.id.clone()),
        change("image", a.image.clone(), b.image.clone()),
        change("image id", a.image_id.clone(), b.image_id.clone()),
        change("runtime", a.runtime.clone(), b.runtime.clone()),
        change("command", cmd(a), cmd(b)),
        change("hostname", a.hostname.clone(), b.hostname.clone()),
        change("pod", a.pod.clone(), b.pod.clone()),
        change("namespace", a.namespace.clone(), b.namespace.clone()),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// rootfs-diff.tar of both sides: entries by path with kind and size; a file of
/// the same size on both sides is compared byte for byte. deleted.files entries
/// are keyed `deleted PATH`.
fn rootfs_diff(a: &Archive, b: &Archive) -> Result<Entries> {
    type Files = BTreeMap<String, (String, Option<crate::archive::Blob>)>;
    let list = |ar: &Archive| -> Files {
        let mut out = Files::new();
        if let Some(blob) = ar.member("rootfs-diff.tar").and_then(|m| m.open().ok()) {
            crate::rootfs::walk_tar(&blob, &mut |e| {
                let data = (e.kind == "file")
                    .then(|| blob.slice(e.offset, e.size).ok())
                    .flatten();
                out.insert(
                    format!("/{}", e.path),
                    (format!("{}, {} bytes", e.kind, e.size), data),
                );
            });
        }
        if let Some(c) = Container::read(ar) {
            for d in c.deleted_files {
                out.insert(format!("deleted {d}"), ("deleted".into(), None));
            }
        }
        out
    };
    let (la, lb) = (list(a), list(b));
    let mut va: Keyed = la
        .iter()
        .map(|(k, v)| (k.clone(), (v.0.clone(), v.0.clone())))
        .collect();
    let vb: Keyed = lb
        .iter()
        .map(|(k, v)| (k.clone(), (v.0.clone(), v.0.clone())))
        .collect();
    for (k, (desc, data)) in &la {
        if let (Some(x), Some((dbk, Some(y)))) = (data, lb.get(k)) {
            if dbk == desc && !same_bytes(x, y)? {
                va.insert(k.clone(), (desc.clone(), format!("{desc}, other content")));
            }
        }
    }
    Ok(Entries::of(&va, &vb))
}

fn same_bytes(x: &crate::archive::Blob, y: &crate::archive::Blob) -> Result<bool> {
    if x.len() != y.len() {
        return Ok(false);
    }
    let mut bx = vec![0u8; 1 << 16];
    let mut by = vec![0u8; 1 << 16];
    let mut at = 0;
    while at < x.len() {
        let n = (x.len() - at).min(bx.len() as u64) as usize;
        x.read_exact_at(at, &mut bx[..n])?;
        y.read_exact_at(at, &mut by[..n])?;
        if bx[..n] != by[..n] {
            return Ok(false);
        }
        at += n as u64;
    }
    Ok(true)
}

#[allow(clippy::too_many_arguments)]
fn process_diff(
    sa: &Side,
    i: usize,
    sb: &Side,
    j: usize,
    how: &'static str,
    pairs: &[Paired],
    opts: &DiffOptions,
    bufs: &mut (Vec<u8>, Vec<u8>),
) -> Result<ProcessDiff> {
    let mut d = ProcessDiff {
        a_pid: sa.pid(i),
        b_pid: sb.pid(j),
        comm: String::new(),
        matched_by: how,
        identical: true,
        error: None,
        changes: Vec::new(),
        threads: ThreadsDiff::default(),
        files: Entries::default(),
        environment: Entries::default(),
        mappings: MappingsDiff::default(),
        memory: Vec::new(),
    };
    let (pa, pb) = match (&sa.procs[i], &sb.procs[j]) {
        (Ok(pa), Ok(pb)) => (pa, pb),
        (ea, eb) => {
            let why = |e: &std::result::Result<Process, String>, side: &str| {
                e.as_ref().err().map(|e| format!("{side}: {e}"))
            };
            let whys: Vec<String> = [why(ea, "A"), why(eb, "B")].into_iter().flatten().collect();
            d.error = Some(whys.join("; "));
            d.identical = false;
            return Ok(d);
        }
    };
    d.comm = pa.comm.clone();
    let parent_paired = match (sa.parent(i), sb.parent(j)) {
        (None, None) => true,
        (Some(x), Some(y)) => pairs[x].is_some_and(|(q, _)| q == y),
        _ => false,
    };
    let (ca, cb) = (pa.creds(), pb.creds());
    let caps = |c: &crate::model::Creds, k: usize| Some(capability_names(c.caps[k]).join(","));
    let ids = |v: [u32; 4]| Some(format!("{} {} {} {}", v[0], v[1], v[2], v[3]));
    // One entry per controller ("" is the cgroup v2 hierarchy).
    let cgroups = |p: &Process| -> BTreeMap<String, String> {
        p.cgroups
            .iter()
            .map(|(c, path)| {
                let c = if c.is_empty() { "(v2)" } else { c };
                (format!("cgroup {c}"), path.clone())
            })
            .collect()
    };
    let (cga, cgb) = (cgroups(pa), cgroups(pb));
    let cgroup_changes: Vec<Change> = cga
        .keys()
        .chain(cgb.keys().filter(|k| !cga.contains_key(*k)))
        .filter_map(|k| change(k, cga.get(k).cloned(), cgb.get(k).cloned()))
        .collect();
    let (fa, fb) = (sa.ck.files(pa.pid()).ok(), sb.ck.files(pb.pid()).ok());
    d.changes = [
        change("comm", pa.comm.clone(), pb.comm.clone()),
        change(
            "command line",
            pa.args().map(|a| a.join(" ")),
            pb.args().map(|a| a.join(" ")),
        ),
        change(
            "state",
            pa.state.name().to_string(),
            pb.state.name().to_string(),
        ),
        (!parent_paired).then(|| Change {
            what: "parent".into(),
            a: Some(pa.tree.ppid.to_string()),
            b: Some(pb.tree.ppid.to_string()),
        }),
        change("uid (real effective saved fs)", ids(ca.uid), ids(cb.uid)),
        change("gid (real effective saved fs)", ids(ca.gid), ids(cb.gid)),
        change("effective capabilities", caps(&ca, 0), caps(&cb, 0)),
        change("permitted capabilities", caps(&ca, 1), caps(&cb, 1)),
        change("inheritable capabilities", caps(&ca, 2), caps(&cb, 2)),
        change("bounding capabilities", caps(&ca, 3), caps(&cb, 3)),
        change(
            "cwd",
            fa.as_ref().and_then(|f| f.cwd.clone()),
            fb.as_ref().and_then(|f| f.cwd.clone()),
        ),
        change(
            "root",
            fa.as_ref().and_then(|f| f.root.clone()),
            fb.as_ref().and_then(|f| f.root.clone()),
        ),
        change(
            "executable",
            pa.exe.as_ref().map(|e| e.path.clone()),
            pb.exe.as_ref().map(|e| e.path.clone()),
        ),
    ]
    .into_iter()
    .flatten()
    .chain(cgroup_changes)
    .collect();
    d.threads = threads_diff(pa, pb, opts.regs);
    d.files = Entries::of(&fds(fa.as_ref()), &fds(fb.as_ref()));
    d.environment = Entries::of(&keyed(environ(pa)), &keyed(environ(pb)));
    if let (Some(ma), Some(mb)) = (&pa.memory, &pb.memory) {
        let (mappings, memory) = mappings_diff(ma, mb, &opts.filter, bufs)?;
        d.mappings = mappings;
        d.memory = memory;
    }
    d.identical = d.changes.is_empty()
        && d.threads.added.is_empty()
        && d.threads.removed.is_empty()
        && d.threads.changed.is_empty()
        && d.files.is_empty()
        && d.environment.is_empty()
        && d.mappings.added.is_empty()
        && d.mappings.removed.is_empty()
        && d.mappings.changed.is_empty()
        && d.memory.is_empty();
    Ok(d)
}

/// Descriptors as `fd N` -> description, compared without kernel object ids.
fn fds(f: Option<&crate::model::files::ProcessFiles>) -> Keyed {
    let mut out = BTreeMap::new();
    for fd in f.iter().flat_map(|f| &f.fds) {
        let mut v = serde_json::to_value(&fd.file).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            for id in ["pipe_id", "ino", "peer"] {
                o.remove(id);
            }
        }
        let desc = match fd.file {
            crate::model::files::OpenFile::Pipe { flags, .. } => format!(
                "PIPE    ({} end)",
                if flags & 3 == 0 { "read" } else { "write" }
            ),
            _ => fd.file.describe(),
        };
        let cloexec = if fd.cloexec { " (cloexec)" } else { "" };
        out.insert(
            format!("fd {}", fd.fd),
            (format!("{desc}{cloexec}"), format!("{v}{cloexec}")),
        );
    }
    out
}

fn environ(p: &Process) -> BTreeMap<String, String> {
    p.environ()
        .unwrap_or_default()
        .into_iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv, String::new()),
        })
        .collect()
}

fn threads_diff(pa: &Process, pb: &Process, regs: bool) -> ThreadsDiff {
    let mut d = ThreadsDiff::default();
    // Same tids when the pids agree; otherwise in order, leader with leader.
    let by_tid = pa.pid() == pb.pid();
    let mut taken = vec![false; pb.threads.len()];
    let mut pairs = Vec::new();
    for (x, ta) in pa.threads.iter().enumerate() {
        let j = if by_tid {
            pb.threads.iter().position(|t| t.tid == ta.tid)
        } else {
            (x < pb.threads.len()).then_some(x)
        };
        match j {
            Some(j) if !taken[j] => {
                taken[j] = true;
                pairs.push((ta, &pb.threads[j]));
            }
            _ => d.removed.push(ThreadId {
                tid: ta.tid,
                name: ta.name.clone(),
            }),
        }
    }
    for (j, tb) in pb.threads.iter().enumerate() {
        if !taken[j] {
            d.added.push(ThreadId {
                tid: tb.tid,
                name: tb.name.clone(),
            });
        }
    }
    let view_a = crate::views::threads(pa, regs);
    let view_b = crate::views::threads(pb, regs);
    for (ta, tb) in pairs {
        let va = view_a
            .iter()
            .find(|v| v.tid == ta.tid)
            .expect("a row per thread");
        let vb = view_b
            .iter()
            .find(|v| v.tid == tb.tid)
            .expect("a row per thread");
        let sys = |v: &crate::views::ThreadRow| v.syscall.as_ref().map(|s| s.label());
        let mut changes: Vec<Change> = [
            change("name", va.name.clone(), vb.name.clone()),
            change("syscall", sys(va), sys(vb)),
            change(
                "blocked signals",
                va.blocked.join(","),
                vb.blocked.join(","),
            ),
            change(
                "pending signals",
                va.pending.join(","),
                vb.pending.join(","),
            ),
            change(
                "scheduling",
                format!("{} nice {} priority {}", va.policy, va.nice, va.priority),
                format!("{} nice {} priority {}", vb.policy, vb.nice, vb.priority),
            ),
        ]
        .into_iter()
        .flatten()
        .collect();
        if let (Some(ra), Some(rb)) = (&va.registers, &vb.registers) {
            let flat = |g: &crate::views::RegisterGroups| -> Vec<(String, String)> {
                g.0.iter()
                    .flat_map(|(_, regs)| regs.iter().cloned())
                    .collect()
            };
            let rb: HashMap<String, String> = flat(rb).into_iter().collect();
            let ra = flat(ra);
            for (name, v) in &ra {
                changes.extend(change(name, v.clone(), rb.get(name).cloned()));
            }
            for (name, v) in &rb {
                if !ra.iter().any(|(n, _)| n == name) {
                    changes.extend(change(name, None, v.clone()));
                }
            }
        }
        if !changes.is_empty() {
            d.changed.push(ThreadDiff {
                a_tid: ta.tid,
                b_tid: tb.tid,
                name: ta.name.clone(),
                changes,
            });
        }
    }
    d
}

/// What a mapping is, for pairing mappings that moved: its kind and name (and file
/// offset), with anonymous unnamed mappings all alike.
fn identity(v: &Vma) -> (VmaKind, String, u64) {
    (v.kind, v.name(), if v.file.is_some() { v.pgoff } else { 0 })
}

fn mappings_diff(
    ma: &crate::model::memory::AddressSpace,
    mb: &crate::model::memory::AddressSpace,
    filter: &MemFilter,
    bufs: &mut (Vec<u8>, Vec<u8>),
) -> Result<(MappingsDiff, Vec<MemoryDiff>)> {
    // --range is in A's addresses: B's mappings are chosen by the other criteria,
    // so a moved mapping still finds its partner.
    let b_filter = filter.without_ranges();
    let va: Vec<&Vma> = ma.vmas.iter().filter(|v| filter.selects(v)).collect();
    let vb: Vec<&Vma> = mb.vmas.iter().filter(|v| b_filter.selects(v)).collect();
    let mut pair: Vec<Option<usize>> = vec![None; va.len()];
    let mut taken = vec![false; vb.len()];
    // Same start address first.
    for (i, a) in va.iter().enumerate() {
        if let Some(j) = vb.iter().position(|b| b.start == a.start) {
            if !taken[j] {
                pair[i] = Some(j);
                taken[j] = true;
            }
        }
    }
    // Then, among the rest, the n-th mapping of one identity with the n-th of the
    // same identity, when both sides have equally many (ASLR moves the heap, the
    // stack, the vDSO and libraries between runs).
    type Group = (Vec<usize>, Vec<usize>);
    let mut groups: BTreeMap<(&'static str, String, u64), Group> = BTreeMap::new();
    let gkey = |v: &Vma| {
        let (k, n, o) = identity(v);
        (k.name(), n, o)
    };
    for (i, a) in va.iter().enumerate() {
        if pair[i].is_none() {
            groups.entry(gkey(a)).or_default().0.push(i);
        }
    }
    for (j, b) in vb.iter().enumerate() {
        if !taken[j] {
            groups.entry(gkey(b)).or_default().1.push(j);
        }
    }
    for (xs, ys) in groups.values() {
        if xs.len() == ys.len() {
            for (i, j) in xs.iter().zip(ys) {
                pair[*i] = Some(*j);
                taken[*j] = true;
            }
        }
    }
    let mut d = MappingsDiff::default();
    let mut memory = Vec::new();
    let same_page_size = ma.page_size == mb.page_size;
    for (i, a) in va.iter().enumerate() {
        let Some(j) = pair[i] else {
            d.removed.push(MappingId::of(a));
            continue;
        };
        let b = vb[j];
        let changes = mapping_changes(a, b);
        if !changes.is_empty() {
            d.changed.push(MappingDiff {
                a: MappingId::of(a),
                b: MappingId::of(b),
                changes,
            });
        }
        if same_page_size {
            let cmp = pages::compare(ma, a, mb, b, &filter.cut(a), bufs)?;
            if cmp.differ > 0 || cmp.unknown > 0 {
                memory.push(MemoryDiff {
                    a: MappingId::of(a),
                    b_start: Hex(b.start),
                    pages: cmp,
                });
            }
        }
    }
    for (j, b) in vb.iter().enumerate() {
        if !taken[j] && filter.selects(b) {
            d.added.push(MappingId::of(b));
        }
    }
    Ok((d, memory))
}

fn mapping_changes(a: &Vma, b: &Vma) -> Vec<Change> {
    use crate::views::memory::perms;
    let bid = |v: &Vma| {
        v.file
            .as_ref()
            .filter(|f| !f.build_id.is_empty())
            .map(|f| crate::rootfs::hex(&f.build_id))
    };
    let file = |v: &Vma| v.file.as_ref().map(|f| f.path.clone());
    [
        change("start", Hex(a.start).to_string(), Hex(b.start).to_string()),
        change("size", a.len().to_string(), b.len().to_string()),
        change("perms", perms(a), perms(b)),
        change("kind", a.kind.name().to_string(), b.kind.name().to_string()),
        change("offset", Hex(a.pgoff).to_string(), Hex(b.pgoff).to_string()),
        change("file", file(a), file(b)),
        change("build-id", bid(a), bid(b)),
    ]
    .into_iter()
    .flatten()
    .collect()
}
