//! ELF note encoding and the process-wide note payloads, byte for byte as Linux's
//! fs/binfmt_elf.c writes them, in the core's class and byte order (the 32-bit
//! structures are those of include/linux/elfcore.h built for a 32-bit ABI).

use super::ElfLayout;
use crate::model::dump::DumpPolicy;
use crate::model::memory::VmaKind;
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
    pub fn encode(&self, layout: ElfLayout, out: &mut Vec<u8>) {
        let namesz = self.name.len() + 1;
        layout.u32(out, namesz as u32);
        layout.u32(out, self.desc.len() as u32);
        layout.u32(out, self.ntype);
        out.extend_from_slice(self.name.as_bytes());
        out.resize(out.len() + namesz.next_multiple_of(4) - self.name.len(), 0);
        out.extend_from_slice(&self.desc);
        out.resize(out.len().next_multiple_of(4), 0);
    }
}

/// NT_PRSTATUS for `t`: signal state, ids, registers, `pr_fpvalid`.
///
/// `struct elf_prstatus_common` is 112 bytes with 64-bit longs and 72 with 32-bit
/// ones (the signal words and the four `timeval`s shrink); `pr_reg` follows it,
/// then the int `pr_fpvalid`, and the whole is padded to the alignment of a long.
pub fn prstatus(p: &Process, t: &Thread, l: ElfLayout) -> Note {
    let (regs, fpvalid) = t.regs.prstatus();
    let w = l.word();
    let common = 16 + 2 * w + 16 + 8 * w;
    let mut d = vec![0u8; (common + regs.len() + 4).next_multiple_of(w)];
    // As the kernel's fill_prstatus: pr_info.si_signo and pr_cursig, in every thread.
    l.put_u32(&mut d, 0, SIGSTOP);
    l.put_u16(&mut d, 12, SIGSTOP as u16);
    l.put_word(&mut d, 16, t.pending);
    l.put_word(&mut d, 16 + w, t.blocked);
    for (i, id) in [t.tid, p.tree.ppid, p.tree.pgid, p.tree.sid]
        .into_iter()
        .enumerate()
    {
        l.put_u32(&mut d, 16 + 2 * w + 4 * i, id);
    }
    d[common..common + regs.len()].copy_from_slice(&regs);
    l.put_u32(&mut d, common + regs.len(), fpvalid as u32);
    Note {
        name: "CORE",
        ntype: NT_PRSTATUS,
        desc: d,
    }
}

/// NT_PRPSINFO: state, ids, comm, and the first 79 bytes of the argument area.
///
/// 136 bytes with 64-bit longs. The 32-bit ABIs ck2core writes (arm, i386) have a
/// 16-bit `__kernel_uid_t`, which makes it 124 bytes.
pub fn prpsinfo(p: &Process, args_area: &[u8], l: ElfLayout) -> Note {
    let w = l.word();
    let uid16 = !l.class64;
    let ids_at = 2 * w + if uid16 { 4 } else { 8 };
    let fname_at = ids_at + 16;
    let mut d = vec![0u8; (fname_at + 16 + 80).next_multiple_of(w)];
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
    // pr_flag starts at the first long boundary after the four chars.
    l.put_word(&mut d, w, p.flags as u64);
    let creds = p.creds();
    if uid16 {
        // As the kernel's high2lowuid: ids above 65535 become the overflow id.
        let low = |v: u32| u16::try_from(v).unwrap_or(65534);
        l.put_u16(&mut d, 2 * w, low(creds.uid[0]));
        l.put_u16(&mut d, 2 * w + 2, low(creds.gid[0]));
    } else {
        l.put_u32(&mut d, 2 * w, creds.uid[0]);
        l.put_u32(&mut d, 2 * w + 4, creds.gid[0]);
    }
    for (i, id) in [p.pid(), p.tree.ppid, p.tree.pgid, p.tree.sid]
        .into_iter()
        .enumerate()
    {
        l.put_u32(&mut d, ids_at + 4 * i, id);
    }
    let comm = p.comm.as_bytes();
    let n = comm.len().min(15);
    d[fname_at..fname_at + n].copy_from_slice(&comm[..n]);
    // As the kernel does: up to 79 bytes, every NUL turned into a space.
    let n = args_area.len().min(79);
    for (i, b) in args_area[..n].iter().enumerate() {
        d[fname_at + 16 + i] = if *b == 0 { b' ' } else { *b };
    }
    Note {
        name: "CORE",
        ntype: NT_PRPSINFO,
        desc: d,
    }
}

/// The signal a core says stopped its process: SIGSTOP, 19 on every architecture
/// ck2core writes. CRIU's freeze is what stopped every task, and a core that names
/// no signal makes lldb take it as resumable: it hangs loading it.
const SIGSTOP: u32 = 19;
/// `si_code` of a signal the kernel sent itself, as in the NT_SIGINFO gdb's `gcore`
/// writes for a process it stopped by attaching.
const SI_KERNEL: u32 = 0x80;

/// NT_SIGINFO: SIGSTOP from the kernel (`si_signo`, `si_errno` 0, `si_code`); no
/// sender, address or status.
pub fn siginfo(l: ElfLayout) -> Note {
    let mut desc = vec![0; 128];
    l.put_u32(&mut desc, 0, SIGSTOP);
    l.put_u32(&mut desc, 8, SI_KERNEL);
    Note {
        name: "CORE",
        ntype: NT_SIGINFO,
        desc,
    }
}

/// NT_AUXV: the saved pairs, always terminated by AT_NULL (CRIU truncates it).
pub fn auxv(p: &Process, l: ElfLayout) -> Note {
    let mut d = Vec::with_capacity((p.auxv.len() + 1) * 2 * l.word());
    for (t, v) in p.auxv.iter().chain(std::iter::once(&(0, 0))) {
        l.word_push(&mut d, *t);
        l.word_push(&mut d, *v);
    }
    Note {
        name: "CORE",
        ntype: NT_AUXV,
        desc: d,
    }
}

/// NT_FILE: every mapping of a regular file the policy lists, in address order,
/// under the name it gives. Shared memory (memfd, /dev/zero, SysV) is left out: its content is in the
/// core, and gdb would only warn that it cannot open such a file.
pub fn nt_file(p: &Process, l: ElfLayout, policy: &DumpPolicy) -> Note {
    let mut entries = Vec::new();
    let mut names = Vec::new();
    let mut count = 0u64;
    let ps = p.memory.as_ref().map_or(4096, |m| m.page_size);
    for v in p.memory.iter().flat_map(|m| &m.vmas) {
        let (VmaKind::File | VmaKind::SharedFile) = v.kind else {
            continue;
        };
        let Some(name) = v.file.as_ref().and_then(|f| policy.file_name(f)) else {
            continue;
        };
        l.word_push(&mut entries, v.start);
        l.word_push(&mut entries, v.end);
        l.word_push(&mut entries, v.pgoff / ps);
        names.extend_from_slice(name.as_bytes());
        names.push(0);
        count += 1;
    }
    let mut d = Vec::with_capacity(2 * l.word() + entries.len() + names.len());
    l.word_push(&mut d, count);
    l.word_push(&mut d, ps);
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
