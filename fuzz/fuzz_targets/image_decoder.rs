//! Any bytes, decoded as every image kind ck2core reads: errors, never panics.
#![no_main]

use ck2core::images::{magic, pb, Image};
use libfuzzer_sys::fuzz_target;

fn all<M: prost::Message + Default>(bytes: &[u8], want: u32) {
    if let Ok(mut img) = Image::parse("fuzz.img", bytes.to_vec(), want) {
        while let Ok(Some(_)) = img.next_entry::<M>() {}
    }
}

fuzz_target!(|data: &[u8]| {
    all::<pb::CoreEntry>(data, magic::CORE);
    all::<pb::MmEntry>(data, magic::MM);
    all::<pb::PagemapEntry>(data, magic::PAGEMAP);
    all::<pb::PstreeEntry>(data, magic::PSTREE);
    all::<pb::FileEntry>(data, magic::FILES);
    all::<pb::FdinfoEntry>(data, magic::FDINFO);
    all::<pb::IpcShmEntry>(data, magic::IPCNS_SHM);
    all::<pb::GhostFileEntry>(data, magic::GHOST_FILE);
});
