//! Views of the model for people and pipelines: what the inspection commands print,
//! as serialisable structures. The JSON schema of every command is these structures
//! (docs/json.md); the text rendering lives in the CLI.

pub mod diff;
pub mod memory;

use serde::{Serialize, Serializer};

use crate::arch::{Arch, Registers};
use crate::archive::CheckpointImage;
use crate::model::container::{dump_stats, Container, DumpStats};
use crate::model::{Checkpoint, Process};

/// An address or other machine word, serialised as a `0x` hex string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Hex(pub u64);

impl Serialize for Hex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{:#x}", self.0))
    }
}

impl schemars::JsonSchema for Hex {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Hex".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A machine word: `0x` and lower-case hex digits.",
            "type": "string",
            "pattern": "^0x[0-9a-f]+$"
        })
    }
}

impl std::fmt::Display for Hex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// Container and checkpoint summary (`ck2core info`).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Info {
    /// The input as named.
    pub checkpoint: String,
    /// tar, tar.gz, tar.zst, directory, oci-layout, oci-archive or docker-archive.
    pub format: &'static str,
    /// CRIU image format version.
    pub criu_image_version: Option<u32>,
    /// Number of processes.
    pub processes: usize,
    /// Number of threads pstree.img lists.
    pub threads: usize,
    /// Architecture of the first process whose images say.
    pub arch: Option<&'static str>,
    /// Total size of the CRIU images.
    pub checkpoint_size: u64,
    /// Size of the memory pages files.
    pub memory_pages_size: u64,
    /// How the pages are compressed, if they are (`criu dump --compress`).
    pub page_compression: Option<PageCompression>,
    /// Size of rootfs-diff.tar, if any (decompressed, when it was stored compressed).
    pub rootfs_diff_size: Option<u64>,
    /// How rootfs-diff.tar was stored, when it was compressed (containerd).
    pub rootfs_diff_stored: Option<Stored>,
    /// CRIU dump statistics.
    pub dump_stats: Option<DumpStats>,
    /// Container metadata, if the archive has any.
    pub container: Option<Container>,
    /// The checkpoint image the checkpoint came in, if it came as one.
    pub image: Option<CheckpointImage>,
}

/// How a member was stored, when ck2core read it decompressed.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Stored {
    /// `gzip` or `zstd`.
    pub compression: &'static str,
    /// Stored (compressed) size in bytes.
    pub size: u64,
}

/// Page compression, as inventory.img records it.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct PageCompression {
    /// `"per-page"`, `"region"`, or `"unknown-N"` for a mode ck2core does not know.
    pub mode: String,
    /// Bytes per region (region mode).
    pub region_size: Option<u32>,
}

/// Builds [`Info`].
pub fn info(ck: &Checkpoint) -> Info {
    let archive = ck.archive();
    let prefix = ck.images_prefix();
    let images: Vec<_> = archive
        .members()
        .filter(|m| m.name.starts_with(prefix))
        .collect();
    let checkpoint_size = images.iter().map(|m| m.size).sum();
    let memory_pages_size = images
        .iter()
        .filter(|m| {
            let n = &m.name[prefix.len()..];
            n.starts_with("pages-") && n.ends_with(".img")
        })
        .map(|m| m.size)
        .sum();
    let arch = ck
        .tree
        .iter()
        .find_map(|t| ck.arch_of(t.pid).ok().map(Arch::name));
    Info {
        checkpoint: archive.label().to_string(),
        format: archive.format().name(),
        criu_image_version: ck.img_version,
        processes: ck.tree.len(),
        threads: ck.tree.iter().map(|t| t.threads.len()).sum(),
        arch,
        checkpoint_size,
        memory_pages_size,
        page_compression: ck.compression.map(|c| PageCompression {
            mode: match c.mode {
                1 => "per-page".into(),
                2 => "region".into(),
                m => format!("unknown-{m}"),
            },
            region_size: c.region_size,
        }),
        rootfs_diff_size: archive.member("rootfs-diff.tar").map(|m| m.size),
        rootfs_diff_stored: archive
            .member("rootfs-diff.tar")
            .and_then(|m| m.stored)
            .map(|(compression, size)| Stored { compression, size }),
        dump_stats: dump_stats(archive, prefix),
        container: Container::read(archive),
        image: archive.image().cloned(),
    }
}

/// One process (`ck2core ps`).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ProcessRow {
    /// Pid.
    pub pid: u32,
    /// Parent pid.
    pub ppid: u32,
    /// Process group.
    pub pgid: u32,
    /// Session.
    pub sid: u32,
    /// alive, stopped or zombie.
    pub state: Option<&'static str>,
    /// Number of threads (0 for a zombie: CRIU keeps none of its threads).
    pub threads: usize,
    /// Command name.
    pub comm: Option<String>,
    /// Full command line, read from the process's memory.
    pub cmdline: Option<Vec<String>>,
    /// Real user id.
    pub uid: Option<u32>,
    /// Real group id.
    pub gid: Option<u32>,
    /// Why the process could not be read, if it could not.
    pub error: Option<String>,
}

/// Builds one [`ProcessRow`] per process of the tree.
pub fn processes(ck: &Checkpoint) -> Vec<ProcessRow> {
    ck.tree
        .iter()
        .map(|t| {
            let mut row = ProcessRow {
                pid: t.pid,
                ppid: t.ppid,
                pgid: t.pgid,
                sid: t.sid,
                state: None,
                threads: t.threads.len(),
                comm: None,
                cmdline: None,
                uid: None,
                gid: None,
                error: None,
            };
            match ck.process(t.pid) {
                Ok(p) => {
                    let c = p.creds();
                    row.state = Some(p.state.name());
                    row.threads = p.threads.len();
                    row.cmdline = p.args();
                    row.comm = Some(p.comm);
                    row.uid = Some(c.uid[0]);
                    row.gid = Some(c.gid[0]);
                }
                Err(e) => row.error = Some(e.to_string()),
            }
            row
        })
        .collect()
}

/// The system call a thread was blocked in.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Syscall {
    /// Number.
    pub number: u64,
    /// Name, if known.
    pub name: Option<&'static str>,
    /// CRIU stored the registers rewound so the call restarts on restore.
    pub rewound_for_restart: bool,
}

impl Syscall {
    /// Its name, or `#number` on architectures whose names ck2core doesn't know.
    pub fn label(&self) -> String {
        self.name
            .map_or_else(|| format!("#{}", self.number), str::to_string)
    }
}

/// Registers as groups of name -> value (serialised as nested objects, in order).
#[derive(Debug)]
pub struct RegisterGroups(pub Vec<(&'static str, Vec<(String, String)>)>);

impl Serialize for RegisterGroups {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        struct Group<'a>(&'a [(String, String)]);
        impl Serialize for Group<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(self.0.len()))?;
                for (k, v) in self.0 {
                    m.serialize_entry(k, v)?;
                }
                m.end()
            }
        }
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (g, regs) in &self.0 {
            m.serialize_entry(g, &Group(regs))?;
        }
        m.end()
    }
}

impl schemars::JsonSchema for RegisterGroups {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "RegisterGroups".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        // Group and register names depend on the architecture (docs/json.md); the
        // values are always hex words.
        schemars::json_schema!({
            "description": "Register groups (general, float, vector, ...), each register name -> `0x` hex value.",
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "additionalProperties": {"type": "string", "pattern": "^0x[0-9a-f]+$"}
            }
        })
    }
}

/// One thread (`ck2core threads`).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ThreadRow {
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Thread name.
    pub name: String,
    /// The process's state.
    pub state: &'static str,
    /// Program counter.
    pub pc: Hex,
    /// Stack pointer.
    pub sp: Hex,
    /// The system call it was in, if any.
    pub syscall: Option<Syscall>,
    /// Blocked signals.
    pub blocked: Vec<String>,
    /// Pending signals.
    pub pending: Vec<String>,
    /// Scheduling policy name.
    pub policy: &'static str,
    /// Nice value.
    pub nice: i32,
    /// Real-time priority.
    pub priority: u32,
    /// All registers (with `--regs`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registers: Option<RegisterGroups>,
}

fn policy_name(p: u32) -> &'static str {
    match p {
        0 => "other",
        1 => "fifo",
        2 => "rr",
        3 => "batch",
        5 => "idle",
        6 => "deadline",
        _ => "unknown",
    }
}

/// Builds a [`ThreadRow`] for every thread of `p`.
pub fn threads(p: &Process, with_regs: bool) -> Vec<ThreadRow> {
    p.threads
        .iter()
        .map(|t| {
            let regs: &Registers = &t.regs;
            ThreadRow {
                pid: p.pid(),
                tid: t.tid,
                name: t.name.clone(),
                state: p.state.name(),
                pc: Hex(regs.pc()),
                sp: Hex(regs.sp()),
                syscall: regs.syscall().map(|n| Syscall {
                    number: n,
                    name: regs.syscall_name(n),
                    rewound_for_restart: regs.rewound_for_restart(),
                }),
                blocked: crate::model::signals::names(t.blocked),
                pending: crate::model::signals::names(t.pending),
                policy: policy_name(t.sched.0),
                nice: t.nice,
                priority: t.sched.1,
                registers: with_regs.then(|| RegisterGroups(regs.groups())),
            }
        })
        .collect()
}

/// Version of the metadata note ck2core writes into cores (docs/core-note.md).
pub const CORE_METADATA_VERSION: u32 = 1;

/// What ck2core stores in each core about its process and container, for the gdb
/// helper: CRIU knows it, an ELF core has no place for it.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct CoreMetadata {
    /// Format version.
    pub version: u32,
    /// Version of ck2core that wrote it.
    pub ck2core: &'static str,
    /// The checkpoint as named when converting.
    pub checkpoint: String,
    /// The container, if the checkpoint came with engine metadata.
    pub container: Option<Container>,
    /// The process, as `ck2core ps` shows it.
    pub process: ProcessRow,
    /// Credentials of the leader: real, effective, saved, filesystem ids, and
    /// capability sets.
    pub creds: CredsView,
    /// The leader's cgroups, from cgroup.img.
    pub cgroups: Vec<CgroupView>,
    /// Threads, as `ck2core threads` shows them (without registers).
    pub threads: Vec<ThreadRow>,
    /// Open files, as `ck2core files` shows them.
    pub files: Option<crate::model::files::ProcessFiles>,
    /// Mappings, as `ck2core maps` shows them.
    pub maps: Vec<memory::MapRow>,
    /// What the core was written with beyond the kernel's choice of memory.
    pub dump: crate::model::dump::DumpPolicy,
}

/// Credentials: ids and capability sets.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct CredsView {
    /// uid, euid, suid, fsuid.
    pub uid: [u32; 4],
    /// gid, egid, sgid, fsgid.
    pub gid: [u32; 4],
    /// Capability sets by name.
    pub capabilities: CapsView,
}

/// The capability sets of a thread, each as capability names.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct CapsView {
    /// Effective.
    pub effective: Vec<String>,
    /// Permitted.
    pub permitted: Vec<String>,
    /// Inheritable.
    pub inheritable: Vec<String>,
    /// Bounding.
    pub bounding: Vec<String>,
}

/// Capability names by number (include/uapi/linux/capability.h).
const CAPS: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The names of the capabilities in `mask`; unknown bits as `CAP_<n>`.
pub fn capability_names(mask: u64) -> Vec<String> {
    (0..64)
        .filter(|b| mask & (1 << b) != 0)
        .map(|b| {
            CAPS.get(b)
                .map_or_else(|| format!("CAP_{b}"), |n| n.to_string())
        })
        .collect()
}

/// One cgroup of a process.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct CgroupView {
    /// Controllers (comma-separated, empty for the cgroup v2 hierarchy).
    pub controllers: String,
    /// Path in the hierarchy.
    pub path: String,
}

/// Builds the metadata of process `p` of `ck`; `container` is
/// `Container::read(ck.archive())`, read once for all processes.
pub fn core_metadata(ck: &Checkpoint, p: &Process, container: Option<&Container>) -> CoreMetadata {
    let c = p.creds();
    CoreMetadata {
        version: CORE_METADATA_VERSION,
        ck2core: env!("CARGO_PKG_VERSION"),
        checkpoint: ck.archive().label().to_string(),
        container: container.cloned(),
        process: ProcessRow {
            pid: p.pid(),
            ppid: p.tree.ppid,
            pgid: p.tree.pgid,
            sid: p.tree.sid,
            state: Some(p.state.name()),
            threads: p.threads.len(),
            comm: Some(p.comm.clone()),
            cmdline: p.args(),
            uid: Some(c.uid[0]),
            gid: Some(c.gid[0]),
            error: None,
        },
        creds: CredsView {
            uid: c.uid,
            gid: c.gid,
            capabilities: CapsView {
                effective: capability_names(c.caps[0]),
                permitted: capability_names(c.caps[1]),
                inheritable: capability_names(c.caps[2]),
                bounding: capability_names(c.caps[3]),
            },
        },
        cgroups: p
            .cgroups
            .iter()
            .map(|(controllers, path)| CgroupView {
                controllers: controllers.clone(),
                path: path.clone(),
            })
            .collect(),
        threads: threads(p, false),
        files: ck.files(p.pid()).ok(),
        maps: memory::maps(p, &crate::model::filter::MemFilter::all()),
        dump: Default::default(),
    }
}
