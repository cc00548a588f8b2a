//! Zombies as CRIU 4.2 dumps them (a synthetic reproduction of a real dump): the
//! zombie's record is core-<pid>.img whatever pstree.img says its threads are.

mod common;

use common::synth::*;
use common::*;
use serde_json::Value;

const PARENT: u32 = 31400;
const ZOMBIE: u32 = 31426;
const CHILD: u32 = 31401;

fn stdout(args: &[&str]) -> String {
    let out = ck2core(args);
    assert!(
        out.status.success(),
        "ck2core {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_zombie_with_a_garbage_pstree_thread_id_is_shown_and_skipped() {
    let dir = scratch("zombie-garbage-tid");
    write_with_zombie(&dir, PARENT, ZOMBIE);
    let d = dir.to_str().unwrap();

    let ps = ck2core_json(&["ps", d, "--json"]);
    let z = &ps["processes"][1];
    assert_eq!(z["pid"], ZOMBIE);
    assert_eq!(z["state"], "zombie", "{ps}");
    assert_eq!(z["comm"], "defunct");
    assert_eq!(z["threads"], 0);
    assert_eq!(z["error"], Value::Null);
    let text = stdout(&["ps", d]);
    let row = text
        .lines()
        .find(|l| l.trim_start().starts_with(&ZOMBIE.to_string()))
        .unwrap();
    assert!(
        row.contains(" zombie ") && row.contains("defunct"),
        "{text}"
    );
    assert!(!text.contains(&GARBAGE_TID.to_string()), "{text}");

    let th = ck2core_json(&["threads", d, "--json"]);
    assert_eq!(
        th["zombies"],
        serde_json::json!([{"pid": ZOMBIE, "comm": "defunct", "exit_code": 0x100}])
    );
    let tids: Vec<u64> = th["threads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tid"].as_u64().unwrap())
        .collect();
    assert_eq!(tids, [PARENT as u64]);
    let text = stdout(&["threads", d, "--pid", &ZOMBIE.to_string()]);
    assert!(
        text.contains(&format!("process {ZOMBIE} (defunct), zombie")),
        "{text}"
    );

    let out = scratch("zombie-garbage-tid-cores");
    let o = ck2core(&[d, "-o", out.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains(&format!("skipped  pid {ZOMBIE} (defunct): a zombie")),
        "{err}"
    );
    assert!(!err.contains(&GARBAGE_TID.to_string()), "{err}");
    assert!(out.join(format!("core.{PARENT}")).exists());
    assert!(!out.join(format!("core.{ZOMBIE}")).exists());
    let got = gdb(
        &out.join(format!("core.{PARENT}")),
        None,
        None,
        &["x/s 0x10000000"],
    );
    assert!(got.contains("\"PARENT-0\""), "{got}");
}

#[test]
fn a_live_process_whose_pstree_thread_has_no_core_image_fails_alone() {
    let dir = scratch("live-missing-thread-core");
    let mut a = Proc::new(PARENT);
    let mut b = Proc::new(CHILD);
    b.ppid = PARENT;
    write_images(&dir, &[a.clone(), b.clone()]);
    a.threads = vec![PARENT, GARBAGE_TID];
    write_pstree(&dir, &[a, b]);
    let d = dir.to_str().unwrap();

    let out = scratch("live-missing-thread-core-cores");
    let o = ck2core(&[d, "-o", out.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with(&format!("failed   pid {PARENT}")))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        line.contains(&format!("core-{GARBAGE_TID}.img"))
            && line.contains(&format!("thread {GARBAGE_TID} in process {PARENT}")),
        "{line}"
    );
    assert!(out.join(format!("core.{CHILD}")).exists());

    let ps = ck2core_json(&["ps", d, "--json"]);
    let e = ps["processes"][0]["error"].as_str().unwrap();
    assert!(
        e.contains(&GARBAGE_TID.to_string()) && e.contains(&PARENT.to_string()),
        "{e}"
    );
    assert_eq!(ps["processes"][1]["state"], "alive");
}
