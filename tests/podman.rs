//! The Podman archives (tar, tar.gz, tar.zst): processes come from pstree.img (not
//! from whichever core-*.img happen to be there), file paths resolve in the image's
//! root, and gdb reads every register the images hold. There is no live oracle for
//! these, so the images themselves, decoded by the library, are the reference.

mod common;

use ck2core::archive::Input;
use ck2core::model::{Checkpoint, OpenOptions};
use common::*;

const REGS: &str = "info registers rax rbx rcx rdx rsi rdi rbp rsp r8 r9 r10 r11 r12 r13 r14 r15 rip eflags cs ss ds es fs gs fs_base gs_base orig_rax";

fn check_archive(name: &str, pids: &[u32]) {
    let td = testdata();
    let archive = td.join("podman-counter").join(name);
    let rootfs = td.join("podman-counter/rootfs");
    let out = scratch(&format!("podman-{name}"));
    ck2core_ok(&[
        archive.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--rootfs",
        rootfs.to_str().unwrap(),
    ]);
    let mut cores: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    cores.sort();
    let mut want: Vec<String> = pids.iter().map(|p| format!("core.{p}")).collect();
    want.extend(["ck2core.py", "gdbinit", "lldbinit", "sysroot"].map(String::from));
    want.sort();
    assert_eq!(
        cores, want,
        "one core per pstree.img process, the gdb helper, the sysroot, nothing else"
    );
    // The only file the processes mapped is busybox (static): the sysroot holds it alone.
    assert_eq!(
        files_under(&out.join("sysroot")),
        ["bin/busybox"],
        "the sysroot holds exactly the mapped files"
    );

    let ckpt = Checkpoint::open(&Input::Path(archive.clone()), &OpenOptions::default()).unwrap();
    for pid in pids {
        let p = ckpt.process(*pid).unwrap();
        let exe = rootfs.join("bin/busybox");
        let got = gdb(
            &out.join(format!("core.{pid}")),
            Some(&rootfs),
            Some(&exe),
            &[REGS, "x/i $pc", "x/i $pc-2"],
        );
        assert_eq!(
            warnings(&got),
            Vec::<&str>::new(),
            "{name} pid {pid}:\n{got}"
        );
        assert!(got.contains(&format!("[New LWP {pid}]")), "{got}");
        let ck2core::arch::Registers::X86_64(r) = &p.threads[0].regs else {
            panic!("the Podman fixture is x86_64");
        };
        for (i, reg) in ck2core::arch::x86_64::GP_NAMES.iter().enumerate() {
            let line = got
                .lines()
                .find(|l| l.split_whitespace().next() == Some(*reg))
                .unwrap_or_else(|| panic!("{reg} missing:\n{got}"));
            let v = u64::from_str_radix(
                line.split_whitespace()
                    .nth(1)
                    .unwrap()
                    .trim_start_matches("0x"),
                16,
            )
            .unwrap();
            assert_eq!(v, r.gp[i], "{name} pid {pid} register {reg}");
        }
        // Both processes sleep in a system call: the text at (or just before) the pc,
        // read from busybox in the root, is that `syscall` instruction.
        assert!(
            got.lines().any(|l| l.contains(":\tsyscall")),
            "{name} pid {pid}: no syscall instruction at the pc:\n{got}"
        );
    }
}

#[test]
fn podman_tar() {
    check_archive("counter.tar", &[1, 774]);
}

#[test]
fn podman_tar_gz() {
    check_archive("counter.tar.gz", &[1, 774]);
}

#[test]
fn podman_tar_zst() {
    check_archive("counter.tar.zst", &[1, 9]);
}

#[test]
fn archive_on_stdin() {
    let td = testdata();
    let out = scratch("podman-stdin");
    let file = std::fs::File::open(td.join("podman-counter/counter.tar.zst")).unwrap();
    let res = std::process::Command::new(env!("CARGO_BIN_EXE_ck2core"))
        .args(["-", "-o", out.to_str().unwrap()])
        .stdin(file)
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert!(out.join("core.1").exists() && out.join("core.9").exists());
}
