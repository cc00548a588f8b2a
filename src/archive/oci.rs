//! Container images as the registries and engines hand them over: an OCI image layout
//! directory, an OCI archive (that layout in a tar: `podman save --format oci-archive`,
//! `skopeo copy oci-archive:`) and a Docker archive (`docker save`, `podman save`:
//! `manifest.json` and the legacy layout).
//!
//! [`ImageFile::open`] detects the form from the content; [`ImageFile::select`] picks a
//! manifest (by architecture when the index names several platforms) and returns an
//! [`Image`]: its id, annotations, config and [`Layer`]s. A layer is a blob read in
//! place (a byte range of the archive, or a file of the layout directory) and opened
//! as a decompressed stream, its compression sniffed from its first bytes. Nothing is
//! extracted. JSON blobs are read whole up to [`MAX_JSON`] bytes and checked against
//! their digest; layers are checked against their descriptor's size and expand to at
//! most [`Limits::max_unpacked`] bytes.
//!
//! Layouts followed: the OCI image spec v1.1 (`image-layout.md`, `image-index.md`,
//! `manifest.md`, `descriptor.md`) and Docker's `image/spec/v1.2.md` ("Combined Image
//! JSON + Filesystem Changeset Format", `manifest.json`).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;
use sha2::Digest as _;

use super::{hex, normalize_name, resolve_link, Archive, Blob, Limits};
use crate::error::{Error, Result};

/// Largest index, manifest or config blob read (they are JSON documents of a few KiB).
pub const MAX_JSON: u64 = 8 << 20;

/// Nested indexes followed at most this deep (an index naming itself is an error).
const MAX_INDEX_DEPTH: usize = 4;

/// Most manifests an image file may name in all.
const MAX_MANIFESTS: usize = 4096;

/// The annotation naming the reference (tag) of a manifest in an OCI layout.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Which of the image forms a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    /// An OCI image layout directory (`oci-layout`, `index.json`, `blobs/`).
    OciLayout,
    /// An OCI image layout in a tar.
    OciArchive,
    /// A Docker archive (`manifest.json`, legacy layout).
    DockerArchive,
}

impl ImageFormat {
    /// Short name for messages and JSON: `oci-layout`, `oci-archive`, `docker-archive`.
    pub fn name(self) -> &'static str {
        match self {
            ImageFormat::OciLayout => "oci-layout",
            ImageFormat::OciArchive => "oci-archive",
            ImageFormat::DockerArchive => "docker-archive",
        }
    }
}

/// Where the image's files are.
#[derive(Debug)]
enum Store {
    /// A layout directory on disk.
    Dir(PathBuf),
    /// The index of a tar (in place, or spooled when it was compressed or piped).
    Tar(Archive),
}

/// An image file (directory or archive), opened; nothing read beyond its index yet.
#[derive(Debug)]
pub struct ImageFile {
    label: String,
    format: ImageFormat,
    store: Store,
    limits: Limits,
}

/// A platform as an image index or config names it.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
pub struct Platform {
    /// Operating system (`linux`).
    #[serde(default)]
    pub os: Option<String>,
    /// Architecture in OCI (Go) terms: `amd64`, `arm64`, `ppc64le`, `s390x`...
    #[serde(default)]
    pub architecture: Option<String>,
    /// Variant (`v7`, `v8`), if any.
    #[serde(default)]
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let os = self.os.as_deref().unwrap_or("?");
        let arch = self.architecture.as_deref().unwrap_or("?");
        write!(f, "{os}/{arch}")?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// A manifest an image file names: one candidate for [`ImageFile::image`].
#[derive(Debug, Clone)]
pub struct ManifestRef {
    /// Its digest (OCI), or `None` in a Docker archive (whose manifests are entries of
    /// `manifest.json`, not blobs).
    pub digest: Option<String>,
    /// The platform the index gives for it, if it gives one.
    pub platform: Option<Platform>,
    /// Annotations of `index.json`, of the indexes on the way, and of the descriptor
    /// (inner ones win).
    pub annotations: BTreeMap<String, String>,
    /// Its reference: `org.opencontainers.image.ref.name`, or the first of a Docker
    /// archive's `RepoTags`.
    pub reference: Option<String>,
    at: At,
}

#[derive(Debug, Clone)]
enum At {
    Oci {
        size: u64,
        media_type: Option<String>,
    },
    Docker {
        entry: usize,
    },
}

/// One image: a selected manifest and what it names.
#[derive(Debug, Clone)]
pub struct Image {
    /// The image form.
    pub format: ImageFormat,
    /// Its reference (tag), if the image file names one.
    pub reference: Option<String>,
    /// Every tag a Docker archive gives it (`RepoTags`).
    pub repo_tags: Vec<String>,
    /// The manifest's digest (OCI only).
    pub manifest_digest: Option<String>,
    /// The image id: the digest of its config blob, `sha256:<hex>`.
    pub id: String,
    /// Annotations of the index(es), the descriptor and the manifest (the manifest's
    /// win). Docker archives have none.
    pub annotations: BTreeMap<String, String>,
    /// The image config (`architecture`, `os`, `config.Labels`, `rootfs.diff_ids`...).
    pub config: Value,
    /// The layers, bottom first.
    pub layers: Vec<Layer>,
}

impl Image {
    /// The config's `architecture` (OCI terms).
    pub fn architecture(&self) -> Option<&str> {
        self.config.get("architecture").and_then(Value::as_str)
    }

    /// The config's `config.Labels`.
    pub fn labels(&self) -> BTreeMap<String, String> {
        string_map(self.config.pointer("/config/Labels"))
    }
}

/// How a layer's bytes are compressed, from their first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip (RFC 1952).
    Gzip,
    /// zstd (RFC 8878).
    Zstd,
}

impl Compression {
    /// Detects the compression of a tar stream from its first bytes (512 are enough);
    /// `None` when they are neither gzip, zstd nor a tar header.
    pub fn sniff(head: &[u8]) -> Option<Compression> {
        if head.starts_with(&[0x1f, 0x8b]) {
            Some(Compression::Gzip)
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Some(Compression::Zstd)
        } else if looks_like_tar(head) {
            Some(Compression::None)
        } else {
            None
        }
    }

    /// `tar`, `gzip` or `zstd`.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "tar",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// A tar header block (ustar, GNU or v7: its checksum is right), or the zero block
/// an empty tar starts with.
fn looks_like_tar(head: &[u8]) -> bool {
    if head.len() < 512 {
        return false;
    }
    let h = &head[..512];
    if h.iter().all(|&b| b == 0) {
        return true;
    }
    if &h[257..262] == b"ustar" {
        return true;
    }
    let field = std::str::from_utf8(&h[148..156]).unwrap_or("");
    let Ok(want) = u32::from_str_radix(field.trim_matches(|c: char| c == '\0' || c == ' '), 8)
    else {
        return false;
    };
    let sum: u32 = h
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                b as u32
            }
        })
        .sum();
    sum == want
}

/// One layer of an [`Image`].
#[derive(Debug, Clone)]
pub struct Layer {
    /// Its digest (OCI descriptors), or `None` (Docker archives name layers by path).
    pub digest: Option<String>,
    /// The descriptor's media type, if any (informative: the content decides).
    pub media_type: Option<String>,
    /// How the layer is named in messages: its digest, or its path in the archive.
    pub name: String,
    blob: Blob,
    max_unpacked: u64,
}

impl Layer {
    /// The layer's stored (possibly compressed) bytes, read in place.
    pub fn blob(&self) -> &Blob {
        &self.blob
    }

    /// The compression, sniffed from the first bytes; an error names the layer when
    /// they are neither a tar, gzip nor zstd.
    pub fn compression(&self) -> Result<Compression> {
        let mut head = vec![0u8; 512.min(self.blob.len()) as usize];
        self.blob.read_exact_at(0, &mut head)?;
        Compression::sniff(&head).ok_or_else(|| {
            Error::image(
                &self.name,
                format!(
                    "layer is neither a tar, gzip nor zstd stream (starts with {})",
                    hex(&head[..head.len().min(8)])
                ),
            )
        })
    }

    /// The layer as a tar stream: decompressed as its content says, and ending in an
    /// error naming the layer once it passes the unpacked-size limit.
    pub fn open(&self) -> Result<Box<dyn Read + Send>> {
        let raw = self.blob.reader();
        let stream: Box<dyn Read + Send> = match self.compression()? {
            Compression::None => Box::new(raw),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw)),
            Compression::Zstd => Box::new(
                zstd::stream::read::Decoder::new(raw)
                    .map_err(|e| Error::image(&self.name, format!("zstd: {e}")))?,
            ),
        };
        Ok(Box::new(Bounded {
            inner: stream,
            left: self.max_unpacked,
            what: self.name.clone(),
        }))
    }
}

/// A reader that fails, naming `what`, once more than `left` bytes have come out.
struct Bounded<R> {
    inner: R,
    left: u64,
    what: String,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            return Err(std::io::Error::other(format!(
                "{} expands to more than the unpacked-size limit; if that is expected, raise it with --max-unpacked",
                self.what
            )));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[derive(Deserialize)]
struct DescriptorJson {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    digest: String,
    size: i64,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct IndexJson {
    #[serde(rename = "schemaVersion")]
    schema_version: Option<i64>,
    manifests: Vec<DescriptorJson>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct ManifestJson {
    #[serde(rename = "schemaVersion")]
    schema_version: Option<i64>,
    config: DescriptorJson,
    layers: Vec<DescriptorJson>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct DockerEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

impl ImageFile {
    /// Opens an image directory or archive, detecting its form from its content. An
    /// error says what the input is when it is no image.
    pub fn open(path: &Path, limits: &Limits) -> Result<ImageFile> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        let label = path.display().to_string();
        if meta.is_dir() {
            if is_oci_dir(path) {
                return Ok(ImageFile {
                    label,
                    format: ImageFormat::OciLayout,
                    store: Store::Dir(path.to_path_buf()),
                    limits: *limits,
                });
            }
            return Err(Error::Archive {
                archive: label,
                detail: "not an OCI image layout directory (no oci-layout and index.json)".into(),
            });
        }
        let archive = Archive::index_file(path, limits)?;
        ImageFile::from_archive(archive, limits).map_err(|archive| Error::Archive {
            archive: archive.label,
            detail: "not an OCI or Docker image archive (no index.json with oci-layout, no manifest.json)".into(),
        })
    }

    /// Whether `dir` is an OCI image layout directory.
    pub(crate) fn is_oci_dir_path(dir: &Path) -> bool {
        is_oci_dir(dir)
    }

    /// Takes an indexed tar as an image file if its members say it is one; gives the
    /// archive back otherwise.
    pub(crate) fn from_archive(
        archive: Archive,
        limits: &Limits,
    ) -> std::result::Result<ImageFile, Archive> {
        let format =
            if archive.member("oci-layout").is_some() && archive.member("index.json").is_some() {
                ImageFormat::OciArchive
            } else if archive.member("manifest.json").is_some() {
                ImageFormat::DockerArchive
            } else {
                return Err(archive);
            };
        Ok(ImageFile {
            label: archive.label.clone(),
            format,
            store: Store::Tar(archive),
            limits: *limits,
        })
    }

    /// The input as the user named it.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The detected form.
    pub fn format(&self) -> ImageFormat {
        self.format
    }

    /// Notes from indexing the archive (members ignored and why).
    pub fn notes(&self) -> &[String] {
        match &self.store {
            Store::Tar(a) => a.notes(),
            Store::Dir(_) => &[],
        }
    }

    fn err(&self, detail: impl Into<String>) -> Error {
        Error::Archive {
            archive: self.label.clone(),
            detail: detail.into(),
        }
    }

    /// A file of the layout (`index.json`, `manifest.json`, a Docker layer path).
    fn file(&self, name: &str) -> Result<Blob> {
        match &self.store {
            Store::Dir(dir) => open_plain(&dir.join(name), name),
            Store::Tar(a) => {
                let mut name = normalize_name(name).ok_or_else(|| {
                    self.err(format!("{name:?}: not a safe path inside the archive"))
                })?;
                // A Docker archive links `<id>/layer.tar` to the layer file.
                for _ in 0..8 {
                    let m = a
                        .member(&name)
                        .ok_or_else(|| self.err(format!("{name}: missing from the archive")))?;
                    match m.symlink_target() {
                        None => return m.open(),
                        Some(t) => {
                            name = resolve_link(&name, t).ok_or_else(|| {
                                self.err(format!("{name}: link to {t:?} leaves the archive"))
                            })?
                        }
                    }
                }
                Err(self.err(format!("{name}: too many links")))
            }
        }
    }

    /// The blob named by `digest`, checked to have `size` bytes when that is known.
    fn blob(&self, digest: &str, size: Option<u64>, what: &str) -> Result<Blob> {
        let (alg, enc) = split_digest(digest)
            .ok_or_else(|| self.err(format!("{what}: malformed digest {digest:?}")))?;
        let path = format!("blobs/{alg}/{enc}");
        let blob = self
            .file(&path)
            .map_err(|e| self.err(format!("{what}: {e}")))?;
        if let Some(size) = size {
            if blob.len() != size {
                return Err(self.err(format!(
                    "{what}: {} bytes, its descriptor says {size}",
                    blob.len()
                )));
            }
        }
        Ok(blob)
    }

    /// Reads a JSON blob whole and checks it against its digest.
    fn json_blob<T: serde::de::DeserializeOwned>(
        &self,
        digest: &str,
        size: Option<u64>,
        what: &str,
    ) -> Result<(T, Vec<u8>)> {
        let blob = self.blob(digest, size, what)?;
        let bytes = read_small(&blob, what).map_err(|e| self.err(e))?;
        check_digest(&bytes, digest).map_err(|e| self.err(format!("{what}: {e}")))?;
        let v = serde_json::from_slice(&bytes).map_err(|e| {
            self.err(format!(
                "{what} (blob {digest}): not valid JSON of its kind: {e}"
            ))
        })?;
        Ok((v, bytes))
    }

    /// Every manifest the image file names, in its order (nested indexes flattened;
    /// attestation manifests left out).
    pub fn manifests(&self) -> Result<Vec<ManifestRef>> {
        match self.format {
            ImageFormat::DockerArchive => self.docker_manifests(),
            _ => {
                let blob = self.file("index.json")?;
                let bytes = read_small(&blob, "index.json").map_err(|e| self.err(e))?;
                let index: IndexJson = serde_json::from_slice(&bytes).map_err(|e| {
                    self.err(format!("index.json: not a valid OCI image index: {e}"))
                })?;
                let mut out = Vec::new();
                self.walk_index(index, "index.json", BTreeMap::new(), 0, &mut out)?;
                if out.is_empty() {
                    return Err(self.err("index.json: names no image manifest"));
                }
                Ok(out)
            }
        }
    }

    fn walk_index(
        &self,
        index: IndexJson,
        what: &str,
        mut annotations: BTreeMap<String, String>,
        depth: usize,
        out: &mut Vec<ManifestRef>,
    ) -> Result<()> {
        if index.schema_version != Some(2) {
            return Err(self.err(format!(
                "{what}: schemaVersion is {:?}, not 2",
                index.schema_version
            )));
        }
        annotations.extend(index.annotations.unwrap_or_default());
        for (i, d) in index.manifests.into_iter().enumerate() {
            let here = format!("{what} manifests[{i}] ({})", d.digest);
            let size = u64::try_from(d.size)
                .map_err(|_| self.err(format!("{here}: negative size {}", d.size)))?;
            let mut ann = annotations.clone();
            let desc_ann = d.annotations.unwrap_or_default();
            ann.extend(desc_ann.clone());
            let is_index = match d.media_type.as_deref() {
                Some(t) if INDEX_TYPES.contains(&t) => true,
                Some(_) => false,
                // No media type: the blob says what it is.
                None => {
                    let (v, _): (Value, _) = self.json_blob(&d.digest, Some(size), &here)?;
                    v.get("manifests").is_some()
                }
            };
            if is_index {
                if depth >= MAX_INDEX_DEPTH {
                    return Err(self.err(format!(
                        "{here}: indexes nested more than {MAX_INDEX_DEPTH} deep"
                    )));
                }
                let (inner, _): (IndexJson, _) = self.json_blob(&d.digest, Some(size), &here)?;
                self.walk_index(inner, &here, ann, depth + 1, out)?;
                continue;
            }
            let attestation = desc_ann
                .get("vnd.docker.reference.type")
                .is_some_and(|t| t == "attestation-manifest")
                || d.platform.as_ref().is_some_and(|p| {
                    p.os.as_deref() == Some("unknown")
                        && p.architecture.as_deref() == Some("unknown")
                });
            if attestation {
                continue;
            }
            if out.len() >= MAX_MANIFESTS {
                return Err(self.err(format!("names more than {MAX_MANIFESTS} manifests")));
            }
            out.push(ManifestRef {
                reference: desc_ann.get(REF_NAME).cloned(),
                digest: Some(d.digest),
                platform: d.platform,
                annotations: ann,
                at: At::Oci {
                    size,
                    media_type: d.media_type,
                },
            });
        }
        Ok(())
    }

    fn docker_entries(&self) -> Result<Vec<DockerEntry>> {
        let blob = self.file("manifest.json")?;
        let bytes = read_small(&blob, "manifest.json").map_err(|e| self.err(e))?;
        serde_json::from_slice(&bytes).map_err(|e| {
            self.err(format!(
                "manifest.json: not a Docker archive manifest (a list of Config, RepoTags, Layers): {e}"
            ))
        })
    }

    fn docker_manifests(&self) -> Result<Vec<ManifestRef>> {
        let entries = self.docker_entries()?;
        if entries.is_empty() {
            return Err(self.err("manifest.json: names no image"));
        }
        if entries.len() > MAX_MANIFESTS {
            return Err(self.err(format!("manifest.json: more than {MAX_MANIFESTS} images")));
        }
        Ok(entries
            .into_iter()
            .enumerate()
            .map(|(entry, e)| ManifestRef {
                digest: None,
                platform: None,
                annotations: BTreeMap::new(),
                reference: e.repo_tags.and_then(|t| t.into_iter().next()),
                at: At::Docker { entry },
            })
            .collect())
    }

    /// The one manifest for `arch` (OCI or ck2core names: `amd64` or `x86_64`), or the
    /// only one when `arch` is `None`. Several candidates, or none for `arch`, is an
    /// error listing what the image file has.
    pub fn select(&self, arch: Option<&str>) -> Result<Image> {
        let all = self.manifests()?;
        let mut cands: Vec<(ManifestRef, Option<Image>)> =
            all.iter().cloned().map(|m| (m, None)).collect();
        if let Some(want) = arch {
            let want = oci_arch(want);
            let mut keep = Vec::new();
            for (m, _) in cands {
                // The index's platform when it gives one, else the config's.
                let (got, img) = match m.platform.as_ref().and_then(|p| p.architecture.clone()) {
                    Some(a) => (a, None),
                    None => {
                        let img = self.image(&m)?;
                        (img.architecture().unwrap_or("").to_string(), Some(img))
                    }
                };
                if oci_arch(&got) == want {
                    keep.push((m, img));
                }
            }
            cands = keep;
            if cands.is_empty() {
                return Err(self.err(format!(
                    "no image for architecture {want}; it has: {}",
                    describe(&all)
                )));
            }
        }
        let first_digest = cands[0].0.digest.clone();
        if cands.len() > 1
            && (first_digest.is_none() || cands.iter().any(|(m, _)| m.digest != first_digest))
        {
            return Err(self.err(format!(
                "holds several images ({}){}",
                describe(&cands.iter().map(|c| c.0.clone()).collect::<Vec<_>>()),
                if arch.is_none() {
                    "; say which architecture"
                } else {
                    ""
                }
            )));
        }
        let (m, img) = cands.swap_remove(0);
        match img {
            Some(img) => Ok(img),
            None => self.image(&m),
        }
    }

    /// Reads one manifest, its config and its layer list.
    pub fn image(&self, m: &ManifestRef) -> Result<Image> {
        match &m.at {
            At::Oci { size, media_type } => {
                let digest = m.digest.clone().unwrap_or_default();
                if media_type
                    .as_deref()
                    .is_some_and(|t| !t.contains("manifest") || INDEX_TYPES.contains(&t))
                {
                    return Err(self.err(format!(
                        "manifest {digest}: media type {} is not an image manifest",
                        media_type.as_deref().unwrap_or("")
                    )));
                }
                let what = format!("manifest {digest}");
                let (man, _): (ManifestJson, _) = self.json_blob(&digest, Some(*size), &what)?;
                if man.schema_version != Some(2) {
                    return Err(self.err(format!(
                        "{what}: schemaVersion is {:?}, not 2",
                        man.schema_version
                    )));
                }
                let mut annotations = m.annotations.clone();
                annotations.extend(man.annotations.unwrap_or_default());
                let csize = u64::try_from(man.config.size)
                    .map_err(|_| self.err(format!("{what}: config.size is negative")))?;
                let (config, _): (Value, _) = self.json_blob(
                    &man.config.digest,
                    Some(csize),
                    &format!("config {} of {what}", man.config.digest),
                )?;
                let mut layers = Vec::with_capacity(man.layers.len());
                for (i, l) in man.layers.into_iter().enumerate() {
                    let lwhat = format!("layer {i} ({}) of {what}", l.digest);
                    let size = u64::try_from(l.size)
                        .map_err(|_| self.err(format!("{lwhat}: negative size")))?;
                    let blob = self.blob(&l.digest, Some(size), &lwhat)?;
                    layers.push(Layer {
                        name: format!("{}: layer {}", self.label, l.digest),
                        digest: Some(l.digest),
                        media_type: l.media_type,
                        blob,
                        max_unpacked: self.limits.max_unpacked,
                    });
                }
                Ok(Image {
                    format: self.format,
                    reference: m.reference.clone(),
                    repo_tags: Vec::new(),
                    manifest_digest: Some(digest),
                    id: man.config.digest,
                    annotations,
                    config,
                    layers,
                })
            }
            At::Docker { entry } => {
                let e = self
                    .docker_entries()?
                    .into_iter()
                    .nth(*entry)
                    .ok_or_else(|| self.err("manifest.json changed while read"))?;
                let what = format!("manifest.json [{entry}] Config {}", e.config);
                let cblob = self
                    .file(&e.config)
                    .map_err(|err| self.err(format!("{what}: {err}")))?;
                let bytes = read_small(&cblob, &what).map_err(|e| self.err(e))?;
                let config: Value = serde_json::from_slice(&bytes)
                    .map_err(|err| self.err(format!("{what}: not valid JSON: {err}")))?;
                let id = format!("sha256:{}", hex(&sha2::Sha256::digest(&bytes)));
                let mut layers = Vec::with_capacity(e.layers.len());
                for (i, path) in e.layers.iter().enumerate() {
                    let blob = self.file(path).map_err(|err| {
                        self.err(format!("manifest.json [{entry}] Layers[{i}] {path}: {err}"))
                    })?;
                    layers.push(Layer {
                        name: format!("{}: layer {path}", self.label),
                        digest: None,
                        media_type: None,
                        blob,
                        max_unpacked: self.limits.max_unpacked,
                    });
                }
                let repo_tags = e.repo_tags.unwrap_or_default();
                Ok(Image {
                    format: self.format,
                    reference: repo_tags.first().cloned(),
                    repo_tags,
                    manifest_digest: None,
                    id,
                    annotations: BTreeMap::new(),
                    config,
                    layers,
                })
            }
        }
    }
}

/// What an OCI whiteout entry of a layer hides in the layers below it
/// (`image-spec/layer.md`, "Whiteouts").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Whiteout {
    /// `DIR/.wh.NAME`: `DIR/NAME` and everything under it (the path given).
    Entry(String),
    /// `DIR/.wh..wh..opq`: everything the lower layers have under `DIR` (the
    /// directory given, `""` for the root); `DIR` itself stays.
    Opaque(String),
}

/// Whether the normalised layer path `path` is a whiteout, and what it hides. A
/// whiteout that names nothing (`.wh.` alone) hides nothing.
pub fn whiteout(path: &str) -> Option<Whiteout> {
    let (dir, base) = match path.rsplit_once('/') {
        Some((d, b)) => (format!("{d}/"), b),
        None => (String::new(), path),
    };
    let hidden = base.strip_prefix(".wh.")?;
    if hidden == ".wh..opq" {
        return Some(Whiteout::Opaque(dir.trim_end_matches('/').to_string()));
    }
    (!hidden.is_empty()).then(|| Whiteout::Entry(format!("{dir}{hidden}")))
}

/// The architecture in OCI (Go) terms, from either OCI or ck2core/uname names.
pub fn oci_arch(name: &str) -> &str {
    match name {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "i386" | "i686" => "386",
        "loongarch64" => "loong64",
        other => other,
    }
}

fn describe(ms: &[ManifestRef]) -> String {
    ms.iter()
        .map(|m| {
            let mut s = m
                .reference
                .clone()
                .or_else(|| m.digest.clone())
                .unwrap_or_else(|| "(untagged)".into());
            if let Some(p) = &m.platform {
                s.push_str(&format!(" {p}"));
            }
            s
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn is_oci_dir(dir: &Path) -> bool {
    dir.join("oci-layout").is_file() && dir.join("index.json").is_file()
}

/// Opens a regular file of a layout directory, refusing links (the directory may
/// come from a hostile source: its blobs must be its own files).
fn open_plain(path: &Path, name: &str) -> Result<Blob> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.file_type().is_file() {
        return Err(Error::image(
            name,
            "is not a regular file (links are not followed in an image layout)",
        ));
    }
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    Ok(Blob::from_file(name, file, meta.len()))
}

/// `algorithm:encoded`, checked to be safe as two path components (OCI
/// `descriptor.md` grammar) and, for sha256 and sha512, to be lower-case hex of the
/// right length.
fn split_digest(d: &str) -> Option<(&str, &str)> {
    let (alg, enc) = d.split_once(':')?;
    let alg_ok = !alg.is_empty()
        && alg
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b));
    let enc_ok = !enc.is_empty()
        && enc
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"=_-".contains(&b));
    let hex_len = match alg {
        "sha256" => Some(64),
        "sha512" => Some(128),
        _ => None,
    };
    let hex_ok = hex_len.is_none_or(|n| {
        enc.len() == n
            && enc
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    (alg_ok && enc_ok && hex_ok && !alg.starts_with('.')).then_some((alg, enc))
}

fn check_digest(bytes: &[u8], digest: &str) -> std::result::Result<(), String> {
    let (alg, enc) = split_digest(digest).ok_or_else(|| format!("malformed digest {digest:?}"))?;
    let got = match alg {
        "sha256" => hex(&sha2::Sha256::digest(bytes)),
        "sha512" => hex(&sha2::Sha512::digest(bytes)),
        _ => return Err(format!("digest algorithm {alg} is not supported")),
    };
    if got != enc {
        return Err(format!(
            "content does not match its digest {digest} (it hashes to {alg}:{got})"
        ));
    }
    Ok(())
}

fn read_small(blob: &Blob, what: &str) -> std::result::Result<Vec<u8>, String> {
    if blob.len() > MAX_JSON {
        return Err(format!(
            "{what}: {} bytes, more than the {MAX_JSON} a JSON document of an image may have",
            blob.len()
        ));
    }
    let mut buf = vec![0u8; blob.len() as usize];
    blob.read_exact_at(0, &mut buf)
        .map_err(|e| format!("{what}: {e}"))?;
    Ok(buf)
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_checked_before_they_become_paths() {
        let h = "a".repeat(64);
        assert_eq!(
            split_digest(&format!("sha256:{h}")),
            Some(("sha256", &h[..]))
        );
        assert_eq!(split_digest("sha256:../../etc/passwd"), None);
        assert_eq!(split_digest(&format!("sha256:{}", "A".repeat(64))), None);
        assert_eq!(split_digest("sha256:abc"), None);
        assert_eq!(split_digest("../x:abc"), None);
        assert_eq!(split_digest("nocolon"), None);
    }

    #[test]
    fn compression_is_sniffed_from_content() {
        assert_eq!(
            Compression::sniff(&[0x1f, 0x8b, 8, 0]),
            Some(Compression::Gzip)
        );
        assert_eq!(
            Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            Some(Compression::Zstd)
        );
        assert_eq!(Compression::sniff(&[0u8; 512]), Some(Compression::None));
        let mut h = tar::Header::new_old();
        h.set_path("a").unwrap();
        h.set_size(0);
        h.set_cksum();
        assert_eq!(Compression::sniff(h.as_bytes()), Some(Compression::None));
        let mut bad = h.as_bytes().to_vec();
        bad[0] ^= 1;
        assert_eq!(Compression::sniff(&bad), None);
    }

    #[test]
    fn architectures_in_either_naming() {
        assert_eq!(oci_arch("x86_64"), "amd64");
        assert_eq!(oci_arch("amd64"), "amd64");
        assert_eq!(oci_arch("aarch64"), "arm64");
        assert_eq!(oci_arch("s390x"), "s390x");
    }
}
