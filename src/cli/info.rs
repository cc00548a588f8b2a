//! `ck2core info`: the container and the checkpoint.

use clap::Args;

use super::tree::Node;
use super::{human, print_json, Source};
use ck2core::views;

#[derive(Args)]
pub struct InfoArgs {
    #[command(flatten)]
    source: Source,
    /// Print JSON (docs/json.md).
    #[arg(long)]
    json: bool,
}

pub fn run(a: InfoArgs) -> anyhow::Result<()> {
    let ck = a.source.open()?;
    let info = views::info(&ck);
    if a.json {
        return print_json(&info);
    }
    let c = info.container.as_ref();
    let title = c
        .and_then(|c| c.name.clone())
        .or_else(|| info.image.as_ref().and_then(|i| i.container_name.clone()))
        .unwrap_or_else(|| info.checkpoint.clone());
    let mut root = Node::new(title);
    if let Some(c) = c {
        let mut field = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                root.leaf(format!("{k}: {v}"));
            }
        };
        field("Engine", &c.engine);
        field("Image", &c.image);
        field("Image ID", &c.image_id);
        field("ID", &c.id);
        field("Runtime", &c.runtime);
        field("Created", &c.created);
        field("Checkpointed", &c.checkpointed);
        field("State", &c.state);
        field("Started", &c.started);
        field("Image ref", &c.image_ref);
        field("Log path", &c.log_path);
        field("Pid (on the host)", &c.host_pid.map(|p| p.to_string()));
        field("Pod", &c.pod);
        field("Namespace", &c.namespace);
        field("Hostname", &c.hostname);
        if !c.command.is_empty() {
            root.leaf(format!("Command: {}", c.command.join(" ")));
        }
        if !c.networks.is_empty() {
            let n = root.leaf("Network");
            for net in &c.networks {
                let name = match (&net.interface, &net.network) {
                    (Some(i), Some(n)) => format!("{i} ({n})"),
                    (Some(i), None) => i.clone(),
                    (None, Some(n)) => n.clone(),
                    (None, None) => "interface".into(),
                };
                let iface = n.leaf(name);
                for (k, v) in [
                    ("IP", &net.ip),
                    ("MAC", &net.mac),
                    ("Gateway", &net.gateway),
                ] {
                    if let Some(v) = v {
                        iface.leaf(format!("{k}: {v}"));
                    }
                }
            }
        }
    }
    if let Some(img) = &info.image {
        let n = root.leaf(format!(
            "Checkpoint image: {} ({})",
            img.reference.as_deref().unwrap_or("untagged"),
            img.format
        ));
        n.leaf(format!("Image ID: {}", img.id));
        if let Some(d) = &img.manifest_digest {
            n.leaf(format!("Manifest: {d}"));
        }
        if let Some(name) = &img.container_name {
            n.leaf(format!("Container: {name}"));
        }
        let layers = n.leaf(format!("Layers: {}", img.layers.len()));
        for l in &img.layers {
            layers.leaf(format!("{} ({}, {})", l.name, l.compression, human(l.size)));
        }
        if !img.annotations.is_empty() {
            let a = n.leaf("Annotations");
            for (k, v) in &img.annotations {
                a.leaf(format!("{k}={v}"));
            }
        }
    }
    let size = root.leaf(format!("Checkpoint size: {}", human(info.checkpoint_size)));
    let pages = size.leaf(format!(
        "Memory pages size: {}",
        human(info.memory_pages_size)
    ));
    if let Some(c) = &info.page_compression {
        pages.leaf(match (c.mode.as_str(), c.region_size) {
            ("per-page", _) => "LZ4 compressed, a block per page".to_string(),
            ("region", Some(r)) => {
                format!("LZ4 compressed, a block per {} region", human(r.into()))
            }
            (m, _) => format!("compressed ({m})"),
        });
    }
    if let Some(d) = info.rootfs_diff_size {
        let stored = info
            .rootfs_diff_stored
            .as_ref()
            .map(|s| format!(" ({}, {} stored)", s.compression, human(s.size)))
            .unwrap_or_default();
        let diff = root.leaf(format!("Root FS diff size: {}{stored}", human(d)));
        if let Some(c) = c {
            for e in c.rootfs_diff.iter().filter(|e| e.kind != "dir") {
                diff.leaf(format!("{} ({}, {})", e.path, e.kind, human(e.size)));
            }
            for d in &c.deleted_files {
                diff.leaf(format!("{d} (deleted)"));
            }
        }
    }
    let images = root.leaf(format!(
        "CRIU images: {} process{}, {} thread{}{}{}",
        info.processes,
        if info.processes == 1 { "" } else { "es" },
        info.threads,
        if info.threads == 1 { "" } else { "s" },
        info.arch.map(|a| format!(", {a}")).unwrap_or_default(),
        info.criu_image_version
            .map(|v| format!(", image format {v}"))
            .unwrap_or_default(),
    ));
    let _ = images;
    if let Some(s) = &info.dump_stats {
        let st = root.leaf("CRIU dump statistics");
        st.leaf(format!("Freezing time: {} us", s.freezing_time));
        st.leaf(format!("Frozen time: {} us", s.frozen_time));
        st.leaf(format!("Memory dump time: {} us", s.memdump_time));
        st.leaf(format!("Memory write time: {} us", s.memwrite_time));
        st.leaf(format!("Pages scanned: {}", s.pages_scanned));
        if s.pages_skipped_parent > 0 {
            st.leaf(format!(
                "Pages skipped (in parent): {}",
                s.pages_skipped_parent
            ));
        }
        st.leaf(format!("Pages written: {}", s.pages_written));
    }
    if let Some(c) = c.filter(|c| !c.bind_mounts.is_empty()) {
        let m = root.leaf("Bind mounts");
        for b in &c.bind_mounts {
            let mut extra = Vec::new();
            if let Some(t) = &b.file_type {
                extra.push(t.clone());
            }
            if b.readonly == Some(true) {
                extra.push("read-only".into());
            }
            let extra = if extra.is_empty() {
                String::new()
            } else {
                format!("  ({})", extra.join(", "))
            };
            m.leaf(format!("{}  <-  {}{extra}", b.destination, b.source));
        }
    }
    if let Some(log) = c.and_then(|c| c.log.as_ref()) {
        let l = root.leaf(format!(
            "Container log: {} ({})",
            log.member,
            human(log.size)
        ));
        for line in &log.tail {
            l.leaf(line.clone());
        }
    }
    if let Some(c) = c.filter(|c| !c.mounts.is_empty()) {
        let m = root.leaf("Mounts");
        for mount in &c.mounts {
            m.leaf(format!(
                "{}  {}  {}",
                mount.destination, mount.kind, mount.source
            ));
        }
    }
    out!("{}", root.render());
    Ok(())
}
