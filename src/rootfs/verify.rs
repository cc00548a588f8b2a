//! Checking a candidate file against what CRIU recorded: its size and its GNU
//! build-id. This is the one build-id reader of the crate (the report uses it too).

use object::read::elf::ProgramHeader;
use object::Object;

use crate::archive::Blob;

/// What was recorded about a mapped file, to check a candidate against.
pub struct Expect<'a> {
    /// Container path.
    pub path: &'a str,
    /// Size at dump time.
    pub size: Option<u64>,
    /// GNU build-id, if CRIU recorded one.
    pub build_id: &'a [u8],
}

pub use crate::archive::hex;

/// The GNU build-id of a parsed object file (64- or 32-bit ELF, either byte order).
pub fn build_id_of(file: &object::File<'_>) -> Option<Vec<u8>> {
    file.build_id().ok().flatten().map(<[u8]>::to_vec)
}

/// The GNU build-id of an ELF file held in `blob`, if it is one and has one.
pub fn build_id(blob: &Blob) -> Option<Vec<u8>> {
    if blob.is_empty() {
        return None;
    }
    let bytes = blob.map().ok()?;
    build_id_of(&object::File::parse(&*bytes).ok()?)
}

/// The program interpreter (`PT_INTERP`) an ELF executable names, if any.
pub fn interpreter(blob: &Blob) -> Option<String> {
    if blob.is_empty() {
        return None;
    }
    let bytes = blob.map().ok()?;
    let data: &[u8] = &bytes;
    let raw = match object::File::parse(data).ok()? {
        object::File::Elf64(f) => f
            .elf_program_headers()
            .iter()
            .find_map(|p| p.interpreter(f.endian(), data).ok().flatten()),
        object::File::Elf32(f) => f
            .elf_program_headers()
            .iter()
            .find_map(|p| p.interpreter(f.endian(), data).ok().flatten()),
        _ => None,
    }?;
    String::from_utf8(raw.to_vec()).ok()
}

/// Whether `blob` is the file `want` describes: same size, same build-id.
pub fn check(blob: &Blob, want: &Expect<'_>) -> Result<(), String> {
    if let Some(size) = want.size {
        if blob.len() != size {
            return Err(format!(
                "the file there has {} bytes, the checkpoint recorded {size}",
                blob.len()
            ));
        }
    }
    if !want.build_id.is_empty() {
        match build_id(blob) {
            Some(id) if id == want.build_id => {}
            Some(id) => {
                return Err(format!(
                    "build-id {} differs from the recorded {}",
                    hex(&id),
                    hex(want.build_id)
                ))
            }
            None => return Err("has no build-id, the checkpoint recorded one".into()),
        }
    }
    Ok(())
}
