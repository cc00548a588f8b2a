//! MADV_DONTDUMP: a process marks memory it wants kept out of core dumps (keys,
//! huge buffer pools). A synthetic process with a 2 TiB such mapping, one page of
//! it saved by CRIU: the core has the mapping without data, as the kernel writes it,
//! unless `--include-dontdump`; inspection commands still read it and mark it.

mod common;

use std::path::Path;

use common::synth::*;
use common::*;

const BASE: u64 = 0x10_0000;
const HUGE: u64 = 0x1000_0000_0000;
const HUGE_LEN: u64 = 2 << 40;
/// The one page CRIU saved in the huge mapping.
const KEY_AT: u64 = HUGE + (1 << 30);
const PRESENT: u32 = 4;
const MADV_DONTDUMP: u64 = 1 << 16;

fn checkpoint(name: &str) -> std::path::PathBuf {
    let dir = scratch(name).join("dump");
    let mut p = Proc::new(60);
    let mut huge = anon_vma(HUGE, HUGE + HUGE_LEN);
    huge.madv = Some(MADV_DONTDUMP);
    p.vmas = vec![anon_vma(BASE, BASE + PAGE), huge];
    p.pagemap = vec![run(BASE, 1, PRESENT), run(KEY_AT, 1, PRESENT)];
    write_images(&dir, &[p]);
    write_pages(&dir, 60, 2, |i, pg| {
        marked(if i == 0 { "KEEP" } else { "DONTDUMP-KEY" }, i, pg)
    });
    dir
}

fn convert(dir: &Path, extra: &[&str]) -> (std::path::PathBuf, String) {
    let out = dir.parent().unwrap().join("cores");
    let mut args = vec![dir.to_str().unwrap(), "-o", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    let err = ck2core_ok(&args);
    (out.join("core.60"), err)
}

fn file_contains(path: &Path, needle: &[u8]) -> bool {
    // Only the written part: the core is sparse.
    let bytes = std::fs::read(path).unwrap();
    bytes.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn dontdump_mappings_get_no_data_by_default() {
    let dir = checkpoint("dontdump-default");
    let (core, err) = convert(&dir, &[]);
    assert!(
        err.contains("left out 2.0 TiB: mappings the process marked MADV_DONTDUMP (no data, as in a kernel core; --include-dontdump adds them)"),
        "{err}"
    );
    // As fs/binfmt_elf.c writes a VM_DONTDUMP VMA: a PT_LOAD with p_filesz 0.
    let loads = CoreFile::open(&core).phdrs();
    let huge = loads
        .iter()
        .find(|p| p.p_type == 1 && p.vaddr == HUGE)
        .expect("a segment for the DONTDUMP mapping");
    assert_eq!((huge.memsz, huge.filesz, huge.flags), (HUGE_LEN, 0, 6));
    let size = std::fs::metadata(&core).unwrap().len();
    assert!(size < 1 << 20, "the core is {size} bytes");
    assert!(!file_contains(&core, b"DONTDUMP-KEY"));
    assert!(file_contains(&core, b"KEEP-0"));
    let gdbinit = core.with_file_name("gdbinit");
    let got = gdb_with_init(
        &gdbinit,
        &core,
        None,
        &[&format!("x/s {BASE:#x}"), "ck2core maps"],
    );
    assert_eq!(warnings(&got), Vec::<&str>::new(), "{got}");
    assert!(got.contains("\"KEEP-0\""), "{got}");
    // The gdb helper says so when the core loads, and marks the mapping.
    assert!(
        got.contains("ck2core: 1 mapping the process marked MADV_DONTDUMP has no data in this core (as in a kernel core, gdb reads zeros there). See 'ck2core maps'."),
        "{got}"
    );
    let row = got
        .lines()
        .find(|l| l.starts_with(&format!("{HUGE:#x}-")))
        .unwrap_or_else(|| panic!("no {HUGE:#x} in:\n{got}"));
    assert!(row.ends_with("  DONTDUMP"), "{row}");

    // Inspection commands read the checkpoint: the memory is there, marked.
    let out = ck2core(&["maps", dir.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    let row = |at: u64| {
        text.lines()
            .find(|l| l.starts_with(&format!("{at:012x}-")))
            .unwrap_or_else(|| panic!("no row at {at:#x}:\n{text}"))
            .to_string()
    };
    assert!(row(HUGE).ends_with("  DONTDUMP"), "{text}");
    assert!(!row(BASE).contains("DONTDUMP"), "{text}");
    let out = ck2core(&["maps", dir.to_str().unwrap(), "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let maps = &json["processes"][0]["maps"];
    assert_eq!(maps[0]["dontdump"], false);
    assert_eq!(maps[1]["dontdump"], true);
    assert_eq!(maps[1]["pages"]["pages"], 1);
    let out = ck2core(&["search", dir.to_str().unwrap(), "DONTDUMP-KEY"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("at {KEY_AT:#x}")), "{text}");
}

#[test]
fn include_dontdump_writes_them_for_forensics() {
    let dir = checkpoint("dontdump-included");
    let (core, err) = convert(&dir, &["--include-dontdump"]);
    assert!(!err.contains("DONTDUMP"), "{err}");
    let loads = CoreFile::open(&core).phdrs();
    let huge = loads.iter().find(|p| p.vaddr == HUGE).unwrap();
    assert_eq!((huge.memsz, huge.filesz), (HUGE_LEN, HUGE_LEN));
    // Sparse: the untouched 2 TiB are a hole.
    assert!(disk_usage(&core) < 1 << 20);
    let gdbinit = core.with_file_name("gdbinit");
    let got = gdb_with_init(&gdbinit, &core, None, &[&format!("x/s {KEY_AT:#x}")]);
    assert_eq!(warnings(&got), Vec::<&str>::new(), "{got}");
    assert!(got.contains("\"DONTDUMP-KEY-1\""), "{got}");
    assert!(!got.contains("MADV_DONTDUMP"), "{got}");
}
