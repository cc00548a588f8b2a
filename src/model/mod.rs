//! The one model of a checkpoint that every command reads: processes, threads,
//! address spaces and files, decoded once from the images and checked on the way.
//!
//! [`Checkpoint::open`] reads what is global (process tree, file table); each process
//! is loaded on demand by [`Checkpoint::process`], so one broken process is one error
//! and never stops the others.

pub mod container;
pub mod dump;
pub mod files;
pub mod filter;
pub mod memory;
pub mod signals;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use crate::arch::{Arch, Registers};
use crate::archive::Blob;
use crate::archive::{Archive, Input, Limits};
use crate::error::{Error, Result};
use crate::images::pagemap::Compression;
use crate::images::{magic, pb, BlobImage, ByteOrder, Image, ImageDir};
use crate::rootfs::{Base, Expect, RootFs};
use memory::{
    status, AddressSpace, FileData, MappedFile, Pagemap, SharedMemory, ShmemPages, Vma, VmaKind,
};

/// Options for opening a checkpoint.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// The container's root filesystem, for file pages CRIU did not save.
    pub rootfs: Option<PathBuf>,
    /// The container's image (OCI layout, OCI archive, Docker archive), instead of
    /// `rootfs`.
    pub image: Option<PathBuf>,
    /// Archive reading limits.
    pub limits: Limits,
}

/// Most parent image directories followed (incremental dumps chain pre-dumps).
const MAX_PARENTS: usize = 64;
/// Most VMAs a process may have (the kernel's default limit is 65530).
const MAX_VMAS: usize = 1 << 20;
/// Most threads a process may have.
const MAX_THREADS: usize = 1 << 16;

/// Process state as CRIU records it (`task_core_entry.task_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// Running or sleeping.
    Alive,
    /// A zombie: no memory, no registers worth showing.
    Zombie,
    /// Stopped (SIGSTOP and friends).
    Stopped,
    /// A value CRIU does not define.
    Unknown,
}

/// CRIU's task_state of a zombie (TASK_DEAD).
const ZOMBIE: u32 = 2;

impl TaskState {
    fn from_criu(v: Option<u32>) -> TaskState {
        match v {
            Some(1) => TaskState::Alive,
            Some(ZOMBIE) => TaskState::Zombie,
            Some(3) => TaskState::Stopped,
            _ => TaskState::Unknown,
        }
    }

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            TaskState::Alive => "alive",
            TaskState::Zombie => "zombie",
            TaskState::Stopped => "stopped",
            TaskState::Unknown => "unknown",
        }
    }
}

/// One entry of the process tree.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct TreeEntry {
    /// Pid inside the container's pid namespace.
    pub pid: u32,
    /// Parent pid (0 for the root).
    pub ppid: u32,
    /// Process group.
    pub pgid: u32,
    /// Session.
    pub sid: u32,
    /// Thread ids, the leader included.
    pub threads: Vec<u32>,
}

/// Credentials of a thread.
#[derive(Debug, Clone, Copy, Default, Serialize, schemars::JsonSchema)]
pub struct Creds {
    /// Real, effective, saved, filesystem user ids.
    pub uid: [u32; 4],
    /// Real, effective, saved, filesystem group ids.
    pub gid: [u32; 4],
    /// Capability sets as bit masks (bit n = capability n): effective, permitted,
    /// inheritable, bounding.
    pub caps: [u64; 4],
}

/// A capability set CRIU stores as 32-bit words, low word first.
fn cap_mask(words: &[u32]) -> u64 {
    words
        .iter()
        .take(2)
        .enumerate()
        .fold(0, |m, (i, w)| m | (*w as u64) << (32 * i))
}

/// One thread.
#[derive(Debug, Clone)]
pub struct Thread {
    /// Thread id (inside the container).
    pub tid: u32,
    /// Thread name (comm).
    pub name: String,
    /// Registers.
    pub regs: Registers,
    /// Blocked signal mask.
    pub blocked: u64,
    /// Pending signals (thread and process queues).
    pub pending: u64,
    /// Nice value.
    pub nice: i32,
    /// Scheduling policy and priority.
    pub sched: (u32, u32),
    /// Credentials.
    pub creds: Option<Creds>,
}

/// Memory layout fields of `mm_entry`.
#[derive(Debug, Clone, Copy, Default, Serialize, schemars::JsonSchema)]
pub struct MmLayout {
    /// Start of argv strings.
    pub arg_start: u64,
    /// End of argv strings.
    pub arg_end: u64,
    /// Start of environment strings.
    pub env_start: u64,
    /// End of environment strings.
    pub env_end: u64,
    /// Start of the heap.
    pub start_brk: u64,
    /// Current break.
    pub brk: u64,
    /// Start of the stack.
    pub start_stack: u64,
}

/// One process, fully loaded.
#[derive(Debug)]
pub struct Process {
    /// Its tree entry.
    pub tree: TreeEntry,
    /// State.
    pub state: TaskState,
    /// Command name (comm).
    pub comm: String,
    /// Architecture.
    pub arch: Arch,
    /// Kernel task flags (PF_*).
    pub flags: u32,
    /// Exit code (zombies).
    pub exit_code: u32,
    /// Threads, leader first; none for a zombie (CRIU saves none).
    pub threads: Vec<Thread>,
    /// Saved auxiliary vector, without its terminator.
    pub auxv: Vec<(u64, u64)>,
    /// Layout fields.
    pub layout: MmLayout,
    /// The executable, if recorded.
    pub exe: Option<Arc<MappedFile>>,
    /// Memory; `None` for zombies.
    pub memory: Option<AddressSpace>,
    /// Cgroups of the leader: (controllers, path), from cgroup.img.
    pub cgroups: Vec<(String, String)>,
}

impl Process {
    /// Pid.
    pub fn pid(&self) -> u32 {
        self.tree.pid
    }

    /// The leader's credentials.
    pub fn creds(&self) -> Creds {
        self.threads
            .first()
            .and_then(|t| t.creds)
            .unwrap_or_default()
    }

    /// argv as the process had it (read from its memory), if readable.
    pub fn args(&self) -> Option<Vec<String>> {
        self.strings(self.layout.arg_start, self.layout.arg_end)
    }

    /// Environment, as `NAME=value` strings read from memory, if readable.
    pub fn environ(&self) -> Option<Vec<String>> {
        self.strings(self.layout.env_start, self.layout.env_end)
    }

    fn strings(&self, start: u64, end: u64) -> Option<Vec<String>> {
        let mem = self.memory.as_ref()?;
        if end <= start || end - start > 1 << 20 {
            return None;
        }
        let mut buf = vec![0u8; (end - start) as usize];
        let missing = mem.read(start, &mut buf).ok()?;
        if !missing.is_empty() {
            return None;
        }
        let buf = buf.strip_suffix(&[0]).unwrap_or(&buf);
        Some(
            buf.split(|b| *b == 0)
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect(),
        )
    }
}

/// A checkpoint opened for reading.
pub struct Checkpoint {
    images: ImageDir,
    rootfs: RootFs,
    /// The process tree, in pstree.img order.
    pub tree: Vec<TreeEntry>,
    /// CRIU image format version (inventory.img).
    pub img_version: Option<u32>,
    /// Page compression, as inventory.img records it.
    pub compression: Option<Compression>,
    /// Byte order of the machine that was checkpointed (from inventory.img's magic,
    /// else pstree.img's): raw words in the images are in it.
    pub byte_order: ByteOrder,
    files: HashMap<u32, pb::FileEntry>,
    memfd_inodes: HashMap<u64, pb::MemfdInodeEntry>,
    /// Deleted files: reg file id -> (remap id, remap type).
    remaps: HashMap<u32, (u32, u32)>,
}

/// remap_type of a deleted file whose content CRIU copied into a ghost image.
const GHOST: u32 = 1;
/// Legacy encoding of GHOST: the top bit of remap_id.
const REMAP_GHOST_BIT: u32 = 1 << 31;

impl Checkpoint {
    /// Opens a checkpoint and reads its global images.
    pub fn open(input: &Input, opts: &OpenOptions) -> Result<Checkpoint> {
        let archive = Arc::new(Archive::open(input, &opts.limits)?);
        let images = ImageDir::new(archive.clone())?;
        let inventory = images.read("inventory.img", magic::INVENTORY)?;
        let inventory_order = inventory.as_ref().map(Image::byte_order);
        let inventory = inventory
            .map(|i| i.single::<pb::InventoryEntry>())
            .transpose()?;
        let img_version = inventory.as_ref().and_then(|i| i.img_version);
        let compression = inventory.as_ref().and_then(Compression::from_inventory);
        let mut pstree = images.require("pstree.img", magic::PSTREE)?;
        let byte_order = inventory_order.unwrap_or(pstree.byte_order());
        let mut tree: Vec<TreeEntry> = Vec::new();
        while let Some(e) = pstree.next_entry::<pb::PstreeEntry>()? {
            let pid = e
                .pid
                .filter(|p| *p != 0)
                .ok_or_else(|| pstree.error("pstree_entry.pid is missing or 0"))?;
            if tree.iter().any(|t| t.pid == pid) {
                return Err(pstree.error(format!("pid {pid} appears twice in the process tree")));
            }
            if e.threads.len() > MAX_THREADS {
                return Err(pstree.error(format!(
                    "{} threads, more than {MAX_THREADS}",
                    e.threads.len()
                )));
            }
            let mut threads = e.threads.clone();
            if threads.is_empty() {
                threads.push(pid);
            }
            tree.push(TreeEntry {
                pid,
                ppid: e.ppid.unwrap_or(0),
                pgid: e.pgid.unwrap_or(0),
                sid: e.sid.unwrap_or(0),
                threads,
            });
        }
        if tree.is_empty() {
            return Err(Error::image(
                images.member_name("pstree.img"),
                "holds no process",
            ));
        }
        let mut files = HashMap::new();
        if let Some(mut img) = images.read("files.img", magic::FILES)? {
            while let Some(f) = img.next_entry::<pb::FileEntry>()? {
                if let Some(id) = f.id {
                    files.insert(id, f);
                }
            }
        }
        let mut memfd_inodes = HashMap::new();
        if let Some(mut img) = images.read("memfd.img", magic::MEMFD_INODE)? {
            while let Some(m) = img.next_entry::<pb::MemfdInodeEntry>()? {
                if let Some(id) = m.inode_id {
                    memfd_inodes.insert(id, m);
                }
            }
        }
        let mut remaps = HashMap::new();
        if let Some(mut img) = images.read("remap-fpath.img", magic::REMAP_FPATH)? {
            while let Some(r) = img.next_entry::<pb::RemapFilePathEntry>()? {
                let (Some(orig), Some(mut id)) = (r.orig_id, r.remap_id) else {
                    continue;
                };
                let mut kind = r.remap_type.unwrap_or(0);
                if id & REMAP_GHOST_BIT != 0 {
                    id &= !REMAP_GHOST_BIT;
                    kind = GHOST;
                }
                remaps.insert(orig, (id, kind));
            }
        }
        let mut image_notes = Vec::new();
        let base = match (&opts.rootfs, &opts.image) {
            (Some(dir), _) => Base::Dir(dir.clone()),
            (None, Some(image)) => {
                // A multi-platform image is read for the checkpoint's architecture.
                let arch = tree
                    .first()
                    .and_then(|t| {
                        let name = format!("core-{}.img", t.pid);
                        images
                            .require(&name, magic::CORE)
                            .ok()?
                            .single::<pb::CoreEntry>()
                            .ok()
                    })
                    .and_then(|c| Arch::from_mtype("", c.mtype).ok());
                let (layered, notes) = crate::rootfs::image::open(image, arch, &opts.limits)?;
                image_notes = notes;
                Base::Image(layered)
            }
            (None, None) => Base::None,
        };
        let mut rootfs = RootFs::new(base, &archive);
        rootfs.add_notes(image_notes);
        let wanted: Vec<(String, Option<u64>)> = files
            .values()
            .filter_map(|f| f.reg.as_ref())
            .filter_map(|r| Some((r.name.clone()?, r.size)))
            .collect();
        rootfs.prefetch(&wanted);
        Ok(Checkpoint {
            images,
            rootfs,
            tree,
            img_version,
            compression,
            byte_order,
            files,
            memfd_inodes,
            remaps,
        })
    }

    /// The container's files (the resolver): for the sysroot, the report and the
    /// inspection commands.
    pub fn rootfs(&self) -> &RootFs {
        &self.rootfs
    }

    /// Where in the archive the CRIU images are (`""` or `"checkpoint/"`).
    pub fn images_prefix(&self) -> &str {
        self.images.prefix()
    }

    /// The archive.
    pub fn archive(&self) -> &Archive {
        self.images.archive()
    }

    /// The open files of process `pid`: descriptors, cwd and root.
    pub fn files(&self, pid: u32) -> Result<files::ProcessFiles> {
        let ids: Option<pb::TaskKobjIdsEntry> = self
            .images
            .read(&format!("ids-{pid}.img"), magic::IDS)?
            .map(|i| i.single())
            .transpose()?;
        let path_of = |id: Option<u32>| {
            let f = self.files.get(&id?)?;
            f.reg.as_ref()?.name.clone()
        };
        let fs: Option<pb::FsEntry> = self
            .images
            .read(&format!("fs-{pid}.img"), magic::FS)?
            .map(|i| i.single())
            .transpose()?;
        let memfd_name = |inode: u32| {
            self.memfd_inodes
                .get(&(inode as u64))
                .and_then(|m| m.name.clone())
        };
        let mut fds = Vec::new();
        if let Some(files_id) = ids.as_ref().and_then(|i| i.files_id) {
            if let Some(mut img) = self
                .images
                .read(&format!("fdinfo-{files_id}.img"), magic::FDINFO)?
            {
                while let Some(e) = img.next_entry::<pb::FdinfoEntry>()? {
                    let file = files::describe(
                        e.id.and_then(|id| self.files.get(&id)),
                        &memfd_name,
                        self.byte_order,
                    );
                    fds.push(files::Fd {
                        fd: e.fd.unwrap_or(0),
                        cloexec: e.flags.unwrap_or(0) & 1 != 0,
                        file,
                    });
                }
            }
        }
        fds.sort_by_key(|f| f.fd);
        Ok(files::ProcessFiles {
            pid,
            cwd: fs.as_ref().and_then(|f| path_of(f.cwd_id)),
            root: fs.as_ref().and_then(|f| path_of(f.root_id)),
            fds,
        })
    }

    /// The architecture of process `pid`, from its core image alone (cheap, for
    /// summaries that don't need the process loaded).
    pub fn arch_of(&self, pid: u32) -> Result<Arch> {
        let name = format!("core-{pid}.img");
        let core: pb::CoreEntry = self.images.require(&name, magic::CORE)?.single()?;
        let member = self.images.member_name(&name);
        let arch = Arch::from_mtype(&member, core.mtype)?;
        self.check_byte_order(&member, arch)?;
        Ok(arch)
    }

    /// The images' byte order must be the architecture's: a big-endian ppc64
    /// checkpoint has ppc64's mtype but none of ppc64le's layouts.
    fn check_byte_order(&self, member: &str, arch: Arch) -> Result<()> {
        let big = self.byte_order == ByteOrder::Big;
        if big == arch.layout().big_endian {
            return Ok(());
        }
        let order = if big { "big" } else { "little" };
        if arch == Arch::Ppc64le {
            return Err(Error::Unsupported(format!(
                "{member}: core_entry.mtype is 4 (PPC64) and the images are big-endian: big-endian ppc64 is not supported, only ppc64le"
            )));
        }
        Err(Error::image(
            member,
            format!(
                "core_entry.mtype says {} but the images are {order}-endian",
                arch.name()
            ),
        ))
    }

    /// The controllers and paths of cgroup set `id` in cgroup.img (empty if either
    /// is missing: older dumps and `--manage-cgroups=ignore` have none).
    fn cgroups(&self, id: Option<u32>) -> Vec<(String, String)> {
        let Some(id) = id else { return Vec::new() };
        let Ok(Some(img)) = self.images.read("cgroup.img", magic::CGROUP) else {
            return Vec::new();
        };
        let Ok(entry) = img.single::<pb::CgroupEntry>() else {
            return Vec::new();
        };
        entry
            .sets
            .into_iter()
            .find(|s| s.id == Some(id))
            .map(|s| {
                s.ctls
                    .into_iter()
                    .map(|c| (c.name.unwrap_or_default(), c.path.unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A zombie: CRIU writes its core-<pid>.img with the task part only (state,
    /// exit code, comm; no registers, no threads) and no memory images. Its
    /// pstree.img thread ids can't be trusted: CRIU 4.2 leaves them uninitialised.
    fn zombie(&self, mut tree: TreeEntry, member: &str, core: &pb::CoreEntry) -> Result<Process> {
        let arch = Arch::from_mtype(member, core.mtype)?;
        let tc = core.tc.as_ref();
        tree.threads = vec![tree.pid];
        Ok(Process {
            tree,
            state: TaskState::Zombie,
            comm: tc.and_then(|t| t.comm.clone()).unwrap_or_default(),
            arch,
            flags: tc.and_then(|t| t.flags).unwrap_or(0),
            exit_code: tc.and_then(|t| t.exit_code).unwrap_or(0),
            threads: Vec::new(),
            auxv: Vec::new(),
            layout: MmLayout::default(),
            exe: None,
            memory: None,
            cgroups: Vec::new(),
        })
    }

    /// Loads process `pid` completely.
    pub fn process(&self, pid: u32) -> Result<Process> {
        let tree = self
            .tree
            .iter()
            .find(|t| t.pid == pid)
            .ok_or_else(|| Error::Usage(format!("no process {pid} in the checkpoint")))?
            .clone();
        // The leader's record is core-<pid>.img, and it carries the task-wide part.
        let name = format!("core-{pid}.img");
        let leader: pb::CoreEntry = self.images.require(&name, magic::CORE)?.single()?;
        let leader_member = self.images.member_name(&name);
        if leader.tc.as_ref().and_then(|tc| tc.task_state) == Some(ZOMBIE) {
            return self.zombie(tree, &leader_member, &leader);
        }
        let mut cores = vec![(pid, leader_member, leader)];
        for tid in tree.threads.iter().filter(|t| **t != pid) {
            let name = format!("core-{tid}.img");
            let Some(img) = self.images.read(&name, magic::CORE)? else {
                return Err(Error::image(
                    self.images.member_name(&name),
                    format!(
                        "missing from the checkpoint, though pstree.img lists thread {tid} in process {pid}"
                    ),
                ));
            };
            cores.push((*tid, self.images.member_name(&name), img.single()?));
        }
        let (_, leader_member, leader) = &cores[0];
        let tc = leader.tc.clone().ok_or_else(|| {
            Error::image(
                leader_member,
                "core_entry.tc (task core) is missing in the leader",
            )
        })?;
        let arch = Arch::of_core(leader_member, leader)?;
        self.check_byte_order(leader_member, arch)?;
        let state = TaskState::from_criu(tc.task_state);
        let shared_pending = pending_mask(tc.signals_s.as_ref(), self.byte_order);
        let mut threads = Vec::new();
        for (tid, member, core) in &cores {
            let a = Arch::of_core(member, core)?;
            if a != arch {
                return Err(Error::image(
                    member,
                    format!("core_entry.mtype {} differs from the leader's", a.name()),
                ));
            }
            let tcore = core.thread_core.clone().unwrap_or_default();
            let name = tcore
                .comm
                .clone()
                .filter(|c| !c.is_empty())
                .or_else(|| (*tid == pid).then(|| tc.comm.clone()).flatten())
                .unwrap_or_default();
            let blocked = tcore
                .blk_sigset
                .or((*tid == pid).then_some(tc.blk_sigset).flatten())
                .unwrap_or(0);
            let creds = tcore.creds.as_ref().map(|c| Creds {
                uid: [c.uid, c.euid, c.suid, c.fsuid].map(|v| v.unwrap_or(0)),
                gid: [c.gid, c.egid, c.sgid, c.fsgid].map(|v| v.unwrap_or(0)),
                caps: [&c.cap_eff, &c.cap_prm, &c.cap_inh, &c.cap_bnd].map(|w| cap_mask(w)),
            });
            threads.push(Thread {
                tid: *tid,
                name,
                regs: Registers::decode(member, arch, core)?,
                blocked,
                pending: pending_mask(tcore.signals_p.as_ref(), self.byte_order) | shared_pending,
                nice: tcore.sched_nice.unwrap_or(0),
                sched: (
                    tcore.sched_policy.unwrap_or(0),
                    tcore.sched_prio.unwrap_or(0),
                ),
                creds,
            });
        }
        let mut process = Process {
            tree,
            state,
            comm: tc.comm.clone().unwrap_or_default(),
            arch,
            flags: tc.flags.unwrap_or(0),
            exit_code: tc.exit_code.unwrap_or(0),
            threads,
            auxv: Vec::new(),
            layout: MmLayout::default(),
            exe: None,
            memory: None,
            cgroups: self.cgroups(
                cores[0]
                    .2
                    .thread_core
                    .as_ref()
                    .and_then(|t| t.cg_set)
                    .or(tc.cg_set),
            ),
        };
        if state == TaskState::Zombie {
            return Ok(process);
        }
        let mm_name = format!("mm-{pid}.img");
        let mm: pb::MmEntry = self.images.require(&mm_name, magic::MM)?.single()?;
        let mm_member = self.images.member_name(&mm_name);
        let auxv_words = &mm.mm_saved_auxv;
        let word_max = arch.layout().word_max();
        let packed = arch == Arch::I386;
        if let Some(i) = auxv_words.iter().position(|w| *w > word_max && !packed) {
            return Err(Error::image(
                &mm_member,
                format!(
                    "mm_saved_auxv[{i}] is {:#x}, wider than a word of a 32-bit ({}) task",
                    auxv_words[i],
                    arch.name()
                ),
            ));
        }
        process.auxv = if arch == Arch::I386 {
            // A 32-bit task's auxv is pairs of 32-bit words; /proc/PID/auxv hands
            // it out as the kernel's 64-bit words and x86-64 CRIU stores those: one
            // entry per word, the type in its low half.
            auxv_words
                .iter()
                .map(|w| (w & 0xffff_ffff, w >> 32))
                .take_while(|(t, _)| *t != 0)
                .collect()
        } else {
            auxv_words
                .chunks_exact(2)
                .map(|p| (p[0], p[1]))
                .take_while(|(t, _)| *t != 0)
                .collect()
        };
        let page_size = process
            .auxv
            .iter()
            .find(|(t, _)| *t == 6)
            .map(|(_, v)| *v)
            .unwrap_or(4096);
        if !page_size.is_power_of_two() || !(4096..=1 << 16).contains(&page_size) {
            return Err(Error::image(
                &mm_member,
                format!("AT_PAGESZ in mm_saved_auxv is {page_size}, not a page size"),
            ));
        }
        process.layout = MmLayout {
            arg_start: mm.mm_arg_start.unwrap_or(0),
            arg_end: mm.mm_arg_end.unwrap_or(0),
            env_start: mm.mm_env_start.unwrap_or(0),
            env_end: mm.mm_env_end.unwrap_or(0),
            start_brk: mm.mm_start_brk.unwrap_or(0),
            brk: mm.mm_brk.unwrap_or(0),
            start_stack: mm.mm_start_stack.unwrap_or(0),
        };
        process.exe = mm.exe_file_id.and_then(|id| self.mapped_file(id));
        let mut vmas = self.vmas(&mm_member, &mm, page_size, word_max)?;
        mark_stack(&mut vmas, process.layout.start_stack);
        let pagemap = Pagemap::load(&self.images, &format!("pagemap-{pid}.img"), page_size)?;
        let mut parents = Vec::new();
        if pagemap
            .as_ref()
            .is_some_and(|p| p.runs.iter().any(|r| r.flags & memory::pe::PARENT != 0))
        {
            let mut dir = self.images.clone();
            loop {
                let Some(parent) = dir.parent()? else { break };
                if parents.len() >= MAX_PARENTS {
                    return Err(Error::image(
                        dir.member_name("parent"),
                        format!("more than {MAX_PARENTS} parent image directories: a cycle?"),
                    ));
                }
                match Pagemap::load(&parent, &format!("pagemap-{pid}.img"), page_size)? {
                    Some(p) => {
                        let more = p.runs.iter().any(|r| r.flags & memory::pe::PARENT != 0);
                        parents.push(p);
                        if !more {
                            break;
                        }
                    }
                    None => break,
                }
                dir = parent;
            }
            if parents.is_empty() {
                return Err(Error::image(
                    self.images.member_name(&format!("pagemap-{pid}.img")),
                    "entries refer to parent images (PE_PARENT), but the checkpoint has no usable parent/ images",
                ));
            }
        }
        if let Some(pm) = &pagemap {
            check_pagemap_inside_vmas(pm, &vmas)?;
        }
        process.memory = Some(AddressSpace {
            page_size,
            vmas,
            pagemap,
            parents,
        });
        Ok(process)
    }

    /// The VMAs of `mm`, checked: page aligned, in order, and (for a 32-bit task,
    /// `word_max` 2^32 - 1) inside its address space, so that every address and page
    /// offset fits the words of its core.
    fn vmas(
        &self,
        member: &str,
        mm: &pb::MmEntry,
        page_size: u64,
        word_max: u64,
    ) -> Result<Vec<Vma>> {
        if mm.vmas.len() > MAX_VMAS {
            return Err(Error::image(
                member,
                format!("{} VMAs, more than {MAX_VMAS}", mm.vmas.len()),
            ));
        }
        let mut out: Vec<Vma> = Vec::with_capacity(mm.vmas.len());
        let mut shmem_cache: HashMap<String, Arc<Pagemap>> = HashMap::new();
        for (i, v) in mm.vmas.iter().enumerate() {
            let st = v.status.unwrap_or(0);
            if st & status::GUARD != 0 {
                continue;
            }
            let err = |d: String| Error::image(member, format!("vmas[{i}]: {d}"));
            let (start, end) = (v.start.unwrap_or(0), v.end.unwrap_or(0));
            if start >= end || start % page_size != 0 || end % page_size != 0 {
                return Err(err(format!(
                    "range {start:#x}-{end:#x} is empty, reversed or not page aligned"
                )));
            }
            if end - 1 > word_max {
                return Err(err(format!(
                    "{start:#x}-{end:#x} ends beyond the 4 GiB address space of a 32-bit task"
                )));
            }
            if let Some(prev) = out.last() {
                if start < prev.end {
                    return Err(err(format!(
                        "{start:#x}-{end:#x} overlaps or precedes the previous VMA ({:#x}-{:#x})",
                        prev.start, prev.end
                    )));
                }
            }
            let pgoff = v.pgoff.unwrap_or(0);
            if pgoff % page_size != 0 || pgoff.checked_add(end - start).is_none() {
                return Err(err(format!(
                    "pgoff {pgoff:#x} is not page aligned or runs past 2^64"
                )));
            }
            if pgoff / page_size > word_max {
                return Err(err(format!(
                    "pgoff {pgoff:#x} is beyond what a 32-bit task's page offset can be"
                )));
            }
            let kind = vma_kind(st);
            let shmid = v.shmid.unwrap_or(0);
            let mut vma = Vma {
                start,
                end,
                pgoff,
                prot: v.prot.unwrap_or(0),
                flags: v.flags.unwrap_or(0),
                status: st,
                madv: v.madv.unwrap_or(0),
                kind,
                file: None,
                shmem: None,
            };
            match kind {
                VmaKind::File | VmaKind::SharedFile => {
                    vma.file = Some(self.mapped_file(shmid as u32).ok_or_else(|| {
                        err(format!("shmid {shmid} names no regular file in files.img"))
                    })?)
                }
                VmaKind::Memfd | VmaKind::Shared | VmaKind::Sysv => {
                    vma.shmem =
                        Some(self.shared_memory(kind, shmid, page_size, &mut shmem_cache)?)
                }
                _ => {}
            }
            out.push(vma);
        }
        Ok(out)
    }

    fn mapped_file(&self, id: u32) -> Option<Arc<MappedFile>> {
        let reg = self.files.get(&id)?.reg.as_ref()?;
        let path = reg.name.clone().unwrap_or_default();
        // CRIU copies the note's bytes into u32 words: each word holds 4 of them
        // in the dumping machine's order.
        let build_id: Vec<u8> = reg
            .build_id
            .iter()
            .flat_map(|w| self.byte_order.u32_bytes(*w))
            .collect();
        let remap = reg.id.and_then(|i| self.remaps.get(&i)).copied();
        let deleted = remap.is_some();
        let content = match remap {
            Some((remap_id, GHOST)) => self.ghost(remap_id),
            Some((_, kind)) => Err(format!(
                "deleted while mapped, and CRIU kept no copy ({} remap)",
                if kind == 0 { "linked" } else { "procfs" }
            )),
            None => self.rootfs.open(&Expect {
                path: &path,
                size: reg.size,
                build_id: &build_id,
            }),
        };
        Some(Arc::new(MappedFile {
            id,
            deleted,
            path,
            size: reg.size,
            build_id,
            content,
        }))
    }

    /// The content of a deleted file from its ghost image: the raw rest of the
    /// image, or chunks (offset, length, bytes) of a sparse file.
    fn ghost(&self, remap_id: u32) -> std::result::Result<FileData, String> {
        let load = || -> Result<FileData> {
            let name = format!("ghost-file-{remap_id:x}.img");
            let mut img = BlobImage::open(self.images.raw(&name)?, magic::GHOST_FILE)?;
            let head: pb::GhostFileEntry = img
                .next_entry()?
                .ok_or_else(|| Error::image(img.blob().name(), "holds no ghost_file_entry"))?;
            if head.chunks != Some(true) {
                let rest = img.blob().len() - img.pos();
                let blob = img.extra(rest)?;
                return Ok(FileData::whole(blob));
            }
            let mut chunks: Vec<(u64, Blob)> = Vec::new();
            while let Some(c) = img.next_entry::<pb::GhostChunkEntry>()? {
                let (off, len) = (c.off.unwrap_or(0), c.len.unwrap_or(0));
                if chunks.last().is_some_and(|(o, b)| off < o + b.len()) {
                    return Err(Error::image(
                        img.blob().name(),
                        format!("chunk at {off} overlaps the previous one"),
                    ));
                }
                chunks.push((off, img.extra(len)?));
            }
            let size = head
                .size
                .unwrap_or_else(|| chunks.last().map_or(0, |(o, b)| o + b.len()));
            Ok(FileData {
                size,
                chunks,
                in_root: None,
                from: None,
            })
        };
        load().map_err(|e| format!("deleted while mapped; its ghost image is unusable: {e}"))
    }

    fn shared_memory(
        &self,
        kind: VmaKind,
        shmid: u64,
        page_size: u64,
        cache: &mut HashMap<String, Arc<Pagemap>>,
    ) -> Result<SharedMemory> {
        let mut load = |file: String| -> Result<ShmemPages> {
            if let Some(p) = cache.get(&file) {
                return Ok(ShmemPages::Pagemap(p.clone()));
            }
            Ok(match Pagemap::load(&self.images, &file, page_size)? {
                Some(p) => {
                    let p = Arc::new(p);
                    cache.insert(file, p.clone());
                    ShmemPages::Pagemap(p)
                }
                None => ShmemPages::Missing(format!("{file} is not in the checkpoint")),
            })
        };
        match kind {
            VmaKind::Memfd => {
                let inode = self
                    .files
                    .get(&(shmid as u32))
                    .and_then(|f| f.memfd.as_ref())
                    .and_then(|m| m.inode_id)
                    .and_then(|i| self.memfd_inodes.get(&(i as u64)));
                let Some(inode) = inode else {
                    return Ok(SharedMemory {
                        name: format!("memfd file {shmid}"),
                        pages: ShmemPages::Missing(format!(
                            "files.img id {shmid} names no memfd in memfd.img"
                        )),
                    });
                };
                let raw = inode.name.clone().unwrap_or_default();
                let name = if raw == "/dev/zero" {
                    "/dev/zero (deleted)".to_string()
                } else {
                    format!("/memfd:{raw} (deleted)")
                };
                let pages = load(format!("pagemap-shmem-{}.img", inode.shmid.unwrap_or(0)))?;
                Ok(SharedMemory { name, pages })
            }
            VmaKind::Sysv => Ok(SharedMemory {
                name: format!("/SYSV{shmid:08x} (deleted)"),
                pages: self.sysv_pages(shmid, &mut load)?,
            }),
            _ => Ok(SharedMemory {
                name: "/dev/zero (deleted)".into(),
                pages: load(format!("pagemap-shmem-{shmid}.img"))?,
            }),
        }
    }

    fn sysv_pages(
        &self,
        shmid: u64,
        load: &mut dyn FnMut(String) -> Result<ShmemPages>,
    ) -> Result<ShmemPages> {
        for name in self.images.list("ipcns-shm-") {
            let mut img = self.images.require(&name, magic::IPCNS_SHM)?;
            while let Some(e) = img.next_entry::<pb::IpcShmEntry>()? {
                let id = e.desc.as_ref().and_then(|d| d.id).unwrap_or(u32::MAX) as u64;
                let size = e.size.unwrap_or(0);
                if e.in_pagemaps == Some(true) {
                    if id == shmid {
                        return load(format!("pagemap-shmem-{id}.img"));
                    }
                    continue;
                }
                let padded = usize::try_from(size.div_ceil(4) * 4)
                    .map_err(|_| img.error("size is absurd"))?;
                let (at, _) = img.extra(padded)?;
                if id == shmid {
                    let blob = self.images.raw(&name)?.slice(at as u64, size)?;
                    return Ok(ShmemPages::Raw(blob));
                }
            }
        }
        Ok(ShmemPages::Missing(format!(
            "SysV segment {shmid} is not in any ipcns-shm image"
        )))
    }
}

/// Signal bits of a signal queue (signo from each raw siginfo, an int in the
/// dumping machine's byte order).
fn pending_mask(q: Option<&pb::SignalQueueEntry>, order: ByteOrder) -> u64 {
    q.map(|q| {
        q.signals
            .iter()
            .filter_map(|s| s.siginfo.as_ref())
            .filter_map(|b| b.get(..4).map(|w| order.u32(w.try_into().unwrap()) as i32))
            .filter(|s| (1..=64).contains(s))
            .fold(0u64, |m, s| m | 1 << (s - 1))
    })
    .unwrap_or(0)
}

fn vma_kind(st: u32) -> VmaKind {
    use status::*;
    if st & VDSO != 0 {
        VmaKind::Vdso
    } else if st & VVAR != 0 {
        VmaKind::Vvar
    } else if st & VSYSCALL != 0 {
        VmaKind::Vsyscall
    } else if st & (SOCKET | UPROBES) != 0 {
        VmaKind::Other
    } else if st & SYSVIPC != 0 {
        VmaKind::Sysv
    } else if st & MEMFD != 0 {
        VmaKind::Memfd
    } else if st & ANON_SHARED != 0 {
        VmaKind::Shared
    } else if st & FILE_SHARED != 0 {
        VmaKind::SharedFile
    } else if st & FILE_PRIVATE != 0 {
        VmaKind::File
    } else if st & HEAP != 0 {
        VmaKind::Heap
    } else if st & STACK != 0 {
        VmaKind::Stack
    } else if st & (ANON_PRIVATE | AIORING | SHSTK) != 0 {
        VmaKind::Anon
    } else {
        VmaKind::Other
    }
}

/// CRIU marks the heap but not the main stack; name it as /proc/PID/maps does:
/// the private anonymous mapping holding `mm.start_stack`.
fn mark_stack(vmas: &mut [Vma], start_stack: u64) {
    let i = vmas.partition_point(|v| v.end <= start_stack);
    if let Some(v) = vmas.get_mut(i) {
        if v.start <= start_stack && v.kind == VmaKind::Anon {
            v.kind = VmaKind::Stack;
        }
    }
}

/// Every saved page must belong to a VMA: pages outside any are a damaged image.
fn check_pagemap_inside_vmas(pm: &Pagemap, vmas: &[Vma]) -> Result<()> {
    for run in &pm.runs {
        let mut at = run.vaddr;
        let end = run.vaddr + run.len;
        while at < end {
            let j = vmas.partition_point(|v| v.end <= at);
            match vmas.get(j) {
                Some(v) if v.start <= at => at = v.end.min(end),
                _ => {
                    return Err(Error::image(
                        &pm.member,
                        format!(
                            "entry {}: pages {:#x}-{end:#x} are outside every VMA (first stray address {at:#x})",
                            run.entry,
                            run.vaddr
                        ),
                    ))
                }
            }
        }
    }
    Ok(())
}
