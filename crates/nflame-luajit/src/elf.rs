//! The few things read from a LuaJIT ELF binary: exported symbols, the bytes
//! at a virtual address, and the `.eh_frame` entry (FDE) covering an address.
//!
//! Pure: works on a byte slice, so tests run on the system's libraries or on
//! fixtures. Knows nothing about LuaJIT (that is `layout`).

use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol};

use crate::error::NotReadable;

/// An ELF image and its exported functions.
#[derive(Debug)]
pub(crate) struct Elf<'a> {
    file: object::File<'a>,
}

impl<'a> Elf<'a> {
    pub(crate) fn parse(data: &'a [u8]) -> Result<Self, NotReadable> {
        let file =
            object::File::parse(data).map_err(|e| NotReadable::BadElf { why: e.to_string() })?;
        if file.architecture() != object::Architecture::X86_64 {
            return Err(NotReadable::Architecture {
                arch: format!("{:?}", file.architecture()),
            });
        }
        Ok(Self { file })
    }

    /// The address of a function named `name` in `.dynsym`, else `.symtab`.
    pub(crate) fn symbol(&self, name: &str) -> Option<u64> {
        let find = |mut it: object::SymbolIterator<'a, '_>| {
            it.find(|s| s.is_definition() && s.name() == Ok(name) && s.address() != 0)
                .map(|s| s.address())
        };
        find(self.file.dynamic_symbols()).or_else(|| find(self.file.symbols()))
    }

    /// Up to `len` bytes of the file image at virtual address `addr`
    /// (fewer at the end of its segment; empty outside every segment).
    pub(crate) fn bytes_at(&self, addr: u64, len: usize) -> &'a [u8] {
        for seg in self.file.segments() {
            let start = seg.address();
            let Ok(data) = seg.data() else { continue };
            if addr >= start && addr < start + data.len() as u64 {
                let off = (addr - start) as usize;
                let end = data.len().min(off.saturating_add(len));
                return &data[off..end];
            }
        }
        &[]
    }

    /// The `[start, end)` of the `.eh_frame` FDE covering `addr`, found
    /// through `.eh_frame_hdr`'s sorted table.
    pub(crate) fn fde_range(&self, addr: u64) -> Option<(u64, u64)> {
        let hdr = self.file.section_by_name(".eh_frame_hdr")?;
        let hdr_addr = hdr.address();
        let data = hdr.data().ok()?;
        let mut r = Reader {
            data,
            pos: 0,
            base: hdr_addr,
        };
        if r.u8()? != 1 {
            return None;
        }
        let ptr_enc = r.u8()?;
        let count_enc = r.u8()?;
        let table_enc = r.u8()?;
        r.encoded(ptr_enc)?; // eh_frame_ptr
        let count = r.encoded(count_enc)?;
        // Only the usual table encoding: datarel sdata4 pairs.
        if table_enc != 0x3b || count > 1 << 20 {
            return None;
        }
        let table = r.pos;
        let entry = |i: u64| -> Option<(u64, u64)> {
            let off = table + (i as usize) * 8;
            let loc = i32::from_le_bytes(data.get(off..off + 4)?.try_into().ok()?);
            let fde = i32::from_le_bytes(data.get(off + 4..off + 8)?.try_into().ok()?);
            Some((
                hdr_addr.wrapping_add(loc as i64 as u64),
                hdr_addr.wrapping_add(fde as i64 as u64),
            ))
        };
        // Last entry whose initial location is <= addr.
        let (mut lo, mut hi) = (0u64, count);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if entry(mid)?.0 <= addr {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo == 0 {
            return None;
        }
        let (_, fde_addr) = entry(lo - 1)?;
        let (start, len) = self.parse_fde(fde_addr)?;
        (addr >= start && addr < start + len).then_some((start, start + len))
    }

    /// pc_begin and pc_range of the FDE at `fde_addr`.
    fn parse_fde(&self, fde_addr: u64) -> Option<(u64, u64)> {
        let fde = self.bytes_at(fde_addr, 64);
        let mut r = Reader {
            data: fde,
            pos: 0,
            base: fde_addr,
        };
        let len = r.u32()?;
        if len == 0 || len == u32::MAX {
            return None;
        }
        let cie_field = fde_addr + 4;
        let cie_delta = r.u32()? as u64;
        let enc = self.cie_fde_encoding(cie_field.checked_sub(cie_delta)?)?;
        let start = r.encoded(enc)?;
        let range = r.encoded(enc & 0x0f)?;
        Some((start, range))
    }

    /// The pointer encoding ('R' augmentation) of the CIE at `cie_addr`.
    fn cie_fde_encoding(&self, cie_addr: u64) -> Option<u8> {
        let cie = self.bytes_at(cie_addr, 128);
        let mut r = Reader {
            data: cie,
            pos: 0,
            base: cie_addr,
        };
        r.u32()?; // length
        if r.u32()? != 0 {
            return None; // not a CIE
        }
        let version = r.u8()?;
        let aug_start = r.pos;
        while r.u8()? != 0 {}
        let aug = &cie[aug_start..r.pos - 1];
        r.uleb()?; // code alignment
        r.uleb()?; // data alignment (sign irrelevant here)
        if version == 1 {
            r.u8()?;
        } else {
            r.uleb()?;
        }
        if aug.first() != Some(&b'z') {
            return Some(0); // absolute pointers
        }
        r.uleb()?; // augmentation data length
        for &c in &aug[1..] {
            match c {
                b'R' => return r.u8(),
                b'L' => {
                    r.u8()?;
                }
                b'P' => {
                    let penc = r.u8()?;
                    r.encoded(penc)?;
                }
                b'S' | b'B' => {}
                _ => return None,
            }
        }
        Some(0)
    }
}

/// A cursor over bytes that sit at virtual address `base`.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    base: u64,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let b = self.data.get(self.pos..self.pos + N)?.try_into().ok()?;
        self.pos += N;
        Some(b)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take::<1>()?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take()?))
    }
    fn uleb(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    /// A DW_EH_PE-encoded pointer: absolute or pc-relative, 4 or 8 bytes.
    fn encoded(&mut self, enc: u8) -> Option<u64> {
        let here = self.base + self.pos as u64;
        let v = match enc & 0x0f {
            0x00 | 0x04 | 0x0c => u64::from_le_bytes(self.take()?),
            0x03 => u64::from(self.u32()?),
            0x0b => self.u32()? as i32 as i64 as u64,
            _ => return None,
        };
        match enc & 0x70 {
            0x00 => Some(v),
            0x10 => Some(here.wrapping_add(v)),
            _ => None,
        }
    }
}

impl Elf<'_> {
    /// The virtual address of file offset `off` (in a loaded segment).
    pub(crate) fn vaddr_of_offset(&self, off: u64) -> Option<u64> {
        self.file.segments().find_map(|seg| {
            let (start, size) = seg.file_range();
            (off >= start && off < start + size).then(|| seg.address() + (off - start))
        })
    }
}
