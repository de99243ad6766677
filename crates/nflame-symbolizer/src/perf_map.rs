//! JIT symbol maps (`/tmp/perf-PID.map`), the interface JIT compilers use to
//! name generated code for profilers.
//!
//! Each line is `START SIZE NAME` with hexadecimal start and size. The file is
//! read from the host's `/tmp/perf-PID.map`, or, for a process in a container,
//! from `/proc/PID/root/tmp/perf-NSPID.map` (NSPID being its pid inside its own
//! pid namespace). Files outlive their process, so exited processes are named
//! too when the file is on the host. Later lines win over earlier ones that
//! cover the same address (code regions get reused).

use std::fs;
use std::path::{Path, PathBuf};

use nflame_procfs::process::namespace_pid;

/// The parsed symbols of one perf map file.
#[derive(Debug, Clone, Default)]
pub struct PerfMap {
    /// (start, end, line number, name), sorted by start.
    entries: Vec<(u64, u64, usize, String)>,
    /// The largest entry size, bounding the backwards scan in [`Self::find`].
    max_len: u64,
}

impl PerfMap {
    /// Parses the text of a perf map. Malformed lines are skipped.
    pub fn parse(text: &str) -> PerfMap {
        let mut entries: Vec<(u64, u64, usize, String)> = text
            .lines()
            .enumerate()
            .filter_map(|(i, line)| {
                let mut parts = line.trim_start().splitn(3, ' ');
                let start = parse_hex(parts.next()?)?;
                let size = parse_hex(parts.next()?)?;
                let name = parts.next()?.trim_end();
                (size > 0 && !name.is_empty())
                    .then(|| (start, start.saturating_add(size), i, name.to_owned()))
            })
            .collect();
        entries.sort_by_key(|e| (e.0, e.2));
        let max_len = entries.iter().map(|e| e.1 - e.0).max().unwrap_or(0);
        PerfMap { entries, max_len }
    }

    /// Reads the perf map of process `pid` (see the module docs); `None` if
    /// there is none.
    pub fn for_process(pid: u32, live: bool) -> Option<PerfMap> {
        Self::paths(pid, live)
            .iter()
            .find_map(|p| fs::read_to_string(p).ok())
            .map(|text| PerfMap::parse(&text))
    }

    fn paths(pid: u32, live: bool) -> Vec<PathBuf> {
        let mut paths = vec![PathBuf::from(format!("/tmp/perf-{pid}.map"))];
        if live {
            let nspid = namespace_pid(pid);
            let inner = format!("/proc/{pid}/root/tmp/perf-{nspid}.map");
            if Path::new(&inner) != paths[0] {
                paths.push(PathBuf::from(inner));
            }
        }
        paths
    }

    /// The name of the JIT symbol covering `addr`, the latest one if several do.
    pub fn find(&self, addr: u64) -> Option<&str> {
        let upper = self.entries.partition_point(|e| e.0 <= addr);
        self.entries[..upper]
            .iter()
            .rev()
            .take_while(|e| addr - e.0 < self.max_len)
            .filter(|e| addr < e.1)
            .max_by_key(|e| e.2)
            .map(|e| e.3.as_str())
    }

    /// Number of symbols.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the map has no symbols.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
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
}
