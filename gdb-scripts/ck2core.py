"""ck2core gdb helper: what CRIU knew about a checkpointed process, inside gdb.

A core written by ck2core carries a note (owner "CK2CORE") holding the process's CRIU
metadata as JSON: thread names, the system call each thread was in, signals,
credentials, open files, mappings and the container (docs/core-note.md). This helper
reads that note from the core gdb has open, names gdb's threads as the live process
named them, and adds commands:

    ck2core info      container, image, pod, process, credentials, capabilities, cgroups
    ck2core threads   tid, name, state, system call, signals
    ck2core fds       open files and sockets, cwd and root
    ck2core maps      mappings with CRIU's kinds and what the core holds for each

Load it before or after the core: `gdb -ix DIR/gdbinit --core DIR/core.PID` (the
gdbinit ck2core writes sources it), or `source ck2core.py` at the gdb prompt.
Works with gdb 12 and newer, standard library only.
"""

import json
import struct

import gdb

NOTE_OWNER = b"CK2CORE"
NOTE_TYPE = 0x434B3201
PT_NOTE = 4
PN_XNUM = 0xFFFF

_state = {"core": None, "meta": None, "announced": None}


def _core_path():
    """The core file gdb has open, or None."""
    try:
        text = gdb.execute("info target", to_string=True)
    except gdb.error:
        return None
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith("Local core dump file:") and i + 1 < len(lines):
            quoted = lines[i + 1].strip()
            if quoted.startswith("`") and "'" in quoted:
                return quoted[1 : quoted.rindex("'")]
    return None


def _read_note(path):
    """The CK2CORE note's JSON from the core at `path`, or None if it has none."""
    with open(path, "rb") as f:
        ident = f.read(64)
        if len(ident) < 52 or ident[:4] != b"\x7fELF":
            return None
        is64 = ident[4] == 2
        end = "<" if ident[5] == 1 else ">"
        if is64:
            phoff, shoff = struct.unpack_from(end + "QQ", ident, 32)
            phentsize, phnum = struct.unpack_from(end + "HH", ident, 54)
        else:
            phoff, shoff = struct.unpack_from(end + "II", ident, 28)
            phentsize, phnum = struct.unpack_from(end + "HH", ident, 42)
        if phnum == PN_XNUM and shoff:
            # The real count is in section header 0's sh_info.
            f.seek(shoff + (44 if is64 else 28))
            (phnum,) = struct.unpack(end + "I", f.read(4))
        for i in range(phnum):
            f.seek(phoff + i * phentsize)
            ph = f.read(phentsize)
            (p_type,) = struct.unpack_from(end + "I", ph, 0)
            if p_type != PT_NOTE:
                continue
            if is64:
                (offset,) = struct.unpack_from(end + "Q", ph, 8)
                (size,) = struct.unpack_from(end + "Q", ph, 32)
            else:
                (offset,) = struct.unpack_from(end + "I", ph, 4)
                (size,) = struct.unpack_from(end + "I", ph, 16)
            f.seek(offset)
            notes = f.read(size)
            pos = 0
            while pos + 12 <= len(notes):
                namesz, descsz, ntype = struct.unpack_from(end + "III", notes, pos)
                name_at = pos + 12
                desc_at = name_at + ((namesz + 3) & ~3)
                name = notes[name_at : name_at + namesz].rstrip(b"\0")
                if name == NOTE_OWNER and ntype == NOTE_TYPE:
                    return json.loads(notes[desc_at : desc_at + descsz].decode("utf-8"))
                pos = desc_at + ((descsz + 3) & ~3)
    return None


def _meta(quiet=False):
    """Metadata of the current core (loaded once per core file)."""
    path = _core_path()
    if path is None:
        if not quiet:
            print("ck2core: no core file is open.")
        return None
    if path != _state["core"]:
        _state["core"] = path
        try:
            _state["meta"] = _read_note(path)
        except (OSError, ValueError, struct.error) as e:
            print("ck2core: cannot read the metadata of %s: %s" % (path, e))
            _state["meta"] = None
    if _state["meta"] is None and not quiet:
        print("ck2core: %s was not written by ck2core (it has no CK2CORE note); nothing to show." % path)
    return _state["meta"]


def _thread_meta(meta, lwp):
    for t in meta.get("threads", []):
        if t.get("tid") == lwp:
            return t
    return None


def _syscall_text(t):
    s = t.get("syscall")
    if not s:
        return "-"
    name = s.get("name") or "#%d" % s.get("number", -1)
    return name + (" (restart)" if s.get("rewound_for_restart") else "")


def _name_thread(thread, meta):
    t = _thread_meta(meta, thread.ptid[1])
    if t and t.get("name") and thread.name != t["name"]:
        thread.name = t["name"]


def _announce(meta):
    """One summary, once per core: what the helper did and what to look at."""
    if _state["announced"] == _state["core"]:
        return
    _state["announced"] = _state["core"]
    p = meta.get("process", {})
    c = meta.get("container") or {}
    where = ""
    if c.get("name"):
        where = " in container %s (%s)" % (c["name"], c.get("image") or "image unknown")
    print("ck2core: pid %s (%s)%s, %d threads named from CRIU." % (
        p.get("pid"), p.get("comm"), where, len(meta.get("threads", []))))
    # The kernel marks [vvar] and device mappings DONTDUMP too; CRIU has no data of them.
    withheld = [m for m in meta.get("maps", [])
                if m.get("dontdump") and m.get("kind") not in ("vdso", "vvar", "vsyscall", "other")]
    if withheld and not (meta.get("dump") or {}).get("include_dontdump"):
        print("ck2core: %d mapping%s the process marked MADV_DONTDUMP %s no data in this core"
              " (as in a kernel core, gdb reads zeros there). See 'ck2core maps'." % (
                  len(withheld), "" if len(withheld) == 1 else "s", "has" if len(withheld) == 1 else "have"))
    rewound = [t for t in meta.get("threads", []) if (t.get("syscall") or {}).get("rewound_for_restart")]
    if rewound:
        print("ck2core: %s in a system call; CRIU stored their registers rewound for restart"
              " (pc at the syscall instruction). See 'ck2core threads'." % ", ".join(
                  "%s [%s]" % (t.get("name") or t.get("tid"), _syscall_text(t).split(" ")[0]) for t in rewound))


def annotate():
    """Names gdb's threads from the metadata of the open core, if it has any."""
    meta = _meta(quiet=_core_path() is None)
    if meta is None:
        return
    for thread in gdb.selected_inferior().threads():
        _name_thread(thread, meta)
    _announce(meta)


def _on_new_thread(event):
    meta = _meta(quiet=True)
    if meta is None:
        if _state["core"] is not None and _state["announced"] != _state["core"]:
            _state["announced"] = _state["core"]
            print("ck2core: %s was not written by ck2core (it has no CK2CORE note);"
                  " the helper changes nothing." % _state["core"])
        return
    _name_thread(event.inferior_thread, meta)
    threads = gdb.selected_inferior().threads()
    if len(threads) >= len(meta.get("threads", [])):
        _announce(meta)


class Ck2core(gdb.Command):
    """CRIU metadata of a core written by ck2core.

ck2core info      container, image, pod, process, credentials, capabilities, cgroups
ck2core threads   tid, name, state, system call, signals
ck2core fds       open files and sockets, cwd and root
ck2core maps      mappings with CRIU's kinds and what the core holds for each"""

    def __init__(self):
        super().__init__("ck2core", gdb.COMMAND_STATUS, gdb.COMPLETE_NONE, True)


class Info(gdb.Command):
    """Container, image, pod, process, credentials, capabilities and cgroups of this core's process."""

    def __init__(self):
        super().__init__("ck2core info", gdb.COMMAND_STATUS)

    def invoke(self, arg, from_tty):
        meta = _meta()
        if meta is None:
            return
        c = meta.get("container")
        p = meta.get("process", {})
        rows = [("Checkpoint", meta.get("checkpoint"))]
        if c:
            rows += [
                ("Engine", c.get("engine")), ("Container", c.get("name")), ("ID", c.get("id")),
                ("Image", c.get("image")), ("Image ID", c.get("image_id")), ("Runtime", c.get("runtime")),
                ("Pod", c.get("pod")), ("Namespace", c.get("namespace")), ("Hostname", c.get("hostname")),
                ("Created", c.get("created")), ("Checkpointed", c.get("checkpointed")),
            ]
            for n in c.get("networks") or []:
                rows.append(("Network", " ".join(x for x in [
                    n.get("interface"), n.get("ip"), n.get("mac") and "mac " + n["mac"]] if x)))
        else:
            rows.append(("Container", "(no engine metadata: a bare CRIU image directory)"))
        rows += [
            ("Process", "%s (%s), parent %s, %s" % (p.get("pid"), p.get("comm"), p.get("ppid"), p.get("state"))),
            ("Command", " ".join(p.get("cmdline") or []) or "(not saved)"),
            ("Session", "pgid %s, sid %s" % (p.get("pgid"), p.get("sid"))),
        ]
        cr = meta.get("creds") or {}
        if cr:
            u, g = cr.get("uid", []), cr.get("gid", [])
            rows.append(("Credentials", "uid %s euid %s suid %s fsuid %s; gid %s egid %s sgid %s fsgid %s" % tuple(u + g)))
            caps = cr.get("capabilities") or {}
            for label, key in (("Caps (eff)", "effective"), ("Caps (bnd)", "bounding")):
                if key in caps:
                    names = [n[4:].lower() for n in caps[key]]
                    rows.append((label, ", ".join(names) or "none"))
        by_path = {}
        for cg in meta.get("cgroups") or []:
            by_path.setdefault(cg.get("path"), []).append(cg.get("controllers") or "unified")
        for path, ctls in by_path.items():
            rows.append(("Cgroup", "%s (%s)" % (path, ", ".join(ctls))))
        for k, v in rows:
            if v:
                print("%-13s %s" % (k + ":", v))


class Threads(gdb.Command):
    """Every thread: gdb number, tid, name, state, system call, signals."""

    def __init__(self):
        super().__init__("ck2core threads", gdb.COMMAND_STATUS)

    def invoke(self, arg, from_tty):
        meta = _meta()
        if meta is None:
            return
        num = {t.ptid[1]: t.num for t in gdb.selected_inferior().threads()}
        print("%-4s %-8s %-16s %-8s %-22s %s" % ("Id", "TID", "NAME", "STATE", "SYSCALL", "SIGNALS"))
        for t in meta.get("threads", []):
            sig = []
            if t.get("blocked"):
                sig.append("blocked " + ",".join(t["blocked"]))
            if t.get("pending"):
                sig.append("pending " + ",".join(t["pending"]))
            print("%-4s %-8s %-16s %-8s %-22s %s" % (
                num.get(t.get("tid"), "-"), t.get("tid"), t.get("name"), t.get("state"),
                _syscall_text(t), "; ".join(sig) or "-"))
        if any((t.get("syscall") or {}).get("rewound_for_restart") for t in meta.get("threads", [])):
            print("(restart): CRIU stored the registers rewound so the call restarts on restore:"
                  " the pc points at the syscall instruction, the result register holds the call number.")


def _fd_text(f):
    k = f.get("type")
    if k == "regular":
        return "%s%s" % (f.get("path"), " (pos %d)" % f["pos"] if f.get("pos") else "")
    if k == "pipe":
        return "pipe:[%s] (%s end)" % (f.get("pipe_id"), "read" if f.get("flags", 0) & 3 == 0 else "write")
    if k == "fifo":
        return "fifo pipe:[%s]" % f.get("pipe_id")
    if k == "inet":
        return "%s %s %s:%s -> %s:%s" % (f.get("protocol", "").upper(), f.get("state"), f.get("src"),
                                         f.get("src_port"), f.get("dst"), f.get("dst_port"))
    if k == "unix":
        return "unix %s %s %s" % (f.get("sock_type"), f.get("state"), f.get("name") or "ino %s" % f.get("ino"))
    if k == "memfd":
        return "memfd:%s" % f.get("name")
    if k == "other":
        return f.get("kind")
    return k


class Fds(gdb.Command):
    """Open files and sockets of this process, with its cwd and root."""

    def __init__(self):
        super().__init__("ck2core fds", gdb.COMMAND_STATUS)

    def invoke(self, arg, from_tty):
        meta = _meta()
        if meta is None:
            return
        files = meta.get("files")
        if not files:
            print("ck2core: the checkpoint recorded no open files for this process.")
            return
        print("cwd   %s" % files.get("cwd"))
        print("root  %s" % files.get("root"))
        for fd in files.get("fds", []):
            print("%4d  %-8s %s" % (fd.get("fd"), fd["file"].get("type"), _fd_text(fd["file"])))
        mapped = []
        for m in meta.get("maps", []):
            if m.get("kind") in ("file", "shared-file") and m.get("name") not in mapped:
                mapped.append(m.get("name"))
        if mapped:
            print("mapped files:")
            for name in mapped:
                print("      %s" % name)


class Maps(gdb.Command):
    """Mappings with CRIU's kinds, and where the core's bytes for each came from."""

    def __init__(self):
        super().__init__("ck2core maps", gdb.COMMAND_STATUS)

    def invoke(self, arg, from_tty):
        meta = _meta()
        if meta is None:
            return
        print("%-29s %-4s %-11s %-28s %s" % ("RANGE", "PERM", "KIND", "PAGES", "NAME"))
        for m in meta.get("maps", []):
            pg = m.get("pages", {})
            parts = ["%d %s" % (pg[k], label) for k, label in (
                ("pages", "saved"), ("parent", "parent"), ("shmem", "shmem"), ("rootfs", "file"),
                ("zero", "zero"), ("absent", "absent")) if pg.get(k)]
            print("%-29s %-4s %-11s %-28s %s%s" % (
                "%s-%s" % (m["start"], m["end"]), m.get("perms"), m.get("kind"), ", ".join(parts), m.get("name"),
                "  DONTDUMP" if m.get("dontdump") else ""))


def _install():
    Ck2core()
    Info()
    Threads()
    Fds()
    Maps()
    gdb.events.new_thread.connect(_on_new_thread)
    if _core_path() is not None:
        annotate()


_install()
