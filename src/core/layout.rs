//! The ELF class and byte order of a core. Every multi-byte field the writer puts
//! into the file header, the program headers, the note headers and the process-wide
//! notes (prstatus, prpsinfo, auxv, NT_FILE) goes through one [`ElfLayout`], chosen
//! from the architecture, so that 32-bit and big-endian cores share the code of the
//! 64-bit little-endian ones.

/// ELF class (32 or 64 bits) and data encoding of a core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElfLayout {
    /// ELFCLASS64 (else ELFCLASS32): the width of a "long" in the notes, of
    /// addresses and of offsets.
    pub class64: bool,
    /// ELFDATA2MSB (else ELFDATA2LSB).
    pub big_endian: bool,
}

impl ElfLayout {
    /// ELFCLASS64, little-endian (x86_64, aarch64, ppc64le, riscv64).
    pub const LE64: ElfLayout = ElfLayout {
        class64: true,
        big_endian: false,
    };
    /// ELFCLASS32, little-endian (arm, i386).
    pub const LE32: ElfLayout = ElfLayout {
        class64: false,
        big_endian: false,
    };
    /// ELFCLASS64, big-endian (s390x).
    pub const BE64: ElfLayout = ElfLayout {
        class64: true,
        big_endian: true,
    };

    /// Bytes in a "long" (and an address).
    pub fn word(self) -> usize {
        if self.class64 {
            8
        } else {
            4
        }
    }

    /// Largest value a "long" can hold.
    pub fn word_max(self) -> u64 {
        if self.class64 {
            u64::MAX
        } else {
            u32::MAX as u64
        }
    }

    /// Size of the ELF file header.
    pub fn ehdr_size(self) -> u64 {
        if self.class64 {
            64
        } else {
            52
        }
    }

    /// Size of one program header.
    pub fn phdr_size(self) -> u64 {
        if self.class64 {
            56
        } else {
            32
        }
    }

    /// Size of one section header (only written for PN_XNUM).
    pub fn shdr_size(self) -> u64 {
        if self.class64 {
            64
        } else {
            40
        }
    }

    /// Appends a u16.
    pub fn u16(self, out: &mut Vec<u8>, v: u16) {
        out.extend_from_slice(&if self.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        });
    }

    /// Appends a u32.
    pub fn u32(self, out: &mut Vec<u8>, v: u32) {
        out.extend_from_slice(&if self.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        });
    }

    /// Appends a u64.
    pub fn u64(self, out: &mut Vec<u8>, v: u64) {
        out.extend_from_slice(&if self.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        });
    }

    /// Appends a "long". Callers have checked that `v` fits (see [`Self::word_max`]);
    /// a 32-bit layout keeps the low 32 bits.
    pub fn word_push(self, out: &mut Vec<u8>, v: u64) {
        if self.class64 {
            self.u64(out, v)
        } else {
            self.u32(out, v as u32)
        }
    }

    /// Writes a u16 at `at` of `buf`.
    pub fn put_u16(self, buf: &mut [u8], at: usize, v: u16) {
        let mut b = Vec::with_capacity(2);
        self.u16(&mut b, v);
        buf[at..at + 2].copy_from_slice(&b);
    }

    /// Writes a u32 at `at` of `buf`.
    pub fn put_u32(self, buf: &mut [u8], at: usize, v: u32) {
        let mut b = Vec::with_capacity(4);
        self.u32(&mut b, v);
        buf[at..at + 4].copy_from_slice(&b);
    }

    /// Writes a "long" at `at` of `buf`.
    pub fn put_word(self, buf: &mut [u8], at: usize, v: u64) {
        let mut b = Vec::with_capacity(8);
        self.word_push(&mut b, v);
        buf[at..at + b.len()].copy_from_slice(&b);
    }

    /// Reads a "long" from the first [`Self::word`] bytes of `b` (for memory of a
    /// process of this layout).
    pub fn get_word(self, b: &[u8]) -> u64 {
        let mut v = [0u8; 8];
        let n = self.word();
        if self.big_endian {
            v[8 - n..].copy_from_slice(&b[..n]);
            u64::from_be_bytes(v)
        } else {
            v[..n].copy_from_slice(&b[..n]);
            u64::from_le_bytes(v)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_follow_class_and_byte_order() {
        let mut v = Vec::new();
        ElfLayout::LE32.word_push(&mut v, 0x1122_3344);
        ElfLayout::BE64.word_push(&mut v, 0x1122_3344);
        ElfLayout::LE64.u16(&mut v, 0x5566);
        assert_eq!(
            v,
            [0x44, 0x33, 0x22, 0x11, 0, 0, 0, 0, 0x11, 0x22, 0x33, 0x44, 0x66, 0x55]
        );
        let mut buf = [0u8; 8];
        ElfLayout::BE64.put_u32(&mut buf, 2, 7);
        assert_eq!(buf, [0, 0, 0, 0, 0, 7, 0, 0]);
    }
}
