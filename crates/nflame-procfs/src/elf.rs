//! Bounded reading of a target's ELF file: its headers, and its sections
//! within caps.
//!
//! An ELF file states the sizes of its own parts, and a hostile one lies: a
//! 12 KiB sparse file may claim a 256 MiB `.eh_frame`, a compressed
//! `.debug_info` may claim 128 TiB or inflate to 4 GiB from 4 MiB. Parsers
//! that trust those sizes allocate by them (the `object` crate's read cache
//! reserves a whole section before reading it; blazesym reserves by the
//! claimed symbol count and inflated size). Here every read is bounded:
//!
//! - headers are parsed with `object` over `pread`, and no single read while
//!   parsing may exceed [`HEADERS_CAP`] ([`summarize`], [`with_object`]);
//! - a section is read only within the cap of its kind ([`cap_of`]:
//!   symbol and string tables, unwind tables, `.gopclntab`, DWARF), and a
//!   compressed one must use a known method, claim at most
//!   [`INFLATED_CAP`] bytes and at most [`MAX_RATIO`] times its compressed
//!   size, and really inflate to what it claims, checked by a streaming
//!   pass that stops one byte past the claim ([`check_compressed`]).
//!
//! What does not pass is a [`SectionRefusal`], which callers report as a
//! `skipped` line and then go on without that section. The module knows
//! nothing of symbols or unwinding: it hands out bytes and facts.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use object::read::elf::FileHeader;
use object::read::{ReadCache, ReadCacheOps, ReadRef};
use object::{Endian, Endianness};

use crate::files::TargetFile;

/// Largest single read while parsing headers, notes and section names.
pub const HEADERS_CAP: u64 = 16 << 20;
/// `.symtab`, `.dynsym`: 128 MiB (over five million symbols).
pub const SYMTAB_CAP: u64 = 128 << 20;
/// `.strtab`, `.dynstr`.
pub const STRTAB_CAP: u64 = 256 << 20;
/// `.eh_frame`, `.debug_frame`.
pub const UNWIND_CAP: u64 = 64 << 20;
/// `.eh_frame_hdr`.
pub const UNWIND_INDEX_CAP: u64 = 16 << 20;
/// `.gopclntab` (Go's function table; about a third of a Go binary's code).
pub const GOPCLNTAB_CAP: u64 = 128 << 20;
/// Any uncompressed DWARF section (`.debug_*`).
pub const DWARF_CAP: u64 = 1 << 30;
/// What a compressed section may claim to inflate to.
pub const INFLATED_CAP: u64 = 512 << 20;
/// The most DEFLATE can inflate (about 1032:1): a section claiming more
/// than this many times its compressed size lies.
pub const MAX_RATIO: u64 = 1032;

/// The cap for the section named `name`, `None` for sections nflame does
/// not read.
pub fn cap_of(name: &str) -> Option<u64> {
    Some(match name {
        ".symtab" | ".dynsym" => SYMTAB_CAP,
        ".strtab" | ".dynstr" => STRTAB_CAP,
        ".eh_frame" | ".debug_frame" => UNWIND_CAP,
        ".eh_frame_hdr" => UNWIND_INDEX_CAP,
        ".gopclntab" => GOPCLNTAB_CAP,
        n if n.starts_with(".debug_") || n.starts_with(".zdebug_") => DWARF_CAP,
        _ => return None,
    })
}

/// Why a section is not read. Shown after the file's name in a `skipped`
/// line; it names the section.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SectionRefusal {
    /// Larger than its cap.
    #[error("{section} of {size} bytes, more than the cap of {cap}")]
    TooLarge {
        /// The section's name.
        section: String,
        /// Its stated size.
        size: u64,
        /// The cap.
        cap: u64,
    },
    /// Compressed, claiming more than [`INFLATED_CAP`] or than DEFLATE can give.
    #[error(
        "{section} is compressed and claims {claimed} bytes from {compressed} \
         (at most {cap} bytes and {MAX_RATIO} times the compressed size are read)"
    )]
    Claim {
        /// The section's name.
        section: String,
        /// What it claims to inflate to.
        claimed: u64,
        /// Its compressed size.
        compressed: u64,
        /// The cap ([`INFLATED_CAP`], or less for the section's kind).
        cap: u64,
    },
    /// Compressed with a method nflame does not inflate.
    #[error("{section} is compressed with an unsupported method")]
    Method {
        /// The section's name.
        section: String,
    },
    /// Inflates to something else than it claims (a zlib bomb, corrupt data).
    #[error("{section} does not inflate to the {claimed} bytes it claims ({found})")]
    Inflate {
        /// The section's name.
        section: String,
        /// What it claims.
        claimed: u64,
        /// What was found: "more", "N bytes", "corrupt data".
        found: String,
    },
    /// It lies beyond the end of the file.
    #[error("{section} lies beyond the end of the file")]
    OutOfFile {
        /// The section's name.
        section: String,
    },
    /// It could not be read.
    #[error("{section} could not be read: {error}")]
    Read {
        /// The section's name.
        section: String,
        /// The error.
        error: String,
    },
}

/// Why an ELF file's headers were not read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ElfError {
    /// Not an ELF file (no magic).
    #[error("not an ELF file")]
    NotElf,
    /// Headers that do not parse within bounds.
    #[error("malformed ELF headers (or larger than {HEADERS_CAP} bytes): {0}")]
    Malformed(String),
    /// Reading failed.
    #[error("reading ELF headers")]
    Io(#[source] io::Error),
}

/// How a section is stored compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compressed {
    /// zlib; anything else is unsupported.
    pub zlib: bool,
    /// File offset of the compressed bytes (after the compression header).
    pub offset: u64,
    /// Their size.
    pub size: u64,
    /// The size it claims once inflated.
    pub inflated: u64,
}

/// One section header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// Its name (lossily decoded).
    pub name: String,
    /// Virtual address.
    pub addr: u64,
    /// File offset of its bytes.
    pub offset: u64,
    /// Size in the file (the compressed size, if compressed).
    pub size: u64,
    /// `SHT_NOBITS`: no bytes in the file.
    pub nobits: bool,
    /// Compressed (`SHF_COMPRESSED`).
    pub compressed: Option<Compressed>,
}

/// One `PT_LOAD` segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// File offset.
    pub offset: u64,
    /// Size in the file.
    pub size: u64,
    /// Virtual address.
    pub addr: u64,
    /// Executable (`PF_X`).
    pub executable: bool,
}

/// What nflame needs to know of an ELF file before reading any section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Its sections, in file order.
    pub sections: Vec<Section>,
    /// Its `PT_LOAD` segments.
    pub segments: Vec<Segment>,
    /// An x86-64 file.
    pub x86_64: bool,
    /// Little-endian.
    pub little_endian: bool,
    /// Its GNU build id.
    pub build_id: Option<Vec<u8>>,
    /// Its `.gnu_debuglink`: the debug file's name and CRC-32.
    pub debuglink: Option<(Vec<u8>, u32)>,
}

/// Sections by which a file points to other files: a debug tool following
/// them opens whatever the file names.
pub const LINK_SECTIONS: [&str; 3] = [".gnu_debuglink", ".gnu_debugaltlink", ".debug_sup"];

impl Summary {
    /// The section named `name`.
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// The link sections ([`LINK_SECTIONS`]) the file has.
    pub fn links(&self) -> Vec<&'static str> {
        LINK_SECTIONS
            .into_iter()
            .filter(|n| self.section(n).is_some())
            .collect()
    }

    /// Whether it has DWARF debug information (`.debug_info`).
    pub fn has_dwarf(&self) -> bool {
        self.section(".debug_info")
            .or_else(|| self.section(".zdebug_info"))
            .is_some_and(|s| !s.nobits && s.size > 0)
    }

    /// The virtual address of file offset `offset` (from `PT_LOAD` segments).
    pub fn virt_addr(&self, offset: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|s| s.offset <= offset && offset - s.offset < s.size)
            .and_then(|s| s.addr.checked_add(offset - s.offset))
    }

    /// Checks that the named sections, where present, are within their caps
    /// ([`cap_of`]) and inside the file.
    pub fn check_sizes(&self, file_size: u64, names: &[&str]) -> Result<(), SectionRefusal> {
        for s in self
            .sections
            .iter()
            .filter(|s| names.contains(&s.name.as_str()))
        {
            check_size(s, file_size)?;
        }
        Ok(())
    }
}

fn check_size(s: &Section, file_size: u64) -> Result<(), SectionRefusal> {
    if s.nobits {
        return Ok(());
    }
    let cap = cap_of(&s.name).unwrap_or(HEADERS_CAP);
    if s.size > cap {
        return Err(SectionRefusal::TooLarge {
            section: s.name.clone(),
            size: s.size,
            cap,
        });
    }
    if s.offset
        .checked_add(s.size)
        .is_none_or(|end| end > file_size)
    {
        return Err(SectionRefusal::OutOfFile {
            section: s.name.clone(),
        });
    }
    Ok(())
}

/// `pread` as `object` wants to read: an independent position per reader,
/// so one open file is shared by threads.
#[derive(Debug)]
struct At<'f> {
    file: &'f File,
    len: u64,
    pos: u64,
}

impl ReadCacheOps for At<'_> {
    fn len(&mut self) -> Result<u64, ()> {
        Ok(self.len)
    }

    fn seek(&mut self, pos: u64) -> Result<u64, ()> {
        self.pos = pos;
        Ok(pos)
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ()> {
        let n = self.file.read_at(buf, self.pos).map_err(|_| ())?;
        self.pos += n as u64;
        Ok(n)
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), ()> {
        crate::files::read_exact_at(self.file, buf, self.pos).map_err(|_| ())?;
        self.pos += buf.len() as u64;
        Ok(())
    }
}

/// `pread` of one byte range, as a `Read`.
struct Range<'f> {
    file: &'f File,
    pos: u64,
    end: u64,
}

impl io::Read for Range<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min((self.end - self.pos) as usize);
        if n == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..n], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// An `object` reader whose every single read is at most `max` bytes, so
/// that no size a file claims makes it allocate more.
#[derive(Debug, Clone, Copy)]
pub struct Capped<'a> {
    cache: &'a ReadCache<At<'a>>,
    max: u64,
}

impl<'a> ReadRef<'a> for Capped<'a> {
    fn len(self) -> Result<u64, ()> {
        self.cache.len()
    }

    fn read_bytes_at(self, offset: u64, size: u64) -> Result<&'a [u8], ()> {
        if size > self.max {
            return Err(());
        }
        self.cache.read_bytes_at(offset, size)
    }

    fn read_bytes_at_until(
        self,
        range: std::ops::Range<u64>,
        delimiter: u8,
    ) -> Result<&'a [u8], ()> {
        self.cache.read_bytes_at_until(range, delimiter)
    }
}

/// Parses `file` with `object`, no single read above `max_read` bytes, and
/// hands the parsed file to `f` (a symbol table walk, say: pass
/// [`SYMTAB_CAP`] after checking the sizes).
pub fn with_object<T>(
    file: &TargetFile,
    max_read: u64,
    f: impl for<'a> FnOnce(&object::File<'a, Capped<'a>>) -> T,
) -> Result<T, ElfError> {
    let mut magic = [0u8; 4];
    match crate::files::read_exact_at(file.file(), &mut magic, 0) {
        Ok(()) if magic == *b"\x7fELF" => {}
        Ok(()) => return Err(ElfError::NotElf),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(ElfError::NotElf),
        Err(e) => return Err(ElfError::Io(e)),
    }
    let cache = ReadCache::new(At {
        file: file.file(),
        len: file.size,
        pos: 0,
    });
    let data = Capped {
        cache: &cache,
        max: max_read,
    };
    let parsed = object::File::parse(data).map_err(|e| ElfError::Malformed(e.to_string()))?;
    Ok(f(&parsed))
}

/// The headers of `file` ([`Summary`]), read within [`HEADERS_CAP`]. Only
/// the headers, section names, notes and `.gnu_debuglink` are read (no
/// symbol table: `object`'s whole-file parser reads it at once).
pub fn summarize(file: &TargetFile) -> Result<Summary, ElfError> {
    let mut ident = [0u8; 16];
    match crate::files::read_exact_at(file.file(), &mut ident, 0) {
        Ok(()) if ident[..4] == *b"\x7fELF" => {}
        Ok(()) => return Err(ElfError::NotElf),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(ElfError::NotElf),
        Err(e) => return Err(ElfError::Io(e)),
    }
    let cache = ReadCache::new(At {
        file: file.file(),
        len: file.size,
        pos: 0,
    });
    let data = Capped {
        cache: &cache,
        max: HEADERS_CAP,
    };
    let malformed = |e: object::read::Error| ElfError::Malformed(e.to_string());
    // EI_CLASS: 1 for 32-bit, 2 for 64-bit files.
    match ident[4] {
        2 => summarize_as::<object::elf::FileHeader64<Endianness>>(data).map_err(malformed),
        1 => summarize_as::<object::elf::FileHeader32<Endianness>>(data).map_err(malformed),
        _ => Err(ElfError::Malformed("unknown ELF class".into())),
    }
}

fn summarize_as<'a, Elf>(data: Capped<'a>) -> object::read::Result<Summary>
where
    Elf: FileHeader<Endian = Endianness>,
{
    use object::read::elf::{CompressionHeader, ProgramHeader, SectionHeader};
    let header = Elf::parse(data)?;
    let endian = header.endian()?;
    let table = header.sections(endian, data)?;
    let mut summary = Summary {
        x86_64: header.e_machine(endian) == object::elf::EM_X86_64,
        little_endian: endian.is_little_endian(),
        ..Summary::default()
    };
    for sh in table.iter() {
        let name = table.section_name(endian, sh).unwrap_or_default();
        let nobits = sh.sh_type(endian) == object::elf::SHT_NOBITS;
        let compressed = sh
            .compression(endian, data)
            .ok()
            .flatten()
            .map(|(ch, offset, size)| Compressed {
                zlib: ch.ch_type(endian) == object::elf::ELFCOMPRESS_ZLIB,
                offset,
                size,
                inflated: ch.ch_size(endian).into(),
            });
        let section = Section {
            name: String::from_utf8_lossy(name).into_owned(),
            addr: sh.sh_addr(endian).into(),
            offset: sh.sh_offset(endian).into(),
            size: sh.sh_size(endian).into(),
            nobits,
            compressed,
        };
        if summary.build_id.is_none() {
            if let Ok(Some(mut notes)) = sh.notes(endian, data) {
                while let Ok(Some(note)) = notes.next() {
                    if note.name() == object::elf::ELF_NOTE_GNU
                        && note.n_type(endian) == object::elf::NT_GNU_BUILD_ID
                    {
                        summary.build_id = Some(note.desc().to_vec());
                    }
                }
            }
        }
        if section.name == ".gnu_debuglink" && !nobits {
            if let Ok(bytes) = sh.data(endian, data) {
                summary.debuglink = parse_debuglink(bytes, endian);
            }
        }
        summary.sections.push(section);
    }
    for ph in header.program_headers(endian, data)? {
        if ph.p_type(endian) != object::elf::PT_LOAD {
            continue;
        }
        summary.segments.push(Segment {
            offset: ph.p_offset(endian).into(),
            size: ph.p_filesz(endian).into(),
            addr: ph.p_vaddr(endian).into(),
            executable: ph.p_flags(endian).contains(object::elf::PF_X),
        });
    }
    Ok(summary)
}

/// `.gnu_debuglink`: a NUL-terminated file name, padding to 4 bytes, the
/// CRC-32 of the debug file.
fn parse_debuglink(bytes: &[u8], endian: Endianness) -> Option<(Vec<u8>, u32)> {
    let len = bytes.iter().position(|&b| b == 0)?;
    let at = (len + 1).next_multiple_of(4);
    let crc: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    let crc = if endian.is_little_endian() {
        u32::from_le_bytes(crc)
    } else {
        u32::from_be_bytes(crc)
    };
    Some((bytes[..len].to_vec(), crc))
}

/// The bytes of `section` of `file`, within its cap ([`cap_of`]); a
/// compressed one is inflated within the size it claims (and the cap).
pub fn read_section(file: &TargetFile, section: &Section) -> Result<Vec<u8>, SectionRefusal> {
    if section.nobits {
        return Ok(Vec::new());
    }
    check_size(section, file.size)?;
    if section.compressed.is_some() {
        return inflate(file, section, true).map(|v| v.unwrap_or_default());
    }
    let cap = cap_of(&section.name).unwrap_or(HEADERS_CAP);
    file.read_range(section.offset, section.size, cap)
        .map_err(|e| SectionRefusal::Read {
            section: section.name.clone(),
            error: e.to_string(),
        })
}

/// Checks a compressed section without keeping its bytes: a supported
/// method, a plausible claim, and a stream that inflates to exactly the
/// claim (stopping one byte past it). Uncompressed sections pass.
pub fn check_compressed(file: &TargetFile, section: &Section) -> Result<(), SectionRefusal> {
    if section.compressed.is_none() || section.nobits {
        return Ok(());
    }
    inflate(file, section, false).map(|_| ())
}

/// Inflates a compressed section in 64 KiB steps (a stream, never the
/// whole input at once), keeping the output when
/// `keep`; see [`check_compressed`].
fn inflate(
    file: &TargetFile,
    section: &Section,
    keep: bool,
) -> Result<Option<Vec<u8>>, SectionRefusal> {
    let Some(c) = section.compressed else {
        return Ok(None);
    };
    let name = || section.name.clone();
    if !c.zlib {
        return Err(SectionRefusal::Method { section: name() });
    }
    let cap = cap_of(&section.name)
        .unwrap_or(HEADERS_CAP)
        .min(INFLATED_CAP);
    let ratio_cap = c.size.saturating_mul(MAX_RATIO).saturating_add(4096);
    if c.inflated > cap || c.inflated > ratio_cap {
        return Err(SectionRefusal::Claim {
            section: name(),
            claimed: c.inflated,
            compressed: c.size,
            cap,
        });
    }
    if c.offset
        .checked_add(c.size)
        .is_none_or(|end| end > file.size)
    {
        return Err(SectionRefusal::OutOfFile { section: name() });
    }
    let bad = |found: String| SectionRefusal::Inflate {
        section: name(),
        claimed: c.inflated,
        found,
    };
    let compressed = Range {
        file: file.file(),
        pos: c.offset,
        end: c.offset + c.size,
    };
    let mut z = io::Read::take(
        flate2::read::ZlibDecoder::new(compressed),
        c.inflated.saturating_add(1),
    );
    let mut kept = if keep {
        Vec::with_capacity(c.inflated as usize)
    } else {
        Vec::new()
    };
    let mut chunk = vec![0u8; 64 << 10];
    let mut total = 0u64;
    loop {
        let n = match io::Read::read(&mut z, &mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                return Err(bad("corrupt data".into()))
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(bad("a truncated stream".into()))
            }
            Err(e) => {
                return Err(SectionRefusal::Read {
                    section: name(),
                    error: e.to_string(),
                })
            }
        };
        total += n as u64;
        if total > c.inflated {
            return Err(bad("more".into()));
        }
        if keep {
            kept.extend_from_slice(&chunk[..n]);
        }
    }
    if total != c.inflated {
        return Err(bad(format!("{total} bytes")));
    }
    Ok(keep.then_some(kept))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::{OpenPolicy, Root};
    use std::path::Path;

    fn open(path: &Path) -> TargetFile {
        Root::host()
            .unwrap()
            .open(path, &OpenPolicy::confined())
            .unwrap()
    }

    fn own_exe() -> TargetFile {
        open(&std::fs::read_link("/proc/self/exe").unwrap())
    }

    #[test]
    fn summarizes_our_own_binary() {
        let f = own_exe();
        let s = summarize(&f).unwrap();
        assert!(s.x86_64 == cfg!(target_arch = "x86_64"));
        assert!(s.section(".text").is_some());
        assert!(s.segments.iter().any(|seg| seg.executable));
        let eh = s.section(".eh_frame").unwrap();
        let bytes = read_section(&f, eh).unwrap();
        assert_eq!(bytes.len() as u64, eh.size);
        s.check_sizes(f.size, &[".symtab", ".strtab", ".eh_frame"])
            .unwrap();
    }

    #[test]
    fn not_elf_is_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        std::fs::write(&p, "#!/bin/sh\n").unwrap();
        assert!(matches!(summarize(&open(&p)), Err(ElfError::NotElf)));
        std::fs::write(&p, format!("\x7fELF\x02{}", "garbage ".repeat(16))).unwrap();
        assert!(matches!(summarize(&open(&p)), Err(ElfError::Malformed(_))));
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// A file holding `bytes` as one compressed section claiming `claim`.
    fn compressed(bytes: &[u8], claim: u64) -> (tempfile::TempDir, TargetFile, Section) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        std::fs::write(&p, bytes).unwrap();
        let f = open(&p);
        let s = Section {
            name: ".debug_info".into(),
            addr: 0,
            offset: 0,
            size: bytes.len() as u64,
            nobits: false,
            compressed: Some(Compressed {
                zlib: true,
                offset: 0,
                size: bytes.len() as u64,
                inflated: claim,
            }),
        };
        (dir, f, s)
    }

    #[test]
    fn compressed_sections_must_inflate_to_their_claim() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let z = zlib(&data);
        let (_d, f, s) = compressed(&z, data.len() as u64);
        check_compressed(&f, &s).unwrap();
        assert_eq!(read_section(&f, &s).unwrap(), data);
        // Claiming less: a bomb, stopped one byte past the claim.
        let (_d, f, s) = compressed(&z, 1000);
        assert!(matches!(
            check_compressed(&f, &s),
            Err(SectionRefusal::Inflate { .. })
        ));
        // Claiming more: found short.
        let (_d, f, s) = compressed(&z, data.len() as u64 + 1);
        let e = check_compressed(&f, &s).unwrap_err();
        assert!(e.to_string().contains("300000 bytes"), "{e}");
        // Claims beyond the cap or the ratio are refused before inflating.
        let (_d, f, s) = compressed(&z, 1 << 47);
        assert!(matches!(
            check_compressed(&f, &s),
            Err(SectionRefusal::Claim { .. })
        ));
        let zeros = zlib(&vec![0u8; 8 << 20]);
        let (_d, f, s) = compressed(&zeros, 8 << 20);
        check_compressed(&f, &s).unwrap();
        let (_d, f, s) = compressed(&zeros[..zeros.len() / 2], 8 << 20);
        assert!(check_compressed(&f, &s).is_err());
        // Corrupt data.
        let (_d, f, s) = compressed(b"\x78\x9cnot deflate at all", 100);
        assert!(matches!(
            check_compressed(&f, &s),
            Err(SectionRefusal::Inflate { .. })
        ));
    }

    #[test]
    fn sizes_beyond_caps_or_the_file_are_refused() {
        let s = Section {
            name: ".eh_frame".into(),
            addr: 0,
            offset: 4096,
            size: 256 << 20,
            nobits: false,
            compressed: None,
        };
        let sum = Summary {
            sections: vec![s.clone()],
            ..Summary::default()
        };
        let e = sum.check_sizes(1 << 30, &[".eh_frame"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            ".eh_frame of 268435456 bytes, more than the cap of 67108864"
        );
        let small = Section { size: 100, ..s };
        let sum = Summary {
            sections: vec![small],
            ..Summary::default()
        };
        assert!(matches!(
            sum.check_sizes(4100, &[".eh_frame"]),
            Err(SectionRefusal::OutOfFile { .. })
        ));
        sum.check_sizes(8192, &[".eh_frame"]).unwrap();
    }
}
