//! What the container engine wrote beside the CRIU images: which engine, the
//! container's name, image, network, mounts, times, and CRIU's dump statistics.
//! Podman, CRI-O and containerd lay these out differently (docs: archives-and-peers);
//! everything is optional, since a bare image directory has none of it.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

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
}

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
        c.annotations = annotations;
        c.rootfs_diff = rootfs_diff(archive);
        if let Some(Value::Array(list)) = json(archive, "deleted.files") {
            c.deleted_files = list
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
        }
        Some(c)
    }
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

fn rootfs_diff(archive: &Archive) -> Vec<DiffEntry> {
    let Some(blob) = archive
        .member("rootfs-diff.tar")
        .and_then(|m| m.open().ok())
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    crate::rootfs::walk_tar(&blob, &mut |e| {
        out.push(DiffEntry {
            path: format!("/{}", e.path),
            kind: e.kind.to_string(),
            size: e.size,
        });
    });
    out
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
