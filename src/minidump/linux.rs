//! Breakpad's Linux streams: copies of what /proc/PID/{maps,status,auxv,cmdline,
//! environ} showed, rebuilt from the checkpoint (the process is gone; its images
//! hold the same facts).

use crate::model::memory::AddressSpace;
use crate::model::{Process, TaskState};

/// Most bytes of argv or environment copied (the kernel's own limit for both
/// together is far lower on most systems).
const MAX_REGION: u64 = 1 << 20;

/// /proc/PID/maps text. The checkpoint has no device or inode numbers for
/// mappings, so those columns are `00:00 0`, as for anonymous memory.
pub fn maps(mem: &AddressSpace) -> String {
    let mut s = String::new();
    for v in &mem.vmas {
        let b = |bit: u32, c: char| if v.prot & bit != 0 { c } else { '-' };
        let line = format!(
            "{:08x}-{:08x} {}{}{}{} {:08x} 00:00 0",
            v.start,
            v.end,
            b(1, 'r'),
            b(2, 'w'),
            b(4, 'x'),
            if v.flags & 1 != 0 { 's' } else { 'p' },
            v.pgoff
        );
        let name = v.name();
        if name.is_empty() {
            // As the kernel writes it: the inode column, then one space.
            s += &line;
            s.push(' ');
        } else {
            // The kernel pads to column 72, then a space, then the name.
            s += &format!("{line:<72} {name}");
        }
        s.push('\n');
    }
    s
}

/// /proc/PID/status lines for what the checkpoint records.
pub fn status(p: &Process) -> String {
    let leader = &p.threads[0];
    let creds = p.creds();
    let ids = |v: [u32; 4]| format!("{}\t{}\t{}\t{}", v[0], v[1], v[2], v[3]);
    let mut s = format!("Name:\t{}\n", p.comm);
    // CRIU's "alive" does not say running or sleeping; only a stop is certain.
    if p.state == TaskState::Stopped {
        s += "State:\tT (stopped)\n";
    }
    s += &format!(
        "Tgid:\t{pid}\nPid:\t{pid}\nPPid:\t{}\nUid:\t{}\nGid:\t{}\nThreads:\t{}\n",
        p.tree.ppid,
        ids(creds.uid),
        ids(creds.gid),
        p.threads.len(),
        pid = p.pid(),
    );
    s += &format!(
        "SigPnd:\t{:016x}\nSigBlk:\t{:016x}\n",
        leader.pending, leader.blocked
    );
    if leader.creds.is_some() {
        let [eff, prm, inh, bnd] = creds.caps;
        s += &format!(
            "CapInh:\t{inh:016x}\nCapPrm:\t{prm:016x}\nCapEff:\t{eff:016x}\nCapBnd:\t{bnd:016x}\n"
        );
    }
    s
}

/// /proc/PID/auxv: the saved vector in the process's words, AT_NULL-terminated.
pub fn auxv(p: &Process) -> Vec<u8> {
    let layout = p.arch.layout();
    let mut out = Vec::new();
    for (t, v) in p.auxv.iter().chain([&(0, 0)]) {
        layout.word_push(&mut out, *t);
        layout.word_push(&mut out, *v);
    }
    out
}

/// The bytes of `[start, end)` of memory (argv or environment, as
/// /proc/PID/cmdline and environ show them), if the checkpoint has all of them.
pub fn region(mem: &AddressSpace, start: u64, end: u64) -> Option<Vec<u8>> {
    if end <= start || end - start > MAX_REGION {
        return None;
    }
    let mut buf = vec![0u8; (end - start) as usize];
    match mem.read(start, &mut buf) {
        Ok(missing) if missing.is_empty() => Some(buf),
        _ => None,
    }
}
