//! `--image` end to end: the same cores from every image form as from the image
//! unpacked with tar (ckbox), and a synthetic layered image whose upper layer whites
//! out a mapped library (left out of the sysroot and NT_FILE, and named).

mod common;

use std::path::{Path, PathBuf};

use ck2core::images::magic;
use common::synth::*;
use common::*;

fn ckbox_forms(work: &Path) -> Vec<PathBuf> {
    let dir = testdata().join("ckbox/ckbox-image.oci-dir");
    let oci = work.join("ckbox-image.oci.tar");
    image_forms::oci_archive(&dir, &oci);
    let docker = work.join("ckbox-image.docker.tar");
    image_forms::docker_archive(&dir, &docker);
    vec![dir, oci, docker]
}

#[test]
fn ckbox_cores_are_the_same_from_every_image_form_as_from_the_unpacked_root() {
    let work = scratch("image-ckbox");
    let root = work.join("root");
    image_forms::unpack_layer(
        &testdata().join("ckbox/ckbox-image.oci-dir"),
        "sha256:f0df1855e792a72e26f4faeca12a4cc2423fc65e1a30d10caf2c9849c0b68926",
        &root,
    );
    let ckpt = testdata().join("ckbox/ckbox.tar.zst");
    let convert = |name: &str, flag: &str, src: &Path| -> PathBuf {
        let out = work.join(name);
        ck2core_ok(&[
            ckpt.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            flag,
            src.to_str().unwrap(),
        ]);
        out
    };
    let base = convert("cores-rootfs", "--rootfs", &root);
    let cores = |d: &Path| -> Vec<Vec<u8>> {
        ["core.1", "core.9"]
            .iter()
            .map(|c| std::fs::read(d.join(c)).unwrap())
            .collect()
    };
    let want = cores(&base);
    // The cores hold busybox's file pages, which only the root has.
    let core = CoreFile::open(&base.join("core.1"));
    assert!(core
        .notes()
        .iter()
        .any(|n| n.ntype == 0x4649_4c45 && n.desc.windows(12).any(|w| w == b"/bin/busybox")));
    let busybox = std::fs::read(root.join("bin/busybox")).unwrap();
    for (i, form) in ckbox_forms(&work).iter().enumerate() {
        let out = convert(&format!("cores-image-{i}"), "--image", form);
        assert!(want == cores(&out), "{}: cores differ", form.display());
        assert_eq!(files_under(&out.join("sysroot")), ["bin/busybox"]);
        assert!(
            std::fs::read(out.join("sysroot/bin/busybox")).unwrap() == busybox,
            "{}: sysroot's busybox differs from the layer's",
            form.display()
        );
        // The loader's name for it (bin/sh -> busybox) is there too, as a link.
        assert_eq!(
            std::fs::read_link(out.join("sysroot/bin/sh")).unwrap(),
            Path::new("../bin/busybox")
        );
    }
}

const BASE: u64 = 0x2000_0000;

fn layer(files: &[(&str, &[u8])]) -> Vec<u8> {
    let files: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|(name, data)| (name.to_string(), data.to_vec()))
        .collect();
    image_forms::tar_bytes(&files)
}

#[test]
fn a_library_whited_out_in_an_upper_layer_is_left_out_and_named() {
    let work = scratch("image-whiteout");
    let dir = work.join("dump");
    let mut p = Proc::new(60);
    p.vmas = vec![
        vma(BASE, BASE + PAGE, FILE_PRIVATE, 3, 0),
        vma(BASE + PAGE, BASE + 2 * PAGE, FILE_PRIVATE, 4, 0),
    ];
    write_images(&dir, &[p]);
    put(
        &dir,
        "files.img",
        magic::FILES,
        &[
            reg_file(3, "/lib/libgone.so", PAGE),
            reg_file(4, "/lib/libkept.so", PAGE),
        ],
    );
    let gone = vec![b'g'; PAGE as usize];
    let kept = vec![b'k'; PAGE as usize];
    // A one-layer image (ckbox's busybox), then a layer with both libraries, then a
    // layer whiting one out.
    let img1 = work.join("img1");
    let libs = layer(&[("lib/libgone.so", &gone), ("lib/libkept.so", &kept)]);
    image_forms::with_layer_on_top(&testdata().join("ckbox/ckbox-image.oci-dir"), &libs, &img1);
    let img = work.join("img");
    image_forms::with_layer_on_top(&img1, &layer(&[("lib/.wh.libgone.so", b"")]), &img);
    let out = work.join("cores");
    let printed = ck2core_ok(&[
        dir.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--image",
        img.to_str().unwrap(),
        "-v",
    ]);
    // -v says which layer each file came from, and what each layer gave.
    let digest = |tar: &[u8]| image_forms::sha(&zstd::encode_all(tar, 3).unwrap());
    let l2 = format!("layer 2 ({})", digest(&libs));
    let l3 = format!(
        "layer 3 ({})",
        digest(&layer(&[("lib/.wh.libgone.so", b"")]))
    );
    let said: Vec<&str> = printed.lines().map(str::trim).collect();
    assert!(
        said.contains(&format!("/lib/libkept.so: 1 pages, from {l2} of --image").as_str()),
        "{printed}"
    );
    let per_layer: Vec<&str> = said
        .iter()
        .copied()
        .filter(|l| l.starts_with("layer ") || l.starts_with("rootfs-diff.tar:"))
        .collect();
    assert_eq!(per_layer.len(), 4, "{printed}");
    assert!(
        per_layer[0].starts_with("layer 1 (sha256:") && per_layer[0].ends_with("): no mapped file")
    );
    assert_eq!(per_layer[1], format!("{l2}: 1 mapped file, 4.0 KiB"));
    assert_eq!(per_layer[2], format!("{l3}: no mapped file"));
    assert_eq!(per_layer[3], "rootfs-diff.tar: no mapped file");
    assert!(
        printed.contains("1 mapped file not in the container's files (or different there), left out of NT_FILE:\n             /lib/libgone.so: removed by a whiteout in layer 3 (sha256:"),
        "{printed}"
    );
    assert_eq!(files_under(&out.join("sysroot")), ["lib/libkept.so"]);
    assert_eq!(
        std::fs::read(out.join("sysroot/lib/libkept.so")).unwrap(),
        kept
    );
    let core = CoreFile::open(&out.join("core.60"));
    let nt_file = core
        .notes()
        .into_iter()
        .find(|n| n.ntype == 0x4649_4c45)
        .unwrap();
    let names = String::from_utf8_lossy(&nt_file.desc).into_owned();
    assert!(
        names.contains("/lib/libkept.so") && !names.contains("libgone"),
        "{names:?}"
    );
}
