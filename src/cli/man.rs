//! The man pages in man/ are generated from the command line's definition; this
//! test fails when they differ from it. `CK2CORE_REGENERATE=1 cargo test --bin
//! ck2core man_pages` rewrites them.

use std::path::Path;

use clap::CommandFactory;

use super::Cli;

#[test]
fn man_pages_match_the_command_line() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    let fresh = std::env::temp_dir().join(format!("ck2core-man-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&fresh);
    std::fs::create_dir_all(&fresh).unwrap();
    clap_mangen::generate_to(Cli::command(), &fresh).unwrap();
    let list = |d: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .map(|r| {
                r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let pages = list(&fresh);
    assert!(
        pages.contains(&"ck2core.1".to_string()) && pages.len() > 10,
        "{pages:?}"
    );
    if std::env::var_os("CK2CORE_REGENERATE").is_some() {
        let _ = std::fs::remove_dir_all(&shipped);
        std::fs::create_dir_all(&shipped).unwrap();
        for p in &pages {
            std::fs::copy(fresh.join(p), shipped.join(p)).unwrap();
        }
    }
    let regenerate = "regenerate with CK2CORE_REGENERATE=1 cargo test --bin ck2core man_pages";
    assert_eq!(
        list(&shipped),
        pages,
        "man/ has other pages than the commands: {regenerate}"
    );
    for p in &pages {
        let want = std::fs::read(fresh.join(p)).unwrap();
        let have = std::fs::read(shipped.join(p)).unwrap();
        assert!(
            want == have,
            "man/{p} differs from the command line: {regenerate}"
        );
    }
    let _ = std::fs::remove_dir_all(&fresh);
}
