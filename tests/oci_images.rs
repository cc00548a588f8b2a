//! The image reader (src/archive/oci.rs) on the real ckbox images and on images built
//! here: every form, platform selection, layered checkpoint images, and damaged
//! indexes, manifests and blobs. The oracle for a layer stream is the image's own
//! config: a decompressed layer must hash to its `rootfs.diff_ids` entry.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};

use ck2core::archive::oci::{Compression, ImageFile, ImageFormat};
use ck2core::archive::Limits;
use common::image_forms::*;
use common::*;
use serde_json::{json, Value};
use sha2::Digest;

fn ckbox(name: &str) -> PathBuf {
    testdata().join("ckbox").join(name)
}

fn limits() -> Limits {
    Limits::default()
}

/// Reads a layer's stream to the end and returns its digest.
fn stream_digest(layer: &ck2core::archive::oci::Layer) -> String {
    let mut r = layer.open().unwrap();
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = r.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    format!("sha256:{:x}", h.finalize())
}

fn diff_ids(config: &Value) -> Vec<String> {
    config["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

const CKBOX_ID: &str = "sha256:6fae9915881633469898d89f295b69d45aa8870cb77b0aa4060180f1385afa30";
const CKBOX_LAYER: &str = "f0df1855e792a72e26f4faeca12a4cc2423fc65e1a30d10caf2c9849c0b68926";

#[test]
fn the_real_layout_and_archive() {
    for (path, format) in [
        (ckbox("ckbox-image.oci-dir"), ImageFormat::OciLayout),
        (ckbox("ckbox-checkpoint.oci.tar"), ImageFormat::OciArchive),
        (ckbox("ckbox-checkpoint.oci-dir"), ImageFormat::OciLayout),
    ] {
        let f = ImageFile::open(&path, &limits()).unwrap();
        assert_eq!(f.format(), format, "{}", path.display());
        let img = f.select(Some("x86_64")).unwrap();
        assert_eq!(img.architecture(), Some("amd64"));
        assert_eq!(img.layers.len(), 1);
        assert_eq!(img.layers[0].compression().unwrap(), Compression::Gzip);
        assert_eq!(stream_digest(&img.layers[0]), diff_ids(&img.config)[0]);
        let err = f.select(Some("arm64")).unwrap_err().to_string();
        assert!(err.contains("no image for architecture arm64"), "{err}");
    }
    let img = ImageFile::open(&ckbox("ckbox-image.oci-dir"), &limits())
        .unwrap()
        .select(None)
        .unwrap();
    assert_eq!(img.id, CKBOX_ID);
    assert_eq!(img.reference.as_deref(), Some("localhost/ckbox:1"));
    assert_eq!(
        img.manifest_digest.as_deref(),
        Some("sha256:a7e027be2ff28ffc611b80bd249478c5bd2fe2d14c135342d8feb4ca730f6973")
    );
    let ck = ImageFile::open(&ckbox("ckbox-checkpoint.oci.tar"), &limits())
        .unwrap()
        .select(None)
        .unwrap();
    assert_eq!(
        ck.annotations["org.criu.checkpoint.container.name"],
        "ckbox"
    );
    assert_eq!(
        ck.annotations["org.opencontainers.image.ref.name"],
        "localhost/ckbox-checkpoint:1"
    );
}

fn one_layer() -> Vec<u8> {
    gzip(&tar_bytes(&[("etc/x".into(), b"hello".to_vec())]))
}

#[test]
fn platforms_are_chosen_from_a_nested_index() {
    let l = Layout::new("oci-platforms");
    let layer = one_layer();
    let amd = l.manifest("amd64", std::slice::from_ref(&layer), json!({}));
    let arm = l.manifest("arm64", std::slice::from_ref(&layer), json!({}));
    let mt = "application/vnd.oci.image.manifest.v1+json";
    let inner = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [
        {"mediaType": mt, "digest": l.blob(&amd), "size": amd.len(),
         "platform": {"os": "linux", "architecture": "amd64"}},
        {"mediaType": mt, "digest": l.blob(&arm), "size": arm.len(),
         "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        {"mediaType": mt, "digest": l.blob(&amd), "size": amd.len(),
         "platform": {"os": "unknown", "architecture": "unknown"}},
    ]});
    let inner = serde_json::to_vec(&inner).unwrap();
    l.index(vec![
        json!({"mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": l.blob(&inner), "size": inner.len(),
        "annotations": {"org.opencontainers.image.ref.name": "multi:1"}}),
    ]);
    let f = ImageFile::open(&l.dir, &limits()).unwrap();
    assert_eq!(
        f.manifests().unwrap().len(),
        2,
        "the attestation is left out"
    );
    let img = f.select(Some("aarch64")).unwrap();
    assert_eq!(img.manifest_digest.as_deref(), Some(&sha(&arm)[..]));
    assert_eq!(img.architecture(), Some("arm64"));
    assert_eq!(
        img.annotations["org.opencontainers.image.ref.name"],
        "multi:1"
    );
    let img = f.select(Some("amd64")).unwrap();
    assert_eq!(img.manifest_digest.as_deref(), Some(&sha(&amd)[..]));
    let err = f.select(None).unwrap_err().to_string();
    assert!(
        err.contains("holds several images") && err.contains("linux/arm64/v8"),
        "{err}"
    );
    let err = f.select(Some("s390x")).unwrap_err().to_string();
    assert!(err.contains("no image for architecture s390x"), "{err}");
}

#[test]
fn a_docker_archive_in_the_legacy_layout() {
    // As `podman save --format docker-archive` writes it: the layer as a plain tar
    // named by its diff id, `<id>/layer.tar` a link to it, the config by its hex.
    let src = ImageFile::open(&ckbox("ckbox-image.oci-dir"), &limits())
        .unwrap()
        .select(None)
        .unwrap();
    let layer = decompressed(
        &std::fs::read(ckbox(&format!(
            "ckbox-image.oci-dir/blobs/sha256/{CKBOX_LAYER}"
        )))
        .unwrap(),
    );
    let config = std::fs::read(ckbox(&format!(
        "ckbox-image.oci-dir/blobs/sha256/{}",
        CKBOX_ID.trim_start_matches("sha256:")
    )))
    .unwrap();
    let diff = sha(&layer);
    let dhex = diff.trim_start_matches("sha256:");
    let chex = CKBOX_ID.trim_start_matches("sha256:");
    let manifest = serde_json::to_vec(&json!([{"Config": format!("{chex}.json"),
        "RepoTags": ["localhost/ckbox:1"], "Layers": [format!("{dhex}.tar")]}]))
    .unwrap();
    let path = scratch("oci-docker").join("image.tar");
    let tar = tar_with_links(
        &[
            (format!("{dhex}.tar"), layer),
            (format!("{chex}.json"), config),
            ("manifest.json".into(), manifest),
        ],
        &[("abcd/layer.tar", &format!("../{dhex}.tar"))],
    );
    std::fs::write(&path, tar).unwrap();
    let f = ImageFile::open(&path, &limits()).unwrap();
    assert_eq!(f.format(), ImageFormat::DockerArchive);
    let img = f.select(Some("amd64")).unwrap();
    assert_eq!(img.id, CKBOX_ID, "the image id is the config's digest");
    assert_eq!(img.repo_tags, ["localhost/ckbox:1"]);
    assert_eq!(img.layers[0].compression().unwrap(), Compression::None);
    assert_eq!(stream_digest(&img.layers[0]), diff_ids(&src.config)[0]);
}

/// The cores of `input`, converted from a link at a place fixed per `test` (the
/// cores' own note names the input).
fn cores_of(input: &Path, test: &str, name: &str) -> Vec<Vec<u8>> {
    let out = scratch(name);
    let at = scratch(&format!("{test}-in")).join("checkpoint");
    let _ = std::fs::remove_file(&at);
    std::os::unix::fs::symlink(input, &at).unwrap();
    ck2core_ok(&[at.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    [1, 9]
        .iter()
        .map(|p| std::fs::read(out.join(format!("core.{p}"))).unwrap())
        .collect()
}

#[test]
fn a_layered_checkpoint_image_reads_like_one_archive() {
    // Three layers, each compressed differently: the lowest has everything but one
    // pages file, and a stale image and a bogus core the upper ones hide.
    let members = tar_members(&ckbox("ckbox.tar.zst"));
    let (pages, rest): (Vec<_>, Vec<_>) = members
        .into_iter()
        .partition(|(n, _)| n == "checkpoint/pages-2.img");
    let mut low: Vec<(String, Vec<u8>)> = rest
        .iter()
        .map(|(n, b)| {
            let b = if n == "checkpoint/core-1.img" {
                b"not a core image".to_vec()
            } else {
                b.clone()
            };
            (n.clone(), b)
        })
        .collect();
    low.push(("checkpoint/core-77.img".into(), b"stale".to_vec()));
    low.push(("stale/a".into(), b"x".to_vec()));
    let low = tar_bytes(&low);
    let mid = zstd::encode_all(
        &tar_bytes(&[
            ("checkpoint/.wh.core-77.img".into(), Vec::new()),
            (".wh.stale".into(), Vec::new()),
        ])[..],
        3,
    )
    .unwrap();
    let core1 = rest
        .iter()
        .find(|(n, _)| n == "checkpoint/core-1.img")
        .unwrap()
        .clone();
    let high = gzip(&tar_bytes(&[pages[0].clone(), core1]));
    let l = Layout::new("oci-layered");
    let man = l.manifest(
        "amd64",
        &[low, mid, high],
        json!({"io.podman.annotations.checkpoint.name": "ckbox"}),
    );
    l.index(vec![
        json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": l.blob(&man), "size": man.len()}),
    ]);

    assert_eq!(
        cores_of(&l.dir, "oci-layered", "oci-layered-cores"),
        cores_of(&ckbox("ckbox.tar.zst"), "oci-layered", "oci-layered-ref")
    );
    let out = ck2core(&["info", l.dir.to_str().unwrap()]);
    let info = String::from_utf8_lossy(&out.stdout);
    assert!(
        info.contains("(tar, ") && info.contains("(zstd, ") && info.contains("(gzip, "),
        "{info}"
    );
    assert!(info.contains("Container: ckbox"), "{info}");
}

#[test]
fn a_docker_archive_checkpoint_marked_by_its_config_labels() {
    // Docker archives keep no annotations; buildah's docker format keeps labels.
    let layer = tar_bytes(&tar_members(&ckbox("ckbox.tar.zst")));
    let config = serde_json::to_vec(&json!({"architecture": "amd64", "os": "linux",
        "config": {"Labels": {"io.kubernetes.cri-o.annotations.checkpoint.name": "ckbox"}},
        "rootfs": {"type": "layers", "diff_ids": [sha(&layer)]}}))
    .unwrap();
    let manifest = serde_json::to_vec(&json!([{"Config": "c.json",
        "RepoTags": ["localhost/ck:1"], "Layers": ["l/layer.tar"]}]))
    .unwrap();
    let path = scratch("oci-docker-ck").join("ck.tar");
    write_tar(
        &path,
        &[
            ("l/layer.tar".into(), layer),
            ("c.json".into(), config),
            ("manifest.json".into(), manifest),
        ],
    );
    assert_eq!(
        cores_of(&path, "oci-docker-ck", "oci-docker-ck-cores"),
        cores_of(
            &ckbox("ckbox.tar.zst"),
            "oci-docker-ck",
            "oci-docker-ck-ref"
        )
    );
    let out = ck2core(&["info", path.to_str().unwrap()]);
    let info = String::from_utf8_lossy(&out.stdout);
    assert!(
        info.contains("Checkpoint image: localhost/ck:1 (docker-archive)"),
        "{info}"
    );
    assert!(
        info.contains("io.kubernetes.cri-o.annotations.checkpoint.name=ckbox"),
        "{info}"
    );
}

/// A copy of the real checkpoint layout to damage.
fn checkpoint_copy(name: &str) -> PathBuf {
    let dir = scratch(name);
    let st = std::process::Command::new("cp")
        .arg("-r")
        .arg(ckbox("ckbox-checkpoint.oci-dir"))
        .arg(dir.join("img"))
        .status()
        .unwrap();
    assert!(st.success());
    let img = dir.join("img");
    let _ = std::process::Command::new("chmod")
        .args(["-R", "u+w"])
        .arg(&img)
        .status();
    img
}

const CK_MANIFEST: &str = "df06dc1b51d0401d5a093cb31c9b4e23557ba21932da112d6981c90d3ff741d7";
const CK_LAYER: &str = "809020c76d3ff2bc1015e8f19079562ca82239b6ff125dbe521ce1e6879b210d";
const CK_CONFIG: &str = "6dd2fa95f1f40996bbd88fc1d6b0e378b302f1aaf9e6fb24c12c4f7940bf0321";

/// Runs `ck2core` on `img`: it must fail, write nothing, and say `want`.
fn refused(img: &Path, want: &[&str]) {
    let out = scratch("oci-refused-out");
    let res = ck2core(&[img.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(!res.status.success(), "accepted a damaged image");
    assert!(!err.contains("panicked"), "{err}");
    for w in want {
        assert!(err.contains(w), "error lacks {w:?}: {err}");
    }
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0, "wrote files");
}

#[test]
fn damaged_images_are_refused_with_the_blob_and_field_named() {
    let blob = |img: &Path, d: &str| img.join("blobs/sha256").join(d);

    // A manifest whose bytes no longer match its digest.
    let img = checkpoint_copy("oci-bad-digest");
    let p = blob(&img, CK_MANIFEST);
    let mut b = std::fs::read(&p).unwrap();
    let at = b.len() - 3;
    b[at] = b'X';
    std::fs::write(&p, b).unwrap();
    refused(&img, &[CK_MANIFEST, "does not match its digest"]);

    // A layer shorter than its descriptor says.
    let img = checkpoint_copy("oci-short-layer");
    let p = blob(&img, CK_LAYER);
    let b = std::fs::read(&p).unwrap();
    std::fs::write(&p, &b[..b.len() / 2]).unwrap();
    refused(&img, &[CK_LAYER, "its descriptor says 40969"]);

    // A missing config.
    let img = checkpoint_copy("oci-no-config");
    std::fs::remove_file(blob(&img, CK_CONFIG)).unwrap();
    refused(
        &img,
        &[
            &format!("config sha256:{CK_CONFIG} of manifest"),
            "No such file",
        ],
    );

    // index.json that is not an index; then one naming a path, not a digest.
    let img = checkpoint_copy("oci-bad-index");
    std::fs::write(img.join("index.json"), b"{\"schemaVersion\":2}").unwrap();
    refused(
        &img,
        &["index.json: not a valid OCI image index", "manifests"],
    );
    std::fs::write(
        img.join("index.json"),
        br#"{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:../../../../etc/passwd","size":1}]}"#,
    )
    .unwrap();
    refused(&img, &["malformed digest", "../../"]);

    // A blob that is a symbolic link.
    let img = checkpoint_copy("oci-link-blob");
    let p = blob(&img, CK_LAYER);
    std::fs::remove_file(&p).unwrap();
    std::os::unix::fs::symlink(
        ckbox("ckbox-checkpoint.oci-dir/blobs/sha256").join(CK_LAYER),
        &p,
    )
    .unwrap();
    refused(&img, &[CK_LAYER, "not a regular file"]);

    // A layer of garbage, and a layer whose gzip stream is cut (same size, so the
    // descriptor check passes and decompression must find it).
    let img = checkpoint_copy("oci-garbage-layer");
    let p = blob(&img, CK_LAYER);
    let n = std::fs::metadata(&p).unwrap().len() as usize;
    let man_path = blob(&img, CK_MANIFEST);
    let fix_manifest = |img: &Path, layer: &[u8]| {
        // Store `layer` under its own digest and point the manifest at it.
        let d = sha(layer);
        std::fs::write(
            img.join("blobs/sha256")
                .join(d.trim_start_matches("sha256:")),
            layer,
        )
        .unwrap();
        let m = std::fs::read_to_string(blob(img, CK_MANIFEST))
            .unwrap()
            .replace(&format!("sha256:{CK_LAYER}"), &d)
            .replace("\"size\":40969", &format!("\"size\":{}", layer.len()));
        let md = sha(m.as_bytes());
        std::fs::write(
            img.join("blobs/sha256")
                .join(md.trim_start_matches("sha256:")),
            &m,
        )
        .unwrap();
        let idx = std::fs::read_to_string(img.join("index.json"))
            .unwrap()
            .replace(&format!("sha256:{CK_MANIFEST}"), &md)
            .replace("\"size\":604", &format!("\"size\":{}", m.len()));
        std::fs::write(img.join("index.json"), idx).unwrap();
        d
    };
    let _ = man_path;
    let d = fix_manifest(&img, &vec![0x42u8; n]);
    refused(&img, &[&d, "neither a tar, gzip nor zstd"]);
    let img = checkpoint_copy("oci-cut-layer");
    let mut cut = std::fs::read(blob(&img, CK_LAYER)).unwrap();
    cut.truncate(cut.len() / 2);
    let d = fix_manifest(&img, &cut);
    refused(&img, &[&d]);

    // Two checkpoint manifests: one checkpoint at a time.
    let img = checkpoint_copy("oci-two");
    let idx = std::fs::read_to_string(img.join("index.json")).unwrap();
    let v: Value = serde_json::from_str(&idx).unwrap();
    let d = v["manifests"][0].clone();
    std::fs::write(
        img.join("index.json"),
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [d.clone(), {
            "mediaType": d["mediaType"], "digest": d["digest"], "size": d["size"],
            "annotations": {"org.opencontainers.image.ref.name": "other"}}]}))
        .unwrap(),
    )
    .unwrap();
    refused(&img, &["holds 2 checkpoint images"]);
}

#[test]
fn decompression_is_bounded() {
    let l = Layout::new("oci-bomb");
    let big = gzip(&vec![0u8; 8 << 20]);
    let man = l.manifest("amd64", std::slice::from_ref(&big), json!({}));
    l.index(vec![
        json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": l.blob(&man), "size": man.len()}),
    ]);
    let small = Limits {
        max_unpacked: 1 << 20,
    };
    let img = ImageFile::open(&l.dir, &small)
        .unwrap()
        .select(None)
        .unwrap();
    let mut r = img.layers[0].open().unwrap();
    let mut sink = Vec::new();
    let err = r.read_to_end(&mut sink).unwrap_err().to_string();
    assert!(
        err.contains("unpacked-size limit") && err.contains(&sha(&big)),
        "{err}"
    );
    assert!(sink.len() <= 1 << 20);

    // The same as a checkpoint image, through the command line's flag.
    let l = Layout::new("oci-bomb-ck");
    let big = gzip(&tar_bytes(&[(
        "checkpoint/pages-1.img".into(),
        vec![0u8; 4 << 20],
    )]));
    let man = l.manifest(
        "amd64",
        std::slice::from_ref(&big),
        json!({"org.criu.checkpoint.container.name": "x"}),
    );
    l.index(vec![
        json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": l.blob(&man), "size": man.len()}),
    ]);
    let out = ck2core(&["ps", l.dir.to_str().unwrap(), "--max-unpacked", "1000000"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--max-unpacked") && err.contains(&sha(&big)),
        "{err}"
    );
}

#[test]
fn indexes_nested_too_deep_are_refused() {
    let l = Layout::new("oci-deep");
    let layer = one_layer();
    let man = l.manifest("amd64", &[layer], json!({}));
    let mut desc = json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": l.blob(&man), "size": man.len()});
    for _ in 0..6 {
        let idx = serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [desc]})).unwrap();
        desc = l.desc("application/vnd.oci.image.index.v1+json", &idx);
    }
    l.index(vec![desc]);
    let err = ImageFile::open(&l.dir, &limits())
        .unwrap()
        .manifests()
        .unwrap_err()
        .to_string();
    assert!(err.contains("nested more than 4 deep"), "{err}");
}
