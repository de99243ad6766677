//! JIT symbol maps (`/tmp/perf-PID.map`), the interface JIT compilers use to
//! name generated code for profilers.
//!
//! Each line is `START SIZE NAME` with hexadecimal start and size. Later
//! lines win over earlier ones that cover the same address (code regions
//! get reused).
//!
//! Where the map is read ([`PerfMap::for_process`]), and what is refused:
//! while the process runs, its own `/tmp/perf-NSPID.map` (NSPID being its
//! pid inside its pid namespace), resolved inside its root (a link on the
//! way out of a container leads nowhere); then (another pid namespace, or
//! the process exited) the host's `/tmp/perf-PID.map`. The file itself
//! must not be a link (`/tmp` is everybody's: anyone may plant a link there
//! for someone else's process), but a regular file (a FIFO or a device is
//! never opened for reading), at most [`MAX_FILE`] bytes, and owned by the process's user or
//! root, as perf requires (`/tmp` is everybody's: anyone may plant a map
//! there for someone else's process); after the process exited its user is
//! unknown, and only root's maps are used. At most [`MAX_ENTRIES`] entries
//! are kept, and an entry covering more than [`MAX_ENTRY_SIZE`] bytes is
//! dropped (one line `0 ffffffffffffffff` would otherwise name every
//! address). Each refusal is reported as a `skipped` line.
//!
//! Lookups are a binary search over disjoint ranges: overlapping entries
//! are resolved once, when the map is read (the latest line covering each
//! address), so no entry makes a lookup scan others.

use std::collections::BinaryHeap;
use std::path::PathBuf;

use nflame_procfs::files::{self, FileError, OpenPolicy, Root};
use nflame_procfs::process::{namespace_pid, uids};

/// Largest perf map read: 64 MiB (about two million entries).
pub const MAX_FILE: u64 = 64 << 20;
/// Most entries kept; a map with more is not used.
pub const MAX_ENTRIES: usize = 1 << 22;
/// Largest code range one entry may name (4 GiB); larger ones are dropped.
pub const MAX_ENTRY_SIZE: u64 = 1 << 32;

/// One named range: `[start, end)`, the name at `name` in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    start: u64,
    end: u64,
    /// Byte offset of the name in the text (it runs to the end of its line).
    name: u32,
    /// Line number (later lines win).
    line: u32,
}

/// The parsed symbols of one perf map file.
#[derive(Debug, Clone, Default)]
pub struct PerfMap {
    text: String,
    /// Disjoint, sorted by start.
    ranges: Vec<Entry>,
    /// Entries in the file (before overlaps were resolved).
    entries: usize,
    /// Entries dropped for covering more than [`MAX_ENTRY_SIZE`].
    huge: usize,
}

impl PerfMap {
    /// Parses the text of a perf map. Malformed lines are skipped, and so
    /// are entries covering more than 4 GiB.
    pub fn parse(text: &str) -> PerfMap {
        PerfMap::from_text(text.to_owned())
    }

    fn from_text(text: String) -> PerfMap {
        let mut entries: Vec<Entry> = Vec::new();
        let mut huge = 0;
        let mut at = 0usize;
        for (line_no, line) in text.split_inclusive('\n').enumerate() {
            let line_start = at;
            at += line.len();
            let Some(e) = parse_line(line, line_start, line_no) else {
                continue;
            };
            if e.end - e.start > MAX_ENTRY_SIZE {
                huge += 1;
                continue;
            }
            entries.push(e);
        }
        let count = entries.len() + huge;
        entries.sort_unstable_by_key(|e| (e.start, e.line));
        let disjoint = entries.windows(2).all(|w| w[0].end <= w[1].start);
        let ranges = if disjoint { entries } else { paint(&entries) };
        PerfMap {
            text,
            ranges,
            entries: count,
            huge,
        }
    }

    /// Reads the perf map of process `pid` (see the module docs): `None` if
    /// there is none, or it was refused (said in `skips`, a line each).
    pub fn for_process(pid: u32, live: bool, skips: &mut Vec<String>) -> Option<PerfMap> {
        let mut candidates: Vec<(PathBuf, Option<Root>, Vec<u32>)> = Vec::new();
        let host = PathBuf::from(format!("/tmp/perf-{pid}.map"));
        let mut host_too = true;
        if live {
            let owners = uids(pid).map(|(r, e)| vec![r, e]).unwrap_or_default();
            let nspid = namespace_pid(pid);
            if let Ok(root) = Root::of_process(pid) {
                // The host's file is another one only in another pid
                // namespace or mount namespace.
                host_too = nspid != pid || !files::same_mount_namespace(pid);
                let own = PathBuf::from(format!("/tmp/perf-{nspid}.map"));
                candidates.push((own, Some(root), owners.clone()));
            }
            if host_too {
                candidates.push((host, None, owners));
            }
        } else {
            candidates.push((host, None, Vec::new()));
        }
        for (path, root, owners) in candidates {
            let (root, policy) = match root {
                Some(r) => (r, OpenPolicy::no_final_link()),
                None => match Root::host() {
                    Ok(r) => (r, OpenPolicy::no_links()),
                    Err(_) => continue,
                },
            };
            let policy = policy.max_size(MAX_FILE).owned_by(owners);
            let shown = files::shown(pid, &path);
            let file = match root.open(&path, &policy) {
                Ok(f) => f,
                Err(FileError::Missing) => continue,
                Err(FileError::Refused(r)) => {
                    skips.push(format!("{shown}: {r}"));
                    return None;
                }
                Err(FileError::Io(e)) => {
                    skips.push(format!("{shown}: cannot read: {e}"));
                    return None;
                }
            };
            let bytes = match file.read_all(MAX_FILE) {
                Ok(b) => b,
                Err(e) => {
                    skips.push(format!("{shown}: {e}"));
                    return None;
                }
            };
            let text = String::from_utf8(bytes)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
            let map = PerfMap::from_text(text);
            if map.entries > MAX_ENTRIES {
                skips.push(format!(
                    "{shown}: {} entries, more than the cap of {MAX_ENTRIES}",
                    map.entries
                ));
                return None;
            }
            if map.huge > 0 {
                skips.push(format!(
                    "{shown}: {} entr{} covering more than {MAX_ENTRY_SIZE} bytes ignored",
                    map.huge,
                    if map.huge == 1 { "y" } else { "ies" }
                ));
            }
            return Some(map);
        }
        None
    }

    /// The name of the JIT symbol covering `addr`, the latest one if several do.
    pub fn find(&self, addr: u64) -> Option<&str> {
        let i = self.ranges.partition_point(|e| e.start <= addr);
        let e = self.ranges.get(i.checked_sub(1)?)?;
        (addr < e.end).then(|| self.name(e))
    }

    fn name(&self, e: &Entry) -> &str {
        let rest = &self.text[e.name as usize..];
        let line = rest.split('\n').next().unwrap_or(rest);
        line.trim_end()
    }

    /// Number of symbols (entries in the file, dropped ones included).
    pub fn len(&self) -> usize {
        self.entries
    }

    /// Whether the map has no symbols.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }
}

/// `START SIZE NAME` at byte `at` of the text; `None` for anything else.
fn parse_line(line: &str, at: usize, line_no: usize) -> Option<Entry> {
    let body = line.trim_start();
    let lead = line.len() - body.len();
    let mut parts = body.splitn(3, ' ');
    let start_text = parts.next()?;
    let size_text = parts.next()?;
    let name = parts.next()?;
    let start = parse_hex(start_text)?;
    let size = parse_hex(size_text)?;
    let trimmed = name.trim_end();
    if size == 0 || trimmed.is_empty() {
        return None;
    }
    let name_at = at + lead + start_text.len() + 1 + size_text.len() + 1;
    Some(Entry {
        start,
        end: start.saturating_add(size),
        name: u32::try_from(name_at).ok()?,
        line: u32::try_from(line_no).ok()?,
    })
}

/// Resolves overlapping entries (sorted by start) into disjoint ranges, each
/// named by the latest line covering it: a sweep over starts and ends with
/// the entries covering the current position in a heap by line number.
fn paint(entries: &[Entry]) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::with_capacity(entries.len());
    // (line, end, index): the latest line on top.
    let mut active: BinaryHeap<(u32, u64, usize)> = BinaryHeap::new();
    let mut next = 0;
    let Some(first) = entries.first() else {
        return out;
    };
    let mut pos = first.start;
    loop {
        while next < entries.len() && entries[next].start <= pos {
            let e = &entries[next];
            active.push((e.line, e.end, next));
            next += 1;
        }
        while active.peek().is_some_and(|&(_, end, _)| end <= pos) {
            active.pop();
        }
        let Some(&(_, end, idx)) = active.peek() else {
            match entries.get(next) {
                Some(e) => {
                    pos = e.start;
                    continue;
                }
                None => break,
            }
        };
        let stop = entries.get(next).map_or(end, |e| e.start.min(end));
        let e = entries[idx];
        match out.last_mut() {
            Some(last) if last.end == pos && last.line == e.line => last.end = stop,
            _ => out.push(Entry {
                start: pos,
                end: stop,
                ..e
            }),
        }
        pos = stop;
    }
    out
}

fn parse_hex(text: &str) -> Option<u64> {
    let t = text.strip_prefix("0x").unwrap_or(text);
    u64::from_str_radix(t, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_latest_covering_symbol() {
        let map = PerfMap::parse(
            "7f0000001000 100 LuaJIT trace #1 @ app.lua:10\n\
             garbage line\n\
             0x7f0000002000 0x20 jit_b\n\
             7f0000001000 40 LuaJIT trace #7\n",
        );
        assert_eq!(map.len(), 3);
        assert_eq!(map.find(0x7f0000001010), Some("LuaJIT trace #7"));
        assert_eq!(
            map.find(0x7f0000001050),
            Some("LuaJIT trace #1 @ app.lua:10")
        );
        assert_eq!(map.find(0x7f0000002010), Some("jit_b"));
        assert_eq!(map.find(0x7f0000002020), None);
        assert_eq!(map.find(0x1000), None);
    }

    #[test]
    fn overlaps_are_resolved_by_line_order() {
        // a covers 0x100..0x200; b (later) 0x150..0x160; c (earlier than b,
        // later than a) 0x140..0x180; d (first) 0x0..0x1000.
        let map = PerfMap::parse("0 1000 d\n100 100 a\n140 40 c\n150 10 b\n");
        let at = |a: u64| map.find(a);
        assert_eq!(at(0x50), Some("d"));
        assert_eq!(at(0x100), Some("a"));
        assert_eq!(at(0x13f), Some("a"));
        assert_eq!(at(0x140), Some("c"));
        assert_eq!(at(0x150), Some("b"));
        assert_eq!(at(0x15f), Some("b"));
        assert_eq!(at(0x160), Some("c"));
        assert_eq!(at(0x180), Some("a"));
        assert_eq!(at(0x200), Some("d"));
        assert_eq!(at(0xfff), Some("d"));
        assert_eq!(at(0x1000), None);
        // Ranges are disjoint, so a lookup is one binary search.
        assert!(map.ranges.windows(2).all(|w| w[0].end <= w[1].start));
    }

    #[test]
    fn an_entry_covering_everything_is_dropped() {
        let map = PerfMap::parse(
            "7f0000000000 1000 jit\n0 ffffffffffffffff all\nffffffffffffff00 ffff over\n",
        );
        assert_eq!(map.find(0x7f0000000010), Some("jit"));
        assert_eq!(map.find(0x10), None);
        assert_eq!(map.huge, 1);
        // An entry running past the end of the address space ends there.
        assert_eq!(map.find(u64::MAX - 1), Some("over"));
    }

    /// Lookups against a brute-force scan of every entry, on overlapping
    /// random ranges.
    #[test]
    fn painting_matches_a_scan() {
        let mut x: u64 = 0x1234_5678;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut text = String::new();
        let mut lines = Vec::new();
        for i in 0..300 {
            let start = rnd() % 0x4000;
            let size = 1 + rnd() % 0x400;
            text.push_str(&format!("{start:x} {size:x} f{i}\n"));
            lines.push((start, start + size, format!("f{i}")));
        }
        let map = PerfMap::parse(&text);
        for addr in 0..0x4500u64 {
            let want = lines
                .iter()
                .rev()
                .find(|(s, e, _)| *s <= addr && addr < *e)
                .map(|(_, _, n)| n.as_str());
            assert_eq!(map.find(addr), want, "at {addr:#x}");
        }
    }
}
