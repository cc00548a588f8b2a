//! The layered root, built from synthetic layer tars: what a container engine would
//! show at each path (OCI whiteouts, opaque directories, hard links to lower layers,
//! symlink chains across layers, rootfs-diff.tar on top), and hostile layers refused
//! with an error naming the layer and the entry.

mod common;

use std::io::Read;
use std::path::Path;

use ck2core::archive::{Archive, Blob, Input, Limits};
use ck2core::rootfs::{build_id, Base, Expect, Layer, Layered, RootFs};
use common::*;

/// A tar entry for [`tar_of`].
enum E<'a> {
    File(&'a str, Vec<u8>),
    Dir(&'a str),
    Link(&'a str, &'a str),
    Hard(&'a str, &'a str),
}

/// An uncompressed tar holding `entries`, names written as given.
fn tar_of(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        match e {
            E::File(p, data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, p, &data[..]).unwrap();
            }
            E::Dir(p) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                b.append_data(&mut h, p, &[][..]).unwrap();
            }
            E::Link(p, t) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                b.append_link(&mut h, p, t).unwrap();
            }
            E::Hard(p, t) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_size(0);
                b.append_link(&mut h, p, t).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

/// A minimal ELF64 file with a GNU build-id note (all of `id`'s bytes `tag`).
fn elf(tag: u8) -> Vec<u8> {
    let id = [tag; 20];
    let mut f = vec![0u8; 64];
    f[..7].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1]);
    f[16] = 3; // ET_DYN
    f[18] = 62; // EM_X86_64
    f[20] = 1;
    f[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    f[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
    f[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
    f[56..58].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
    let mut note = Vec::new();
    note.extend_from_slice(&4u32.to_le_bytes());
    note.extend_from_slice(&20u32.to_le_bytes());
    note.extend_from_slice(&3u32.to_le_bytes());
    note.extend_from_slice(b"GNU\0");
    note.extend_from_slice(&id);
    let mut ph = vec![0u8; 56];
    ph[..4].copy_from_slice(&4u32.to_le_bytes()); // PT_NOTE
    ph[8..16].copy_from_slice(&120u64.to_le_bytes());
    ph[32..40].copy_from_slice(&(note.len() as u64).to_le_bytes());
    f.extend_from_slice(&ph);
    f.extend_from_slice(&note);
    f
}

fn blob_of(path: &Path) -> Blob {
    let f = std::fs::File::open(path).unwrap();
    let len = f.metadata().unwrap().len();
    Blob::from_file(&path.display().to_string(), f, len)
}

/// Layers written under `dir` (lowest first); the odd ones gzip-compressed and read
/// as streams, the even ones read in place, so both paths are exercised.
fn layers(dir: &Path, tars: &[Vec<u8>]) -> Vec<Layer> {
    std::fs::create_dir_all(dir).unwrap();
    tars.iter()
        .enumerate()
        .map(|(i, t)| {
            let name = format!("layer {} (test-{i})", i + 1);
            let id = format!("sha256:test-{i}");
            let p = dir.join(format!("layer-{i}.tar"));
            if i % 2 == 0 {
                std::fs::write(&p, t).unwrap();
                return Layer::in_place(&name, &id, blob_of(&p));
            }
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut gz, t).unwrap();
            std::fs::write(&p, gz.finish().unwrap()).unwrap();
            Layer::streamed(
                &name,
                &id,
                Box::new(move || {
                    let f =
                        std::fs::File::open(&p).map_err(|e| ck2core::error::Error::io(&p, e))?;
                    Ok(Box::new(flate2::read::GzDecoder::new(f)) as Box<dyn Read>)
                }),
            )
        })
        .collect()
}

/// A checkpoint directory holding only `rootfs-diff.tar` (and `deleted.files`).
fn diff_archive(dir: &Path, diff: Option<Vec<u8>>, deleted: &[&str]) -> Archive {
    std::fs::create_dir_all(dir).unwrap();
    if let Some(d) = diff {
        std::fs::write(dir.join("rootfs-diff.tar"), d).unwrap();
    }
    if !deleted.is_empty() {
        std::fs::write(
            dir.join("deleted.files"),
            serde_json::to_vec(deleted).unwrap(),
        )
        .unwrap();
    }
    Archive::open(&Input::Path(dir.to_path_buf()), &Limits::default()).unwrap()
}

fn root(name: &str, tars: &[Vec<u8>], diff: Option<Vec<u8>>, deleted: &[&str]) -> RootFs {
    let work = scratch(name);
    let l = Layered::new("image", layers(&work.join("layers"), tars), 1 << 30).unwrap();
    RootFs::new(
        Base::Image(l),
        &diff_archive(&work.join("ckpt"), diff, deleted),
    )
}

fn bytes(r: &RootFs, path: &str) -> Result<Vec<u8>, String> {
    let f = r.find(path)?;
    let b = &f.data.chunks[0].1;
    let mut out = vec![0u8; b.len() as usize];
    b.read_exact_at(0, &mut out).unwrap();
    Ok(out)
}

#[test]
fn a_file_replaced_in_an_upper_layer_and_again_in_the_diff() {
    let (lower, upper, diff) = (elf(1), elf(2), elf(3));
    let r = root(
        "layers-replaced",
        &[
            tar_of(&[E::Dir("usr/"), E::File("usr/lib/libx.so", lower)]),
            tar_of(&[E::File("usr/lib/libx.so", upper.clone())]),
        ],
        Some(tar_of(&[E::File("usr/lib/libx.so", diff.clone())])),
        &[],
    );
    let size = Some(diff.len() as u64);
    // The diff's copy wins: its build-id is accepted, the upper layer's is not.
    let got = r
        .open(&Expect {
            path: "/usr/lib/libx.so",
            size,
            build_id: &[3; 20],
        })
        .unwrap();
    assert_eq!(build_id(&got.chunks[0].1).unwrap(), [3; 20]);
    let err = r
        .open(&Expect {
            path: "/usr/lib/libx.so",
            size,
            build_id: &[2; 20],
        })
        .unwrap_err();
    assert_eq!(
        err,
        format!(
            "build-id {} differs from the recorded {}",
            "03".repeat(20),
            "02".repeat(20)
        )
    );
    // Without the diff, the upper layer's copy (a compressed layer) wins.
    let r = root(
        "layers-replaced-nodiff",
        &[
            tar_of(&[E::File("usr/lib/libx.so", elf(1))]),
            tar_of(&[E::File("usr/lib/libx.so", upper.clone())]),
        ],
        None,
        &[],
    );
    assert_eq!(bytes(&r, "/usr/lib/libx.so").unwrap(), upper);
}

#[test]
fn a_whiteout_hides_a_lower_file_and_a_later_layer_can_bring_it_back() {
    let r = root(
        "layers-whiteout",
        &[
            tar_of(&[
                E::File("lib/libgone.so", elf(1)),
                E::File("lib/libkept.so", elf(2)),
                E::File("etc/dir/a", b"a".to_vec()),
            ]),
            tar_of(&[
                E::File("lib/.wh.libgone.so", vec![]),
                E::File("etc/.wh.dir", vec![]),
            ]),
        ],
        None,
        &[],
    );
    assert_eq!(
        r.find("/lib/libgone.so").err().unwrap(),
        "/lib/libgone.so: removed by a whiteout in layer 2 (test-1)"
    );
    assert_eq!(
        r.find("/etc/dir/a").err().unwrap(),
        "/etc/dir: removed by a whiteout in layer 2 (test-1)"
    );
    assert_eq!(bytes(&r, "/lib/libkept.so").unwrap(), elf(2));
    let r = root(
        "layers-whiteout-back",
        &[
            tar_of(&[E::File("lib/libgone.so", elf(1))]),
            tar_of(&[E::File("lib/.wh.libgone.so", vec![])]),
            tar_of(&[E::File("lib/libgone.so", elf(4))]),
        ],
        None,
        &[],
    );
    assert_eq!(bytes(&r, "/lib/libgone.so").unwrap(), elf(4));
}

#[test]
fn an_opaque_directory_hides_everything_below_it_in_lower_layers() {
    let r = root(
        "layers-opaque",
        &[
            tar_of(&[
                E::File("opt/app/old.so", elf(1)),
                E::File("opt/app/both", b"lower".to_vec()),
                E::File("opt/other", b"other".to_vec()),
            ]),
            tar_of(&[
                E::Dir("opt/app/"),
                E::File("opt/app/.wh..wh..opq", vec![]),
                E::File("opt/app/new.so", elf(2)),
            ]),
        ],
        None,
        &[],
    );
    assert!(r
        .find("/opt/app/old.so")
        .unwrap_err()
        .starts_with("not found in image"));
    assert!(r.find("/opt/app/both").is_err());
    assert_eq!(bytes(&r, "/opt/app/new.so").unwrap(), elf(2));
    assert_eq!(bytes(&r, "/opt/other").unwrap(), b"other");
}

#[test]
fn a_symlink_chain_across_layers_resolves_inside_the_root() {
    let r = root(
        "layers-symlinks",
        &[
            tar_of(&[
                E::Link("lib", "usr/lib"),
                E::File("usr/lib/x86_64-linux-gnu/libz.so.1.2.13", elf(5)),
            ]),
            tar_of(&[E::Link(
                "usr/lib/x86_64-linux-gnu/libz.so.1",
                "libz.so.1.2.13",
            )]),
            tar_of(&[E::Link("lib64/libz.so", "/lib/x86_64-linux-gnu/libz.so.1")]),
        ],
        None,
        &[],
    );
    let f = r.find("/lib64/libz.so").unwrap();
    assert_eq!(f.path, "usr/lib/x86_64-linux-gnu/libz.so.1.2.13");
    assert_eq!(
        f.links,
        [
            (
                "lib64/libz.so".to_string(),
                "/lib/x86_64-linux-gnu/libz.so.1".to_string()
            ),
            ("lib".to_string(), "usr/lib".to_string()),
            (
                "usr/lib/x86_64-linux-gnu/libz.so.1".to_string(),
                "libz.so.1.2.13".to_string()
            ),
        ]
    );
    assert_eq!(bytes(&r, "/lib64/libz.so").unwrap(), elf(5));
}

#[test]
fn symlinks_never_leave_the_layered_root_and_loops_are_errors() {
    let r = root(
        "layers-escape",
        &[tar_of(&[
            E::Link("etc", "../../../../etc"),
            E::Link("a", "b"),
            E::Link("b", "a"),
            E::File("hostname", b"container".to_vec()),
            E::Link("up", "../../../hostname"),
        ])],
        None,
        &[],
    );
    // ../.. stops at the root: "up" names the container's /hostname.
    assert_eq!(bytes(&r, "/up").unwrap(), b"container");
    assert_eq!(
        r.find("/etc/passwd").unwrap_err(),
        "more than 40 symbolic links (a loop?) at /etc"
    );
    assert!(r
        .find("/a")
        .unwrap_err()
        .starts_with("more than 40 symbolic links"));
}

#[test]
fn a_hard_link_to_a_lower_layers_file() {
    let r = root(
        "layers-hardlink",
        &[
            tar_of(&[E::File("usr/bin/tool", elf(6))]),
            tar_of(&[E::Hard("usr/bin/tool-alias", "usr/bin/tool")]),
            tar_of(&[E::File("usr/bin/.wh.tool", vec![])]),
        ],
        None,
        &[],
    );
    // The link keeps the bytes although the original name was whited out above it.
    assert_eq!(bytes(&r, "/usr/bin/tool-alias").unwrap(), elf(6));
    assert!(r.find("/usr/bin/tool").is_err());
}

#[test]
fn deleted_files_hide_what_the_image_has() {
    let r = root(
        "layers-deleted",
        &[tar_of(&[E::File("etc/motd", b"hi".to_vec())])],
        None,
        &["/etc/motd"],
    );
    assert_eq!(
        r.find("/etc/motd").unwrap_err(),
        "/etc/motd: deleted in the container (deleted.files)"
    );
}

fn layered_err(name: &str, tars: &[Vec<u8>]) -> String {
    let work = scratch(name);
    match Layered::new("image.tar", layers(&work.join("layers"), tars), 1 << 20) {
        Ok(_) => panic!("{name}: accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn hostile_layers_are_refused_naming_the_layer_and_entry() {
    assert_eq!(
        layered_err(
            "hostile-root-whiteout",
            &[
                tar_of(&[E::File("x", vec![])]),
                tar_of(&[E::File(".wh.", vec![])])
            ]
        ),
        "image.tar: layer 2 (test-1): entry \".wh.\": a whiteout of /"
    );
    assert_eq!(
        layered_err(
            "hostile-dotdot-whiteout",
            &[tar_of(&[E::File("etc/.wh...", vec![])])]
        ),
        "image.tar: layer 1 (test-0): entry \"etc/.wh...\": a whiteout of /etc"
    );
    // Names with `..` are written raw, as a hostile tool would.
    let mut evil = tar_of(&[E::File("aaaaaaaaaaaaaaaaaaaa", b"x".to_vec())]);
    evil[..20].copy_from_slice(b"../../../../etc/pwnd");
    let mut h = tar::Header::new_gnu();
    h.as_mut_bytes().copy_from_slice(&evil[..512]);
    h.set_cksum();
    evil[..512].copy_from_slice(h.as_bytes());
    assert_eq!(
        layered_err("hostile-dotdot", &[evil]),
        "image.tar: layer 1 (test-0): entry \"../../../../etc/pwnd\": the path leaves the image's root"
    );
    assert_eq!(
        layered_err("hostile-hardlink", &[tar_of(&[E::Hard("bin/x", "etc/shadow")])]),
        "image.tar: layer 1 (test-0): entry bin/x: hard link to /etc/shadow, which is not a regular file of this layer or a lower one"
    );
    // More than the limit (1 MiB here), in a compressed layer.
    let big = vec![0u8; 2 << 20];
    assert_eq!(
        layered_err("hostile-big", &[tar_of(&[]), tar_of(&[E::File("big", big)])]),
        "image.tar: layer 2 (test-1): entry big: its size (2097152 bytes) takes the image past --max-unpacked (1048576 bytes)"
    );
    // The same layer twice.
    let work = scratch("hostile-dup");
    let mut ls = layers(&work, &[tar_of(&[E::File("a", vec![])]), tar_of(&[])]);
    ls[1].id = ls[0].id.clone();
    let e = Layered::new("image.tar", ls, 1 << 20)
        .err()
        .unwrap()
        .to_string();
    assert_eq!(
        e,
        "image.tar: layer 2 (test-1) repeats layer 1 (test-0) (sha256:test-0): an image lists each layer once"
    );
}

/// containerd's rootfs-diff.tar is an OCI layer diff: its whiteouts and opaque
/// directories hide what the root below has, be it an image or a `--rootfs`
/// directory.
#[test]
fn the_diffs_whiteouts_and_opaque_directories_hide_the_root_below() {
    let diff = || {
        Some(tar_of(&[
            E::File("etc/.wh.gone.conf", vec![]),
            E::Dir("opt/app/"),
            E::File("opt/app/.wh..wh..opq", vec![]),
            E::File("opt/app/new.so", elf(2)),
        ]))
    };
    let lower = [
        ("etc/gone.conf", b"gone".to_vec()),
        ("etc/kept.conf", b"kept".to_vec()),
        ("opt/app/old.so", elf(1)),
        ("opt/app/sub/deep.so", elf(3)),
        ("opt/other", b"other".to_vec()),
    ];
    let check = |r: &RootFs, what: &str| {
        let err = r.find("/etc/gone.conf").unwrap_err();
        assert!(err.contains("whiteout in rootfs-diff.tar"), "{what}: {err}");
        for hidden in ["/opt/app/old.so", "/opt/app/sub/deep.so"] {
            let err = r.find(hidden).unwrap_err();
            assert!(
                err.contains("opaque in rootfs-diff.tar"),
                "{what}: {hidden}: {err}"
            );
        }
        assert_eq!(bytes(r, "/opt/app/new.so").unwrap(), elf(2), "{what}");
        assert_eq!(bytes(r, "/etc/kept.conf").unwrap(), b"kept", "{what}");
        assert_eq!(bytes(r, "/opt/other").unwrap(), b"other", "{what}");
    };

    let files: Vec<E<'_>> = lower.iter().map(|(p, b)| E::File(p, b.clone())).collect();
    check(
        &root("layers-diff-wh-image", &[tar_of(&files)], diff(), &[]),
        "image",
    );

    let work = scratch("layers-diff-wh-dir");
    let dir = work.join("rootfs");
    for (p, b) in &lower {
        std::fs::create_dir_all(dir.join(p).parent().unwrap()).unwrap();
        std::fs::write(dir.join(p), b).unwrap();
    }
    let r = RootFs::new(
        Base::Dir(dir),
        &diff_archive(&work.join("ckpt"), diff(), &[]),
    );
    check(&r, "--rootfs");
}
