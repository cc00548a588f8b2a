//! The inspection commands on the real fixtures (and synthetic archives for CRI-O
//! and containerd metadata), checked through their JSON output, parsed.

mod common;

use std::path::Path;

use common::synth::*;
use common::*;
use serde_json::Value;

fn ckfix() -> String {
    testdata().join("ckfix/images").display().to_string()
}

fn hex(v: &Value) -> u64 {
    u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

/// ready: `ready PID CHILD secret sparse shared filemap`
fn ready(i: usize) -> u64 {
    let r = std::fs::read_to_string(testdata().join("ckfix/ready")).unwrap();
    let w: Vec<&str> = r.split_whitespace().collect();
    u64::from_str_radix(w[3 + i].trim_start_matches("0x"), 16).unwrap()
}

#[test]
fn ps_shows_both_processes_with_command_lines() {
    let v = ck2core_json(&["ps", &ckfix(), "--json"]);
    let ps = v["processes"].as_array().unwrap();
    assert_eq!(ps.len(), 2);
    let cmd = |i: usize| {
        ps[i]["cmdline"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        (ps[0]["pid"].as_u64(), ps[0]["comm"].as_str()),
        (Some(31227), Some("ckfix-main"))
    );
    assert_eq!(
        (ps[1]["pid"].as_u64(), ps[1]["ppid"].as_u64()),
        (Some(31229), Some(31227))
    );
    assert_eq!(ps[1]["comm"], "ckfix-child");
    assert_eq!(
        cmd(0),
        ["/ckfix/bin/ckfix", "/ckfix/ready", "/ckfix/data.bin"]
    );
    assert_eq!(ps[0]["threads"], 5);
    assert_eq!(ps[0]["state"], "stopped");
    let text = String::from_utf8(ck2core(&["ps", &ckfix()]).stdout).unwrap();
    assert!(
        text.contains("└─ /ckfix/bin/ckfix"),
        "the child is drawn under its parent:\n{text}"
    );
}

#[test]
fn threads_are_named_with_their_system_calls() {
    let v = ck2core_json(&["threads", &ckfix(), "--pid", "31227", "--json"]);
    let t = v["threads"].as_array().unwrap();
    let names: Vec<&str> = t.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["ckfix-main", "spin-1", "spin-2", "spin-3", "waiter"]
    );
    assert_eq!(t[0]["syscall"]["name"], "pause");
    assert_eq!(t[0]["syscall"]["rewound_for_restart"], true);
    assert_eq!(t[4]["syscall"]["name"], "futex");
    assert!(t[1]["syscall"].is_null(), "spinners are in user space");
}

#[test]
fn register_values_equal_what_gdb_saw_live() {
    let v = ck2core_json(&["threads", &ckfix(), "--pid", "31227", "--regs", "--json"]);
    let live = std::fs::read_to_string(testdata().join("ckfix/live.txt")).unwrap();
    let live = parse_threads(&live);
    for t in v["threads"].as_array().unwrap() {
        let tid = t["tid"].as_u64().unwrap() as u32;
        let l = &live[&tid];
        let g = &t["registers"]["general"];
        let restarted = t["syscall"]["rewound_for_restart"] == true;
        for (name, want) in &l.regs {
            let got = hex(&g[name.as_str()]);
            let want = match name.as_str() {
                "rip" if restarted => want - 2,
                "rax" if restarted => hex(&g["orig_rax"]),
                _ => *want,
            };
            assert_eq!(got, want, "thread {tid} register {name}");
        }
        // live p/x $ymm0.v4_int64 prints {lo, .., hi}; ours is one 256-bit number.
        let ymm0: Vec<u64> = l.values[0]
            .trim_matches(['{', '}'])
            .split(", ")
            .map(|h| u64::from_str_radix(h.trim_start_matches("0x"), 16).unwrap())
            .collect();
        let ours = t["registers"]["vector"]["ymm0"].as_str().unwrap();
        let expect = format!(
            "{:x}{:016x}{:016x}{:016x}",
            ymm0[3], ymm0[2], ymm0[1], ymm0[0]
        );
        assert_eq!(
            ours.trim_start_matches("0x"),
            expect.trim_start_matches('0').max("0"),
            "thread {tid} ymm0"
        );
        assert_eq!(t["registers"]["vector"]["mxcsr"], "0x1f80");
    }
}

#[test]
fn maps_show_the_sparse_mapping_and_the_shared_page() {
    let v = ck2core_json(&["maps", &ckfix(), "--pid", "31227", "--json"]);
    let maps = v["processes"][0]["maps"].as_array().unwrap();
    let at = |a: u64| maps.iter().find(|m| hex(&m["start"]) == a).unwrap();
    let sparse = at(ready(1));
    assert_eq!(hex(&sparse["end"]) - hex(&sparse["start"]), 1 << 30);
    assert_eq!(sparse["kind"], "anon");
    assert_eq!(
        sparse["pages"]["pages"], 16,
        "one saved page per 64 MiB marker"
    );
    assert_eq!(sparse["pages"]["zero"], (1u64 << 18) - 16);
    let shared = at(ready(2));
    assert_eq!(shared["kind"], "memfd");
    assert_eq!(shared["perms"], "rw-s");
    assert_eq!(shared["pages"]["shmem"], 1);
    assert_eq!(shared["name"], "/dev/zero (deleted)");
    let filemap = at(ready(3));
    assert_eq!(
        (filemap["kind"].as_str(), filemap["name"].as_str()),
        (Some("file"), Some("/ckfix/data.bin"))
    );
    assert_eq!(filemap["pages"]["pages"], 1, "the private dirty page");
    assert_eq!(
        filemap["pages"]["absent"], 3,
        "no --rootfs: the clean pages are not available"
    );
    let with_root = ck2core_json(&[
        "maps",
        &ckfix(),
        "--pid",
        "31227",
        "--json",
        "--rootfs",
        testdata().join("host-rootfs").to_str().unwrap(),
    ]);
    let fm = with_root["processes"][0]["maps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| hex(&m["start"]) == ready(3))
        .unwrap()
        .clone();
    assert_eq!(fm["pages"]["rootfs"], 3);
    let libc = maps
        .iter()
        .find(|m| m["name"].as_str().unwrap().ends_with("libc.so.6"))
        .unwrap();
    assert!(libc["build_id"].as_str().unwrap().len() == 40);
}

#[test]
fn search_finds_the_secret_where_the_process_had_it() {
    let v = ck2core_json(&[
        "search",
        &ckfix(),
        "CK2CORE-SECRET",
        "--pid",
        "31227",
        "--json",
    ]);
    let m = v["matches"].as_array().unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!(hex(&m[0]["address"]), ready(0));
    assert_eq!(m[0]["mapping"], "[heap]");
    // All 16 sparse markers, in the 1 GiB mapping, and the child's secret.
    let v = ck2core_json(&[
        "search",
        &ckfix(),
        "--regex",
        "CK2CORE-SPARSE-[0-9]+",
        "--json",
    ]);
    assert_eq!(
        v["matches"].as_array().unwrap().len(),
        32,
        "16 markers in each process (the child inherited them)"
    );
    let v = ck2core_json(&["search", &ckfix(), "CK2CORE-CHILD-SECRET", "--json"]);
    let m = v["matches"].as_array().unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!(m[0]["pid"], 31229);
    let v = ck2core_json(&[
        "search",
        &ckfix(),
        "--hex",
        "434b32434f52452d5348415245442d50414745",
        "--json",
    ]);
    assert_eq!(
        hex(&v["matches"][0]["address"]),
        ready(2),
        "CK2CORE-SHARED-PAGE, in shared memory"
    );
}

#[test]
fn search_finds_matches_across_page_and_entry_boundaries() {
    let root = scratch("inspect-boundary");
    let dir = root.join("dump");
    let base = 0x3000_0000u64;
    let mut p = Proc::new(60);
    p.vmas = vec![anon_vma(base, base + 4 * PAGE)];
    // Two pagemap entries, so pages 0 and 1 are far apart in the pages file.
    p.pagemap = vec![
        run(base, 1, 4),
        run(base + PAGE, 1, 4),
        run(base + 3 * PAGE, 1, 4),
    ];
    write_images(&dir, &[p]);
    write_pages(&dir, 60, 3, |i, pg| {
        pg.fill(0x11);
        if i == 0 {
            pg[PAGE as usize - 5..].copy_from_slice(b"SPLIT");
        }
        if i == 1 {
            pg[..6].copy_from_slice(b"-MATCH");
        }
        if i == 2 {
            pg[..4].copy_from_slice(b"TAIL");
        }
    });
    let d = dir.to_str().unwrap();
    let v = ck2core_json(&["search", d, "SPLIT-MATCH", "--json"]);
    assert_eq!(hex(&v["matches"][0]["address"]), base + PAGE - 5);
    // Across a never-touched (zero) page too, with a regular expression.
    let v = ck2core_json(&["search", d, "--regex", r"\x11\x00{4096}TAIL", "--json"]);
    assert_eq!(hex(&v["matches"][0]["address"]), base + 3 * PAGE - 4097);
}

#[test]
fn read_returns_the_bytes_and_marks_what_is_missing() {
    let v = ck2core_json(&[
        "read",
        &ckfix(),
        "--pid",
        "31227",
        &format!("{:#x}", ready(0)),
        "27",
        "--json",
    ]);
    let bytes: Vec<u8> = (0..27)
        .map(|i| u8::from_str_radix(&v["bytes"].as_str().unwrap()[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    assert_eq!(bytes, b"CK2CORE-SECRET-5f1e2d3c4b5a");
    assert!(v["unavailable"].as_array().unwrap().is_empty());
    // The first page of data.bin is not saved and there's no --rootfs here.
    let v = ck2core_json(&[
        "read",
        &ckfix(),
        "--pid",
        "31227",
        &format!("{:#x}", ready(3)),
        "16",
        "--json",
    ]);
    assert_eq!(hex(&v["unavailable"][0]["start"]), ready(3));
    assert_eq!(v["unavailable"][0]["reason"], "not_saved");
    let raw = ck2core(&[
        "read",
        &ckfix(),
        "--pid",
        "31227",
        &format!("{:#x}", ready(0)),
        "14",
        "--raw",
    ]);
    assert_eq!(raw.stdout, b"CK2CORE-SECRET");
    let text = String::from_utf8(
        ck2core(&[
            "read",
            &ckfix(),
            "--pid",
            "31227",
            &format!("{:#x}", ready(3)),
            "16",
        ])
        .stdout,
    )
    .unwrap();
    assert!(
        text.contains("?? ?? ??") && text.contains("not in the checkpoint"),
        "{text}"
    );
}

#[test]
fn read_of_unmapped_memory_is_an_error_naming_the_address() {
    let out = ck2core(&["read", &ckfix(), "--pid", "31227", "0x0", "16"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        err.contains("no mapping covers 0x0..0x10") && err.contains("31227"),
        "{err}"
    );
    // Across the end of the heap: its last 8 bytes, then 8 that no mapping covers.
    let heap = ck2core_json(&["maps", &ckfix(), "--pid", "31227", "--json"])["processes"][0]
        ["maps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["kind"] == "heap")
        .map(|m| hex(&m["end"]))
        .unwrap();
    let at = format!("{:#x}", heap - 8);
    let v = ck2core_json(&["read", &ckfix(), "--pid", "31227", &at, "16", "--json"]);
    let gaps = v["unavailable"].as_array().unwrap();
    assert_eq!(gaps.len(), 1, "{v}");
    assert_eq!(hex(&gaps[0]["start"]), heap);
    assert_eq!(gaps[0]["length"], 8);
    assert_eq!(gaps[0]["reason"], "unmapped");
    let text = String::from_utf8(ck2core(&["read", &ckfix(), "--pid", "31227", &at, "16"]).stdout)
        .unwrap();
    assert!(
        text.contains(&format!("?? {heap:#x}..{:#x}: not mapped", heap + 8)),
        "{text}"
    );
}

#[test]
fn env_reads_the_environment_from_memory() {
    let v = ck2core_json(&["env", &ckfix(), "--pid", "31227", "--json"]);
    let env: Vec<&str> = v["processes"][0]["environ"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(
        env.contains(&"CKFIX_ENV_MARK=ck2core-env-marker"),
        "{env:?}"
    );
    assert_eq!(v["processes"][0]["argv"][0], "/ckfix/bin/ckfix");
}

#[test]
fn info_on_the_podman_archive() {
    let a = testdata().join("podman-counter/counter.tar.zst");
    let v = ck2core_json(&["info", a.to_str().unwrap(), "--json"]);
    let c = &v["container"];
    assert_eq!(c["engine"], "Podman");
    assert_eq!(c["name"], "counter");
    assert_eq!(c["image"], "localhost/bbox:latest");
    assert!(c["networks"][0]["ip"]
        .as_str()
        .unwrap()
        .starts_with("10.88."));
    assert_eq!(c["networks"][0]["interface"], "eth0");
    assert_eq!(v["processes"], 2);
    assert_eq!(v["format"], "tar.zst");
    assert!(v["dump_stats"]["pages_written"].as_u64().unwrap() > 0);
    assert!(v["dump_stats"]["frozen_time"].as_u64().unwrap() > 0);
    assert!(v["memory_pages_size"].as_u64().unwrap() > 0);
    let diff: Vec<&str> = c["rootfs_diff"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert!(diff.contains(&"/etc/hostname"));
}

/// An uncompressed archive with `members` (name, bytes) and checkpoint/ from `images`.
fn archive(path: &Path, images: &Path, members: &[(&str, String)]) {
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    b.append_dir_all("checkpoint", images).unwrap();
    for (name, content) in members {
        let mut h = tar::Header::new_gnu();
        h.set_size(content.len() as u64);
        h.set_mode(0o600);
        b.append_data(&mut h, name, content.as_bytes()).unwrap();
    }
    b.into_inner().unwrap();
}

fn small_images(dir: &Path) {
    let mut p = Proc::new(1);
    p.vmas = vec![anon_vma(0x4000_0000, 0x4000_1000)];
    write_images(dir, &[p]);
}

#[test]
fn info_reads_cri_o_metadata() {
    let root = scratch("inspect-crio");
    small_images(&root.join("images"));
    let spec = r#"{"hostname":"web-0","annotations":{"io.container.manager":"cri-o",
        "io.kubernetes.cri-o.Metadata":"{\"name\":\"nginx\",\"attempt\":0}",
        "io.kubernetes.cri-o.IP.0":"10.244.1.7","io.kubernetes.cri-o.Created":"2026-11-01T10:00:00Z",
        "io.kubernetes.pod.name":"web-0","io.kubernetes.pod.namespace":"prod"},
        "process":{"args":["nginx","-g","daemon off;"]},"mounts":[{"destination":"/data","type":"bind","source":"/var/data"}]}"#;
    let config = r#"{"id":"abc123","name":"k8s_nginx","rootfsImageName":"docker.io/library/nginx:1.27","rootfsImageRef":"sha256:feed","runtime":"runc","checkpointedTime":"2026-11-02T11:00:00Z"}"#;
    let a = root.join("checkpoint-web-0_prod-nginx.tar");
    archive(
        &a,
        &root.join("images"),
        &[
            ("spec.dump", spec.into()),
            ("config.dump", config.into()),
            ("bind.mounts", "[]".into()),
        ],
    );
    let v = ck2core_json(&["info", a.to_str().unwrap(), "--json"]);
    let c = &v["container"];
    assert_eq!(c["engine"], "CRI-O");
    assert_eq!(c["name"], "nginx");
    assert_eq!(c["image"], "docker.io/library/nginx:1.27");
    assert_eq!(c["image_id"], "sha256:feed");
    assert_eq!(c["pod"], "web-0");
    assert_eq!(c["namespace"], "prod");
    assert_eq!(c["networks"][0]["ip"], "10.244.1.7");
    assert_eq!(c["created"], "2026-11-01T10:00:00Z");
    assert_eq!(c["checkpointed"], "2026-11-02T11:00:00Z");
    assert_eq!(c["mounts"][0]["destination"], "/data");
    assert_eq!(c["command"][2], "daemon off;");
}

#[test]
fn info_reads_containerd_metadata() {
    let root = scratch("inspect-containerd");
    small_images(&root.join("images"));
    let spec = r#"{"annotations":{"io.kubernetes.cri.container-name":"redis",
        "io.kubernetes.cri.sandbox-name":"cache-1","io.kubernetes.cri.sandbox-namespace":"infra"}}"#;
    let config = r#"{"id":"def456","name":"redis","rootfsImageName":"docker.io/library/redis:7","rootfsImageRef":"sha256:cafe","runtime":"io.containerd.runc.v2","createdTime":"2026-10-01T00:00:00Z","checkpointedTime":"2026-10-02T00:00:00Z"}"#;
    let a = root.join("ckpt.tar");
    archive(
        &a,
        &root.join("images"),
        &[
            ("spec.dump", spec.into()),
            ("config.dump", config.into()),
            ("status", "{}".into()),
        ],
    );
    let v = ck2core_json(&["info", a.to_str().unwrap(), "--json"]);
    let c = &v["container"];
    assert_eq!(c["engine"], "containerd");
    assert_eq!(c["name"], "redis");
    assert_eq!(c["pod"], "cache-1");
    assert_eq!(c["namespace"], "infra");
    assert_eq!(c["runtime"], "io.containerd.runc.v2");
    assert_eq!(c["image"], "docker.io/library/redis:7");
}

#[test]
fn info_on_a_bare_image_directory() {
    let v = ck2core_json(&["info", &ckfix(), "--json"]);
    assert!(v["container"].is_null());
    assert_eq!(v["processes"], 2);
    assert_eq!(v["threads"], 6);
    assert_eq!(v["arch"], "x86_64");
    assert_eq!(v["criu_image_version"], 2);
    assert_eq!(v["format"], "directory");
}

#[test]
fn files_lists_descriptors_directories_and_mappings() {
    let v = ck2core_json(&["files", &ckfix(), "--pid", "31227", "--json"]);
    let p = &v["processes"][0];
    assert_eq!(
        (p["cwd"].as_str(), p["root"].as_str()),
        (Some("/ckfix"), Some("/"))
    );
    let fds = p["fds"].as_array().unwrap();
    let fd = |n: u64| fds.iter().find(|f| f["fd"] == n).unwrap()["file"].clone();
    for n in [0, 1, 2] {
        assert_eq!(fd(n)["type"], "regular");
        assert_eq!(fd(n)["path"], "/dev/null");
    }
    assert_eq!(fd(251)["type"], "pipe");
    assert_eq!(fd(251)["pipe_id"], 66504);
    let mapped: Vec<&str> = p["mapped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["path"].as_str().unwrap())
        .collect();
    assert!(
        mapped.contains(&"/ckfix/data.bin") && mapped.contains(&"/ckfix/bin/ckfix"),
        "{mapped:?}"
    );
    let podman = testdata().join("podman-counter/counter.tar");
    let v = ck2core_json(&["files", podman.to_str().unwrap(), "--pid", "1", "--json"]);
    let fds = v["processes"][0]["fds"].as_array().unwrap();
    assert_eq!(fds[1]["file"]["pipe_id"], 13099);
    assert_eq!(fds[2]["file"]["pipe_id"], 13100);
}

#[test]
fn files_describes_sockets() {
    use ck2core::images::{magic, pb};
    let dir = scratch("inspect-sockets").join("dump");
    let mut p = Proc::new(70);
    p.vmas = vec![anon_vma(0x4000_0000, 0x4000_1000)];
    write_images(&dir, &[p]);
    put(
        &dir,
        "ids-70.img",
        magic::IDS,
        &[pb::TaskKobjIdsEntry {
            files_id: Some(9),
            ..Default::default()
        }],
    );
    let inet = pb::FileEntry {
        r#type: Some(4),
        id: Some(1),
        isk: Some(pb::InetSkEntry {
            family: Some(2),
            r#type: Some(1),
            proto: Some(6),
            state: Some(1),
            src_port: Some(8080),
            dst_port: Some(39838),
            // 10.88.0.3 and 10.88.0.1, as the kernel stores them (network order).
            src_addr: vec![u32::from_le_bytes([10, 88, 0, 3])],
            dst_addr: vec![u32::from_le_bytes([10, 88, 0, 1])],
            ino: Some(4242),
            ..Default::default()
        }),
        ..Default::default()
    };
    let unix = pb::FileEntry {
        r#type: Some(5),
        id: Some(2),
        usk: Some(pb::UnixSkEntry {
            r#type: Some(1),
            state: Some(10),
            name: Some(b"\0agent".to_vec()),
            ino: Some(77),
            ..Default::default()
        }),
        ..Default::default()
    };
    put(&dir, "files.img", magic::FILES, &[inet, unix]);
    let fdinfo = |fd, id, ty| pb::FdinfoEntry {
        id: Some(id),
        flags: Some(0),
        r#type: Some(ty),
        fd: Some(fd),
    };
    put(
        &dir,
        "fdinfo-9.img",
        magic::FDINFO,
        &[fdinfo(3, 1, 4), fdinfo(4, 2, 5)],
    );
    let v = ck2core_json(&["files", dir.to_str().unwrap(), "--json"]);
    let fds = v["processes"][0]["fds"].as_array().unwrap();
    let tcp = &fds[0]["file"];
    assert_eq!(
        (
            tcp["type"].as_str(),
            tcp["protocol"].as_str(),
            tcp["state"].as_str()
        ),
        (Some("inet"), Some("tcp"), Some("ESTABLISHED"))
    );
    assert_eq!(
        (tcp["src"].as_str(), tcp["src_port"].as_u64()),
        (Some("10.88.0.3"), Some(8080))
    );
    assert_eq!(
        (tcp["dst"].as_str(), tcp["dst_port"].as_u64()),
        (Some("10.88.0.1"), Some(39838))
    );
    let u = &fds[1]["file"];
    assert_eq!(
        (u["type"].as_str(), u["name"].as_str(), u["state"].as_str()),
        (Some("unix"), Some("@agent"), Some("LISTEN"))
    );
    let text = String::from_utf8(ck2core(&["files", dir.to_str().unwrap()]).stdout).unwrap();
    assert!(
        text.contains("TCP     ESTABLISHED 10.88.0.3:8080 -> 10.88.0.1:39838"),
        "{text}"
    );
}
