//! A small builder of synthetic CRIU image directories, for what the real fixtures
//! don't cover. It encodes with the same message definitions ck2core decodes with,
//! so it tests the logic above the wire format; the real fixtures test the wire.
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;

use ck2core::images::{magic, pb};
use prost::Message;

/// Page size of the synthetic process.
pub const PAGE: u64 = 4096;

/// VMA status bits used here.
pub const ANON_PRIVATE: u32 = 1 | 1 << 9;
pub const FILE_PRIVATE: u32 = 1 | 1 << 6;

/// Encodes an image: head magic, type magic, then size-prefixed entries.
pub fn image<M: Message>(type_magic: u32, entries: &[M]) -> Vec<u8> {
    let mut out = Vec::new();
    if type_magic != magic::INVENTORY {
        out.extend_from_slice(&magic::COMMON.to_le_bytes());
    }
    out.extend_from_slice(&type_magic.to_le_bytes());
    for e in entries {
        let b = e.encode_to_vec();
        out.extend_from_slice(&(b.len() as u32).to_le_bytes());
        out.extend_from_slice(&b);
    }
    out
}

/// A pagemap image: head then entries.
pub fn pagemap(pages_id: u32, entries: &[pb::PagemapEntry]) -> Vec<u8> {
    let mut out = image(
        magic::PAGEMAP,
        &[pb::PagemapHead {
            pages_id: Some(pages_id),
        }],
    );
    for e in entries {
        let b = e.encode_to_vec();
        out.extend_from_slice(&(b.len() as u32).to_le_bytes());
        out.extend_from_slice(&b);
    }
    out
}

/// A pagemap entry in CRIU 4.x form (compat_nr_pages 0, flags and nr_pages set).
pub fn run(vaddr: u64, nr_pages: u64, flags: u32) -> pb::PagemapEntry {
    pb::PagemapEntry {
        vaddr: Some(vaddr),
        compat_nr_pages: Some(0),
        in_parent: None,
        flags: Some(flags),
        nr_pages: Some(nr_pages),
        ..Default::default()
    }
}

/// An anonymous private read-write VMA.
pub fn anon_vma(start: u64, end: u64) -> pb::VmaEntry {
    pb::VmaEntry {
        start: Some(start),
        end: Some(end),
        pgoff: Some(0),
        shmid: Some(0),
        prot: Some(3),
        flags: Some(0x22),
        status: Some(ANON_PRIVATE),
        fd: Some(-1),
        madv: Some(0),
        fdflags: Some(0),
    }
}

/// An x86-64 thread core with recognisable registers derived from `tid`.
pub fn x86_core(tid: u32, comm: &str, leader: bool) -> pb::CoreEntry {
    let t = tid as u64;
    let regs = pb::UserX86RegsEntry {
        r15: Some(0xf0f0_0000 + t),
        r14: Some(0xe0e0_0000 + t),
        r13: Some(0xd0d0_0000 + t),
        r12: Some(0xc0c0_0000 + t),
        bp: Some(0x7000_0000_1000),
        bx: Some(0xb0b0_0000 + t),
        r11: Some(0x246),
        r10: Some(0x1010),
        r9: Some(0x0909),
        r8: Some(0x0808),
        ax: Some(0xa0a0_0000 + t),
        cx: Some(0xc1c1),
        dx: Some(0xd1d1),
        si: Some(0x5151),
        di: Some(0xd1d1_0000 + t),
        orig_ax: Some(u64::MAX),
        ip: Some(0x40_1000),
        cs: Some(0x33),
        flags: Some(0x246),
        sp: Some(0x7000_0000_0f00),
        ss: Some(0x2b),
        fs_base: Some(0x7000_0000_0000 + t),
        gs_base: Some(0),
        ds: Some(0),
        es: Some(0),
        fs: Some(0),
        gs: Some(0),
        mode: Some(1),
    };
    let fp = pb::UserX86FpregsEntry {
        cwd: Some(0x37f),
        swd: Some(0),
        twd: Some(0),
        fop: Some(0),
        rip: Some(0),
        rdp: Some(0),
        mxcsr: Some(0x1f80),
        mxcsr_mask: Some(0xffff),
        st_space: vec![0; 32],
        xmm_space: (0..64).map(|i| 0x1111_0000 + i + tid * 0x100).collect(),
        xsave: Some(pb::UserX86XsaveEntry {
            xstate_bv: Some(0x207),
            ymmh_space: (0..64).map(|i| 0x2222_0000 + i).collect(),
            pkru: vec![0x5555_5554, 0],
            ..Default::default()
        }),
    };
    pb::CoreEntry {
        mtype: Some(1),
        thread_info: Some(pb::ThreadInfoX86 {
            clear_tid_addr: Some(0),
            gpregs: Some(regs),
            fpregs: Some(fp),
            tls: vec![],
        }),
        tc: leader.then(|| pb::TaskCoreEntry {
            task_state: Some(1),
            exit_code: Some(0),
            personality: Some(0),
            flags: Some(0x400100),
            blk_sigset: Some(0),
            comm: Some(comm.to_string()),
            ..Default::default()
        }),
        thread_core: Some(pb::ThreadCoreEntry {
            comm: Some(comm.to_string()),
            blk_sigset: Some(0),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// One synthetic process.
#[derive(Clone)]
pub struct Proc {
    pub pid: u32,
    pub ppid: u32,
    pub threads: Vec<u32>,
    pub vmas: Vec<pb::VmaEntry>,
    pub pagemap: Vec<pb::PagemapEntry>,
    pub pages_id: u32,
}

impl Proc {
    /// A single-threaded process with no memory yet.
    pub fn new(pid: u32) -> Proc {
        Proc {
            pid,
            ppid: 0,
            threads: vec![pid],
            vmas: vec![],
            pagemap: vec![],
            pages_id: pid,
        }
    }
}

/// Writes inventory, pstree, cores, mm and pagemaps of `procs` into `dir`. Page
/// contents are written separately (see [`write_pages`]).
pub fn write_images(dir: &Path, procs: &[Proc]) {
    std::fs::create_dir_all(dir).unwrap();
    let put = |name: &str, bytes: Vec<u8>| std::fs::write(dir.join(name), bytes).unwrap();
    put(
        "inventory.img",
        image(
            magic::INVENTORY,
            &[pb::InventoryEntry {
                img_version: Some(2),
                ..Default::default()
            }],
        ),
    );
    write_pstree(dir, procs);
    for p in procs {
        for t in &p.threads {
            put(
                &format!("core-{t}.img"),
                image(magic::CORE, &[x86_core(*t, "synth", *t == p.pid)]),
            );
        }
        let mm = pb::MmEntry {
            mm_arg_start: Some(0),
            mm_arg_end: Some(0),
            mm_saved_auxv: vec![6, PAGE, 9, 0x40_1000],
            vmas: p.vmas.clone(),
            ..Default::default()
        };
        put(&format!("mm-{}.img", p.pid), image(magic::MM, &[mm]));
        put(
            &format!("pagemap-{}.img", p.pid),
            pagemap(p.pages_id, &p.pagemap),
        );
    }
}

/// Writes pstree.img of `procs` into `dir`.
pub fn write_pstree(dir: &Path, procs: &[Proc]) {
    let tree: Vec<pb::PstreeEntry> = procs
        .iter()
        .map(|p| pb::PstreeEntry {
            pid: Some(p.pid),
            ppid: Some(p.ppid),
            pgid: Some(p.pid),
            sid: Some(p.pid),
            threads: p.threads.clone(),
        })
        .collect();
    put(dir, "pstree.img", magic::PSTREE, &tree);
}

/// Writes `pages-<id>.img` of `n` pages, page `i` filled by `fill(i, page)`, in
/// 1 MiB writes so that huge files cost no memory.
pub fn write_pages(dir: &Path, id: u32, n: u64, fill: impl Fn(u64, &mut [u8])) {
    let f = std::fs::File::create(dir.join(format!("pages-{id}.img"))).unwrap();
    let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
    let mut page = vec![0u8; PAGE as usize];
    for i in 0..n {
        fill(i, &mut page);
        w.write_all(&page).unwrap();
    }
    w.flush().unwrap();
}

/// Fills a page with a marker naming `tag` and `i`, padded with `i as u8`.
pub fn marked(tag: &str, i: u64, page: &mut [u8]) {
    page.fill(i as u8);
    let m = format!("{tag}-{i}\0");
    page[..m.len()].copy_from_slice(m.as_bytes());
}

/// Writes image `name` with `entries` into `dir`.
pub fn put<M: Message>(dir: &Path, name: &str, type_magic: u32, entries: &[M]) {
    std::fs::write(dir.join(name), image(type_magic, entries)).unwrap();
}

/// A VMA with explicit status, prot, shmid and pgoff.
pub fn vma(start: u64, end: u64, status: u32, shmid: u64, pgoff: u64) -> pb::VmaEntry {
    pb::VmaEntry {
        status: Some(status),
        shmid: Some(shmid),
        pgoff: Some(pgoff),
        ..anon_vma(start, end)
    }
}

/// A files.img entry for a regular file.
pub fn reg_file(id: u32, name: &str, size: u64) -> pb::FileEntry {
    pb::FileEntry {
        r#type: Some(1),
        id: Some(id),
        reg: Some(pb::RegFileEntry {
            id: Some(id),
            name: Some(name.into()),
            size: Some(size),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Appends raw bytes to image `name` in `dir`.
pub fn append(dir: &Path, name: &str, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join(name))
        .unwrap();
    f.write_all(bytes).unwrap();
}

/// A size-prefixed entry, for images that interleave entries and raw bytes.
pub fn entry<M: Message>(m: &M) -> Vec<u8> {
    let b = m.encode_to_vec();
    let mut out = (b.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(&b);
    out
}

/// A page of `text` then zeros.
pub fn page_with(text: &str) -> Vec<u8> {
    let mut p = vec![0u8; PAGE as usize];
    p[..text.len()].copy_from_slice(text.as_bytes());
    p
}

/// A two-thread process of another architecture (threads `pid` and `pid + 1`),
/// with two anonymous read-write mappings whose saved pages hold known bytes.
pub struct Foreign {
    /// Process id (the leader's tid).
    pub pid: u32,
    /// Page size (also put into the auxv as AT_PAGESZ by the caller).
    pub page: u64,
    /// Start of the first mapping.
    pub base: u64,
    /// `mm_saved_auxv` words, as CRIU stores them.
    pub auxv: Vec<u64>,
}

impl Foreign {
    /// Address of the text "<TAG>-PAGE" (the first mapping's second page).
    pub fn text_at(&self) -> u64 {
        self.base + self.page
    }
    /// Address of "LASTWORD" (the last 8 bytes of the first mapping).
    pub fn last_word_at(&self) -> u64 {
        self.base + 2 * self.page - 8
    }
    /// Address of "SECOND-VMA" (the start of the second mapping).
    pub fn second_at(&self) -> u64 {
        self.base + 4 * self.page
    }
}

/// Writes the images of `f` into `dir`: every thread's core from `core(tid,
/// leader)`, the mm with mappings [base, base+2p) (first page untouched, second
/// saved) and [base+4p, base+5p) (saved), and their pages. `tag` starts the text of
/// the first saved page.
pub fn write_foreign(
    dir: &Path,
    f: &Foreign,
    tag: &str,
    core: impl Fn(u32, bool) -> pb::CoreEntry,
) {
    let mut p = Proc::new(f.pid);
    p.threads = vec![f.pid, f.pid + 1];
    write_images(dir, &[p]);
    for tid in [f.pid, f.pid + 1] {
        put(
            dir,
            &format!("core-{tid}.img"),
            magic::CORE,
            &[core(tid, tid == f.pid)],
        );
    }
    let mm = pb::MmEntry {
        mm_saved_auxv: f.auxv.clone(),
        vmas: vec![
            anon_vma(f.base, f.base + 2 * f.page),
            anon_vma(f.second_at(), f.second_at() + f.page),
        ],
        ..Default::default()
    };
    put(dir, &format!("mm-{}.img", f.pid), magic::MM, &[mm]);
    std::fs::write(
        dir.join(format!("pagemap-{}.img", f.pid)),
        pagemap(f.pid, &[run(f.text_at(), 1, 4), run(f.second_at(), 1, 4)]),
    )
    .unwrap();
    let ps = f.page as usize;
    let mut pages = vec![0u8; 2 * ps];
    let text = format!("{tag}-PAGE\0");
    pages[..text.len()].copy_from_slice(text.as_bytes());
    pages[ps - 8..ps].copy_from_slice(b"LASTWORD");
    pages[ps..ps + 11].copy_from_slice(b"SECOND-VMA\0");
    std::fs::write(dir.join(format!("pages-{}.img", f.pid)), pages).unwrap();
}

/// Rewrites every image in `dir` written by this builder (little-endian framing)
/// with big-endian framing, as CRIU writes it on s390x: each magic and each entry
/// size in big-endian order; payloads and raw `pages-*.img` unchanged. Panics on an
/// image it can't walk, so a test never checks a half-converted directory.
pub fn reframe_big_endian(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if !name.ends_with(".img") || name.starts_with("pages-") {
            continue;
        }
        let b = std::fs::read(&path).unwrap();
        let word = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
        let first = word(0);
        let mut at = if first == magic::COMMON || first == magic::SERVICE {
            8
        } else {
            4
        };
        let mut out: Vec<u8> = Vec::with_capacity(b.len());
        for i in (0..at).step_by(4) {
            out.extend_from_slice(&word(i).to_be_bytes());
        }
        while at < b.len() {
            let size = word(at) as usize;
            assert!(
                at + 4 + size <= b.len(),
                "{name}: entry at {at} runs past the end"
            );
            out.extend_from_slice(&(size as u32).to_be_bytes());
            out.extend_from_slice(&b[at + 4..at + 4 + size]);
            at += 4 + size;
        }
        std::fs::write(&path, out).unwrap();
    }
}

/// The thread id CRIU 4.2 wrote into pstree.img for a zombie (seen on a real dump:
/// the field is never initialised for zombies).
pub const GARBAGE_TID: u32 = 1_600_580_208;

/// The core image CRIU writes for a zombie: the task part only (state TASK_DEAD,
/// exit code, comm), no registers and no thread part.
pub fn zombie_core(comm: &str, exit_code: u32) -> pb::CoreEntry {
    pb::CoreEntry {
        mtype: Some(1),
        tc: Some(pb::TaskCoreEntry {
            task_state: Some(2),
            exit_code: Some(exit_code),
            comm: Some(comm.to_string()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A live process `parent` (one page of anonymous memory holding "PARENT-0") with a
/// zombie child `zombie`, as CRIU 4.2 dumps them: the zombie's pstree.img entry lists
/// thread [`GARBAGE_TID`], its record is core-<zombie>.img (task_state 2), and it has
/// no mm or pagemap image.
pub fn write_with_zombie(dir: &Path, parent: u32, zombie: u32) {
    let mut p = Proc::new(parent);
    p.vmas = vec![anon_vma(0x1000_0000, 0x1000_0000 + PAGE)];
    p.pagemap = vec![run(0x1000_0000, 1, 4)];
    let mut z = Proc::new(zombie);
    z.ppid = parent;
    write_images(dir, &[p.clone(), z.clone()]);
    write_pages(dir, parent, 1, |i, pg| marked("PARENT", i, pg));
    for f in [format!("mm-{zombie}.img"), format!("pagemap-{zombie}.img")] {
        std::fs::remove_file(dir.join(f)).unwrap();
    }
    z.threads = vec![GARBAGE_TID];
    write_pstree(dir, &[p, z]);
    put(
        dir,
        &format!("core-{zombie}.img"),
        magic::CORE,
        &[zombie_core("defunct", 0x100)],
    );
}
