//! Building the image forms `--image` reads from an OCI layout directory: the same
//! image as an OCI archive (the layout in a tar) and as a Docker archive (each layer
//! decompressed, named by its diff id, with `manifest.json`), and a copy of a layout
//! with one more layer on top. Digests are real (sha256), as the reader checks them.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sha2::Digest;

fn sha(b: &[u8]) -> String {
    format!("sha256:{}", hex(&sha2::Sha256::digest(b)))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
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

/// Writes a tar at `out` of (name, bytes).
fn write_tar(out: &Path, files: &[(String, Vec<u8>)]) {
    let mut b = tar::Builder::new(std::fs::File::create(out).unwrap());
    for (name, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    b.finish().unwrap();
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
    let put = |bytes: &[u8]| -> String {
        let d = sha(bytes);
        std::fs::write(blob_path(out, &d), bytes).unwrap();
        d
    };
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
