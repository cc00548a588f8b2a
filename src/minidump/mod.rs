//! The minidump writer: one process of the model as a minidump (the format
//! Breakpad, Crashpad and rust-minidump read), for crash-reporting pipelines that
//! take minidumps rather than cores. Structures come from `minidump-common` and are
//! encoded with `scroll`; what goes into each stream, and the choices the format
//! leaves open, are in docs/minidump.md.
//!
//! Everything but the full memory is assembled in memory (it is small: contexts,
//! stacks, lists, text streams); with `full_memory` the saved pages follow at the
//! end of the file, streamed from the checkpoint. Nothing is invented: bytes the
//! checkpoint lacks are in no memory range.

pub mod context;
mod linux;
mod modules;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use minidump_common::errors::ExceptionCodeLinux;
use minidump_common::format::{
    self as md, MINIDUMP_DIRECTORY, MINIDUMP_EXCEPTION, MINIDUMP_EXCEPTION_STREAM, MINIDUMP_HEADER,
    MINIDUMP_LOCATION_DESCRIPTOR, MINIDUMP_MEMORY_DESCRIPTOR, MINIDUMP_MEMORY_INFO,
    MINIDUMP_MISC_INFO, MINIDUMP_STREAM_TYPE as Stream, MINIDUMP_SYSTEM_INFO, MINIDUMP_THREAD,
    MINIDUMP_THREAD_NAME,
};

use crate::arch::Registers;
use crate::error::{Error, Result};
use crate::model::dump::DumpPolicy;
use crate::model::memory::{AddressSpace, Extent, Source, Vma, VmaKind};
use crate::model::Process;
use crate::output::AtomicFile;
use context::bytes;
use scroll::ctx::SizeWith;
use scroll::LE;

/// Bytes below the stack pointer that go with each thread's stack: the x86_64
/// System V red zone, which leaf functions use without moving the pointer.
pub const RED_ZONE: u64 = 128;
/// Bytes at and above the stack pointer that go with each thread's stack, at most
/// (less where the stack's mapping ends first).
pub const STACK_ABOVE_SP: u64 = 64 << 10;
/// Bytes of code around the leader's instruction pointer (as Breakpad keeps
/// around a crash address), so processors can look at the instruction.
pub const CODE_AROUND_PC: u64 = 256;

/// Choices about what goes into a minidump.
#[derive(Debug, Clone, Default)]
pub struct MinidumpOptions {
    /// Every saved page (Memory64List), not only the threads' stacks.
    pub full_memory: bool,
    /// Which memory goes out at all: the ELF core writer's choice, shared.
    pub policy: DumpPolicy,
}

/// What writing a minidump did.
#[derive(Debug)]
pub struct Written {
    /// Final path.
    pub path: PathBuf,
    /// File size.
    pub file_size: u64,
    /// Threads in the thread list.
    pub threads: usize,
    /// Modules in the module list.
    pub modules: usize,
    /// Bytes of process memory in the file (stacks, and with full memory every
    /// saved page).
    pub memory_bytes: u64,
}

/// A planned minidump: every stream but the full memory's bytes, and where those
/// come from.
pub struct Plan {
    head: Vec<u8>,
    /// (address, length, source) of each Memory64List range, in file order.
    full: Vec<Extent>,
    /// Offset in `head` of the Memory64List stream, whose base_rva is set when
    /// the head's final size is known.
    memory64_at: Option<usize>,
    threads: usize,
    modules: usize,
    memory_bytes: u64,
}

/// The bytes of the file below 4 GiB (everything a 32-bit RVA points at), with the
/// stream directory filled in as streams are added.
struct Builder {
    buf: Vec<u8>,
    dir: Vec<MINIDUMP_DIRECTORY>,
}

impl Builder {
    /// Appends `data` 8-byte aligned (4 is the format's rule; 8 keeps 64-bit
    /// fields natural for readers that map the file); returns its location.
    fn put(&mut self, data: &[u8]) -> Result<MINIDUMP_LOCATION_DESCRIPTOR> {
        while self.buf.len() % 8 != 0 {
            self.buf.push(0);
        }
        let rva = u32::try_from(self.buf.len())
            .ok()
            .filter(|r| r.checked_add(data.len() as u32).is_some())
            .ok_or_else(|| {
                Error::Unsupported("the minidump's streams exceed the format's 4 GiB".into())
            })?;
        self.buf.extend_from_slice(data);
        Ok(MINIDUMP_LOCATION_DESCRIPTOR {
            data_size: data.len() as u32,
            rva,
        })
    }

    /// A MINIDUMP_STRING: byte length, UTF-16LE, NUL.
    fn string(&mut self, s: &str) -> Result<u32> {
        let units: Vec<u16> = s.encode_utf16().collect();
        let mut b = Vec::with_capacity(4 + 2 * units.len() + 2);
        b.extend_from_slice(&(2 * units.len() as u32).to_le_bytes());
        for u in units.iter().chain([&0]) {
            b.extend_from_slice(&u.to_le_bytes());
        }
        Ok(self.put(&b)?.rva)
    }

    fn stream(&mut self, ty: Stream, data: &[u8]) -> Result<()> {
        let location = self.put(data)?;
        self.dir.push(MINIDUMP_DIRECTORY {
            stream_type: ty as u32,
            location,
        });
        Ok(())
    }
}

/// A count followed by fixed-size entries (the thread, module, memory and
/// thread-name lists).
fn counted(count: usize, entries: Vec<u8>) -> Vec<u8> {
    let mut b = (count as u32).to_le_bytes().to_vec();
    b.extend(entries);
    b
}

/// Number of directory entries reserved at the start (enough for every stream
/// this writer makes), so that streams can follow the directory.
const MAX_STREAMS: usize = 20;

impl Plan {
    /// Plans the minidump of `p`.
    pub fn new(p: &Process, opts: &MinidumpOptions) -> Result<Plan> {
        let processor = context::processor(p.arch)?;
        let mem = p
            .memory
            .as_ref()
            .ok_or_else(|| Error::Usage(format!("process {} has no memory (zombie)", p.pid())))?;
        if p.threads.is_empty() {
            return Err(Error::Usage(format!("process {} has no threads", p.pid())));
        }
        let header_size = MINIDUMP_HEADER::size_with(&LE);
        let dir_size = MAX_STREAMS * MINIDUMP_DIRECTORY::size_with(&LE);
        let mut b = Builder {
            buf: vec![0; header_size + dir_size],
            dir: Vec::new(),
        };

        let sys = system_info(&mut b, p, processor)?;
        b.stream(Stream::SystemInfoStream, &sys)?;
        b.stream(
            Stream::MiscInfoStream,
            &bytes(&MINIDUMP_MISC_INFO {
                size_of_info: MINIDUMP_MISC_INFO::size_with(&LE) as u32,
                flags1: md::MiscInfoFlags::MINIDUMP_MISC1_PROCESS_ID.bits(),
                process_id: p.pid(),
                process_create_time: 0,
                process_user_time: 0,
                process_kernel_time: 0,
            })?,
        )?;

        // Threads: context and stack of each; the stacks also form the memory list.
        let mut threads = Vec::new();
        let mut names = Vec::new();
        let mut ranges = Vec::new();
        let mut memory_bytes = 0;
        let mut leader_context = None;
        for t in &p.threads {
            let ctx = b.put(&context::encode(&t.regs)?)?;
            leader_context.get_or_insert(ctx);
            let stack = match around(mem, &opts.policy, t.regs.sp(), RED_ZONE, STACK_ABOVE_SP) {
                Some(range) => {
                    let d = memory(&mut b, mem, range)?;
                    memory_bytes += range.1;
                    ranges.extend(bytes(&d)?);
                    d
                }
                None => MINIDUMP_MEMORY_DESCRIPTOR {
                    start_of_memory_range: t.regs.sp(),
                    memory: MINIDUMP_LOCATION_DESCRIPTOR::default(),
                },
            };
            threads.extend(bytes(&MINIDUMP_THREAD {
                thread_id: t.tid,
                suspend_count: 0,
                priority_class: 0,
                priority: 0,
                teb: thread_pointer(&t.regs),
                stack,
                thread_context: ctx,
            })?);
            let name = b.string(&t.name)?;
            names.extend(bytes(&MINIDUMP_THREAD_NAME {
                thread_id: t.tid,
                thread_name_rva: name as u64,
            })?);
        }
        let pc = p.threads[0].regs.pc();
        let half = CODE_AROUND_PC / 2;
        // Code is file pages, which the policy leaves to the debugger's binaries;
        // these few bytes go out whenever the process did not mark them
        // DONTDUMP, as Breakpad keeps them around a crash address.
        let code = DumpPolicy {
            file_pages: true,
            ..opts.policy
        };
        if let Some(range) = around(mem, &code, pc, half, half) {
            ranges.extend(bytes(&memory(&mut b, mem, range)?)?);
            memory_bytes += range.1;
        }
        let n = p.threads.len();
        b.stream(Stream::ThreadListStream, &counted(n, threads))?;
        b.stream(Stream::ThreadNamesStream, &counted(n, names))?;
        let stacks = ranges.len() / 16;
        b.stream(Stream::MemoryListStream, &counted(stacks, ranges))?;

        // Nothing crashed: the leader "requested" the dump, as Breakpad says of
        // dumps taken on request.
        let leader = &p.threads[0];
        b.stream(
            Stream::ExceptionStream,
            &bytes(&MINIDUMP_EXCEPTION_STREAM {
                thread_id: leader.tid,
                __align: 0,
                exception_record: MINIDUMP_EXCEPTION {
                    exception_code: ExceptionCodeLinux::DUMP_REQUESTED as u32,
                    ..Default::default()
                },
                thread_context: leader_context.unwrap_or_default(),
            })?,
        )?;

        let mods = modules::list(mem, p.exe.as_ref().map(|e| e.path.as_str()));
        let module_count = mods.len();
        let module_list = modules::encode(&mut b, &mods)?;
        b.stream(Stream::ModuleListStream, &module_list)?;
        b.stream(Stream::MemoryInfoListStream, &memory_info(mem)?)?;

        b.stream(Stream::LinuxMaps, linux::maps(mem).as_bytes())?;
        b.stream(Stream::LinuxProcStatus, linux::status(p).as_bytes())?;
        b.stream(Stream::LinuxAuxv, &linux::auxv(p))?;
        if let Some(cmdline) = linux::region(mem, p.layout.arg_start, p.layout.arg_end) {
            b.stream(Stream::LinuxCmdLine, &cmdline)?;
        }
        if let Some(environ) = linux::region(mem, p.layout.env_start, p.layout.env_end) {
            b.stream(Stream::LinuxEnviron, &environ)?;
        }
        if let Some(debug) = modules::dso_debug(&mut b, p, mem)? {
            b.stream(Stream::LinuxDsoDebug, &debug)?;
        }

        let full = if opts.full_memory {
            saved_memory(mem, &opts.policy)
        } else {
            Vec::new()
        };
        let mut memory64_at = None;
        if opts.full_memory {
            let mut l = (full.len() as u64).to_le_bytes().to_vec();
            // base_rva: patched in write(), once the head's size is known.
            l.extend_from_slice(&0u64.to_le_bytes());
            for e in &full {
                l.extend(bytes(&md::MINIDUMP_MEMORY_DESCRIPTOR64 {
                    start_of_memory_range: e.start,
                    data_size: e.len,
                })?);
            }
            b.stream(Stream::Memory64ListStream, &l)?;
            memory64_at = b.dir.last().map(|d| d.location.rva as usize);
            memory_bytes += full.iter().map(|e| e.len).sum::<u64>();
        }

        assert!(b.dir.len() <= MAX_STREAMS);
        let mut dir = Vec::new();
        for d in &b.dir {
            dir.extend(bytes(d)?);
        }
        let header = bytes(&MINIDUMP_HEADER {
            signature: md::MINIDUMP_SIGNATURE,
            version: md::MINIDUMP_VERSION,
            stream_count: b.dir.len() as u32,
            stream_directory_rva: header_size as u32,
            checksum: 0,
            time_date_stamp: 0,
            flags: 0,
        })?;
        b.buf[..header_size].copy_from_slice(&header);
        b.buf[header_size..header_size + dir.len()].copy_from_slice(&dir);
        Ok(Plan {
            head: b.buf,
            full,
            memory64_at,
            threads: n,
            modules: module_count,
            memory_bytes,
        })
    }

    /// Writes the minidump to `dir/<pid>.dmp` through a temporary file.
    pub fn write(mut self, dir: &Path, pid: u32, force: bool) -> Result<Written> {
        let out = AtomicFile::create(dir, &format!("{pid}.dmp"), force)?;
        let io = |e| Error::io(&out.tmp, e);
        let base = (self.head.len() as u64).next_multiple_of(8);
        if let Some(at) = self.memory64_at {
            self.head[at + 8..at + 16].copy_from_slice(&base.to_le_bytes());
        }
        out.file.write_all_at(&self.head, 0).map_err(io)?;
        let mut at = base;
        let mut buf = vec![0u8; 1 << 20];
        for e in &self.full {
            let Source::Bytes { blob, offset, .. } = &e.source else {
                unreachable!("saved_memory keeps only bytes")
            };
            let mut done = 0;
            while done < e.len {
                let n = (e.len - done).min(buf.len() as u64) as usize;
                blob.read_exact_at(offset + done, &mut buf[..n])?;
                out.file.write_all_at(&buf[..n], at + done).map_err(io)?;
                done += n as u64;
            }
            at += e.len;
        }
        let file_size = at.max(self.head.len() as u64);
        out.file.set_len(file_size).map_err(io)?;
        let path = out.commit()?;
        Ok(Written {
            path,
            file_size,
            threads: self.threads,
            modules: self.modules,
            memory_bytes: self.memory_bytes,
        })
    }
}

/// The thread pointer (TLS base) of a thread, which minidumps keep as the "TEB".
fn thread_pointer(r: &Registers) -> u64 {
    match r {
        Registers::X86_64(r) => r.get("fs_base").unwrap_or(0),
        Registers::Aarch64(r) => r.tls,
        Registers::Arm(r) => r.tls as u64,
        _ => 0,
    }
}

/// Memory around `addr`: from `below` bytes below it to `above` bytes above,
/// cut to the mapping holding `addr`, to the part of it the policy lets out, and
/// to the bytes the checkpoint has around it (known zeros, such as untouched stack
/// pages, count; bytes no source has end the range). None if `addr` itself is not
/// available.
fn around(
    mem: &AddressSpace,
    policy: &DumpPolicy,
    addr: u64,
    below: u64,
    above: u64,
) -> Option<(u64, u64)> {
    let vma = mem.vma_at(addr)?;
    let lo = addr.saturating_sub(below).max(vma.start);
    let hi = addr
        .saturating_add(above)
        .min(policy.vma(mem, vma).content_end);
    if hi <= addr {
        return None;
    }
    let (mut start, mut end) = (lo, lo);
    for e in mem.extents(vma, lo, hi) {
        let e_end = e.start + e.len;
        if matches!(e.source, Source::Missing(_)) {
            if e.start > addr {
                break;
            }
            // Missing at or below addr: the range restarts after it.
            start = e_end;
        }
        end = e_end;
    }
    (start <= addr && end > addr).then_some((start, end - start))
}

/// Copies `(start, len)` of memory into the file; returns its descriptor.
fn memory(
    b: &mut Builder,
    mem: &AddressSpace,
    (start, len): (u64, u64),
) -> Result<MINIDUMP_MEMORY_DESCRIPTOR> {
    let mut data = vec![0u8; len as usize];
    let missing = mem.read(start, &mut data)?;
    if !missing.is_empty() {
        // around() chose only bytes with a source; a read that disagrees is a bug,
        // and zeros must not stand in for them.
        return Err(Error::Unsupported(format!(
            "memory at {start:#x} could not be read back"
        )));
    }
    Ok(MINIDUMP_MEMORY_DESCRIPTOR {
        start_of_memory_range: start,
        memory: b.put(&data)?,
    })
}

/// The memory of the process that goes out, in address order: the bytes the
/// dump policy chooses (those an ELF core of the same process carries: what the
/// checkpoint saved, the ELF header page of each mapped file, the vDSO; mappings
/// marked DONTDUMP left out), as far as some source has them. Memory the process
/// never touched is known zero and takes no room: a minidump has no holes.
fn saved_memory(mem: &AddressSpace, policy: &DumpPolicy) -> Vec<Extent> {
    let mut out = Vec::new();
    for vma in &mem.vmas {
        let end = policy.vma(mem, vma).content_end;
        if end > vma.start {
            out.extend(
                mem.extents(vma, vma.start, end)
                    .into_iter()
                    .filter(|e| matches!(e.source, Source::Bytes { .. })),
            );
        }
    }
    out
}

/// MINIDUMP_MEMORY_INFO for every mapping.
fn memory_info(mem: &AddressSpace) -> Result<Vec<u8>> {
    use md::{MemoryProtection as P, MemoryState, MemoryType};
    let mut out = bytes(&md::MINIDUMP_MEMORY_INFO_LIST {
        size_of_header: md::MINIDUMP_MEMORY_INFO_LIST::size_with(&LE) as u32,
        size_of_entry: MINIDUMP_MEMORY_INFO::size_with(&LE) as u32,
        number_of_entries: mem.vmas.len() as u64,
    })?;
    for v in &mem.vmas {
        let (r, w, x) = (v.prot & 1 != 0, v.prot & 2 != 0, v.prot & 4 != 0);
        let protection = match (r || w, w, x) {
            (false, _, false) => P::PAGE_NOACCESS,
            (true, false, false) => P::PAGE_READONLY,
            (true, true, false) => P::PAGE_READWRITE,
            (false, _, true) => P::PAGE_EXECUTE,
            (true, false, true) => P::PAGE_EXECUTE_READ,
            (true, true, true) => P::PAGE_EXECUTE_READWRITE,
        };
        let ty = match v.kind {
            VmaKind::File | VmaKind::SharedFile if is_image(v) => MemoryType::MEM_IMAGE,
            VmaKind::File
            | VmaKind::SharedFile
            | VmaKind::Memfd
            | VmaKind::Shared
            | VmaKind::Sysv => MemoryType::MEM_MAPPED,
            _ => MemoryType::MEM_PRIVATE,
        };
        out.extend(bytes(&MINIDUMP_MEMORY_INFO {
            base_address: v.start,
            allocation_base: v.start,
            allocation_protection: protection.bits(),
            __alignment1: 0,
            region_size: v.len(),
            state: MemoryState::MEM_COMMIT.bits(),
            protection: protection.bits(),
            _type: ty.bits(),
            __alignment2: 0,
        })?);
    }
    Ok(out)
}

/// A mapping of an ELF file (one with a build-id recorded).
fn is_image(v: &Vma) -> bool {
    v.file.as_ref().is_some_and(|f| !f.build_id.is_empty())
}

/// MINIDUMP_SYSTEM_INFO: the architecture, Linux, and the CPU features the
/// auxiliary vector gives (AT_HWCAP); the checkpoint records no CPU model, count or
/// kernel version, so those are 0 and the version string is empty.
fn system_info(b: &mut Builder, p: &Process, arch: md::ProcessorArchitecture) -> Result<Vec<u8>> {
    let hwcap = p.auxv.iter().find(|(t, _)| *t == 16).map_or(0, |(_, v)| *v);
    let mut cpu = [0u8; 24];
    match arch {
        md::ProcessorArchitecture::PROCESSOR_ARCHITECTURE_AMD64
        | md::ProcessorArchitecture::PROCESSOR_ARCHITECTURE_INTEL => {
            // X86CpuInfo.feature_information is CPUID 1's EDX, which is what the
            // kernel gives x86 processes as AT_HWCAP.
            cpu[16..20].copy_from_slice(&(hwcap as u32).to_le_bytes());
        }
        md::ProcessorArchitecture::PROCESSOR_ARCHITECTURE_ARM => {
            // ARMCpuInfo: cpuid (MIDR, not recorded) and the ELF hwcaps.
            cpu[4..8].copy_from_slice(&(hwcap as u32).to_le_bytes());
        }
        _ => {
            // OtherCpuInfo.processor_features: AT_HWCAP, AT_HWCAP2.
            let hwcap2 = p.auxv.iter().find(|(t, _)| *t == 26).map_or(0, |(_, v)| *v);
            cpu[0..8].copy_from_slice(&hwcap.to_le_bytes());
            cpu[8..16].copy_from_slice(&hwcap2.to_le_bytes());
        }
    }
    let csd = b.string("")?;
    bytes(&MINIDUMP_SYSTEM_INFO {
        processor_architecture: arch as u16,
        processor_level: 0,
        processor_revision: 0,
        number_of_processors: 0,
        product_type: 0,
        major_version: 0,
        minor_version: 0,
        build_number: 0,
        platform_id: md::PlatformId::Linux as u32,
        csd_version_rva: csd,
        suite_mask: 0,
        reserved2: 0,
        cpu: md::CPU_INFORMATION { data: cpu },
    })
}
