//! `ck2core diff` on the real ckbox and podman-counter runs and on synthetic
//! checkpoints with known changes; the memory filters of search, read and maps.
//! Differences are checked against what `ck2core read` shows on each side.

mod common;

use std::path::Path;

use common::synth::*;
use common::*;
use serde_json::Value;

fn hex(v: &Value) -> u64 {
    u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

fn ckbox(name: &str) -> String {
    testdata().join("ckbox").join(name).display().to_string()
}

/// Every diff this file makes is checked against the shipped schema.
fn check_schema(doc: &Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/schema/diff.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let v = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = v
        .iter_errors(doc)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "not valid against docs/schema/diff.json: {errors:#?}"
    );
}

/// Runs `ck2core diff A B --json ...`; returns the exit status and the JSON.
fn diff_json(a: &str, b: &str, more: &[&str]) -> (i32, Value) {
    let mut args = vec!["diff", a, b, "--json"];
    args.extend_from_slice(more);
    let out = ck2core(&args);
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "diff {a} {b}: not JSON ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    check_schema(&v);
    (out.status.code().unwrap(), v)
}

/// Bytes at `addr` of process `pid` (`read --json`); `None` if any is unavailable.
fn read(ck: &str, pid: u64, addr: u64, len: u64) -> Option<Vec<u8>> {
    let out = ck2core(&[
        "read",
        ck,
        "--pid",
        &pid.to_string(),
        &format!("{addr:#x}"),
        &len.to_string(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    if v["unavailable"] != Value::Array(vec![]) {
        return None;
    }
    let h = v["bytes"].as_str().unwrap();
    Some(
        (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
            .collect(),
    )
}

fn process<'a>(d: &'a Value, comm: &str) -> &'a Value {
    d["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["comm"] == comm)
        .unwrap_or_else(|| panic!("no pair for {comm}: {d:#}"))
}

/// Every page `diff` says differs does differ, byte for byte, in `read` of both
/// sides; every other compared page of those mappings is equal.
fn check_pages_against_read(a: &str, b: &str, pair: &Value) {
    let (pa, pb) = (
        pair["a_pid"].as_u64().unwrap(),
        pair["b_pid"].as_u64().unwrap(),
    );
    for m in pair["memory"].as_array().unwrap() {
        let ps = m["page_size"].as_u64().unwrap();
        let (start, end) = (hex(&m["a"]["start"]), hex(&m["a"]["end"]));
        let shift = hex(&m["b_start"]).wrapping_sub(start);
        let differing: Vec<(u64, u64)> = m["differing"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                assert_eq!(hex(&r["b"]), hex(&r["a"]).wrapping_add(shift));
                (
                    hex(&r["a"]),
                    hex(&r["a"]) + r["pages"].as_u64().unwrap() * ps,
                )
            })
            .collect();
        assert!(m["unknown"] == 0, "real runs saved the same pages: {m:#}");
        let mut at = start;
        let mut checked = 0;
        while at < end {
            let x = read(a, pa, at, ps);
            let y = read(b, pb, at.wrapping_add(shift), ps);
            let listed = differing.iter().any(|(s, e)| at >= *s && at < *e);
            // Neither side has it (file pages without a root): not comparable.
            assert_eq!(
                x.is_some(),
                y.is_some(),
                "page {at:#x}: saved on one side only"
            );
            assert_eq!(
                x.is_some() && x != y,
                listed,
                "page {at:#x} of pid {pa}: diff and read disagree"
            );
            checked += 1;
            at += ps;
        }
        assert_eq!(checked, m["compared"].as_u64().unwrap());
    }
}

#[test]
fn three_ckbox_runs_pair_by_command_line_and_list_the_pages_sh_changed() {
    let runs = ["ckbox.tar", "ckbox.tar.gz", "ckbox.tar.zst"];
    for (x, y) in [(0, 1), (1, 2), (0, 2)] {
        let (a, b) = (ckbox(runs[x]), ckbox(runs[y]));
        let (code, d) = diff_json(&a, &b, &[]);
        assert_eq!(code, 1, "separate runs differ");
        assert_eq!(d["identical"], false);
        assert_eq!(d["summary"]["processes_compared"], 2);
        assert_eq!(d["added_processes"], Value::Array(vec![]));
        assert_eq!(d["removed_processes"], Value::Array(vec![]));
        for (comm, pid) in [("sh", 1), ("sleep", 9)] {
            let p = process(&d, comm);
            assert_eq!(
                (p["a_pid"].as_u64(), p["b_pid"].as_u64()),
                (Some(pid), Some(pid))
            );
            assert_eq!(p["matched_by"], "pid and command line");
        }
        let sh = process(&d, "sh");
        let heap = sh["memory"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["a"]["kind"] == "heap")
            .expect("sh's heap changed between runs");
        assert!(heap["differ"].as_u64().unwrap() > 0);
        assert_ne!(heap["b_start"], heap["a"]["start"], "ASLR moved the heap");
        // Each run is its own container: id and hostname differ.
        let what: Vec<&str> = d["container"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["what"].as_str().unwrap())
            .collect();
        assert_eq!(what, ["id", "hostname"]);
        check_pages_against_read(&a, &b, sh);
        check_pages_against_read(&a, &b, process(&d, "sleep"));
        let text = ck2core(&["diff", &a, &b]);
        let text = String::from_utf8(text.stdout).unwrap();
        assert!(
            text.lines()
                .nth(2)
                .unwrap()
                .starts_with("different: 2 process pairs compared"),
            "summary first:\n{text}"
        );
        assert!(
            text.contains("process 1 (sh), matched by pid and command line"),
            "{text}"
        );
    }
}

#[test]
fn the_sleep_child_changed_pid_and_is_paired_by_command_line() {
    let a = testdata().join("podman-counter/counter.tar");
    let b = testdata().join("podman-counter/counter.tar.zst");
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    let (code, d) = diff_json(a, b, &[]);
    assert_eq!(code, 1);
    let sleep = process(&d, "sleep");
    assert_eq!(
        (sleep["a_pid"].as_u64(), sleep["b_pid"].as_u64()),
        (Some(774), Some(9))
    );
    assert_eq!(sleep["matched_by"], "command line and tree position");
    assert_eq!(d["summary"]["processes_added"], 0);
    assert_eq!(d["summary"]["processes_removed"], 0);
    check_pages_against_read(a, b, sleep);
    check_pages_against_read(a, b, process(&d, "sh"));
    let text = String::from_utf8(ck2core(&["diff", a, b]).stdout).unwrap();
    assert!(
        text.contains("process 774 (sleep), pid 9 in B, matched by command line and tree position"),
        "{text}"
    );
    // Told otherwise, pairs are as given and the rest is added and removed.
    let (_, d) = diff_json(a, b, &["--pid-map", "1:9"]);
    assert_eq!(process(&d, "sh")["matched_by"], "--pid-map");
    assert_eq!(d["added_processes"][0]["pid"], 1);
    assert_eq!(d["removed_processes"][0]["pid"], 774);
}

#[test]
fn registers_are_compared_with_regs_only() {
    let (a, b) = (ckbox("ckbox.tar"), ckbox("ckbox.tar.gz"));
    let (_, d) = diff_json(&a, &b, &[]);
    assert_eq!(
        process(&d, "sh")["threads"]["changed"],
        Value::Array(vec![])
    );
    let (_, d) = diff_json(&a, &b, &["--regs"]);
    let t = &process(&d, "sh")["threads"]["changed"][0];
    let rsp = t["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["what"] == "rsp")
        .expect("the stack moved, so rsp differs");
    let reg = |ck: &str| {
        let out = ck2core(&["threads", ck, "--pid", "1", "--regs", "--json"]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["threads"][0]["registers"]["general"]["rsp"].clone()
    };
    assert_eq!((&rsp["a"], &rsp["b"]), (&reg(&a), &reg(&b)));
}

#[test]
fn a_checkpoint_equals_itself_and_its_repacked_copies() {
    for ck in ["ckbox.tar", "ckbox.tar.zst"] {
        let (code, d) = diff_json(&ckbox(ck), &ckbox(ck), &[]);
        assert_eq!(
            (code, &d["identical"]),
            (0, &Value::Bool(true)),
            "{ck}: {d:#}"
        );
    }
    // The zstd archive decompressed into a plain tar: another form, same content.
    let dir = scratch("diff-repack");
    let plain = dir.join("ckbox-unzstd.tar");
    let z = std::fs::read(testdata().join("ckbox/ckbox.tar.zst")).unwrap();
    std::fs::write(&plain, zstd::decode_all(&z[..]).unwrap()).unwrap();
    let (code, d) = diff_json(&ckbox("ckbox.tar.zst"), plain.to_str().unwrap(), &[]);
    assert_eq!(code, 0, "{d:#}");
    assert_eq!(d["summary"]["processes_compared"], 2);
    // ckfix's image directory against a tar of it.
    let images = testdata().join("ckfix/images");
    let tarball = dir.join("ckfix.tar");
    let mut t = tar::Builder::new(std::fs::File::create(&tarball).unwrap());
    t.append_dir_all("checkpoint", &images).unwrap();
    t.finish().unwrap();
    let out = ck2core(&["diff", images.to_str().unwrap(), tarball.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.lines()
            .nth(2)
            .unwrap()
            .starts_with("identical: 2 process pairs"),
        "{text}"
    );
}

/// Three mappings of saved pages (the middle one with an untouched gap), page `i`
/// marked with its number.
fn synthetic(dir: &Path) -> Vec<u64> {
    let mut p = Proc::new(7);
    p.vmas = vec![
        anon_vma(0x10_0000, 0x10_4000),
        anon_vma(0x20_0000, 0x20_8000),
        anon_vma(0x30_0000, 0x30_2000),
    ];
    p.pagemap = vec![
        run(0x10_0000, 4, 4),
        run(0x20_0000, 2, 4),
        run(0x20_6000, 2, 4),
        run(0x30_0000, 2, 4),
    ];
    write_images(dir, &[p]);
    write_pages(dir, 7, 10, |i, pg| marked("PAGE", i, pg));
    // The address of each saved page, in pages-7.img order.
    let mut addrs = Vec::new();
    for (s, n) in [
        (0x10_0000, 4),
        (0x20_0000, 2),
        (0x20_6000, 2),
        (0x30_0000, 2),
    ] {
        addrs.extend((0..n).map(|k| s + k * PAGE));
    }
    addrs
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn one_byte_changed_in_one_page_is_that_page_and_nothing_else() {
    let dir = scratch("diff-one-byte");
    let (a, b) = (dir.join("a"), dir.join("b"));
    let addrs = synthetic(&a);
    copy_dir(&a, &b);
    for k in [0usize, 5, 9] {
        let mut pages = std::fs::read(a.join("pages-7.img")).unwrap();
        pages[k * PAGE as usize + 1234] ^= 0x40;
        std::fs::write(b.join("pages-7.img"), pages).unwrap();
        let (code, d) = diff_json(a.to_str().unwrap(), b.to_str().unwrap(), &[]);
        assert_eq!(code, 1);
        assert_eq!(d["summary"]["pages_differ"], 1, "{d:#}");
        assert_eq!(d["summary"]["pages_unknown"], 0);
        assert_eq!(d["summary"]["container_changes"], 0);
        let p = &d["processes"][0];
        assert_eq!(p["changes"], Value::Array(vec![]));
        assert_eq!(p["mappings"]["changed"], Value::Array(vec![]));
        let mem = p["memory"].as_array().unwrap();
        assert_eq!(mem.len(), 1, "one mapping: {mem:#?}");
        let r = &mem[0]["differing"];
        assert_eq!(r.as_array().unwrap().len(), 1);
        assert_eq!(hex(&r[0]["a"]), addrs[k], "page {k}");
        assert_eq!(r[0]["pages"], 1);
    }
}

#[test]
fn a_page_one_side_did_not_save_is_unknown_not_zero() {
    let dir = scratch("diff-unknown");
    let (a, b) = (dir.join("a"), dir.join("b"));
    synthetic(&a);
    copy_dir(&a, &b);
    // B's last two pages become lazy (not in the images); its pages file keeps them
    // unread. A's untouched gap (0x202000-0x206000) stays zero on both sides.
    let mut p = Proc::new(7);
    p.pagemap = vec![
        run(0x10_0000, 4, 4),
        run(0x20_0000, 2, 4),
        run(0x20_6000, 2, 4),
        run(0x30_0000, 2, 2),
    ];
    std::fs::write(b.join("pagemap-7.img"), pagemap(7, &p.pagemap)).unwrap();
    let (code, d) = diff_json(a.to_str().unwrap(), b.to_str().unwrap(), &[]);
    assert_eq!(code, 1, "unknown pages are not 'identical'");
    assert_eq!(d["summary"]["pages_differ"], 0);
    assert_eq!(d["summary"]["pages_unknown"], 2);
    let m = &d["processes"][0]["memory"][0];
    assert_eq!(hex(&m["a"]["start"]), 0x30_0000);
    let u = &m["unknown_ranges"][0];
    assert_eq!(
        (hex(&u["a"]), &u["pages"], &u["missing_in"]),
        (0x30_0000, &Value::from(2), &Value::from("b"))
    );
}

#[test]
fn errors_exit_2() {
    let missing = testdata().join("no-such-checkpoint");
    let out = ck2core(&["diff", missing.to_str().unwrap(), &ckbox("ckbox.tar")]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("A: ") && err.contains("no-such-checkpoint"),
        "{err}"
    );
    let out = ck2core(&[
        "diff",
        &ckbox("ckbox.tar"),
        &ckbox("ckbox.tar"),
        "--pid-map",
        "1-9",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let out = ck2core(&[
        "diff",
        &ckbox("ckbox.tar"),
        &ckbox("ckbox.tar"),
        "--pid-map",
        "5:9",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("A has no process 5"));
}

fn ckfix() -> String {
    testdata().join("ckfix/images").display().to_string()
}

/// Processes of one side only are named with their side, parent and command line.
#[test]
fn processes_in_one_checkpoint_only_are_listed_with_their_side() {
    let sleep = testdata().join("sleep/images").display().to_string();
    let out = ck2core(&["diff", &ckfix(), &sleep]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(" only, parent "))
        .collect();
    assert_eq!(
        lines,
        [
            "+ process 30914 (sleep) in B only, parent 0: /usr/bin/sleep 1000",
            "- process 31227 (ckfix-main) in A only, parent 0: /ckfix/bin/ckfix /ckfix/ready /ckfix/data.bin",
            "- process 31229 (ckfix-child) in A only, parent 31227: /ckfix/bin/ckfix /ckfix/ready /ckfix/data.bin",
        ],
        "{text}"
    );
}

fn search(more: &[&str]) -> Vec<(u64, u64, String)> {
    let ck = ckfix();
    let mut args = vec!["search", ck.as_str(), "SECRET", "--json"];
    args.extend_from_slice(more);
    let out = ck2core(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["pid"].as_u64().unwrap(),
                hex(&m["address"]),
                m["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn search_by_kind_finds_the_heap_secret_and_not_the_stacks() {
    // The child's stack holds a fragment "D-SECRET" left by its strcpy.
    let all = search(&["--pid", "31229"]);
    let stack: Vec<_> = all.iter().filter(|m| m.2 == "stack").collect();
    assert_eq!(stack.len(), 1, "{all:?}");
    let heap = search(&["--pid", "31229", "--kind", "heap"]);
    assert_eq!(
        heap.iter().map(|m| m.1).collect::<Vec<_>>(),
        [0x55a1e47962a8, 0x55a1e47972be],
        "the parent's secret (inherited) and the child's"
    );
    assert!(heap.iter().all(|m| m.2 == "heap"));
    assert_eq!(
        search(&["--pid", "31229", "--kind", "stack"]),
        stack.into_iter().cloned().collect::<Vec<_>>()
    );
    // --range cuts inside the heap: only the second secret.
    let cut = search(&["--pid", "31229", "--range", "55a1e4797000-55a1e4798000"]);
    assert_eq!(
        cut.iter().map(|m| m.1).collect::<Vec<_>>(),
        [0x55a1e47972be]
    );
    // A match must lie wholly inside the range.
    assert!(search(&["--pid", "31229", "--range", "55a1e47962a8-55a1e47962ab"]).is_empty());
    // --perm: the secrets in the binary's read-only data are r--p or r-xp.
    let ro = search(&["--pid", "31227", "--perm", "r-x"]);
    assert!(!ro.is_empty() && ro.iter().all(|m| m.2 == "file"), "{ro:?}");
    let rw = search(&["--pid", "31227", "--perm", "rw"]);
    assert_eq!(rw.iter().map(|m| m.1).collect::<Vec<_>>(), [0x55a1e47962a8]);
}

#[test]
fn maps_and_read_take_the_same_filters() {
    let maps = |more: &[&str]| -> Vec<(String, String)> {
        let ck = ckfix();
        let mut args = vec!["maps", ck.as_str(), "--pid", "31227", "--json"];
        args.extend_from_slice(more);
        let out = ck2core(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["processes"][0]["maps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["perms"].as_str().unwrap().into(),
                    m["kind"].as_str().unwrap().into(),
                )
            })
            .collect()
    };
    assert_eq!(
        maps(&["--perm", "rw-s"]),
        [("rw-s".to_string(), "memfd".to_string())]
    );
    assert_eq!(maps(&["--kind", "shmem"]), maps(&["--perm", "s"]));
    let rw = maps(&["--perm", "rw"]);
    assert!(rw.iter().all(|(p, _)| p.starts_with("rw")) && rw.iter().any(|(p, _)| p == "rw-s"));
    assert_eq!(
        maps(&["--kind", "stack"]),
        [("rw-p".to_string(), "stack".to_string())]
    );
    let libc = maps(&["--path", "*libc.so*", "--perm", "r-xp"]);
    assert_eq!(libc, [("r-xp".to_string(), "file".to_string())]);
    assert!(!ck2core(&["maps", &ckfix(), "--kind", "nope"])
        .status
        .success());
    // read with a filter and no address reads what the filter selects.
    let out = ck2core(&[
        "read",
        &ckfix(),
        "--pid",
        "31227",
        "--range",
        "55a1e47962a0-55a1e47962bb",
        "--raw",
    ]);
    assert!(out.status.success());
    assert_eq!(out.stdout, b"CK2CORE-SECRET-5f1e2d3c4b5a");
    // With an address, bytes outside the filter are ?? like missing ones.
    let out = ck2core(&[
        "read",
        &ckfix(),
        "--pid",
        "31227",
        "0x55a1e4795ff8",
        "16",
        "--kind",
        "heap",
        "--json",
    ]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let u = &v["unavailable"];
    assert_eq!(u.as_array().unwrap().len(), 1, "{u:#}");
    assert_eq!(hex(&u[0]["start"]), 0x55a1e4795ff8);
    assert_eq!(
        (&u[0]["length"], &u[0]["reason"]),
        (&Value::from(8), &Value::from("excluded"))
    );
}

#[test]
fn diff_compares_only_the_filtered_memory() {
    let (a, b) = (ckbox("ckbox.tar"), ckbox("ckbox.tar.gz"));
    let (_, all) = diff_json(&a, &b, &[]);
    let (_, d) = diff_json(&a, &b, &["--kind", "heap"]);
    for p in d["processes"].as_array().unwrap() {
        assert!(!p["memory"].as_array().unwrap().is_empty());
        for m in p["memory"].as_array().unwrap() {
            assert_eq!(m["a"]["kind"], "heap");
        }
        for m in p["mappings"]["changed"].as_array().unwrap() {
            assert_eq!(m["a"]["kind"], "heap");
        }
    }
    // --range is in A's addresses; the heap moved in B and is still its partner.
    let sh = process(&all, "sh");
    let heap = sh["memory"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["a"]["kind"] == "heap")
        .unwrap();
    let first = &heap["differing"][0];
    let start = hex(&first["a"]);
    let range = format!("{:x}-{:x}", start, start + 4096);
    let (code, d) = diff_json(&a, &b, &["--range", &range]);
    assert_eq!(code, 1);
    let sh = process(&d, "sh");
    assert_eq!(sh["mappings"]["removed"], Value::Array(vec![]), "{sh:#}");
    assert_eq!(sh["mappings"]["added"], Value::Array(vec![]));
    let m = sh["memory"].as_array().unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!(
        (m[0]["compared"].as_u64(), m[0]["differ"].as_u64()),
        (Some(1), Some(1))
    );
    let r = &m[0]["differing"][0];
    assert_eq!(
        (&r["a"], &r["b"], &r["pages"]),
        (&first["a"], &first["b"], &Value::from(1))
    );
}

/// The same CRIU images in containerd's layout (its rootfs-diff.tar gzip-compressed,
/// the image id as a digest) and in Podman's: only what the engines record differs.
#[test]
fn containerd_and_podman_layouts_of_one_checkpoint_differ_only_in_engine_fields() {
    let (code, d) = diff_json(&ckbox("ckbox.containerd.tar"), &ckbox("ckbox.tar.zst"), &[]);
    assert_eq!(code, 1, "{d:#}");
    let what: Vec<&str> = d["container"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["what"].as_str().unwrap())
        .collect();
    assert_eq!(what, ["engine", "runtime", "pod", "namespace"], "{d:#}");
    assert_eq!(
        d["rootfs_diff"],
        serde_json::json!({"added": [], "removed": [], "changed": []})
    );
    assert_eq!(d["summary"]["pages_differ"], 0, "{d:#}");
    assert_eq!(d["summary"]["processes_differ"], 0, "{d:#}");
}
