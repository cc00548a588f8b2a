//! Indexing tar archives: in place when seekable, through a spool when streamed.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;

use super::oci::Compression;
use super::{normalize_name, size_only, Archive, Blob, Data, Format, Limits, Member};
use crate::error::{Error, Result};

/// What one tar entry contributes to the index.
enum Kind {
    Regular,
    Symlink(String),
    HardLink(String),
    Skip(&'static str),
}

fn kind_of(entry: &tar::Entry<'_, impl Read>) -> Kind {
    use tar::EntryType as T;
    let link = || {
        entry
            .link_name()
            .ok()
            .flatten()
            .map(|l| l.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    match entry.header().entry_type() {
        T::Regular | T::Continuous => Kind::Regular,
        T::Symlink => Kind::Symlink(link()),
        T::Link => Kind::HardLink(link()),
        T::Directory => Kind::Skip(""),
        T::GNUSparse => Kind::Skip("sparse tar members are not supported"),
        _ => Kind::Skip("special file (device, fifo or unknown type)"),
    }
}

struct Indexer {
    archive: Archive,
}

impl Indexer {
    fn new(label: String, format: Format) -> Self {
        Indexer {
            archive: Archive {
                label,
                format,
                members: BTreeMap::new(),
                notes: Vec::new(),
                image: None,
            },
        }
    }

    fn err(&self, detail: String) -> Error {
        Error::Archive {
            archive: self.archive.label.clone(),
            detail,
        }
    }

    /// Adds one entry; returns its normalised name when its bytes are wanted.
    fn add(
        &mut self,
        raw: &str,
        kind: Kind,
        size: u64,
        data: impl FnOnce() -> Data,
    ) -> Result<Option<String>> {
        let Some(name) = normalize_name(raw) else {
            if !raw.trim_matches(['.', '/']).is_empty() {
                self.archive.notes.push(format!(
                    "member {raw:?} ignored: absolute path or `..` in its name"
                ));
            }
            return Ok(None);
        };
        if self.archive.members.contains_key(&name) {
            return Err(self.err(format!(
                "member {name} appears twice; refusing an ambiguous archive"
            )));
        }
        let (data, size, wanted) = match kind {
            Kind::Skip("") => return Ok(None),
            Kind::Skip(why) => {
                self.archive
                    .notes
                    .push(format!("member {name} ignored: {why}"));
                return Ok(None);
            }
            Kind::Symlink(t) => (Data::Symlink(t), 0, false),
            Kind::HardLink(t) => {
                match normalize_name(&t).and_then(|t| self.archive.members.get(&t)) {
                    Some(m) if m.symlink_target().is_none() => (m.data.clone(), m.size, false),
                    _ => {
                        self.archive.notes.push(format!(
                        "member {name} ignored: hard link to {t:?}, which is not in the archive"
                    ));
                        return Ok(None);
                    }
                }
            }
            Kind::Regular if size_only(&name) => (Data::SizeOnly, size, false),
            Kind::Regular => (data(), size, true),
        };
        self.archive.members.insert(
            name.clone(),
            Member {
                name: name.clone(),
                size,
                stored: None,
                data,
            },
        );
        Ok(wanted.then_some(name))
    }
}

/// Indexes an uncompressed tar held in `blob` (a whole file, or a byte range of one)
/// in place: members are read by offset later.
pub(super) fn index_blob(label: String, format: Format, blob: &Blob) -> Result<Archive> {
    let mut ix = Indexer::new(label, format);
    let mut tar = tar::Archive::new(blob.reader());
    let entries = tar
        .entries_with_seek()
        .map_err(|e| ix.err(format!("not a readable tar archive: {e}")))?;
    let mut last = String::from("(start)");
    for entry in entries {
        let entry =
            entry.map_err(|e| ix.err(format!("tar framing broken after member {last}: {e}")))?;
        let raw = entry
            .path()
            .map_err(|e| ix.err(format!("member after {last}: bad name: {e}")))?;
        let raw = raw.to_string_lossy().into_owned();
        let size = entry.size();
        let offset = entry.raw_file_position();
        let end = offset.checked_add(size);
        let flen = blob.len();
        if end.is_none_or(|e| e > flen) {
            return Err(ix.err(format!(
                "member {raw} claims {size} bytes at offset {offset}, past the end of the archive ({flen} bytes): truncated?"
            )));
        }
        let kind = kind_of(&entry);
        ix.add(&raw, kind, size, || Data::At {
            file: blob.file.clone(),
            offset: blob.base + offset,
        })?;
        last = raw;
    }
    Ok(ix.archive)
}

/// Decompresses `blob` into a new spool file, at most `limits.max_unpacked` bytes.
pub(super) fn spool_decompressed(
    blob: &Blob,
    comp: Compression,
    limits: &Limits,
) -> std::result::Result<(Arc<File>, u64), String> {
    let raw = blob.reader();
    let mut reader: Box<dyn Read> = match comp {
        Compression::None => Box::new(raw),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::new(raw).map_err(|e| format!("zstd: {e}"))?)
        }
    };
    let spool = spool_file().map_err(|e| e.to_string())?;
    let mut out = BufWriter::with_capacity(1 << 20, &spool);
    let n = std::io::copy(
        &mut (&mut reader).take(limits.max_unpacked.saturating_add(1)),
        &mut out,
    )
    .map_err(|e| format!("{} stream damaged: {e}", comp.name()))?;
    if n > limits.max_unpacked {
        return Err(format!(
            "expands to more than {} bytes; if that is expected, raise the limit with --max-unpacked",
            limits.max_unpacked
        ));
    }
    out.flush().map_err(|e| format!("spool: {e}"))?;
    drop(out);
    Ok((Arc::new(spool), n))
}

/// Indexes a compressed or piped tar in one pass, spooling wanted members.
pub(super) fn index_stream(
    label: String,
    format: Format,
    reader: Box<dyn Read>,
    limits: &Limits,
) -> Result<Archive> {
    let reader: Box<dyn Read> = match format {
        Format::TarGz => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        Format::TarZst => {
            Box::new(
                zstd::stream::read::Decoder::new(reader).map_err(|e| Error::Archive {
                    archive: label.clone(),
                    detail: format!("zstd: {e}"),
                })?,
            )
        }
        _ => reader,
    };
    let spool = spool_file()?;
    let mut out = BufWriter::with_capacity(1 << 20, &spool);
    let mut ix = Indexer::new(label, format);
    let mut spooled: Vec<(String, u64)> = Vec::new();
    let mut pos = 0u64;
    let mut expanded = 0u64;
    let mut tar = tar::Archive::new(reader);
    let entries = tar
        .entries()
        .map_err(|e| ix.err(format!("not a readable tar archive: {e}")))?;
    let mut last = String::from("(start)");
    for entry in entries {
        let mut entry =
            entry.map_err(|e| ix.err(format!("archive damaged after member {last}: {e}")))?;
        let raw = entry
            .path()
            .map_err(|e| ix.err(format!("member after {last}: bad name: {e}")))?
            .to_string_lossy()
            .into_owned();
        let size = entry.size();
        expanded = expanded.saturating_add(size);
        if expanded > limits.max_unpacked {
            return Err(ix.err(format!(
                "expands to more than {} bytes (at member {raw}); if that is expected, raise the limit with --max-unpacked",
                limits.max_unpacked
            )));
        }
        let kind = kind_of(&entry);
        let start = pos;
        if let Some(name) = ix.add(&raw, kind, size, || Data::SizeOnly)? {
            let n = std::io::copy(&mut entry, &mut out)
                .map_err(|e| ix.err(format!("member {name}: {e}")))?;
            if n != size {
                return Err(ix.err(format!(
                    "member {name}: {n} of {size} bytes present: truncated?"
                )));
            }
            pos += n;
            spooled.push((name, start));
        }
        last = raw;
    }
    out.flush().map_err(|e| ix.err(format!("spool: {e}")))?;
    drop(out);
    let spool = Arc::new(spool);
    for (name, offset) in spooled {
        if let Some(m) = ix.archive.members.get_mut(&name) {
            m.data = Data::At {
                file: spool.clone(),
                offset,
            };
        }
    }
    Ok(ix.archive)
}

/// An anonymous temporary file: unlinked as soon as it is open, so it disappears
/// with the process whatever happens.
pub(crate) fn spool_file() -> Result<File> {
    let dir = std::env::temp_dir();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    for i in 0..100 {
        let p = dir.join(format!(".ck2core-spool-{}-{nanos}-{i}", std::process::id()));
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&p)
        {
            Ok(f) => {
                let _ = std::fs::remove_file(&p);
                return Ok(f);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(&p, e)),
        }
    }
    Err(Error::io(
        dir,
        std::io::Error::other("cannot create a spool file"),
    ))
}
