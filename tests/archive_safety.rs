//! Hostile archives: member names that try to leave the archive, links, duplicates,
//! a decompression bomb. Each is refused or ignored with a message, and nothing is
//! written outside the output directory.

mod common;

use std::io::Write;
use std::path::Path;

use common::synth::*;
use common::*;

/// A tar header for `name` (written raw: the tar crate refuses unsafe names).
fn header(name: &str, size: u64, kind: tar::EntryType, link: Option<&str>) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_size(size);
    h.set_mode(0o644);
    h.set_entry_type(kind);
    if let Some(l) = link {
        h.as_old_mut().linkname[..l.len()].copy_from_slice(l.as_bytes());
    }
    h.set_cksum();
    h
}

/// An archive with a good checkpoint/ and the extra raw `members`.
fn archive(path: &Path, images: &Path, members: &[(&str, Vec<u8>, tar::EntryType, Option<&str>)]) {
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    b.append_dir_all("checkpoint", images).unwrap();
    for (name, data, kind, link) in members {
        let h = header(name, data.len() as u64, *kind, *link);
        b.append(&h, data.as_slice()).unwrap();
    }
    b.into_inner().unwrap();
}

fn images(dir: &Path) {
    let mut p = Proc::new(1);
    p.vmas = vec![anon_vma(0x5000_0000, 0x5000_1000)];
    p.pagemap = vec![run(0x5000_0000, 1, 4)];
    write_images(dir, &[p]);
    write_pages(dir, 1, 1, |i, pg| marked("SAFE", i, pg));
}

fn tree(dir: &Path) -> Vec<String> {
    let mut v = Vec::new();
    for e in walk(dir) {
        v.push(e.strip_prefix(dir).unwrap().display().to_string());
    }
    v.sort();
    v
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() && !p.is_symlink() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

#[test]
fn unsafe_member_names_and_links_are_ignored_with_a_note() {
    let root = scratch("safety-names");
    images(&root.join("images"));
    let a = root.join("evil.tar");
    archive(
        &a,
        &root.join("images"),
        &[
            (
                "../escape.txt",
                b"x".to_vec(),
                tar::EntryType::Regular,
                None,
            ),
            ("/etc/evil", b"x".to_vec(), tar::EntryType::Regular, None),
            (
                "checkpoint/../../up",
                b"x".to_vec(),
                tar::EntryType::Regular,
                None,
            ),
            (
                "config.dump",
                Vec::new(),
                tar::EntryType::Symlink,
                Some("/etc/passwd"),
            ),
            (
                "spec.dump",
                Vec::new(),
                tar::EntryType::Link,
                Some("/etc/shadow"),
            ),
            ("checkpoint/fifo", Vec::new(), tar::EntryType::Fifo, None),
        ],
    );
    let before = tree(&root);
    let out = root.join("cores");
    let o = ck2core(&[a.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("note: member \"../escape.txt\" ignored: absolute path or `..` in its name"),
        "{err}"
    );
    assert!(err.contains("note: member \"/etc/evil\" ignored"), "{err}");
    assert!(err.contains("note: member spec.dump ignored: hard link to \"/etc/shadow\", which is not in the archive"), "{err}");
    assert!(
        err.contains("note: member checkpoint/fifo ignored: special file"),
        "{err}"
    );
    // The converted core is right, and nothing appeared anywhere but cores/.
    let core = CoreFile::open(&out.join("core.1"));
    assert_eq!(core.read(0x5000_0000, 7).unwrap(), b"SAFE-0\0");
    let after: Vec<String> = tree(&root)
        .into_iter()
        .filter(|p| !p.starts_with("cores"))
        .collect();
    assert_eq!(after, before);
    // The symlinked config.dump is never followed: no container metadata at all.
    let v: serde_json::Value =
        serde_json::from_slice(&ck2core(&["info", a.to_str().unwrap(), "--json"]).stdout).unwrap();
    assert!(v["container"].is_null(), "{v}");
}

#[test]
fn duplicate_members_are_refused() {
    let root = scratch("safety-dup");
    images(&root.join("images"));
    let a = root.join("dup.tar");
    let pstree = std::fs::read(root.join("images/pstree.img")).unwrap();
    archive(
        &a,
        &root.join("images"),
        &[(
            "checkpoint/pstree.img",
            pstree,
            tar::EntryType::Regular,
            None,
        )],
    );
    let o = ck2core(&[
        a.to_str().unwrap(),
        "-o",
        root.join("cores").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("member checkpoint/pstree.img appears twice; refusing an ambiguous archive"),
        "{err}"
    );
    assert!(!root.join("cores").join("core.1").exists());
}

#[test]
fn a_decompression_bomb_stops_at_the_limit() {
    let root = scratch("safety-bomb");
    images(&root.join("images"));
    let a = root.join("bomb.tar.gz");
    // 64 MiB of zeros in a member: a few tens of KiB compressed.
    let mut tar = tar::Builder::new(Vec::new());
    tar.append_dir_all("checkpoint", root.join("images"))
        .unwrap();
    let h = header(
        "checkpoint/pages-9.img",
        64 << 20,
        tar::EntryType::Regular,
        None,
    );
    tar.append(&h, std::io::Read::take(std::io::repeat(0), 64 << 20))
        .unwrap();
    let raw = tar.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&a).unwrap(),
        flate2::Compression::best(),
    );
    gz.write_all(&raw).unwrap();
    gz.finish().unwrap();
    assert!(std::fs::metadata(&a).unwrap().len() < 1 << 20);
    let o = ck2core(&[
        a.to_str().unwrap(),
        "-o",
        root.join("cores").to_str().unwrap(),
        "--max-unpacked",
        "16000000",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("expands to more than 16000000 bytes (at member checkpoint/pages-9.img); if that is expected, raise the limit with --max-unpacked"),
        "{err}"
    );
    // Within the limit it converts.
    let ok = ck2core(&[
        a.to_str().unwrap(),
        "-o",
        root.join("cores").to_str().unwrap(),
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

#[test]
fn a_truncated_archive_names_the_problem() {
    let root = scratch("safety-trunc");
    images(&root.join("images"));
    let a = root.join("t.tar");
    archive(&a, &root.join("images"), &[]);
    let bytes = std::fs::read(&a).unwrap();
    // Cut inside the last member's data.
    let cut = root.join("cut.tar");
    let pages_at = bytes
        .windows(11)
        .position(|w| w == b"SAFE-0\0\0\0\0\0")
        .unwrap();
    std::fs::write(&cut, &bytes[..pages_at + 100]).unwrap();
    let o = ck2core(&[
        cut.to_str().unwrap(),
        "-o",
        root.join("cores").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("past the end of the archive") && err.contains("truncated?"),
        "{err}"
    );
    assert!(
        !root.join("cores").exists() || std::fs::read_dir(root.join("cores")).unwrap().count() == 0
    );
}
