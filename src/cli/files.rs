//! `ck2core files`: open descriptors, working and root directories, mapped files.

use clap::Args;
use serde::Serialize;

use super::{print_json, Select};
use ck2core::model::files::ProcessFiles;
use ck2core::model::Process;

#[derive(Args)]
pub struct FilesArgs {
    #[command(flatten)]
    select: Select,
}

#[derive(Serialize, schemars::JsonSchema)]
struct Mapped {
    path: String,
    build_id: Option<String>,
    deleted: bool,
    /// Whether the file's bytes are available (rootfs, rootfs-diff.tar, ghost copy).
    available: bool,
    /// Why not, when they are not.
    #[serde(skip_serializing_if = "Option::is_none")]
    unavailable_because: Option<String>,
}

#[derive(Serialize, schemars::JsonSchema)]
struct Entry {
    #[serde(flatten)]
    files: ProcessFiles,
    mapped: Vec<Mapped>,
}

#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct Out {
    processes: Vec<Entry>,
}

fn mapped(p: &Process) -> Vec<Mapped> {
    let mut out: Vec<Mapped> = Vec::new();
    for v in p.memory.iter().flat_map(|m| &m.vmas) {
        let Some(f) = &v.file else { continue };
        if out.iter().any(|m| m.path == f.path) {
            continue;
        }
        out.push(Mapped {
            path: f.path.clone(),
            build_id: (!f.build_id.is_empty()).then(|| ck2core::rootfs::hex(&f.build_id)),
            deleted: f.deleted,
            available: f.content.is_ok(),
            unavailable_because: f.content.as_ref().err().cloned(),
        });
    }
    out
}

pub fn run(a: FilesArgs) -> anyhow::Result<()> {
    let (ck, procs) = a.select.load()?;
    let mut out = Out {
        processes: Vec::new(),
    };
    for p in &procs {
        out.processes.push(Entry {
            files: ck.files(p.pid())?,
            mapped: mapped(p),
        });
    }
    if a.select.json {
        return print_json(&out);
    }
    for (p, e) in procs.iter().zip(&out.processes) {
        outln!("process {} ({})", p.pid(), p.comm);
        outln!("  cwd   {}", e.files.cwd.as_deref().unwrap_or("?"));
        outln!("  root  {}", e.files.root.as_deref().unwrap_or("?"));
        for fd in &e.files.fds {
            outln!("  {:>4}  {}", fd.fd, fd.file.describe());
        }
        if !e.mapped.is_empty() {
            outln!("  mapped files:");
            for m in &e.mapped {
                outln!(
                    "    {}{}{}{}",
                    m.path,
                    if m.deleted { " (deleted)" } else { "" },
                    m.build_id
                        .as_ref()
                        .map(|b| format!("  build-id {b}"))
                        .unwrap_or_default(),
                    m.unavailable_because
                        .as_ref()
                        .map(|w| format!("  [{w}]"))
                        .unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}
