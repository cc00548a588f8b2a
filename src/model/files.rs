//! Open files of a process: its descriptor table (fdinfo), what each descriptor
//! refers to (files.img: regular files, pipes, sockets, eventfds, ...), and its
//! working and root directories.

use std::net::{Ipv4Addr, Ipv6Addr};

use serde::Serialize;

use crate::images::{pb, ByteOrder};

/// One open descriptor.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Fd {
    /// Descriptor number.
    pub fd: u32,
    /// Close-on-exec.
    pub cloexec: bool,
    /// What it refers to.
    pub file: OpenFile,
}

/// What a descriptor refers to.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum OpenFile {
    /// A regular file, directory or device.
    Regular {
        /// Path in the container.
        path: String,
        /// Open flags (O_*), as octal text would show them.
        flags: u32,
        /// File position.
        pos: u64,
        /// File mode, if recorded.
        mode: Option<u32>,
        /// Size at dump time, if recorded.
        size: Option<u64>,
    },
    /// One end of a pipe.
    Pipe {
        /// Pipe inode number (shared by both ends).
        pipe_id: u32,
        /// Open flags: O_RDONLY (0) is the read end, O_WRONLY (1) the write end.
        flags: u32,
    },
    /// A named pipe.
    Fifo {
        /// Pipe inode number.
        pipe_id: u32,
    },
    /// An internet socket.
    Inet {
        /// "ipv4" or "ipv6".
        family: &'static str,
        /// "tcp", "udp", ...
        protocol: String,
        /// TCP state name (e.g. "ESTABLISHED", "LISTEN").
        state: String,
        /// Local address.
        src: String,
        /// Local port.
        src_port: u32,
        /// Remote address.
        dst: String,
        /// Remote port.
        dst_port: u32,
        /// Socket inode number.
        ino: u32,
        /// SO_SNDBUF.
        send_buf: Option<u32>,
        /// SO_RCVBUF.
        recv_buf: Option<u32>,
    },
    /// A Unix-domain socket.
    Unix {
        /// "stream", "dgram" or "seqpacket".
        sock_type: String,
        /// State name.
        state: String,
        /// Bound name: a path, `@name` for the abstract namespace, or empty.
        name: String,
        /// Socket inode number.
        ino: u32,
        /// The peer's inode number (0: none).
        peer: u32,
    },
    /// An eventfd.
    Eventfd {
        /// Its counter.
        counter: u64,
    },
    /// An epoll instance.
    Eventpoll,
    /// A signalfd.
    Signalfd {
        /// Signals it accepts.
        signals: Vec<String>,
    },
    /// A timerfd.
    Timerfd {
        /// Clock id.
        clockid: u32,
    },
    /// A terminal.
    Tty,
    /// A memfd.
    Memfd {
        /// Its name.
        name: String,
    },
    /// A namespace file.
    Namespace {
        /// Namespace id.
        ns_id: u32,
    },
    /// Something else CRIU records (inotify, fanotify, packet sockets, ...).
    Other {
        /// CRIU's fd type name.
        kind: &'static str,
    },
}

/// Files of one process.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ProcessFiles {
    /// Pid.
    pub pid: u32,
    /// Working directory.
    pub cwd: Option<String>,
    /// Root directory.
    pub root: Option<String>,
    /// Open descriptors, by number.
    pub fds: Vec<Fd>,
}

impl OpenFile {
    /// One line for people: type, then what it is (as `ck2core files` prints it).
    pub fn describe(&self) -> String {
        match self {
            OpenFile::Regular { path, pos, .. } => format!(
                "REG     {path}{}",
                if *pos > 0 {
                    format!(" (pos {pos})")
                } else {
                    String::new()
                }
            ),
            OpenFile::Pipe { pipe_id, flags } => {
                format!(
                    "PIPE    pipe:[{pipe_id}] ({} end)",
                    if flags & 3 == 0 { "read" } else { "write" }
                )
            }
            OpenFile::Fifo { pipe_id } => format!("FIFO    pipe:[{pipe_id}]"),
            OpenFile::Inet {
                family,
                protocol,
                state,
                src,
                src_port,
                dst,
                dst_port,
                ..
            } => {
                let a = |ip: &str, port: u32| {
                    if *family == "ipv6" {
                        format!("[{ip}]:{port}")
                    } else {
                        format!("{ip}:{port}")
                    }
                };
                format!(
                    "{:<7} {state:<11} {} -> {}",
                    protocol.to_uppercase(),
                    a(src, *src_port),
                    a(dst, *dst_port)
                )
            }
            OpenFile::Unix {
                sock_type,
                state,
                name,
                ino,
                peer,
            } => format!(
                "UNIX    {sock_type} {state} {}ino {ino}{}",
                if name.is_empty() {
                    String::new()
                } else {
                    format!("{name} ")
                },
                if *peer != 0 {
                    format!(", peer {peer}")
                } else {
                    String::new()
                }
            ),
            OpenFile::Eventfd { counter } => format!("EVENTFD counter {counter}"),
            OpenFile::Eventpoll => "EPOLL".into(),
            OpenFile::Signalfd { signals } => format!("SIGNALFD {}", signals.join(",")),
            OpenFile::Timerfd { clockid } => format!("TIMERFD clock {clockid}"),
            OpenFile::Tty => "TTY".into(),
            OpenFile::Memfd { name } => format!("MEMFD   memfd:{name}"),
            OpenFile::Namespace { ns_id } => format!("NS      namespace {ns_id}"),
            OpenFile::Other { kind } => kind.to_uppercase(),
        }
    }
}

const FD_TYPES: [&str; 21] = [
    "undefined",
    "reg",
    "pipe",
    "fifo",
    "inetsk",
    "unixsk",
    "eventfd",
    "eventpoll",
    "inotify",
    "signalfd",
    "packetsk",
    "tty",
    "fanotify",
    "netlinksk",
    "ns",
    "tunf",
    "ext",
    "timerfd",
    "memfd",
    "bpfmap",
    "pidfd",
];

const TCP_STATES: [&str; 12] = [
    "UNKNOWN",
    "ESTABLISHED",
    "SYN_SENT",
    "SYN_RECV",
    "FIN_WAIT1",
    "FIN_WAIT2",
    "TIME_WAIT",
    "CLOSE",
    "CLOSE_WAIT",
    "LAST_ACK",
    "LISTEN",
    "CLOSING",
];

fn state_name(s: u32) -> String {
    TCP_STATES
        .get(s as usize)
        .map_or_else(|| format!("state {s}"), |n| n.to_string())
}

/// An address CRIU stored as u32 words copied from the kernel's network-order bytes,
/// so each word holds 4 address bytes in the dumping machine's order.
fn addr(words: &[u32], v6: bool, order: ByteOrder) -> String {
    let bytes: Vec<u8> = words.iter().flat_map(|w| order.u32_bytes(*w)).collect();
    if v6 {
        let mut b = [0u8; 16];
        let n = bytes.len().min(16);
        b[..n].copy_from_slice(&bytes[..n]);
        Ipv6Addr::from(b).to_string()
    } else {
        let mut b = [0u8; 4];
        let n = bytes.len().min(4);
        b[..n].copy_from_slice(&bytes[..n]);
        Ipv4Addr::from(b).to_string()
    }
}

/// Describes a files.img entry (`None` if the entry is missing). `order` is the
/// byte order of the checkpoint (raw address words are in it).
pub fn describe(
    f: Option<&pb::FileEntry>,
    memfd_name: &dyn Fn(u32) -> Option<String>,
    order: ByteOrder,
) -> OpenFile {
    let Some(f) = f else {
        return OpenFile::Other {
            kind: "missing from files.img",
        };
    };
    let kind = FD_TYPES
        .get(f.r#type.unwrap_or(0) as usize)
        .copied()
        .unwrap_or("unknown");
    if let Some(r) = &f.reg {
        return OpenFile::Regular {
            path: r.name.clone().unwrap_or_default(),
            flags: r.flags.unwrap_or(0),
            pos: r.pos.unwrap_or(0),
            mode: r.mode,
            size: r.size,
        };
    }
    if let Some(p) = &f.pipe {
        return OpenFile::Pipe {
            pipe_id: p.pipe_id.unwrap_or(0),
            flags: p.flags.unwrap_or(0),
        };
    }
    if let Some(p) = &f.fifo {
        return OpenFile::Fifo {
            pipe_id: p.pipe_id.unwrap_or(0),
        };
    }
    if let Some(s) = &f.isk {
        let v6 = s.family == Some(10);
        let protocol = match s.proto.unwrap_or(0) {
            6 => "tcp".to_string(),
            17 => "udp".to_string(),
            136 => "udplite".to_string(),
            1 => "icmp".to_string(),
            58 => "icmpv6".to_string(),
            0 => "raw".to_string(),
            p => format!("proto {p}"),
        };
        return OpenFile::Inet {
            family: if v6 { "ipv6" } else { "ipv4" },
            protocol,
            state: state_name(s.state.unwrap_or(0)),
            src: addr(&s.src_addr, v6, order),
            src_port: s.src_port.unwrap_or(0),
            dst: addr(&s.dst_addr, v6, order),
            dst_port: s.dst_port.unwrap_or(0),
            ino: s.ino.unwrap_or(0),
            send_buf: s.opts.as_ref().and_then(|o| o.so_sndbuf),
            recv_buf: s.opts.as_ref().and_then(|o| o.so_rcvbuf),
        };
    }
    if let Some(u) = &f.usk {
        let name = u.name.clone().unwrap_or_default();
        let name = match name.split_first() {
            Some((0, rest)) => format!("@{}", String::from_utf8_lossy(rest)),
            _ => String::from_utf8_lossy(&name).into_owned(),
        };
        let sock_type = match u.r#type.unwrap_or(0) {
            1 => "stream".to_string(),
            2 => "dgram".to_string(),
            5 => "seqpacket".to_string(),
            t => format!("type {t}"),
        };
        return OpenFile::Unix {
            sock_type,
            state: state_name(u.state.unwrap_or(0)),
            name,
            ino: u.ino.unwrap_or(0),
            peer: u.peer.unwrap_or(0),
        };
    }
    if let Some(e) = &f.efd {
        return OpenFile::Eventfd {
            counter: e.counter.unwrap_or(0),
        };
    }
    if f.epfd.is_some() {
        return OpenFile::Eventpoll;
    }
    if let Some(s) = &f.sgfd {
        return OpenFile::Signalfd {
            signals: super::signals::names(s.sigmask.unwrap_or(0)),
        };
    }
    if let Some(t) = &f.tfd {
        return OpenFile::Timerfd {
            clockid: t.clockid.unwrap_or(0),
        };
    }
    if f.tty.is_some() {
        return OpenFile::Tty;
    }
    if let Some(m) = &f.memfd {
        let name = m.inode_id.and_then(memfd_name).unwrap_or_default();
        return OpenFile::Memfd { name };
    }
    if let Some(n) = &f.nsf {
        return OpenFile::Namespace {
            ns_id: n.ns_id.unwrap_or(0),
        };
    }
    OpenFile::Other { kind }
}
