//! Every page source the converter reads, each in a synthetic checkpoint: ghost
//! copies of deleted files (whole and sparse), SysV segments (stored after their
//! entry), shared anonymous memory by shmem id, old-format pagemaps, the archive's
//! rootfs-diff.tar over --rootfs, and zombies.

mod common;

use std::path::Path;

use ck2core::images::{magic, pb};
use common::synth::*;
use common::*;

const BASE: u64 = 0x2000_0000;
const REGULAR: u32 = 1;
const FILE_PRIVATE_ST: u32 = REGULAR | 1 << 6;
const ANON_SHARED: u32 = REGULAR | 1 << 8;
const SYSVIPC: u32 = 1 << 10;

fn convert_ok(input: &Path, out: &Path, extra: &[&str]) -> String {
    let mut args = vec![input.to_str().unwrap(), "-o", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    ck2core_ok(&args)
}

#[test]
fn deleted_file_content_comes_from_its_ghost_image() {
    let dir = scratch("src-ghost").join("dump");
    let mut p = Proc::new(50);
    // Two mappings of deleted files: one stored whole, one stored sparse (chunks).
    p.vmas = vec![
        vma(BASE, BASE + PAGE, FILE_PRIVATE_ST, 5, PAGE),
        vma(BASE + 2 * PAGE, BASE + 5 * PAGE, FILE_PRIVATE_ST, 6, 0),
    ];
    write_images(&dir, &[p]);
    put(
        &dir,
        "files.img",
        magic::FILES,
        &[
            reg_file(5, "/app/gone.so", 2 * PAGE),
            reg_file(6, "/app/sparse.db", 4 * PAGE),
        ],
    );
    let remap = |orig, id, ty| pb::RemapFilePathEntry {
        orig_id: Some(orig),
        remap_id: Some(id),
        remap_type: Some(ty),
    };
    // The second uses the legacy encoding: ghost bit in remap_id.
    put(
        &dir,
        "remap-fpath.img",
        magic::REMAP_FPATH,
        &[remap(5, 7, 1), remap(6, 0x8000_000a, 0)],
    );
    put(
        &dir,
        "ghost-file-7.img",
        magic::GHOST_FILE,
        &[pb::GhostFileEntry {
            mode: Some(0o100644),
            size: Some(2 * PAGE),
            ..Default::default()
        }],
    );
    append(
        &dir,
        "ghost-file-7.img",
        &[page_with("GHOST-PAGE-0"), page_with("GHOST-PAGE-1")].concat(),
    );
    put(
        &dir,
        "ghost-file-a.img",
        magic::GHOST_FILE,
        &[pb::GhostFileEntry {
            chunks: Some(true),
            size: Some(4 * PAGE),
            ..Default::default()
        }],
    );
    let chunk = pb::GhostChunkEntry {
        len: Some(PAGE),
        off: Some(PAGE),
    };
    append(
        &dir,
        "ghost-file-a.img",
        &[entry(&chunk), page_with("CHUNK-AT-1")].concat(),
    );

    let out = dir.parent().unwrap().join("cores");
    convert_ok(&dir, &out, &[]);
    let core = CoreFile::open(&out.join("core.50"));
    assert_eq!(
        core.read(BASE, 12).unwrap(),
        b"GHOST-PAGE-1",
        "pgoff 1 page into the ghost copy"
    );
    assert_eq!(
        core.read(BASE + 2 * PAGE, 4).unwrap(),
        [0; 4],
        "hole of a sparse ghost file"
    );
    assert_eq!(core.read(BASE + 3 * PAGE, 10).unwrap(), b"CHUNK-AT-1");
    assert_eq!(core.read(BASE + 4 * PAGE, 4).unwrap(), [0; 4]);
    assert!(
        core.nt_file_names().is_empty(),
        "gdb can't open deleted files: not listed"
    );
}

#[test]
fn sysv_segment_comes_from_its_ipc_image() {
    let dir = scratch("src-sysv").join("dump");
    let mut p = Proc::new(51);
    p.vmas = vec![vma(
        BASE,
        BASE + 2 * PAGE,
        REGULAR | ANON_SHARED | SYSVIPC,
        77,
        0,
    )];
    write_images(&dir, &[p]);
    let shm = |id, size, inpm| pb::IpcShmEntry {
        desc: Some(pb::IpcDescEntry {
            id: Some(id),
            ..Default::default()
        }),
        size: Some(size),
        in_pagemaps: Some(inpm),
    };
    // Another segment first (its 6 bytes padded to 8), then ours: 5000 bytes.
    let mut bytes = image(magic::IPCNS_SHM, &[] as &[pb::IpcShmEntry]);
    bytes.extend(entry(&shm(76, 6, false)));
    bytes.extend(b"other\0\0\0");
    bytes.extend(entry(&shm(77, 5000, false)));
    let mut content = page_with("SYSV-PAGE-0");
    content.extend(b"SYSV-PAGE-1");
    content.resize(5000, b'z');
    bytes.extend(&content);
    std::fs::write(dir.join("ipcns-shm-9.img"), bytes).unwrap();
    let out = dir.parent().unwrap().join("cores");
    convert_ok(&dir, &out, &[]);
    let core = CoreFile::open(&out.join("core.51"));
    assert_eq!(core.read(BASE, 11).unwrap(), b"SYSV-PAGE-0");
    assert_eq!(core.read(BASE + PAGE, 11).unwrap(), b"SYSV-PAGE-1");
    assert_eq!(
        core.read(BASE + 4999, 2).unwrap(),
        [b'z', 0],
        "past the segment size: zero"
    );
}

#[test]
fn shared_anonymous_memory_by_shmem_id_and_old_pagemap_format() {
    let dir = scratch("src-shmem").join("dump");
    let mut p = Proc::new(52);
    p.vmas = vec![
        vma(BASE, BASE + 3 * PAGE, ANON_SHARED, 4660, 0),
        anon_vma(BASE + 4 * PAGE, BASE + 6 * PAGE),
    ];
    // Old format: only compat_nr_pages, no flags (means present).
    p.pagemap = vec![pb::PagemapEntry {
        vaddr: Some(BASE + 4 * PAGE),
        compat_nr_pages: Some(2),
        ..Default::default()
    }];
    write_images(&dir, &[p]);
    write_pages(&dir, 52, 2, |i, pg| marked("OLD", i, pg));
    // The shmem pagemap's vaddr is an offset in the object: page 1 of it.
    std::fs::write(
        dir.join("pagemap-shmem-4660.img"),
        pagemap(60, &[run(PAGE, 1, 4)]),
    )
    .unwrap();
    write_pages(&dir, 60, 1, |_, pg| marked("SHMEM", 1, pg));
    let out = dir.parent().unwrap().join("cores");
    convert_ok(&dir, &out, &[]);
    let core = CoreFile::open(&out.join("core.52"));
    assert_eq!(core.read(BASE, 4).unwrap(), [0; 4]);
    assert_eq!(core.read(BASE + PAGE, 8).unwrap(), b"SHMEM-1\0");
    assert_eq!(core.read(BASE + 4 * PAGE, 6).unwrap(), b"OLD-0\0");
    assert_eq!(core.read(BASE + 5 * PAGE, 6).unwrap(), b"OLD-1\0");
    assert!(!core.nt_file_names().iter().any(|n| n.contains("/dev/zero")));
}

#[test]
fn rootfs_diff_in_the_archive_wins_over_rootfs() {
    let root = scratch("src-diff");
    let dir = root.join("dump");
    let mut p = Proc::new(53);
    p.vmas = vec![
        vma(BASE, BASE + 2 * PAGE, FILE_PRIVATE_ST, 3, 0),
        vma(BASE + 2 * PAGE, BASE + 3 * PAGE, FILE_PRIVATE_ST, 4, 0),
    ];
    // Page 0 of data.bin was written to, so the mapping is dumped whole; page 1
    // comes from the file.
    p.pagemap = vec![run(BASE, 1, 4), run(BASE + 2 * PAGE, 1, 4)];
    write_images(&dir, &[p]);
    write_pages(&dir, 53, 2, |i, pg| marked("COW", i, pg));
    put(
        &dir,
        "files.img",
        magic::FILES,
        &[
            reg_file(3, "/etc/data.bin", 2 * PAGE),
            reg_file(4, "/etc/other", PAGE),
        ],
    );
    // --rootfs has the file as it was in the image; the container changed it.
    let rootfs = root.join("rootfs");
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::write(
        rootfs.join("etc/data.bin"),
        [page_with("IMAGE-0"), page_with("IMAGE-1")].concat(),
    )
    .unwrap();
    std::fs::write(rootfs.join("etc/other"), page_with("OTHER")).unwrap();
    let mut diff = tar::Builder::new(Vec::new());
    let content = [page_with("DIFF-0"), page_with("DIFF-1")].concat();
    let mut h = tar::Header::new_gnu();
    h.set_size(content.len() as u64);
    h.set_mode(0o644);
    diff.append_data(&mut h, "etc/data.bin", content.as_slice())
        .unwrap();
    let diff = diff.into_inner().unwrap();
    // The archive: checkpoint/ plus rootfs-diff.tar, as Podman lays it out.
    let archive = root.join("ckpt.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&archive).unwrap());
    b.append_dir_all("checkpoint", &dir).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(diff.len() as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, "rootfs-diff.tar", diff.as_slice())
        .unwrap();
    b.into_inner().unwrap();

    let out = root.join("cores");
    convert_ok(&archive, &out, &["--rootfs", rootfs.to_str().unwrap()]);
    let core = CoreFile::open(&out.join("core.53"));
    assert_eq!(core.read(BASE, 6).unwrap(), b"COW-0\0");
    assert_eq!(
        core.read(BASE + PAGE, 6).unwrap(),
        b"DIFF-1",
        "rootfs-diff.tar wins"
    );
    assert_eq!(core.read(BASE + 2 * PAGE, 6).unwrap(), b"COW-1\0");
    // The sysroot holds the diff's data.bin, so NT_FILE names it: gdb, pointed at
    // the sysroot, reads the container's copy.
    assert_eq!(core.nt_file_names(), ["/etc/data.bin", "/etc/other"]);
    assert_eq!(
        std::fs::read(out.join("sysroot/etc/data.bin")).unwrap(),
        content
    );
    // Pointed at --rootfs itself (--no-sysroot), NT_FILE names only files verified
    // there: gdb would read the image's old data.bin (IMAGE-1) for the diff's.
    let out = root.join("cores-no-sysroot");
    convert_ok(
        &archive,
        &out,
        &["--rootfs", rootfs.to_str().unwrap(), "--no-sysroot"],
    );
    let core = CoreFile::open(&out.join("core.53"));
    assert_eq!(core.read(BASE + PAGE, 6).unwrap(), b"DIFF-1");
    assert_eq!(core.nt_file_names(), ["/etc/other"]);
    assert!(!out.join("sysroot").exists());
}

#[test]
fn files_that_differ_from_the_record_are_not_used() {
    let root = scratch("src-mismatch");
    let dir = root.join("dump");
    let mut p = Proc::new(54);
    p.vmas = vec![vma(BASE, BASE + 2 * PAGE, FILE_PRIVATE_ST, 3, 0)];
    p.pagemap = vec![run(BASE, 1, 4)];
    write_images(&dir, &[p]);
    write_pages(&dir, 54, 1, |i, pg| marked("COW", i, pg));
    put(
        &dir,
        "files.img",
        magic::FILES,
        &[reg_file(3, "/data.bin", 2 * PAGE)],
    );
    let rootfs = root.join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    std::fs::write(rootfs.join("data.bin"), page_with("SHORTER")).unwrap();
    let out = root.join("cores");
    let err = convert_ok(&dir, &out, &["--rootfs", rootfs.to_str().unwrap()]);
    assert!(
        err.contains("left out 4.0 KiB: /data.bin: the file there has 4096 bytes, the checkpoint recorded 8192"),
        "{err}"
    );
    let core = CoreFile::open(&out.join("core.54"));
    assert_eq!(core.read(BASE, 6).unwrap(), b"COW-0\0");
    assert_eq!(core.read(BASE + PAGE, 1), None, "no invented page");
    assert!(core.nt_file_names().is_empty());
}

#[test]
fn symlinks_in_the_rootfs_never_leave_it() {
    let root = scratch("src-escape");
    let dir = root.join("dump");
    let mut p = Proc::new(55);
    p.vmas = vec![vma(BASE, BASE + 2 * PAGE, FILE_PRIVATE_ST, 3, 0)];
    p.pagemap = vec![run(BASE, 1, 4)];
    write_images(&dir, &[p]);
    write_pages(&dir, 55, 1, |i, pg| marked("COW", i, pg));
    // /etc/hostname of this machine exists; the container's must not resolve to it.
    put(
        &dir,
        "files.img",
        magic::FILES,
        &[reg_file(3, "/lib/evil", 2 * PAGE)],
    );
    let rootfs = root.join("rootfs");
    std::fs::create_dir_all(rootfs.join("lib")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", rootfs.join("lib/evil")).unwrap();
    std::os::unix::fs::symlink("../../../../../../../etc", rootfs.join("etc")).unwrap();
    let out = root.join("cores");
    let err = convert_ok(&dir, &out, &["--rootfs", rootfs.to_str().unwrap()]);
    // etc -> ../../etc stays at the root: etc names itself, a loop.
    assert!(
        err.contains("/lib/evil: more than 40 symbolic links (a loop?) at /etc"),
        "{err}"
    );
    assert!(ck2core::rootfs::resolve_in_root(&rootfs, "etc/hostname").is_none());
    assert!(ck2core::rootfs::resolve_in_root(&rootfs, "../../etc/hostname").is_none());
}

#[test]
fn zombies_are_reported_and_skipped() {
    let dir = scratch("src-zombie").join("dump");
    let mut alive = Proc::new(56);
    alive.vmas = vec![anon_vma(BASE, BASE + PAGE)];
    let mut zombie = Proc::new(57);
    zombie.ppid = 56;
    write_images(&dir, &[alive, zombie]);
    let mut core = x86_core(57, "defunct", true);
    core.tc.as_mut().unwrap().task_state = Some(2);
    put(&dir, "core-57.img", magic::CORE, &[core]);
    std::fs::remove_file(dir.join("mm-57.img")).unwrap();
    let out = dir.parent().unwrap().join("cores");
    let err = convert_ok(&dir, &out, &[]);
    assert!(
        err.contains("skipped  pid 57 (defunct): a zombie has no memory"),
        "{err}"
    );
    assert!(out.join("core.56").exists() && !out.join("core.57").exists());
}
