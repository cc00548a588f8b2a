//! The same checkpoint (testdata/ckbox) as each engine and registry hands it over:
//! Podman's archive, a checkpoint image (OCI archive and OCI layout directory, as
//! CRI-O and checkpointctl build them) and containerd's archive. All carry the same
//! CRIU images, so every form must give the same cores, byte for byte, and the same
//! inspection output; gdb reads them with no warning.

mod common;

use std::path::{Path, PathBuf};

use common::image_forms::*;
use common::*;

fn ckbox(name: &str) -> PathBuf {
    testdata().join("ckbox").join(name)
}

/// The container image's root, unpacked from its OCI layout with tar (the image has
/// one layer).
fn image_root(test: &str) -> PathBuf {
    let root = scratch(&format!("engines-{test}-root"));
    unpack_layer(
        &ckbox("ckbox-image.oci-dir"),
        "sha256:f0df1855e792a72e26f4faeca12a4cc2423fc65e1a30d10caf2c9849c0b68926",
        &root,
    );
    assert!(root.join("bin/busybox").is_file());
    root
}

fn run(args: &[&str]) -> (String, String, bool) {
    let out = ck2core(args);
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

/// Converts `input`, named by the same path whatever it is (a link at a fixed
/// place), so that the cores' own note, which names the input, can be compared too.
fn convert(input: &Path, name: &str, root: &Path) -> PathBuf {
    let out = scratch(name);
    let test = name.split('-').nth(1).unwrap();
    let at = scratch(&format!("engines-{test}-in")).join("checkpoint");
    std::os::unix::fs::symlink(input, &at).unwrap();
    ck2core_ok(&[
        at.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--rootfs",
        root.to_str().unwrap(),
    ]);
    out
}

fn assert_same_cores(a: &Path, b: &Path, what: &str) {
    for pid in [1, 9] {
        let x = std::fs::read(a.join(format!("core.{pid}"))).unwrap();
        let y = std::fs::read(b.join(format!("core.{pid}"))).unwrap();
        assert!(
            x == y,
            "{what}: core.{pid} differs from ckbox.tar.zst's ({} vs {} bytes)",
            y.len(),
            x.len()
        );
    }
}

/// The same process state: every note but ck2core's own byte for byte, the same
/// segments with the same bytes, and ck2core's note equal but for the container
/// metadata (which the engines record differently).
fn assert_same_state(a: &Path, b: &Path, what: &str) {
    for pid in [1, 9] {
        let x = CoreFile::open(&a.join(format!("core.{pid}")));
        let y = CoreFile::open(&b.join(format!("core.{pid}")));
        let (nx, ny) = (x.notes(), y.notes());
        assert_eq!(nx.len(), ny.len(), "{what}: core.{pid} note count");
        for (p, q) in nx.iter().zip(&ny) {
            assert_eq!((&p.name, p.ntype), (&q.name, q.ntype), "{what}: core.{pid}");
            if p.name == "CK2CORE" {
                let mut u: serde_json::Value = serde_json::from_slice(&p.desc).unwrap();
                let mut v: serde_json::Value = serde_json::from_slice(&q.desc).unwrap();
                for j in [&mut u, &mut v] {
                    j.as_object_mut().unwrap().remove("container");
                }
                assert_eq!(u, v, "{what}: core.{pid} ck2core note");
            } else {
                assert!(
                    p.desc == q.desc,
                    "{what}: core.{pid} note {} {}",
                    p.name,
                    p.ntype
                );
            }
        }
        let loads = |c: &CoreFile| -> Vec<Phdr> {
            c.phdrs().into_iter().filter(|p| p.p_type == 1).collect()
        };
        let (lx, ly) = (loads(&x), loads(&y));
        assert_eq!(lx.len(), ly.len(), "{what}: core.{pid} segment count");
        for (p, q) in lx.iter().zip(&ly) {
            assert_eq!(
                (p.vaddr, p.memsz, p.filesz, p.flags),
                (q.vaddr, q.memsz, q.filesz, q.flags),
                "{what}: core.{pid} segment"
            );
            assert!(
                x.at(p.offset as usize, p.filesz as usize)
                    == y.at(q.offset as usize, q.filesz as usize),
                "{what}: core.{pid} bytes of the segment at {:#x}",
                p.vaddr
            );
        }
    }
}

/// gdb on a core of `dir`: no warning, the thread is there, and the secret the shell
/// wrote is in its heap at the address `search` found.
fn gdb_reads(dir: &Path, root: &Path, input: &Path) {
    let (found, _, ok) = run(&[
        "search",
        input.to_str().unwrap(),
        "CK2CORE-CTR-SECRET-77aa",
        "--pid",
        "1",
    ]);
    assert!(ok, "search failed");
    let addr = found
        .lines()
        .find_map(|l| l.strip_prefix("pid 1 at "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("search found nothing:\n{found}"))
        .to_string();
    let got = gdb(
        &dir.join("core.1"),
        Some(root),
        Some(&root.join("bin/busybox")),
        &["info threads", &format!("x/s {addr}"), "x/i $pc"],
    );
    assert_eq!(warnings(&got), Vec::<&str>::new(), "{got}");
    assert!(got.contains("[New LWP 1]"), "{got}");
    assert!(
        got.contains("\"CK2CORE-CTR-SECRET-77aa"),
        "gdb reads the secret at {addr}:\n{got}"
    );
}

#[test]
fn checkpoint_images_convert_and_inspect_like_the_archive() {
    let root = image_root("img");
    let reference = ckbox("ckbox.tar.zst");
    let want = convert(&reference, "engines-img-ref", &root);
    for (i, form) in ["ckbox-checkpoint.oci.tar", "ckbox-checkpoint.oci-dir"]
        .iter()
        .enumerate()
    {
        let input = ckbox(form);
        let got = convert(&input, &format!("engines-img-{i}"), &root);
        assert_same_cores(&want, &got, form);
        gdb_reads(&got, &root, &input);
        let r = reference.to_str().unwrap();
        let f = input.to_str().unwrap();
        for cmd in [
            &["ps"][..],
            &["ps", "--json"],
            &["threads", "--regs"],
            &["maps"],
            &["files"],
            &["env"],
            &["search", "CK2CORE"],
            &["read", "--pid", "1", "0x5e2000", "256"],
        ] {
            let args = |input: &str| {
                let mut a = vec![cmd[0], input];
                a.extend(&cmd[1..]);
                if matches!(cmd[0], "maps" | "read") {
                    a.extend(["--rootfs", root.to_str().unwrap()]);
                }
                a.iter().map(|s| s.to_string()).collect::<Vec<_>>()
            };
            let a: Vec<String> = args(r);
            let b: Vec<String> = args(f);
            let (x, _, okx) = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
            let (y, ye, oky) = run(&b.iter().map(String::as_str).collect::<Vec<_>>());
            assert!(okx && oky, "{form} {cmd:?}: {ye}");
            assert!(!x.is_empty(), "{cmd:?} printed nothing");
            assert_eq!(x, y, "{form}: `{}` differs", cmd.join(" "));
        }
        // The report names its input in its first line; everything after is the same.
        let (x, _, _) = run(&["report", r, "--rootfs", root.to_str().unwrap()]);
        let (y, _, _) = run(&["report", f, "--rootfs", root.to_str().unwrap()]);
        let (x1, xrest) = x.split_once('\n').unwrap();
        let (y1, yrest) = y.split_once('\n').unwrap();
        assert_eq!(xrest, yrest, "{form}: report differs");
        assert!(x1.contains("(tar.zst)"), "{x1}");
        let kind = if form.ends_with(".tar") {
            "(oci-archive)"
        } else {
            "(oci-layout)"
        };
        assert!(y1.contains(kind), "{y1}");

        let (info, _, ok) = run(&["info", f]);
        assert!(ok);
        for line in [
            &format!("Checkpoint image: localhost/ckbox-checkpoint:1 {kind}"),
            "Image ID: sha256:6dd2fa95f1f40996bbd88fc1d6b0e378b302f1aaf9e6fb24c12c4f7940bf0321",
            "Manifest: sha256:df06dc1b51d0401d5a093cb31c9b4e23557ba21932da112d6981c90d3ff741d7",
            "Container: ckbox",
            "sha256:809020c76d3ff2bc1015e8f19079562ca82239b6ff125dbe521ce1e6879b210d (gzip, 40.0 KiB)",
            "io.kubernetes.cri-o.annotations.checkpoint.name=ckbox",
            "org.criu.checkpoint.container.name=ckbox",
            "/tmp/s (file, 24 B)",
        ] {
            assert!(info.contains(line), "{form}: info lacks {line:?}:\n{info}");
        }
        let (json, _, _) = run(&["info", f, "--json"]);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["image"]["container_name"], "ckbox");
        assert_eq!(v["image"]["format"], kind.trim_matches(['(', ')']));
        assert_eq!(
            v["image"]["annotations"]["io.kubernetes.cri-o.annotations.checkpoint.name"],
            "ckbox"
        );
        assert_eq!(v["format"], kind.trim_matches(['(', ')']));
    }
}

#[test]
fn a_checkpoint_image_on_stdin() {
    let out = scratch("engines-img-stdin");
    let file = std::fs::File::open(ckbox("ckbox-checkpoint.oci.tar")).unwrap();
    let res = std::process::Command::new(env!("CARGO_BIN_EXE_ck2core"))
        .args(["ps", "-"])
        .stdin(file)
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let (want, _, _) = run(&["ps", ckbox("ckbox.tar.zst").to_str().unwrap()]);
    assert_eq!(String::from_utf8_lossy(&res.stdout), want);
    drop(out);
}

#[test]
fn a_plain_image_is_not_taken_for_a_checkpoint() {
    let (_, err, ok) = run(&["ps", ckbox("ckbox-image.oci-dir").to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("a container image (localhost/ckbox:1, sha256:6fae9915881633469898d89f295b69d45aa8870cb77b0aa4060180f1385afa30), not a checkpoint"),
        "{err}"
    );
}

#[test]
fn containerd_archive_converts_like_podmans() {
    let root = image_root("ctrd");
    let want = convert(&ckbox("ckbox.tar.zst"), "engines-ctrd-ref", &root);
    let input = ckbox("ckbox.containerd.tar");
    let got = convert(&input, "engines-ctrd", &root);
    assert_same_state(&want, &got, "ckbox.containerd.tar");
    gdb_reads(&got, &root, &input);

    let (info, _, ok) = run(&["info", input.to_str().unwrap()]);
    assert!(ok);
    for line in [
        "Engine: containerd",
        "Root FS diff size: 4.0 KiB (gzip, 224 B stored)",
        "/tmp/s (file, 24 B)",
        "/etc/hosts (file, 0 B)",
        "State: running",
        "Started: 2026-11-29T18:54:47",
        "Image ref: sha256:6fae9915881633469898d89f295b69d45aa8870cb77b0aa4060180f1385afa30",
        "Log path: /var/log/pods/default_ckbox_824090d6-f248-4ec9-9704-60eff52d419e/ckbox/0.log",
        "Pid (on the host): 27755",
        "/etc/hosts  <-  /run/containers/storage/overlay-containers/c8ee184e427f7e3185b5f34006998e85823a66cd99e5bad2a01229da362d3284/userdata/hosts",
        "Container log: container.log (0 B)",
    ] {
        assert!(info.contains(line), "info lacks {line:?}:\n{info}");
    }
    let (found, _, ok) = run(&["search", input.to_str().unwrap(), "CK2CORE-CTR-SECRET-77aa"]);
    assert!(ok);
    assert!(found.ends_with("3 matches\n"), "{found}");
}

#[test]
fn containerd_diff_in_any_compression_with_whiteouts() {
    // containerd restores rootfs-diff.tar with compression.DecompressStream, which
    // takes any compression: a zstd layer whose whiteout deletes /bin/busybox and
    // whose opaque directory hides the image's /app.
    let root = image_root("ctrdwh");
    let diff = tar_bytes(&[
        ("tmp/s".into(), b"CK2CORE-CTR-SECRET-77aa\n".to_vec()),
        ("bin/.wh.busybox".into(), Vec::new()),
        ("app/.wh..wh..opq".into(), Vec::new()),
    ]);
    let members: Vec<(String, Vec<u8>)> = tar_members(&ckbox("ckbox.containerd.tar"))
        .into_iter()
        .map(|(n, b)| {
            if n == "rootfs-diff.tar" {
                (n, zstd::encode_all(&diff[..], 3).unwrap())
            } else {
                (n, b)
            }
        })
        .collect();
    let path = scratch("engines-ctrdwh-archive").join("ctrd.tar");
    write_tar(&path, &members);
    let p = path.to_str().unwrap();
    let (info, err, ok) = run(&["info", p]);
    assert!(ok, "{err}");
    for line in [
        "(zstd, ",
        "/tmp/s (file, 24 B)",
        "/bin/busybox (deleted)",
        "/app/* (opaque: the image's files there) (deleted)",
    ] {
        assert!(info.contains(line), "info lacks {line:?}:\n{info}");
    }
    assert!(!info.contains(".wh."), "{info}");
    // The deleted busybox is not taken from the image's root: its clean pages are
    // absent, where the unchanged archive fills them from the root.
    let pages_from_root = |input: &str| -> u64 {
        let (j, e, ok) = run(&[
            "maps",
            input,
            "--pid",
            "1",
            "--json",
            "--rootfs",
            root.to_str().unwrap(),
        ]);
        assert!(ok, "{e}");
        fn sum(v: &serde_json::Value) -> u64 {
            match v {
                serde_json::Value::Object(m) => m
                    .iter()
                    .map(|(k, x)| match (k.as_str(), x.as_u64()) {
                        ("rootfs", Some(n)) => n,
                        _ => sum(x),
                    })
                    .sum(),
                serde_json::Value::Array(a) => a.iter().map(sum).sum(),
                _ => 0,
            }
        }
        sum(&serde_json::from_str(&j).unwrap())
    };
    assert_eq!(pages_from_root(p), 0);
    assert!(pages_from_root(ckbox("ckbox.containerd.tar").to_str().unwrap()) > 400);
}

/// A CRI-O archive made here from CRI-O's layout (`internal/lib/checkpoint.go`:
/// `prepareCheckpointExport` writes config.dump, spec.dump and bind.mounts;
/// `exportCheckpoint` adds stats-dump, dump.log, checkpoint/, rootfs-diff.tar and
/// deleted.files from containers/common `crutils.CRCreateRootFsDiffTar`, and the
/// container log under the name of the `io.kubernetes.cri-o.LogPath` annotation,
/// in an uncompressed tar). The CRIU images are ckbox's.
fn crio_archive(path: &Path) {
    let podman = tar_members(&ckbox("ckbox.tar.zst"));
    let pick = |n: &str| podman.iter().find(|(m, _)| m == n).unwrap().1.clone();
    let mut spec: serde_json::Value = serde_json::from_slice(&pick("spec.dump")).unwrap();
    let log_path = "/var/log/pods/default_ckbox_0d3b/ckbox/0.log";
    spec["annotations"] = serde_json::json!({
        "io.container.manager": "cri-o",
        "io.kubernetes.cri-o.Metadata": "{\"name\":\"ckbox\",\"attempt\":0}",
        "io.kubernetes.cri-o.Created": "2026-11-29T18:54:47.435424435Z",
        "io.kubernetes.cri-o.IP.0": "10.85.0.7",
        "io.kubernetes.cri-o.LogPath": log_path,
        "io.kubernetes.pod.name": "ckbox-pod",
        "io.kubernetes.pod.namespace": "forensics",
        "io.kubernetes.container.name": "ckbox",
    });
    let config = serde_json::json!({
        "id": "c8ee184e427f7e3185b5f34006998e85823a66cd99e5bad2a01229da362d3284",
        "name": "k8s_ckbox_ckbox-pod_forensics_0d3b_0",
        "rootfsImage": "localhost/ckbox:1",
        "rootfsImageRef": "6fae9915881633469898d89f295b69d45aa8870cb77b0aa4060180f1385afa30",
        "rootfsImageName": "localhost/ckbox:1",
        "runtime": "runc",
        "createdTime": "2026-11-29T18:54:47.435424435Z",
        "checkpointedTime": "2026-11-29T18:54:50.84364999Z",
        "restoredTime": "0001-01-01T00:00:00Z",
        "restored": false
    });
    // ExternalBindMount, written with json.MarshalIndent (checkpointctl WriteJSONFile).
    let binds = serde_json::json!([
        {"source": "/var/lib/kubelet/pods/0d3b/etc-hosts", "destination": "/etc/hosts",
         "file_type": "file", "permissions": 0o644},
        {"source": "/var/lib/kubelet/pods/0d3b/volumes/data", "destination": "/data",
         "file_type": "directory", "permissions": 0o755}
    ]);
    let mut log = String::new();
    for i in 0..15 {
        log.push_str(&format!(
            "2026-11-29T18:54:{:02}.000000000Z stdout F line {i}\n",
            35 + i
        ));
    }
    let mut files: Vec<(String, Vec<u8>)> = podman
        .iter()
        .filter(|(n, _)| {
            n.starts_with("checkpoint/") || n == "stats-dump" || n == "rootfs-diff.tar"
        })
        .cloned()
        .collect();
    files.extend([
        (
            "config.dump".into(),
            serde_json::to_vec_pretty(&config).unwrap(),
        ),
        (
            "spec.dump".into(),
            serde_json::to_vec_pretty(&spec).unwrap(),
        ),
        (
            "bind.mounts".into(),
            serde_json::to_vec_pretty(&binds).unwrap(),
        ),
        (
            "deleted.files".into(),
            b"[\n  \"/app/data.txt\"\n]".to_vec(),
        ),
        ("dump.log".into(), b"(00.000000) Version: 4.2\n".to_vec()),
        ("io.kubernetes.cri-o.LogPath".into(), log.into_bytes()),
    ]);
    write_tar(path, &files);
}

#[test]
fn crio_archive_shows_its_mounts_deletions_and_log() {
    let root = image_root("crio");
    let path = scratch("engines-crio-archive").join("checkpoint-ckbox-pod_forensics-ckbox.tar");
    crio_archive(&path);
    let want = convert(&ckbox("ckbox.tar.zst"), "engines-crio-ref", &root);
    let got = convert(&path, "engines-crio", &root);
    assert_same_state(&want, &got, "CRI-O archive");
    let (info, err, ok) = run(&["info", path.to_str().unwrap()]);
    assert!(ok, "{err}");
    for line in [
        "ckbox\n",
        "Engine: CRI-O",
        "Pod: ckbox-pod",
        "Namespace: forensics",
        "Log path: /var/log/pods/default_ckbox_0d3b/ckbox/0.log",
        "IP: 10.85.0.7",
        "/app/data.txt (deleted)",
        "/tmp/s (file, 24 B)",
        "Bind mounts",
        "/etc/hosts  <-  /var/lib/kubelet/pods/0d3b/etc-hosts  (file)",
        "/data  <-  /var/lib/kubelet/pods/0d3b/volumes/data  (directory)",
        "Container log: io.kubernetes.cri-o.LogPath (",
        "2026-11-29T18:54:49.000000000Z stdout F line 14",
        "2026-11-29T18:54:40.000000000Z stdout F line 5",
    ] {
        assert!(info.contains(line), "info lacks {line:?}:\n{info}");
    }
    assert!(
        !info.contains("line 4\n"),
        "only the last 10 lines:\n{info}"
    );
    let (json, _, _) = run(&["info", path.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let c = &v["container"];
    assert_eq!(c["bind_mounts"][1]["file_type"], "directory");
    assert_eq!(c["log"]["tail"].as_array().unwrap().len(), 10);
    assert_eq!(c["deleted_files"][0], "/app/data.txt");
}

#[test]
fn a_pod_checkpoint_keeps_its_clear_error() {
    // KEP-5823's pod archives (no runtime writes them yet): a directory per
    // container, each with its own checkpoint/, beside pod.options and pod.dump.
    let podman = tar_members(&ckbox("ckbox.tar.zst"));
    let mut files: Vec<(String, Vec<u8>)> = vec![
        (
            "pod.options".into(),
            br#"{"version":1,"containers":{"a":"a1","b":"b1"}}"#.to_vec(),
        ),
        ("pod.dump".into(), b"{}".to_vec()),
    ];
    for ctr in ["a", "b"] {
        files.extend(
            podman
                .iter()
                .filter(|(n, _)| n.starts_with("checkpoint/") || n == "config.dump")
                .map(|(n, b)| (format!("{ctr}/{n}"), b.clone())),
        );
    }
    let path = scratch("engines-pod").join("pod.tar");
    write_tar(&path, &files);
    let out = scratch("engines-pod-out");
    let (_, err, ok) = run(&[path.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("holds several checkpoints (a/checkpoint/, b/checkpoint/)")
            && err.contains("pod checkpoints are not supported yet"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
}
