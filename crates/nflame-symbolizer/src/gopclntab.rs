//! Function names of stripped Go binaries from `.gopclntab`.
//!
//! Go binaries keep a table of every function (the runtime needs it for
//! tracebacks) even when stripped of ELF symbols, as `docker-proxy` is. blazesym
//! reads ELF and DWARF only, so addresses it cannot name in a file that has a
//! `.gopclntab` section are looked up here. Formats of Go 1.16 and later
//! (little-endian) are understood; others yield no table.
//!
//! Layout (Go's `runtime/symtab.go`, `pcHeader`): magic, two pad bytes, the
//! instruction quantum, the pointer size, then pointer-sized fields: `nfunc`,
//! `nfiles`, `textStart` (1.18+ only), and the offsets of the function-name
//! table and (last) the function table. The function table holds `nfunc + 1`
//! pairs (entry, offset of the `_func` record): `u32` entry offsets from
//! `textStart` since 1.18, pointer-sized absolute addresses before. A `_func`
//! record starts with the entry, then the `i32` offset of its name.

use nflame_procfs::elf::{self, SectionRefusal, Summary};
use nflame_procfs::files::TargetFile;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    /// Go 1.16 and 1.17: absolute entry addresses.
    Go116,
    /// Go 1.18 and later: 32-bit entry offsets from `textStart`.
    Go118,
}

/// The function table of one Go binary.
#[derive(Debug)]
pub(crate) struct GoTable {
    data: Vec<u8>,
    version: Version,
    ptr_size: usize,
    nfunc: usize,
    text_start: u64,
    funcnames: usize,
    functab: usize,
    /// PT_LOAD segments: (file offset, file size, virtual address).
    segments: Vec<(u64, u64, u64)>,
}

impl GoTable {
    /// Reads the table of a target's ELF file (`summary`: its headers):
    /// `Ok(None)` if it has none, an error when `.gopclntab` exceeds its cap
    /// ([`nflame_procfs::elf::GOPCLNTAB_CAP`]).
    pub(crate) fn from_target(
        file: &TargetFile,
        summary: &Summary,
    ) -> Result<Option<GoTable>, SectionRefusal> {
        if !summary.little_endian {
            return Ok(None);
        }
        let Some(section) = summary.section(".gopclntab") else {
            return Ok(None);
        };
        let data = elf::read_section(file, section)?;
        let text = summary.section(".text").map(|s| s.addr);
        let segments = summary
            .segments
            .iter()
            .map(|s| (s.offset, s.size, s.addr))
            .collect();
        Ok(GoTable::parse(data, text, segments))
    }

    pub(crate) fn parse(
        data: Vec<u8>,
        text: Option<u64>,
        segments: Vec<(u64, u64, u64)>,
    ) -> Option<GoTable> {
        let magic = u32::from_le_bytes(data.get(..4)?.try_into().ok()?);
        let version = match magic {
            0xffff_fffa => Version::Go116,
            0xffff_fff0 | 0xffff_fff1 => Version::Go118,
            _ => return None,
        };
        let ptr_size = usize::from(*data.get(7)?);
        if ptr_size != 4 && ptr_size != 8 {
            return None;
        }
        let mut table = GoTable {
            data,
            version,
            ptr_size,
            nfunc: 0,
            text_start: 0,
            funcnames: 0,
            functab: 0,
            segments,
        };
        let field = |k: usize| table.uint(8 + k * ptr_size, ptr_size);
        let (nfunc, text_start, funcnames, functab) = match version {
            Version::Go116 => (field(0)?, 0, field(2)?, field(6)?),
            Version::Go118 => (field(0)?, field(2)?, field(3)?, field(7)?),
        };
        // A position-independent binary may carry 0 (relocated at load time);
        // `runtime.text` is the start of `.text` then.
        table.text_start = if text_start == 0 {
            text.unwrap_or(0)
        } else {
            text_start
        };
        table.nfunc = usize::try_from(nfunc).ok()?;
        table.funcnames = usize::try_from(funcnames).ok()?;
        table.functab = usize::try_from(functab).ok()?;
        // The table (nfunc + 1 entries) must fit.
        table.entry(table.nfunc)?;
        Some(table)
    }

    fn uint(&self, at: usize, size: usize) -> Option<u64> {
        let bytes = self.data.get(at..at.checked_add(size)?)?;
        Some(match size {
            4 => u64::from(u32::from_le_bytes(bytes.try_into().ok()?)),
            _ => u64::from_le_bytes(bytes.try_into().ok()?),
        })
    }

    fn entry_size(&self) -> usize {
        match self.version {
            Version::Go116 => 2 * self.ptr_size,
            Version::Go118 => 8,
        }
    }

    /// (entry address, `_func` offset) of function table entry `i`.
    fn entry(&self, i: usize) -> Option<(u64, u64)> {
        let at = self
            .functab
            .checked_add(i.checked_mul(self.entry_size())?)?;
        match self.version {
            Version::Go116 => Some((
                self.uint(at, self.ptr_size)?,
                self.uint(at.checked_add(self.ptr_size)?, self.ptr_size)?,
            )),
            Version::Go118 => Some((
                self.text_start.checked_add(self.uint(at, 4)?)?,
                self.uint(at.checked_add(4)?, 4)?,
            )),
        }
    }

    /// The virtual address of file offset `offset`, from the PT_LOAD segments.
    pub(crate) fn virt_addr(&self, offset: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|&&(start, size, _)| offset >= start && offset - start < size)
            .and_then(|&(start, _, vaddr)| vaddr.checked_add(offset - start))
    }

    /// The name of the function containing virtual address `addr`.
    pub(crate) fn find(&self, addr: u64) -> Option<&str> {
        let (end, _) = self.entry(self.nfunc)?;
        if addr >= end {
            return None;
        }
        // Largest i < nfunc with entry(i) <= addr.
        let (mut lo, mut hi) = (0usize, self.nfunc);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.entry(mid)?.0 <= addr {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let i = lo.checked_sub(1)?;
        let (_, func) = self.entry(i)?;
        let name_field = match self.version {
            Version::Go116 => self.ptr_size,
            Version::Go118 => 4,
        };
        let func = self.functab.checked_add(usize::try_from(func).ok()?)?;
        let name_off = self.uint(func.checked_add(name_field)?, 4)?;
        let start = self
            .funcnames
            .checked_add(usize::try_from(name_off).ok()?)?;
        let bytes = self.data.get(start..)?;
        let len = bytes.iter().position(|&b| b == 0)?;
        std::str::from_utf8(&bytes[..len])
            .ok()
            .filter(|s| !s.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-made Go 1.18 table: two functions at text+0x10 and text+0x40,
    /// ending at text+0x80.
    fn table_118() -> GoTable {
        let mut d = vec![0u8; 8 + 8 * 8];
        d[..4].copy_from_slice(&0xffff_fff1u32.to_le_bytes());
        d[6] = 1;
        d[7] = 8;
        let put = |d: &mut Vec<u8>, k: usize, v: u64| {
            d[8 + k * 8..16 + k * 8].copy_from_slice(&v.to_le_bytes())
        };
        let names_at = d.len() as u64;
        put(&mut d, 0, 2);
        put(&mut d, 2, 0x401000);
        put(&mut d, 3, names_at);
        d.extend_from_slice(b"main.main\0net.(*conn).Read\0");
        let functab = d.len() as u64;
        put(&mut d, 7, functab);
        // Entries: (0x10, func0), (0x40, func1), (0x80, end). _func records follow.
        let funcs = 3 * 8;
        for (entry, func) in [(0x10u32, funcs), (0x40, funcs + 8), (0x80, 0)] {
            d.extend_from_slice(&entry.to_le_bytes());
            d.extend_from_slice(&(func as u32).to_le_bytes());
        }
        for (entry, name) in [(0x10u32, 0i32), (0x40, 10)] {
            d.extend_from_slice(&entry.to_le_bytes());
            d.extend_from_slice(&name.to_le_bytes());
        }
        GoTable::parse(d, None, vec![(0x1000, 0x10000, 0x401000)]).unwrap()
    }

    #[test]
    fn finds_functions_in_a_go118_table() {
        let t = table_118();
        assert_eq!(t.find(0x401000), None);
        assert_eq!(t.find(0x401010), Some("main.main"));
        assert_eq!(t.find(0x40103f), Some("main.main"));
        assert_eq!(t.find(0x401040), Some("net.(*conn).Read"));
        assert_eq!(t.find(0x401080), None);
        assert_eq!(t.virt_addr(0x1010), Some(0x401010));
    }

    /// Fuzzing found `virt_addr` overflowing with a segment mapped at the
    /// top of the address space.
    #[test]
    fn virt_addr_of_a_segment_at_the_top_does_not_overflow() {
        let mut t = table_118();
        t.segments = vec![(0x1000, 0x10000, u64::MAX - 8)];
        assert_eq!(t.virt_addr(0x1008), Some(u64::MAX));
        assert_eq!(t.virt_addr(0x1010), None);
    }

    #[test]
    fn rejects_other_data() {
        assert!(GoTable::parse(b"\x7fELF....".to_vec(), None, Vec::new()).is_none());
        assert!(GoTable::parse(Vec::new(), None, Vec::new()).is_none());
    }

    #[test]
    fn reads_docker_proxy_when_installed() {
        let path = std::path::Path::new("/usr/sbin/docker-proxy");
        if !path.exists() {
            return;
        }
        let root = nflame_procfs::files::Root::host().unwrap();
        let file = root
            .open(path, &nflame_procfs::files::OpenPolicy::confined())
            .unwrap();
        let summary = elf::summarize(&file).unwrap();
        let t = GoTable::from_target(&file, &summary)
            .unwrap()
            .expect("docker-proxy has a .gopclntab");
        let (first, _) = t.entry(0).unwrap();
        eprintln!(
            "{:?} nfunc {} text {:#x} first {first:#x} end {:x?} e1 {:x?} names {:?}",
            t.version,
            t.nfunc,
            t.text_start,
            t.entry(t.nfunc),
            t.entry(1),
            (0x402000..0x4c9000u64)
                .step_by(997)
                .filter(|&a| t.find(a).is_some())
                .count()
        );
        assert_eq!(
            t.find(first + 1)
                .map(|n| n.starts_with("go:") || n.contains('.')),
            Some(true)
        );
    }
}
