//! ELF note encoding and the process-wide note payloads, byte for byte as Linux's
//! fs/binfmt_elf.c writes them (64-bit little-endian layouts).

use crate::model::memory::{MappedFile, VmaKind};
use crate::model::{Process, TaskState, Thread};

/// NT_PRSTATUS
pub const NT_PRSTATUS: u32 = 1;
/// NT_PRFPREG
pub const NT_PRFPREG: u32 = 2;
/// NT_PRPSINFO
pub const NT_PRPSINFO: u32 = 3;
/// NT_AUXV
pub const NT_AUXV: u32 = 6;
/// NT_X86_XSTATE
pub const NT_X86_XSTATE: u32 = 0x202;
/// NT_SIGINFO
pub const NT_SIGINFO: u32 = 0x5349_4749;
/// NT_FILE
pub const NT_FILE: u32 = 0x4649_4c45;
/// ck2core's own note (owner "CK2CORE"): JSON metadata for the gdb helper. A type
/// no Linux or bfd note uses, so readelf and gdb show it as unknown and move on.
pub const NT_CK2CORE_METADATA: u32 = 0x434b_3201;

/// One note: owner name, type, payload.
pub struct Note {
    /// Owner ("CORE", "LINUX").
    pub name: &'static str,
    /// Type.
    pub ntype: u32,
    /// Payload, exactly `n_descsz` bytes.
    pub desc: Vec<u8>,
}

impl Note {
    /// Appends the encoded note: header, name and payload each padded to 4 bytes
    /// (core notes are 4-byte aligned even in ELFCLASS64 files).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let namesz = self.name.len() + 1;
        out.extend_from_slice(&(namesz as u32).to_le_bytes());
        out.extend_from_slice(&(self.desc.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.ntype.to_le_bytes());
        out.extend_from_slice(self.name.as_bytes());
        out.resize(out.len() + namesz.next_multiple_of(4) - self.name.len(), 0);
        out.extend_from_slice(&self.desc);
        out.resize(out.len().next_multiple_of(4), 0);
    }
}

fn put<const N: usize>(buf: &mut [u8], at: usize, v: [u8; N]) {
    buf[at..at + N].copy_from_slice(&v);
}

/// NT_PRSTATUS for `t`: signal state, ids, registers, `pr_fpvalid`.
pub fn prstatus(p: &Process, t: &Thread) -> Note {
    let (regs, fpvalid) = t.regs.prstatus();
    let mut d = vec![0u8; 112 + regs.len() + 8];
    put(&mut d, 16, t.pending.to_le_bytes());
    put(&mut d, 24, t.blocked.to_le_bytes());
    put(&mut d, 32, t.tid.to_le_bytes());
    put(&mut d, 36, p.tree.ppid.to_le_bytes());
    put(&mut d, 40, p.tree.pgid.to_le_bytes());
    put(&mut d, 44, p.tree.sid.to_le_bytes());
    d[112..112 + regs.len()].copy_from_slice(&regs);
    put(&mut d, 112 + regs.len(), (fpvalid as u32).to_le_bytes());
    Note {
        name: "CORE",
        ntype: NT_PRSTATUS,
        desc: d,
    }
}

/// NT_PRPSINFO: state, ids, comm, and the first 79 bytes of the argument area.
pub fn prpsinfo(p: &Process, args_area: &[u8]) -> Note {
    let mut d = vec![0u8; 136];
    let state: u8 = match p.state {
        TaskState::Alive => 1,
        TaskState::Stopped => 3,
        TaskState::Zombie => 4,
        TaskState::Unknown => 0,
    };
    d[0] = state;
    d[1] = b"RSDTZW"[state as usize];
    d[2] = (p.state == TaskState::Zombie) as u8;
    d[3] = p.threads.first().map_or(0, |t| t.nice) as i8 as u8;
    put(&mut d, 8, (p.flags as u64).to_le_bytes());
    let creds = p.creds();
    put(&mut d, 16, creds.uid[0].to_le_bytes());
    put(&mut d, 20, creds.gid[0].to_le_bytes());
    put(&mut d, 24, p.pid().to_le_bytes());
    put(&mut d, 28, p.tree.ppid.to_le_bytes());
    put(&mut d, 32, p.tree.pgid.to_le_bytes());
    put(&mut d, 36, p.tree.sid.to_le_bytes());
    let comm = p.comm.as_bytes();
    let n = comm.len().min(15);
    d[40..40 + n].copy_from_slice(&comm[..n]);
    // As the kernel does: up to 79 bytes, every NUL turned into a space.
    let n = args_area.len().min(79);
    for (i, b) in args_area[..n].iter().enumerate() {
        d[56 + i] = if *b == 0 { b' ' } else { *b };
    }
    Note {
        name: "CORE",
        ntype: NT_PRPSINFO,
        desc: d,
    }
}

/// NT_SIGINFO: a checkpoint has no fatal signal, so an empty siginfo.
pub fn siginfo() -> Note {
    Note {
        name: "CORE",
        ntype: NT_SIGINFO,
        desc: vec![0; 128],
    }
}

/// NT_AUXV: the saved pairs, always terminated by AT_NULL (CRIU truncates it).
pub fn auxv(p: &Process) -> Note {
    let mut d = Vec::with_capacity((p.auxv.len() + 1) * 16);
    for (t, v) in p.auxv.iter().chain(std::iter::once(&(0, 0))) {
        d.extend_from_slice(&t.to_le_bytes());
        d.extend_from_slice(&v.to_le_bytes());
    }
    Note {
        name: "CORE",
        ntype: NT_AUXV,
        desc: d,
    }
}

/// NT_FILE: every mapping of a regular file, in address order, for which `keep` is
/// true. Shared memory (memfd, /dev/zero, SysV) is left out: its content is in the
/// core, and gdb would only warn that it cannot open such a file.
pub fn nt_file(p: &Process, keep: impl Fn(&MappedFile) -> bool) -> Note {
    let mut entries = Vec::new();
    let mut names = Vec::new();
    let mut count = 0u64;
    let ps = p.memory.as_ref().map_or(4096, |m| m.page_size);
    for v in p.memory.iter().flat_map(|m| &m.vmas) {
        let (VmaKind::File | VmaKind::SharedFile) = v.kind else {
            continue;
        };
        let Some(f) = v.file.as_ref().filter(|f| keep(f)) else {
            continue;
        };
        entries.extend_from_slice(&v.start.to_le_bytes());
        entries.extend_from_slice(&v.end.to_le_bytes());
        entries.extend_from_slice(&(v.pgoff / ps).to_le_bytes());
        names.extend_from_slice(f.path.as_bytes());
        names.push(0);
        count += 1;
    }
    let mut d = Vec::with_capacity(16 + entries.len() + names.len());
    d.extend_from_slice(&count.to_le_bytes());
    d.extend_from_slice(&ps.to_le_bytes());
    d.extend_from_slice(&entries);
    d.extend_from_slice(&names);
    Note {
        name: "CORE",
        ntype: NT_FILE,
        desc: d,
    }
}

/// The register notes that follow a thread's NT_PRSTATUS.
pub fn thread_regsets(p: &Process, t: &Thread) -> Vec<Note> {
    let hwcap = p.auxv.iter().find(|(k, _)| *k == 16).map_or(0, |(_, v)| *v);
    t.regs
        .regsets(hwcap)
        .into_iter()
        .map(|r| Note {
            name: r.name,
            ntype: r.ntype,
            desc: r.data,
        })
        .collect()
}
