//! [`Profile`]: a merged multiset of folded stacks, weighted in one unit.

use std::hash::BuildHasher;
use std::io::{self, Write};
use std::path::Path;

use rustc_hash::FxBuildHasher;

use crate::folded::{LineReader, ReadOptions, SkippedLines};
use crate::io::Input;
use crate::unit::{pow10, Count, Measure, Unit};
use crate::{folded, Error, ParseErrorKind};

/// A distinct stack: where its text is in the [`Arena`], its count, and its
/// hash, kept so that growing the table never reads the text again.
#[derive(Clone, Copy)]
struct Entry {
    /// Chunk (high 32 bits) and offset in it (low 32 bits) of the text.
    at: u64,
    len: u32,
    /// The high half of the text's FxHash: see [`table_hash`].
    hash: u32,
    count: u64,
}

/// The stacks' text, appended to large chunks that never move: a distinct
/// stack costs its bytes and no allocation of its own.
#[derive(Clone, Default)]
struct Arena {
    chunks: Vec<String>,
}

/// Bytes of an arena chunk (a longer stack gets a chunk of its own).
const CHUNK: usize = 4 << 20;

impl Arena {
    fn push(&mut self, text: &str) -> u64 {
        let fits = self
            .chunks
            .last()
            .is_some_and(|c| c.capacity() - c.len() >= text.len());
        if !fits {
            self.chunks
                .push(String::with_capacity(CHUNK.max(text.len())));
        }
        let index = self.chunks.len() - 1;
        let chunk = &mut self.chunks[index];
        let offset = chunk.len();
        chunk.push_str(text);
        ((index as u64) << 32) | offset as u64
    }

    fn get(&self, e: &Entry) -> &str {
        let chunk = &self.chunks[(e.at >> 32) as usize];
        let offset = (e.at & 0xffff_ffff) as usize;
        &chunk[offset..offset + e.len as usize]
    }
}

/// The high half of a stack's FxHash, stored in its entry.
fn hash_of(stack: &str) -> u32 {
    (FxBuildHasher.hash_one(stack) >> 32) as u32
}

/// The table's 64-bit hash of a stored 32-bit one (the table takes its
/// bucket from the low bits and a tag from the high ones: both must vary).
fn table_hash(hash: u32) -> u64 {
    u64::from(hash).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Stacks (root first, frames joined by `;`) with their counts, in one
/// [`Unit`] (samples unless said otherwise).
///
/// Counts are stored as integers: with [`Profile::decimals`] `d`, a stored
/// count `c` stands for `c / 10^d` of the unit (see [`crate::unit`]); `d` is 0
/// unless fractional counts were read. [`Profile::add`], [`Profile::get`],
/// [`Profile::iter`] and [`Profile::total`] speak in stored counts, so shares
/// are exact ratios of integers.
///
/// Memory is proportional to the distinct stacks, not to the input's text:
/// repeated stacks are merged as they are read. A distinct stack costs its
/// text and about 30 bytes (no allocation of its own). Stacks are kept, and
/// iterated, in the order they were first added.
#[derive(Clone, Default)]
pub struct Profile {
    /// Indices into `entries`, looked up by a stack's hash.
    table: hashbrown::HashTable<u32>,
    entries: Vec<Entry>,
    text: Arena,
    total: u64,
    unit: Unit,
    decimals: u8,
}

/// Why two profiles cannot be merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeError {
    /// The merged total would overflow 64 bits.
    Overflow,
    /// The profiles are in different units (this one's, the other's).
    Units(Unit, Unit),
}

impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        struct Stacks<'p>(&'p Profile);
        impl std::fmt::Debug for Stacks<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_map().entries(self.0.iter()).finish()
            }
        }
        f.debug_struct("Profile")
            .field("stacks", &Stacks(self))
            .field("total", &self.total)
            .field("unit", &self.unit)
            .field("decimals", &self.decimals)
            .finish()
    }
}

impl PartialEq for Profile {
    /// Same unit, same stacks with the same values (whatever the decimals
    /// they are stored with).
    fn eq(&self, other: &Profile) -> bool {
        let d = self.decimals.max(other.decimals);
        let (ka, kb) = (
            u128::from(pow10(d - self.decimals)),
            u128::from(pow10(d - other.decimals)),
        );
        self.unit == other.unit
            && u128::from(self.total) * ka == u128::from(other.total) * kb
            && self.len() == other.len()
            && self
                .iter()
                .all(|(s, c)| u128::from(c) * ka == u128::from(other.get(s)) * kb)
    }
}

impl Eq for Profile {}

impl Profile {
    /// An empty profile.
    pub fn new() -> Profile {
        Profile::default()
    }

    /// An empty profile of `unit`.
    pub fn with_unit(unit: Unit) -> Profile {
        Profile {
            unit,
            ..Profile::default()
        }
    }

    /// What the counts measure. Default is [`Unit::Samples`].
    pub fn unit(&self) -> Unit {
        self.unit
    }

    /// Sets what the counts measure (e.g. for a recording of time).
    pub fn set_unit(&mut self, unit: Unit) {
        self.unit = unit;
    }

    /// Decimals of the stored counts: a stored count `c` stands for `c / 10^decimals`.
    pub fn decimals(&self) -> u8 {
        self.decimals
    }

    /// The unit and decimals together: how a stored count reads.
    pub fn measure(&self) -> Measure {
        Measure {
            unit: self.unit,
            decimals: self.decimals,
        }
    }

    /// Stores counts with `decimals` decimals (at least the current ones),
    /// multiplying every stored count. Returns `false` (and changes nothing)
    /// if the total would overflow 64 bits.
    pub fn set_decimals(&mut self, decimals: u8) -> bool {
        assert!(decimals >= self.decimals, "decimals only grow");
        if decimals == self.decimals {
            return true;
        }
        let k = pow10(decimals - self.decimals);
        let Some(total) = self.total.checked_mul(k) else {
            return false;
        };
        // Every count is at most the total: none overflows.
        for e in self.entries.iter_mut() {
            e.count *= k;
        }
        self.total = total;
        self.decimals = decimals;
        true
    }

    /// Adds `count` (as written, in this profile's unit) to `stack`, storing
    /// counts with more decimals first if it needs them.
    pub fn add_count(&mut self, stack: &str, count: Count) -> Result<(), ParseErrorKind> {
        let overflow = || ParseErrorKind::TotalOverflow(folded::count_text(count));
        if count.decimals == self.decimals {
            // Whole counts in a profile of whole counts: the usual case.
            return if self.add(stack, count.value) {
                Ok(())
            } else {
                Err(overflow())
            };
        }
        if count.decimals > self.decimals && !self.set_decimals(count.decimals) {
            return Err(overflow());
        }
        let raw = count
            .at(self.decimals)
            .ok_or_else(|| ParseErrorKind::CountOverflow(folded::count_text(count)))?;
        if self.add(stack, raw) {
            Ok(())
        } else {
            Err(overflow())
        }
    }

    /// Adds `count` (stored units: see [`Profile::decimals`]) to `stack`.
    /// Returns `false` (and changes nothing) if the total would overflow 64 bits.
    pub fn add(&mut self, stack: &str, count: u64) -> bool {
        let Some(total) = self.total.checked_add(count) else {
            return false;
        };
        if count == 0 {
            return true;
        }
        self.total = total;
        let hash = hash_of(stack);
        let Profile {
            table,
            entries,
            text,
            ..
        } = self;
        match table.entry(
            table_hash(hash),
            |&i| {
                let e = &entries[i as usize];
                e.hash == hash && text.get(e) == stack
            },
            |&i| table_hash(entries[i as usize].hash),
        ) {
            hashbrown::hash_table::Entry::Occupied(e) => entries[*e.get() as usize].count += count,
            hashbrown::hash_table::Entry::Vacant(v) => {
                let len = u32::try_from(stack.len()).expect("a stack shorter than 4 GiB");
                let at = text.push(stack);
                v.insert(u32::try_from(entries.len()).expect("fewer than 2^32 stacks"));
                entries.push(Entry {
                    at,
                    len,
                    hash,
                    count,
                });
            }
        }
        true
    }

    /// Gives back the room kept for stacks to come (the stacks' list grows
    /// by doubling: up to half of it may be unused), once a profile is read.
    fn shrink(&mut self) {
        self.entries.shrink_to_fit();
        if let Some(last) = self.text.chunks.last_mut() {
            last.shrink_to_fit();
        }
    }

    /// Adds every stack of `other`. Returns `false` if the total would
    /// overflow or the units differ ([`Profile::try_merge`] says which).
    pub fn merge(&mut self, other: Profile) -> bool {
        self.try_merge(other).is_ok()
    }

    /// Adds every stack of `other`, which must be of the same unit (an empty
    /// profile takes the other's). Counts are stored with the decimals of
    /// whichever has more. On error nothing changes.
    pub fn try_merge(&mut self, mut other: Profile) -> Result<(), MergeError> {
        if self.entries.is_empty() && self.total == 0 {
            *self = other;
            return Ok(());
        }
        if other.entries.is_empty() && other.total == 0 {
            return Ok(());
        }
        if self.unit != other.unit {
            return Err(MergeError::Units(self.unit, other.unit));
        }
        let decimals = self.decimals.max(other.decimals);
        let fits = |p: &Profile| p.total.checked_mul(pow10(decimals - p.decimals));
        match (fits(self), fits(&other)) {
            (Some(a), Some(b)) if a.checked_add(b).is_some() => {}
            _ => return Err(MergeError::Overflow),
        }
        self.set_decimals(decimals);
        other.set_decimals(decimals);
        let total = self.total + other.total;
        for (stack, count) in other.iter() {
            self.add(stack, count);
        }
        self.total = total;
        Ok(())
    }

    /// The total of all stored counts.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The number of distinct stacks.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the profile holds no samples.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The count of one stack (0 if absent).
    pub fn get(&self, stack: &str) -> u64 {
        self.index_of(stack).map_or(0, |i| self.entries[i].count)
    }

    /// The stacks, in the order they were first added.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, u64)> + Clone + '_ {
        self.entries.iter().map(|e| (self.text.get(e), e.count))
    }

    /// Where `stack` is in [`Profile::iter`]'s order, if present.
    pub fn index_of(&self, stack: &str) -> Option<usize> {
        let hash = hash_of(stack);
        self.table
            .find(table_hash(hash), |&i| {
                let e = &self.entries[i as usize];
                e.hash == hash && self.text.get(e) == stack
            })
            .map(|&i| i as usize)
    }

    /// Stack `i` of [`Profile::iter`]'s order and its count.
    ///
    /// # Panics
    /// If `i` is not below [`Profile::len`].
    pub fn stack_at(&self, i: usize) -> (&str, u64) {
        let e = &self.entries[i];
        (self.text.get(e), e.count)
    }

    /// The stacks sorted by their text, as flame graph renderers want them.
    pub fn sorted(&self) -> Vec<(&str, u64)> {
        let mut v: Vec<(&str, u64)> = self.iter().collect();
        {
            use rayon::slice::ParallelSliceMut;
            v.par_sort_unstable_by(|a, b| a.0.cmp(b.0));
        }
        v
    }

    /// Keeps the stacks for which `keep` is true (their text stays in memory
    /// until the profile is dropped).
    pub fn retain(&mut self, mut keep: impl FnMut(&str, u64) -> bool) {
        let mut total = 0u64;
        let text = &self.text;
        self.entries.retain(|e| {
            let k = keep(text.get(e), e.count);
            if k {
                total += e.count;
            }
            k
        });
        self.total = total;
        let entries = &self.entries;
        self.table.clear();
        self.table
            .reserve(entries.len(), |&i| table_hash(entries[i as usize].hash));
        for i in 0..entries.len() as u32 {
            self.table
                .insert_unique(table_hash(entries[i as usize].hash), i, |&j| {
                    table_hash(entries[j as usize].hash)
                });
        }
    }

    /// Writes the profile as folded lines, sorted by stack, after the unit
    /// header if its unit needs one.
    pub fn write_folded<W: Write + ?Sized>(&self, w: &mut W) -> io::Result<()> {
        folded::write_header(w, self.unit)?;
        for (stack, count) in self.sorted() {
            folded::write_line(w, stack, count, self.decimals)?;
        }
        Ok(())
    }

    /// Reads folded lines from `input` and merges them into this profile; an
    /// empty profile takes the input's unit, one with samples must have it.
    ///
    /// Errors name the input and line; see [`crate::folded`] for what is tolerated.
    pub fn read_folded(&mut self, input: &mut Input) -> Result<(), Error> {
        self.read_folded_with(input, &ReadOptions::default())
            .map(|_| ())
    }

    /// [`Profile::read_folded`] with options: with
    /// [`ReadOptions::skip_bad_lines`], unreadable lines are skipped and
    /// returned.
    pub fn read_folded_with(
        &mut self,
        input: &mut Input,
        opts: &ReadOptions,
    ) -> Result<Option<SkippedLines>, Error> {
        let mut reader = LineReader::new(input.name(), opts);
        // The input's unit is fixed by its first sample (a later header must
        // repeat it): check it against this profile's once.
        let mut unit_checked = false;
        input.for_each_line_checked(|line_no, line| {
            let Some((stack, count)) = reader.line(line_no, line)? else {
                return Ok(());
            };
            if !unit_checked {
                unit_checked = true;
                let unit = reader.unit();
                if self.is_empty() && self.total == 0 {
                    self.unit = unit;
                } else if self.unit != unit {
                    return Err(reader.error(
                        line_no,
                        ParseErrorKind::MixedUnits {
                            earlier: self.unit,
                            header: unit,
                        },
                    ));
                }
            }
            match self.add_count(stack, count) {
                Ok(()) => Ok(()),
                Err(kind) => reader.bad(line_no, kind),
            }
        })?;
        Ok(reader.finish())
    }

    /// Reads a folded file (plain, gzip, or `-` for stdin), or the profile
    /// embedded in an SVG nflame wrote. An input without any sample is an
    /// [`Error::Empty`].
    pub fn from_path(path: impl AsRef<Path>) -> Result<Profile, Error> {
        Profile::from_input(&mut Input::open(path)?)
    }

    /// [`Profile::from_path`] with options; returns the lines skipped.
    pub fn from_path_with(
        path: impl AsRef<Path>,
        opts: &ReadOptions,
    ) -> Result<(Profile, Option<SkippedLines>), Error> {
        Profile::from_input_with(&mut Input::open(path)?, opts)
    }

    /// Like [`Profile::from_path`], for an input already open.
    pub fn from_input(input: &mut Input) -> Result<Profile, Error> {
        Profile::from_input_with(input, &ReadOptions::default()).map(|(p, _)| p)
    }

    /// [`Profile::from_input`] with options; returns the lines skipped.
    pub fn from_input_with(
        input: &mut Input,
        opts: &ReadOptions,
    ) -> Result<(Profile, Option<SkippedLines>), Error> {
        if input.starts_like_svg()? {
            let mut embedded = crate::embed::read_svg(input)?;
            return match embedded.profiles.iter().position(|(r, _)| r == "profile") {
                Some(i) => Ok((embedded.profiles.swap_remove(i).1, None)),
                None => Err(Error::DiffSvg {
                    path: input.path().to_path_buf(),
                }),
            };
        }
        let mut profile = Profile::new();
        let skipped = profile.read_folded_with(input, opts)?;
        if profile.total() == 0 {
            return Err(Error::Empty {
                path: input.path().to_path_buf(),
            });
        }
        profile.shrink();
        Ok((profile, skipped))
    }

    /// Reads and merges several folded files, in parallel.
    pub fn from_paths<P: AsRef<Path> + Sync>(paths: &[P]) -> Result<Profile, Error> {
        Profile::from_paths_with(paths, &ReadOptions::default()).map(|(p, _)| p)
    }

    /// [`Profile::from_paths`] with options; returns the lines skipped, input
    /// by input. Profiles of different units are an [`Error::UnitMismatch`].
    pub fn from_paths_with<P: AsRef<Path> + Sync>(
        paths: &[P],
        opts: &ReadOptions,
    ) -> Result<(Profile, Vec<SkippedLines>), Error> {
        use rayon::prelude::*;
        let profiles: Vec<(Profile, Option<SkippedLines>)> = paths
            .par_iter()
            .map(|p| Profile::from_path_with(p, opts))
            .collect::<Result<_, _>>()?;
        let mut merged = Profile::new();
        let mut first = None;
        let mut skipped = Vec::new();
        for (path, (p, s)) in paths.iter().zip(profiles) {
            let name = || crate::io::display_name(path.as_ref());
            match merged.try_merge(p) {
                Ok(()) => {}
                Err(MergeError::Overflow) => {
                    return Err(Error::InvalidOption(
                        "the merged inputs add up to more than 2^64-1 (a 64-bit counter)".into(),
                    ))
                }
                Err(MergeError::Units(a, b)) => {
                    return Err(Error::UnitMismatch {
                        what: "merging profiles".into(),
                        first: first.unwrap_or_else(|| "the inputs before".into()),
                        first_unit: a,
                        second: name(),
                        second_unit: b,
                    })
                }
            }
            if first.is_none() {
                first = Some(name());
            }
            skipped.extend(s);
        }
        Ok((merged, skipped))
    }

    /// Builds a profile of samples from `(stack, count)` pairs (for tests and other crates).
    pub fn from_stacks<'a>(stacks: impl IntoIterator<Item = (&'a str, u64)>) -> Profile {
        let mut p = Profile::new();
        for (s, c) in stacks {
            p.add(s, c);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use std::path::PathBuf;

    fn read(text: &str) -> Result<Profile, Error> {
        let mut input =
            Input::from_reader(PathBuf::from("t.folded"), Cursor::new(text.to_string()))?;
        let mut p = Profile::new();
        p.read_folded(&mut input)?;
        Ok(p)
    }

    #[test]
    fn merges_and_sorts() {
        let p = read("b;c 2\na;b 1\r\n\n# x\nb;c 3\n").unwrap();
        assert_eq!(p.total(), 6);
        assert_eq!(p.sorted(), vec![("a;b", 1), ("b;c", 5)]);
        let mut out = Vec::new();
        p.write_folded(&mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "a;b 1\nb;c 5\n");
    }

    #[test]
    fn error_names_file_and_line() {
        let e = read("a 1\nb 2\nc x\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.folded:3: no sample count at the end of the line (expected `frame;frame COUNT`)"
        );
        let e = read("a 18446744073709551615\nb 1\n").unwrap_err();
        assert!(e.to_string().starts_with("t.folded:2:"), "{e}");
        let e = read("a 1\n\u{0}\u{ff}").unwrap_err();
        assert!(e.to_string().contains("t.folded"));
    }

    #[test]
    fn invalid_utf8_is_reported_with_line() {
        let mut input = Input::from_reader(
            PathBuf::from("bin.folded"),
            Cursor::new(b"a 1\nb\xff 2\n".to_vec()),
        )
        .unwrap();
        let e = Profile::new().read_folded(&mut input).unwrap_err();
        assert_eq!(e.to_string(), "bin.folded:2: the line is not valid UTF-8");
    }

    fn read_with(text: &str, skip: bool) -> Result<(Profile, Option<SkippedLines>), Error> {
        let mut input =
            Input::from_reader(PathBuf::from("t.folded"), Cursor::new(text.to_string()))?;
        Profile::from_input_with(&mut input, &ReadOptions::skipping(skip))
    }

    #[test]
    fn decimal_counts_add_up_exactly() {
        // 0.1 + 0.2 is 0.3 here, not 0.30000000000000004.
        let p = read("a 0.1\nb 0.2\na 31.0\nc 6.\n").unwrap();
        assert_eq!((p.total(), p.decimals()), (373, 1));
        assert_eq!(p.measure().format(p.total()), "37.3");
        assert_eq!(p.get("a"), 311);
        // A line with more decimals stores the earlier counts with them too.
        let p = read("a 1\nb 0.25\n").unwrap();
        assert_eq!(p.sorted(), vec![("a", 100), ("b", 25)]);
        let mut out = Vec::new();
        p.write_folded(&mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "a 1\nb 0.25\n");
        // Equal values are equal profiles, whatever their decimals.
        assert_eq!(p, read("b 0.250\na 1.0\n").unwrap());
        assert_ne!(p, read("b 0.26\na 1\n").unwrap());
        // Decimals that overflow the total are an error naming the line.
        let e = read("a 18446744073709551615\nb 0.5\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.folded:2: the total overflows a 64-bit counter when this line's count (0.5) is added"
        );
    }

    #[test]
    fn total_overflow_says_so() {
        let e = read("a 18446744073709551615\nb 10\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.folded:2: the total overflows a 64-bit counter when this line's count (10) is added"
        );
    }

    #[test]
    fn unit_header_travels() {
        let p = read("# unit: microseconds\nmain;read 1500\nmain;poll 500\n").unwrap();
        assert_eq!(p.unit(), Unit::Microseconds);
        let mut out = Vec::new();
        p.write_folded(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "# unit: microseconds\nmain;poll 500\nmain;read 1500\n"
        );
        assert_eq!(read(&text).unwrap(), p);
        // No header: samples, and no header is written back.
        let s = read("main;read 3\n").unwrap();
        assert_eq!(s.unit(), Unit::Samples);
        assert_ne!(s, read("# unit: us\nmain;read 3\n").unwrap());
        // A header after samples must name their unit.
        assert!(read("a 1\n# unit: samples\nb 2\n").is_ok());
        let e = read("a 1\n# unit: microseconds\nb 2\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.folded:2: a `# unit: microseconds` header after samples in samples: the input mixes units"
        );
        let e = read("# unit: furlongs\na 1\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("t.folded:1: unknown unit \"furlongs\""),
            "{e}"
        );
        // Merging into a profile of another unit is refused.
        let mut p2 = Profile::from_stacks([("a", 1)]);
        let mut input = Input::from_reader(
            PathBuf::from("us.folded"),
            Cursor::new(b"# unit: microseconds\nb 2\n".to_vec()),
        )
        .unwrap();
        let e = p2.read_folded(&mut input).unwrap_err();
        assert!(e.to_string().contains("mixes units"), "{e}");
    }

    #[test]
    fn skipping_bad_lines_counts_them_and_names_the_first() {
        let text = "a 1\nb 1x\n\nc\nd 2 3\ne 4\n";
        let e = read_with(text, false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.folded:2: sample count \"1x\" is not a non-negative number"
        );
        let (p, skipped) = read_with(text, true).unwrap();
        assert_eq!(p.sorted(), vec![("a", 1), ("e", 4)]);
        let skipped = skipped.unwrap();
        assert_eq!(skipped.count, 3);
        assert_eq!(skipped.first.line, 2);
        assert_eq!(
            skipped.to_string(),
            "skipped 3 unreadable lines of t.folded; the first: t.folded:2: sample count \"1x\" is not a non-negative number"
        );
        assert_eq!(read_with("a 1\n", true).unwrap().1, None);
        // Invalid UTF-8 is a bad line too.
        let mut input = Input::from_reader(
            PathBuf::from("bin.folded"),
            Cursor::new(b"a 1\nb\xff 2\nc 3\n".to_vec()),
        )
        .unwrap();
        let (p, skipped) =
            Profile::from_input_with(&mut input, &ReadOptions::skipping(true)).unwrap();
        assert_eq!(p.total(), 4);
        assert_eq!(skipped.unwrap().first.kind, ParseErrorKind::InvalidUtf8);
        // What would change the meaning of the rest is never skipped.
        assert!(read_with("a 18446744073709551615\nb 1\n", true).is_err());
        assert!(read_with("a 1\n# unit: us\nb 1\n", true).is_err());
        // Nothing readable at all: no samples.
        assert!(matches!(
            read_with("x\ny\n", true).unwrap_err(),
            Error::Empty { .. }
        ));
    }

    #[test]
    fn merging_needs_one_unit() {
        let mut a = Profile::from_stacks([("a", 1)]);
        let mut us = Profile::with_unit(Unit::Microseconds);
        us.add("a", 5);
        assert_eq!(
            a.clone().try_merge(us.clone()),
            Err(MergeError::Units(Unit::Samples, Unit::Microseconds))
        );
        assert!(!a.merge(us.clone()));
        assert_eq!(a.total(), 1, "a failed merge changes nothing");
        // An empty profile takes the other's unit.
        let mut e = Profile::new();
        assert!(e.merge(us.clone()));
        assert_eq!(e.unit(), Unit::Microseconds);
        // Decimals: the larger wins.
        let mut half = Profile::new();
        half.add_count(
            "b",
            Count {
                value: 5,
                decimals: 1,
            },
        )
        .unwrap();
        assert!(a.merge(half));
        assert_eq!((a.total(), a.decimals()), (15, 1));
        assert_eq!(a.sorted(), vec![("a", 10), ("b", 5)]);
    }

    #[test]
    fn retain_updates_total() {
        let mut p = Profile::from_stacks([("a;x", 3), ("b;y", 4)]);
        p.retain(|s, _| s.contains('x'));
        assert_eq!(p.total(), 3);
        assert_eq!(p.len(), 1);
    }
}
