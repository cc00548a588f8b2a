//! Any bytes as a checkpoint archive, through the whole convert path: open, load
//! every process, every view, plan and write a core. Errors, never panics.
#![no_main]

use ck2core::archive::{Input, Limits};
use ck2core::core::{CoreOptions, Plan};
use ck2core::model::{Checkpoint, OpenOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("ck2core-fuzz-convert-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("in.tar");
    std::fs::write(&path, data).unwrap();
    let opts = OpenOptions { rootfs: None, limits: Limits { max_unpacked: 16 << 20 } };
    let Ok(ck) = Checkpoint::open(&Input::Path(path), &opts) else { return };
    let _ = ck2core::views::info(&ck);
    for t in ck.tree.clone() {
        let _ = ck.files(t.pid);
        let Ok(p) = ck.process(t.pid) else { continue };
        let _ = ck2core::views::threads(&p, true);
        let _ = ck2core::views::memory::maps(&p);
        if let Ok(plan) = Plan::new(&p, &CoreOptions::default()) {
            // Cores of a fuzzed address space can be huge but are sparse; bound them.
            if plan.content_bytes() < 64 << 20 {
                let _ = plan.write(&dir, t.pid, true, &mut |_| {});
            }
        }
    }
});
