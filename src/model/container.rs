//! What the container engine wrote beside the CRIU images: which engine, the
//! container's name, image, network, mounts, times, and CRIU's dump statistics.
//! Podman, CRI-O and containerd lay these out differently (docs: archives-and-peers);
//! everything is optional, since a bare image directory has none of it.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::archive::oci::{whiteout, Whiteout};
use crate::archive::Archive;
use crate::images::{magic, pb, Image, MAX_IMAGE};

/// The container a checkpoint came from.
#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
pub struct Container {
    /// "Podman", "CRI-O" or "containerd".
    pub engine: Option<String>,
    /// Container name.
    pub name: Option<String>,
    /// Container id.
    pub id: Option<String>,
    /// Image name.
    pub image: Option<String>,
    /// Image id or reference.
    pub image_id: Option<String>,
    /// OCI runtime.
    pub runtime: Option<String>,
    /// When the container was created.
    pub created: Option<String>,
    /// When it was checkpointed (engines that record it).
    pub checkpointed: Option<String>,
    /// Kubernetes pod name.
    pub pod: Option<String>,
    /// Kubernetes namespace.
    pub namespace: Option<String>,
    /// Hostname from the OCI spec.
    pub hostname: Option<String>,
    /// The container's command (OCI spec process.args).
    pub command: Vec<String>,
    /// Network interfaces.
    pub networks: Vec<Network>,
    /// OCI spec mounts.
    pub mounts: Vec<Mount>,
    /// OCI spec annotations.
    pub annotations: BTreeMap<String, String>,
    /// Files the container changed (rootfs-diff.tar).
    pub rootfs_diff: Vec<DiffEntry>,
    /// Files the container deleted (deleted.files).
    pub deleted_files: Vec<String>,
    /// CRI state at checkpoint time: `created`, `running`, `exited` or `unknown`
    /// (containerd's status.dump).
    pub state: Option<String>,
    /// When the container started (containerd's status.dump or status), RFC 3339.
    pub started: Option<String>,
    /// The image reference the runtime resolved (containerd's status.dump `image_ref`).
    pub image_ref: Option<String>,
    /// The container log's path on the host (containerd's status.dump `log_path`,
    /// CRI-O's `io.kubernetes.cri-o.LogPath` annotation).
    pub log_path: Option<String>,
    /// The container's init process as the host saw it (containerd's status `Pid`).
    pub host_pid: Option<u64>,
    /// Bind mounts the engine set up (CRI-O's bind.mounts, containerd's status.dump
    /// `mounts`).
    pub bind_mounts: Vec<BindMount>,
    /// The container log saved in the archive, if any.
    pub log: Option<ContainerLog>,
}

/// A bind mount from the host into the container.
#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
pub struct BindMount {
    /// Mount point in the container.
    pub destination: String,
    /// Path on the host.
    pub source: String,
    /// `file` or `directory` (CRI-O), if recorded.
    pub file_type: Option<String>,
    /// Mounted read-only, if recorded.
    pub readonly: Option<bool>,
}

/// The container's log as the archive carries it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ContainerLog {
    /// Archive member (`ctr.log`, `container.log`, `io.kubernetes.cri-o.LogPath`).
    pub member: String,
    /// Size in bytes.
    pub size: u64,
    /// Its last lines (at most [`LOG_TAIL_LINES`], from its last 64 KiB).
    pub tail: Vec<String>,
}

/// How many lines of the container log `info` shows.
pub const LOG_TAIL_LINES: usize = 10;

/// One network interface.
#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
pub struct Network {
    /// Network name (Podman), if known.
    pub network: Option<String>,
    /// Interface name, if known.
    pub interface: Option<String>,
    /// Address with prefix, e.g. 10.88.0.5/16.
    pub ip: Option<String>,
    /// MAC address.
    pub mac: Option<String>,
    /// Gateway.
    pub gateway: Option<String>,
}

/// One mount of the OCI spec.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Mount {
    /// Mount point in the container.
    pub destination: String,
    /// File system type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Source.
    pub source: String,
}

/// One entry of rootfs-diff.tar.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct DiffEntry {
    /// Path in the container (with a leading `/`).
    pub path: String,
    /// "file", "dir", "symlink", "link" or "other".
    pub kind: String,
    /// Size in bytes.
    pub size: u64,
}

/// CRIU's dump statistics (stats-dump).
#[derive(Debug, Clone, Copy, Default, Serialize, schemars::JsonSchema)]
pub struct DumpStats {
    /// Microseconds spent freezing the tasks.
    pub freezing_time: u32,
    /// Microseconds the tasks were frozen.
    pub frozen_time: u32,
    /// Microseconds spent dumping memory.
    pub memdump_time: u32,
    /// Microseconds spent writing memory.
    pub memwrite_time: u32,
    /// Pages scanned.
    pub pages_scanned: u64,
    /// Pages skipped because the parent images have them.
    pub pages_skipped_parent: u64,
    /// Pages written.
    pub pages_written: u64,
}

fn json(archive: &Archive, name: &str) -> Option<Value> {
    let bytes = archive.member(name)?.read_all(64 << 20).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn s(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && *s != "0001-01-01T00:00:00Z")
        .map(str::to_string)
}

impl Container {
    /// Reads the engine's metadata files; `None` when there are none.
    pub fn read(archive: &Archive) -> Option<Container> {
        let config = json(archive, "config.dump");
        let spec = json(archive, "spec.dump");
        if config.is_none() && spec.is_none() {
            return None;
        }
        let config = config.unwrap_or(Value::Null);
        let spec = spec.unwrap_or(Value::Null);
        let annotations: BTreeMap<String, String> = spec
            .get("annotations")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        let ann = |k: &str| annotations.get(k).filter(|v| !v.is_empty()).cloned();
        let engine = match ann("io.container.manager").as_deref() {
            Some("libpod") => "Podman",
            Some("cri-o") => "CRI-O",
            _ => "containerd",
        };
        let mut c = Container {
            engine: Some(engine.to_string()),
            id: s(&config, "id"),
            image: s(&config, "rootfsImageName").or_else(|| s(&config, "rootfsImage")),
            image_id: s(&config, "rootfsImageID").or_else(|| s(&config, "rootfsImageRef")),
            runtime: s(&config, "runtime"),
            created: s(&config, "createdTime"),
            checkpointed: s(&config, "checkpointedTime"),
            hostname: s(&spec, "hostname"),
            command: spec
                .pointer("/process/args")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            mounts: spec
                .get("mounts")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|m| Mount {
                            destination: s(m, "destination").unwrap_or_default(),
                            kind: s(m, "type").unwrap_or_default(),
                            source: s(m, "source").unwrap_or_default(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            ..Default::default()
        };
        match engine {
            "Podman" => {
                c.name = s(&config, "name");
                c.networks = podman_networks(json(archive, "network.status").as_ref());
            }
            "CRI-O" => {
                c.name = ann("io.kubernetes.cri-o.Metadata")
                    .and_then(|m| serde_json::from_str::<Value>(&m).ok())
                    .and_then(|m| s(&m, "name"))
                    .or_else(|| ann("io.kubernetes.container.name"))
                    .or_else(|| s(&config, "name"));
                c.created = ann("io.kubernetes.cri-o.Created").or(c.created);
                c.pod = ann("io.kubernetes.pod.name");
                c.namespace = ann("io.kubernetes.pod.namespace");
                if let Some(ip) = ann("io.kubernetes.cri-o.IP.0") {
                    c.networks.push(Network {
                        ip: Some(ip),
                        ..Default::default()
                    });
                }
            }
            _ => {
                c.name = ann("io.kubernetes.cri.container-name").or_else(|| s(&config, "name"));
                c.pod = ann("io.kubernetes.cri.sandbox-name");
                c.namespace = ann("io.kubernetes.cri.sandbox-namespace");
            }
        }
        if let Some(st) = json(archive, "status.dump") {
            cri_status(&mut c, &st);
        }
        if let Some(st) = json(archive, "status") {
            c.host_pid = st.get("Pid").and_then(Value::as_u64).filter(|p| *p > 0);
            if c.started.is_none() {
                c.started = st
                    .get("StartedAt")
                    .and_then(Value::as_i64)
                    .and_then(rfc3339_from_nanos);
            }
        }
        if engine == "CRI-O" {
            c.log_path = ann("io.kubernetes.cri-o.LogPath");
        }
        if let Some(Value::Array(list)) = json(archive, "bind.mounts") {
            c.bind_mounts.extend(list.iter().map(|m| BindMount {
                destination: s(m, "destination").unwrap_or_default(),
                source: s(m, "source").unwrap_or_default(),
                file_type: s(m, "file_type"),
                readonly: None,
            }));
        }
        c.log = container_log(archive);
        c.annotations = annotations;
        let (diff, whiteouts) = rootfs_diff(archive);
        c.rootfs_diff = diff;
        if let Some(Value::Array(list)) = json(archive, "deleted.files") {
            c.deleted_files = list
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
        }
        c.deleted_files.extend(whiteouts);
        Some(c)
    }
}

/// What containerd's `status.dump` (a CRI `ContainerStatus` marshalled by Go's
/// encoding/json: snake_case keys, enums as numbers, times in Unix nanoseconds) adds.
fn cri_status(c: &mut Container, st: &Value) {
    c.state = st.get("state").and_then(Value::as_u64).map(|n| {
        match n {
            0 => "created",
            1 => "running",
            2 => "exited",
            _ => "unknown",
        }
        .to_string()
    });
    c.started = st
        .get("started_at")
        .and_then(Value::as_i64)
        .and_then(rfc3339_from_nanos);
    c.image_ref = s(st, "image_ref");
    c.log_path = s(st, "log_path");
    if let Some(Value::Array(list)) = st.get("mounts") {
        c.bind_mounts.extend(list.iter().map(|m| BindMount {
            destination: s(m, "container_path").unwrap_or_default(),
            source: s(m, "host_path").unwrap_or_default(),
            file_type: None,
            readonly: Some(m.get("readonly").and_then(Value::as_bool).unwrap_or(false)),
        }));
    }
}

/// Unix nanoseconds as RFC 3339 UTC (`2026-11-29T18:54:47.435424435Z`); `None` for
/// zero (Go's "not set") and negative times.
pub fn rfc3339_from_nanos(ns: i64) -> Option<String> {
    // i64 nanoseconds end in 2262, so the year always has four digits.
    if ns <= 0 {
        return None;
    }
    let secs = ns / 1_000_000_000;
    let frac = ns % 1_000_000_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let mut out = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    if frac != 0 {
        let f = format!("{frac:09}");
        out.push('.');
        out.push_str(f.trim_end_matches('0'));
    }
    out.push('Z');
    Some(out)
}

/// The container log members the engines write: Podman's `ctr.log`, containerd's
/// `container.log`, and CRI-O's, named after the annotation that gives its path.
const LOG_MEMBERS: [&str; 3] = ["ctr.log", "container.log", "io.kubernetes.cri-o.LogPath"];

fn container_log(archive: &Archive) -> Option<ContainerLog> {
    let m = LOG_MEMBERS.iter().find_map(|n| archive.member(n))?;
    let mut tail = Vec::new();
    if let Ok(blob) = m.open() {
        let take = m.size.min(64 << 10);
        let mut buf = vec![0u8; take as usize];
        if blob.read_exact_at(m.size - take, &mut buf).is_ok() {
            let text = String::from_utf8_lossy(&buf);
            let mut lines: Vec<&str> = text.lines().collect();
            if take < m.size && !lines.is_empty() {
                lines.remove(0); // cut in the middle
            }
            let from = lines.len().saturating_sub(LOG_TAIL_LINES);
            tail = lines[from..].iter().map(|l| l.to_string()).collect();
        }
    }
    Some(ContainerLog {
        member: m.name.clone(),
        size: m.size,
        tail,
    })
}

fn podman_networks(status: Option<&Value>) -> Vec<Network> {
    let mut out = Vec::new();
    let Some(nets) = status.and_then(Value::as_object) else {
        return out;
    };
    for (net, v) in nets {
        let Some(ifaces) = v.get("interfaces").and_then(Value::as_object) else {
            continue;
        };
        for (ifname, i) in ifaces {
            let subnets = i
                .get("subnets")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let mac = s(i, "mac_address");
            if subnets.is_empty() {
                out.push(Network {
                    network: Some(net.clone()),
                    interface: Some(ifname.clone()),
                    mac: mac.clone(),
                    ..Default::default()
                });
            }
            for sn in subnets {
                out.push(Network {
                    network: Some(net.clone()),
                    interface: Some(ifname.clone()),
                    ip: s(&sn, "ipnet"),
                    mac: mac.clone(),
                    gateway: s(&sn, "gateway"),
                });
            }
        }
    }
    out
}

/// The entries of rootfs-diff.tar, and the paths its whiteouts delete (containerd's
/// diff is an OCI layer: deletions are `.wh.` entries, not deleted.files).
fn rootfs_diff(archive: &Archive) -> (Vec<DiffEntry>, Vec<String>) {
    let Some(blob) = archive
        .member("rootfs-diff.tar")
        .and_then(|m| m.open().ok())
    else {
        return (Vec::new(), Vec::new());
    };
    let mut out = Vec::new();
    let mut deleted = Vec::new();
    crate::rootfs::walk_tar(&blob, &mut |e| match whiteout(e.path) {
        Some(Whiteout::Entry(p)) => deleted.push(format!("/{p}")),
        Some(Whiteout::Opaque(d)) => {
            deleted.push(format!("/{d}/* (opaque: the image's files there)"))
        }
        None => out.push(DiffEntry {
            path: format!("/{}", e.path),
            kind: e.kind.to_string(),
            size: e.size,
        }),
    });
    (out, deleted)
}

/// Reads CRIU's stats-dump, wherever the archive has it.
pub fn dump_stats(archive: &Archive, images_prefix: &str) -> Option<DumpStats> {
    let name = [
        "stats-dump".to_string(),
        format!("{images_prefix}stats-dump"),
    ]
    .into_iter()
    .find(|n| archive.member(n).is_some())?;
    let bytes = archive.member(&name)?.read_all(MAX_IMAGE).ok()?;
    let e: pb::StatsEntry = Image::parse(&name, bytes, magic::STATS)
        .ok()?
        .single()
        .ok()?;
    let d = e.dump?;
    Some(DumpStats {
        freezing_time: d.freezing_time.unwrap_or(0),
        frozen_time: d.frozen_time.unwrap_or(0),
        memdump_time: d.memdump_time.unwrap_or(0),
        memwrite_time: d.memwrite_time.unwrap_or(0),
        pages_scanned: d.pages_scanned.unwrap_or(0),
        pages_skipped_parent: d.pages_skipped_parent.unwrap_or(0),
        pages_written: d.pages_written.unwrap_or(0),
    })
}
