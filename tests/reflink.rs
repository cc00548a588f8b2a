//! The sysroot reflinks a `--rootfs` file when it can't hard-link it: the case of a
//! user converting with a root unpacked by someone else (the kernel's
//! protected_hardlinks refuses links to files one does not own) on a filesystem with
//! copy-on-write clones. Checked on a real XFS filesystem (reflink=1) on a loop
//! device, converting as `nobody` a root owned by root.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// Unmounts and removes the scratch filesystem however the test ends.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (.ci/run installs what the tests need)"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Why this machine can't run the check, if it can't.
fn cannot() -> Option<String> {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next().map(str::to_string))?;
    if uid != "0" {
        return Some("mounting a scratch XFS filesystem needs root".into());
    }
    let protected = std::fs::read_to_string("/proc/sys/fs/protected_hardlinks").unwrap_or_default();
    if protected.trim() != "1" {
        return Some("fs.protected_hardlinks is not 1, so nothing refuses the hard link".into());
    }
    None
}

#[test]
fn a_root_that_cannot_be_hard_linked_is_reflinked() {
    if let Some(why) = cannot() {
        eprintln!("NOT CHECKED: reflinks into the sysroot: {why}");
        return;
    }
    let work = scratch("reflink");
    let img = work.join("xfs.img");
    let mnt = work.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    std::fs::File::create(&img)
        .unwrap()
        .set_len(400 << 20)
        .unwrap();
    run(Command::new("mkfs.xfs")
        .args(["-q", "-m", "reflink=1"])
        .arg(&img));
    let mounted = Command::new("mount")
        .args(["-o", "loop"])
        .arg(&img)
        .arg(&mnt)
        .output()
        .unwrap();
    if !mounted.status.success() {
        eprintln!(
            "NOT CHECKED: reflinks into the sysroot: this machine can't mount a loop device: {}",
            String::from_utf8_lossy(&mounted.stderr).trim()
        );
        return;
    }
    let _guard = Mounted(mnt.clone());

    // The root, owned by root and not writable by others; the checkpoint and the
    // converter readable by all; the output directory nobody's.
    let root = mnt.join("root");
    run(Command::new("cp")
        .arg("-a")
        .arg(testdata().join("host-rootfs"))
        .arg(&root));
    run(Command::new("chown").args(["-R", "root:root"]).arg(&root));
    run(Command::new("chmod").args(["-R", "go-w,a+rX"]).arg(&root));
    let images = mnt.join("images");
    run(Command::new("cp")
        .arg("-a")
        .arg(testdata().join("ckfix/images"))
        .arg(&images));
    let exe = mnt.join("ck2core");
    std::fs::copy(env!("CARGO_BIN_EXE_ck2core"), &exe).unwrap();
    run(Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(&images)
        .arg(&exe));
    let out = mnt.join("out");
    std::fs::create_dir(&out).unwrap();
    run(Command::new("chown").arg("nobody").arg(&out));

    let cores = out.join("cores");
    let printed = run(Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(&exe)
        .arg(&images)
        .arg("-o")
        .arg(&cores)
        .arg("--rootfs")
        .arg(&root));
    let printed = String::from_utf8_lossy(&printed.stderr);
    assert!(
        printed.contains(": 5 files (0 linked, 5 reflinked, 1 separate debug), 6.1 MiB"),
        "{printed}"
    );

    // Each is its own file (nobody's, one link) sharing the root's extents.
    let libc = "usr/lib/x86_64-linux-gnu/libc.so.6";
    let (a, b): (&Path, PathBuf) = (&root.join(libc), cores.join("sysroot").join(libc));
    let (ma, mb) = (
        std::fs::metadata(a).unwrap(),
        std::fs::metadata(&b).unwrap(),
    );
    assert_ne!(ma.ino(), mb.ino());
    assert_eq!((mb.nlink(), mb.uid()), (1, 65534));
    assert_eq!(std::fs::read(a).unwrap(), std::fs::read(&b).unwrap());
    let frag = run(Command::new("filefrag").arg("-v").arg(&b));
    let frag = String::from_utf8_lossy(&frag.stdout);
    assert!(frag.contains("shared"), "extents not shared:\n{frag}");

    // And gdb, started as printed, reads the container's libc from there.
    let got = gdb_with_init(
        &cores.join("gdbinit"),
        &cores.join("core.31227"),
        Some(&cores.join("sysroot/ckfix/bin/ckfix")),
        &["info sharedlibrary"],
    );
    assert_eq!(warnings(&got), Vec::<&str>::new(), "{got}");
    assert!(
        got.lines()
            .any(|l| l.contains(" Yes ") && l.ends_with("/sysroot/lib/x86_64-linux-gnu/libc.so.6")),
        "{got}"
    );
}
