//! Building images and archives for the tests: tars, gzip, OCI layout directories
//! blob by blob ([`Layout`]), and the image forms `--image` reads from an OCI layout
//! directory: the same image as an OCI archive (the layout in a tar) and as a Docker
//! archive (each layer decompressed, named by its diff id, with `manifest.json`), and
//! a copy of a layout with one more layer on top. Digests are real (sha256), as the
//! reader checks them.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sha2::Digest;

/// The sha256 digest of `b`, as OCI writes it (`sha256:<hex>`).
pub fn sha(b: &[u8]) -> String {
    format!("sha256:{:x}", sha2::Sha256::digest(b))
}

/// Where the layout at `layout` keeps the blob `digest`.
pub fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// Unpacks the gzip layer `digest` of the OCI layout `layout` into `root` (made if
/// missing), with the system's tar, as a user unpacks an image by hand.
pub fn unpack_layer(layout: &Path, digest: &str, root: &Path) {
    std::fs::create_dir_all(root).unwrap();
    let layer = blob_path(layout, digest);
    let st = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(&layer)
        .arg("-C")
        .arg(root)
        .status()
        .expect("tar must be installed");
    assert!(st.success(), "tar -xzf {}", layer.display());
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// The layout's one manifest: (index entry, manifest).
fn manifest(layout: &Path) -> (Value, Value) {
    let index = read_json(&layout.join("index.json"));
    let entry = index["manifests"][0].clone();
    let m = read_json(&blob_path(layout, entry["digest"].as_str().unwrap()));
    (entry, m)
}

/// A layer blob decompressed (gzip or zstd, by its first bytes).
pub fn decompressed(blob: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    if blob.starts_with(&[0x1f, 0x8b]) {
        flate2::read::GzDecoder::new(blob)
            .read_to_end(&mut out)
            .unwrap();
    } else if blob.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        out = zstd::decode_all(blob).unwrap();
    } else {
        out = blob.to_vec();
    }
    out
}

/// `b` gzip-compressed.
pub fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

/// A tar of `files` (name, bytes) then the symbolic `links` (name, target).
pub fn tar_with_links(files: &[(String, Vec<u8>)], links: &[(&str, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    for (name, target) in links {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, name, target).unwrap();
    }
    b.into_inner().unwrap()
}

/// A tar of `files` (name, bytes).
pub fn tar_bytes(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    tar_with_links(files, &[])
}

/// Writes a tar of `files` (name, bytes) at `out`.
pub fn write_tar(out: &Path, files: &[(String, Vec<u8>)]) {
    std::fs::write(out, tar_bytes(files)).unwrap();
}

/// The regular files of the tar at `path` (zstd-compressed when it ends in `.zst`),
/// in archive order: (name, bytes); directories and links left out.
pub fn tar_members(path: &Path) -> Vec<(String, Vec<u8>)> {
    let f = std::fs::File::open(path).unwrap();
    let r: Box<dyn Read> = if path.extension().is_some_and(|e| e == "zst") {
        Box::new(zstd::Decoder::new(f).unwrap())
    } else {
        Box::new(f)
    };
    let mut a = tar::Archive::new(r);
    let mut out = Vec::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut b = Vec::new();
        e.read_to_end(&mut b).unwrap();
        out.push((name, b));
    }
    out
}

/// An OCI layout directory under construction.
pub struct Layout {
    /// The layout directory.
    pub dir: PathBuf,
}

impl Layout {
    /// An empty layout in a fresh scratch directory `name`.
    pub fn new(name: &str) -> Layout {
        let dir = super::scratch(name);
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout { dir }
    }

    /// Stores `bytes` as a blob; returns its digest.
    pub fn blob(&self, bytes: &[u8]) -> String {
        let d = sha(bytes);
        std::fs::write(blob_path(&self.dir, &d), bytes).unwrap();
        d
    }

    /// Stores `bytes` as a blob; returns its descriptor as `media`.
    pub fn desc(&self, media: &str, bytes: &[u8]) -> Value {
        json!({"mediaType": media, "digest": self.blob(bytes), "size": bytes.len()})
    }

    /// A manifest for `layers` (stored here as they are, plain or compressed) and a
    /// config for `arch` whose diff ids are the layers' decompressed digests.
    pub fn manifest(&self, arch: &str, layers: &[Vec<u8>], annotations: Value) -> Vec<u8> {
        let diff: Vec<String> = layers.iter().map(|l| sha(&decompressed(l))).collect();
        let config = serde_json::to_vec(&json!({
            "architecture": arch, "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": diff}
        }))
        .unwrap();
        let man = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": self.desc("application/vnd.oci.image.config.v1+json", &config),
            "layers": layers.iter().map(|l| self.desc("application/vnd.oci.image.layer.v1.tar", l)).collect::<Vec<_>>(),
            "annotations": annotations,
        });
        serde_json::to_vec(&man).unwrap()
    }

    /// Writes index.json listing `manifests` (descriptors).
    pub fn index(&self, manifests: Vec<Value>) {
        let idx = json!({"schemaVersion": 2, "manifests": manifests});
        std::fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec(&idx).unwrap(),
        )
        .unwrap();
    }
}

/// The layout directory as an OCI archive at `out`.
pub fn oci_archive(layout: &Path, out: &Path) {
    let mut files = vec![
        (
            "oci-layout".to_string(),
            std::fs::read(layout.join("oci-layout")).unwrap(),
        ),
        (
            "index.json".to_string(),
            std::fs::read(layout.join("index.json")).unwrap(),
        ),
    ];
    let mut blobs: Vec<_> = std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    blobs.sort();
    for b in blobs {
        let name = format!("blobs/sha256/{}", b.file_name().unwrap().to_str().unwrap());
        files.push((name, std::fs::read(&b).unwrap()));
    }
    write_tar(out, &files);
}

/// The layout's image as a Docker archive at `out` (as `docker save` writes it).
pub fn docker_archive(layout: &Path, out: &Path) {
    let (entry, m) = manifest(layout);
    let cdigest = m["config"]["digest"].as_str().unwrap();
    let config = std::fs::read(blob_path(layout, cdigest)).unwrap();
    let chex = cdigest.trim_start_matches("sha256:");
    let mut files = vec![(format!("{chex}.json"), config)];
    let mut names = Vec::new();
    for l in m["layers"].as_array().unwrap() {
        let blob = std::fs::read(blob_path(layout, l["digest"].as_str().unwrap())).unwrap();
        let tar = decompressed(&blob);
        let name = format!("{}.tar", sha(&tar).trim_start_matches("sha256:"));
        names.push(name.clone());
        files.push((name, tar));
    }
    let tag = entry["annotations"]["org.opencontainers.image.ref.name"].clone();
    let man = json!([{"Config": format!("{chex}.json"), "RepoTags": [tag], "Layers": names}]);
    files.push((
        "manifest.json".to_string(),
        serde_json::to_vec(&man).unwrap(),
    ));
    write_tar(out, &files);
}

/// A copy of `layout` at `out` whose image has `layer` (a tar, stored zstd-compressed)
/// on top of its own layers.
pub fn with_layer_on_top(layout: &Path, layer: &[u8], out: &Path) {
    std::fs::create_dir_all(out.join("blobs/sha256")).unwrap();
    std::fs::copy(layout.join("oci-layout"), out.join("oci-layout")).unwrap();
    for e in std::fs::read_dir(layout.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), out.join("blobs/sha256").join(e.file_name())).unwrap();
    }
    let top = Layout {
        dir: out.to_path_buf(),
    };
    let put = |bytes: &[u8]| top.blob(bytes);
    let (mut entry, mut m) = manifest(layout);
    let cdigest = m["config"]["digest"].as_str().unwrap().to_string();
    let mut config = read_json(&blob_path(layout, &cdigest));
    config["rootfs"]["diff_ids"]
        .as_array_mut()
        .unwrap()
        .push(json!(sha(layer)));
    let config = serde_json::to_vec(&config).unwrap();
    let zst = zstd::encode_all(layer, 3).unwrap();
    m["config"]["digest"] = json!(put(&config));
    m["config"]["size"] = json!(config.len());
    m["layers"].as_array_mut().unwrap().push(json!({
        "mediaType": "application/vnd.oci.image.layer.v1.tar+zstd",
        "digest": put(&zst),
        "size": zst.len(),
    }));
    let m = serde_json::to_vec(&m).unwrap();
    entry["digest"] = json!(put(&m));
    entry["size"] = json!(m.len());
    let index = json!({"schemaVersion": 2, "manifests": [entry]});
    std::fs::write(out.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}
