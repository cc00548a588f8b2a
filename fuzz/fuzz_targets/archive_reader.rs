//! Any bytes as a checkpoint archive (tar, tar.gz, tar.zst): index it, read every
//! member. Errors, never panics, and bounded expansion.
#![no_main]

use ck2core::archive::{Archive, Input, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("ck2core-fuzz-archive-{}", std::process::id()));
    std::fs::write(&path, data).unwrap();
    let limits = Limits { max_unpacked: 16 << 20 };
    if let Ok(a) = Archive::open(&Input::Path(path), &limits) {
        for m in a.members() {
            let _ = m.read_all(16 << 20);
        }
        let _ = a.images_prefix();
    }
});
