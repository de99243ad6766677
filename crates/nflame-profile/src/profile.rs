//! [`Profile`]: a merged multiset of folded stacks, weighted in one unit.

use std::hash::BuildHasher;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;

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
/// stack costs its bytes and no allocation of its own. Chunks may be shared
/// with another profile's arena ([`Profile::share_text`], clones): text is
/// only appended to a chunk this arena alone holds.
#[derive(Clone, Default)]
struct Arena {
    chunks: Vec<Arc<String>>,
}

/// Bytes of an arena chunk (a longer stack gets a chunk of its own).
const CHUNK: usize = 4 << 20;

impl Arena {
    fn push(&mut self, text: &str) -> u64 {
        let fits = self
            .chunks
            .last_mut()
            .and_then(Arc::get_mut)
            .is_some_and(|c| c.capacity() - c.len() >= text.len());
        if !fits {
            self.chunks
                .push(Arc::new(String::with_capacity(CHUNK.max(text.len()))));
        }
        let index = self.chunks.len() - 1;
        let chunk = Arc::get_mut(&mut self.chunks[index]).expect("a chunk of this arena alone");
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
        self.add_count_in(stack, count, None)
    }

    /// [`Profile::add_count`], sharing text with `reference` as
    /// [`Profile::add_in`] does.
    fn add_count_in(
        &mut self,
        stack: &str,
        count: Count,
        reference: Option<&Profile>,
    ) -> Result<(), ParseErrorKind> {
        let overflow = || ParseErrorKind::TotalOverflow(folded::count_text(count));
        if count.decimals == self.decimals {
            // Whole counts in a profile of whole counts: the usual case.
            return if self.add_in(stack, count.value, reference) {
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
        if self.add_in(stack, raw, reference) {
            Ok(())
        } else {
            Err(overflow())
        }
    }

    /// Adds `count` (stored units: see [`Profile::decimals`]) to `stack`.
    /// Returns `false` (and changes nothing) if the total would overflow 64 bits.
    pub fn add(&mut self, stack: &str, count: u64) -> bool {
        self.add_in(stack, count, None)
    }

    /// [`Profile::add`]; a new stack that `reference` holds too takes its
    /// text from there (see [`Profile::from_input_sharing`]).
    fn add_in(&mut self, stack: &str, count: u64, reference: Option<&Profile>) -> bool {
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
                let shared = reference.and_then(|r| r.find(hash, stack).map(|j| r.entries[j].at));
                let at = shared.unwrap_or_else(|| text.push(stack));
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
        if let Some(last) = self.text.chunks.last_mut().and_then(Arc::get_mut) {
            last.shrink_to_fit();
        }
    }

    /// Keeps the text of the stacks `other` holds too as `other`'s: such a
    /// stack's text is then stored once for both profiles (they share it),
    /// and this profile's own copy is freed. Two profiles compared (a diff's
    /// BEFORE and AFTER) usually share most of their stacks: this halves
    /// what their text costs. Nothing else changes: same stacks, counts and
    /// order. While it runs, this profile's old text is freed chunk by
    /// chunk as it is copied, so it needs little more than it frees.
    pub fn share_text(&mut self, other: &Profile) {
        use rayon::prelude::*;
        if self.entries.is_empty() || other.entries.is_empty() {
            return;
        }
        // Where each stack's text is in `other`, if it has the stack.
        const NONE: u64 = u64::MAX;
        let found: Vec<u64> = self
            .entries
            .par_iter()
            .map(|e| {
                let text = self.text.get(e);
                other
                    .find(e.hash, text)
                    .map_or(NONE, |j| other.entries[j].at)
            })
            .collect();
        // A stack's text is shared already when it is at the same place in
        // the same chunk (not merely at the same offsets in a copy laid out
        // alike, as two profiles read from the same lines are).
        let chunk = |a: &Arena, at: u64| a.chunks.get((at >> 32) as usize).cloned();
        let same = |at: u64, e: &Entry| {
            at == e.at
                && match (chunk(&self.text, e.at), chunk(&other.text, at)) {
                    (Some(x), Some(y)) => Arc::ptr_eq(&x, &y),
                    _ => false,
                }
        };
        if found
            .iter()
            .zip(&self.entries)
            .all(|(&at, e)| at == NONE || same(at, e))
        {
            // Nothing in common, or shared already.
            return;
        }
        let mut old: Vec<Option<Arc<String>>> = std::mem::take(&mut self.text.chunks)
            .into_iter()
            .map(Some)
            .collect();
        // The last stack whose text is in each old chunk: the chunk is freed
        // once that stack is moved.
        let mut last = vec![None; old.len()];
        for (i, e) in self.entries.iter().enumerate() {
            last[(e.at >> 32) as usize] = Some(i);
        }
        for (c, l) in last.iter().enumerate() {
            if l.is_none() {
                old[c] = None;
            }
        }
        // `other`'s chunks first, so that its text keeps its place.
        let mut text = Arena {
            chunks: other.text.chunks.clone(),
        };
        for (i, at) in found.into_iter().enumerate() {
            let e = &mut self.entries[i];
            let c = (e.at >> 32) as usize;
            if at != NONE {
                e.at = at;
            } else {
                let offset = (e.at & 0xffff_ffff) as usize;
                let chunk = old[c].as_ref().expect("a chunk in use");
                e.at = text.push(&chunk[offset..offset + e.len as usize]);
            }
            if last[c] == Some(i) {
                old[c] = None;
            }
        }
        if let Some(own) = text.chunks.last_mut().and_then(Arc::get_mut) {
            own.shrink_to_fit();
        }
        self.text = text;
    }

    /// Where the stack `stack` of hash `hash` ([`hash_of`]) is in the
    /// entries, if present.
    fn find(&self, hash: u32, stack: &str) -> Option<usize> {
        self.table
            .find(table_hash(hash), |&i| {
                let e = &self.entries[i as usize];
                e.hash == hash && self.text.get(e) == stack
            })
            .map(|&i| i as usize)
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
        self.find(hash_of(stack), stack)
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
        self.read_folded_in(input, opts, None)
    }

    /// [`Profile::read_folded_with`]; with a `reference`, this profile must
    /// be empty, and its stacks that `reference` holds too take their text
    /// from there.
    fn read_folded_in(
        &mut self,
        input: &mut Input,
        opts: &ReadOptions,
        reference: Option<&Profile>,
    ) -> Result<Option<SkippedLines>, Error> {
        if let Some(r) = reference {
            debug_assert!(self.entries.is_empty() && self.text.chunks.is_empty());
            // The reference's text keeps its place: its chunks come first.
            self.text.chunks = r.text.chunks.clone();
        }
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
            match self.add_count_in(stack, count, reference) {
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
        Profile::from_input_in(input, opts, None)
    }

    /// [`Profile::from_input_with`] for a profile to be compared with
    /// `reference` (a diff's AFTER, read after its BEFORE): the stacks both
    /// hold are stored once, their text shared with `reference` (see
    /// [`Profile::share_text`]), so the pair costs little more than one
    /// profile when most stacks are in both.
    pub fn from_input_sharing(
        input: &mut Input,
        opts: &ReadOptions,
        reference: &Profile,
    ) -> Result<(Profile, Option<SkippedLines>), Error> {
        Profile::from_input_in(input, opts, Some(reference))
    }

    /// [`Profile::from_input_sharing`] for a path.
    pub fn from_path_sharing(
        path: impl AsRef<Path>,
        opts: &ReadOptions,
        reference: &Profile,
    ) -> Result<(Profile, Option<SkippedLines>), Error> {
        Profile::from_input_sharing(&mut Input::open(path)?, opts, reference)
    }

    fn from_input_in(
        input: &mut Input,
        opts: &ReadOptions,
        reference: Option<&Profile>,
    ) -> Result<(Profile, Option<SkippedLines>), Error> {
        if input.starts_like_svg()? {
            let mut embedded = crate::embed::read_svg(input)?;
            return match embedded.profiles.iter().position(|(r, _)| r == "profile") {
                Some(i) => {
                    let mut p = embedded.profiles.swap_remove(i).1;
                    if let Some(r) = reference {
                        p.share_text(r);
                    }
                    Ok((p, None))
                }
                None => Err(Error::DiffSvg {
                    path: input.path().to_path_buf(),
                }),
            };
        }
        let mut profile = Profile::new();
        let skipped = profile.read_folded_in(input, opts, reference)?;
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

    /// Bytes of text chunks this profile alone holds.
    fn own_text(p: &Profile) -> usize {
        p.text
            .chunks
            .iter()
            .filter(|c| Arc::strong_count(c) == 1)
            .map(|c| c.len())
            .sum()
    }

    #[test]
    fn profiles_laid_out_alike_still_share_their_text() {
        // The same lines, and one more: the stacks are at the same offsets
        // of their own chunks in both profiles.
        let lines: String = (0..5_000)
            .map(|i| {
                format!(
                    "main;f_{};{} {}\n",
                    i % 13,
                    "y".repeat(100 + i % 50),
                    1 + i % 3
                )
            })
            .collect();
        let before = read(&lines).unwrap();
        let mut after = read(&format!("{lines}only;after 2\n")).unwrap();
        let was = own_text(&after);
        after.share_text(&before);
        assert_eq!(own_text(&after), "only;after".len(), "of {was}");
        assert_eq!(after.get("only;after"), 2);
        assert_eq!(after.total(), before.total() + 2);
        // Shared already: nothing changes.
        let again = after.clone();
        after.share_text(&before);
        assert_eq!(after, again);
        drop(again);
        assert_eq!(own_text(&after), "only;after".len());
    }

    #[test]
    fn reading_against_a_reference_shares_its_text() {
        let before = read("a;b 3\na;c 2\nlong;stack;only;before 1\n").unwrap();
        let text = "a;c 5\nd;e 1\na;b 1\na;c 1\n";
        let plain = read(text).unwrap();
        let mut input = Input::from_reader(PathBuf::from("t.folded"), Cursor::new(text)).unwrap();
        let (shared, _) =
            Profile::from_input_sharing(&mut input, &ReadOptions::default(), &before).unwrap();
        assert_eq!(shared, plain);
        let order = |p: &Profile| {
            p.iter()
                .map(|(s, c)| (s.to_string(), c))
                .collect::<Vec<_>>()
        };
        assert_eq!(order(&shared), order(&plain));
        // Only `d;e` is its own.
        assert_eq!(own_text(&shared), "d;e".len());
        assert_eq!(own_text(&plain), "a;cd;ea;b".len());
    }

    #[test]
    fn shared_text_is_stored_once_and_changes_nothing() {
        // Enough stacks for several chunks of text on each side.
        let stack = |i: usize| format!("main;work_{};{}", i % 977, "x".repeat(200 + i % 300));
        let mut before = Profile::new();
        let mut after = Profile::new();
        for i in 0..40_000 {
            if i % 10 != 0 {
                before.add(&stack(i), 1 + i as u64 % 7);
            }
            if i % 10 != 1 {
                after.add(&stack(i), 2 + i as u64 % 5);
            }
        }
        // A stack added twice, and one whose text spans nothing but itself.
        after.add(&stack(5), 3);
        let long = "y".repeat(CHUNK + 10);
        after.add(&long, 4);
        let was: Vec<(String, u64)> = after.iter().map(|(s, c)| (s.to_string(), c)).collect();
        let (total, own) = (after.total(), own_text(&after));
        after.share_text(&before);
        let now: Vec<(String, u64)> = after.iter().map(|(s, c)| (s.to_string(), c)).collect();
        assert_eq!(now, was);
        assert_eq!(after.total(), total);
        for (s, c) in &was {
            assert_eq!(after.get(s), *c, "{s}");
        }
        // Only the stacks BEFORE lacks keep text of their own: about a tenth,
        // and the long one.
        let alone: usize = was
            .iter()
            .filter(|(s, _)| before.get(s) == 0)
            .map(|(s, _)| s.len())
            .sum();
        assert_eq!(own_text(&after), alone);
        assert!(alone < own / 5 + long.len(), "{alone} of {own}");
        // Both go on growing, apart.
        after.add("new;in_after", 5);
        before.add("new;in_before", 6);
        assert_eq!(after.get("new;in_before"), 0);
        assert_eq!(before.get("new;in_after"), 0);
        assert_eq!(after.get("new;in_after"), 5);
        assert_eq!(after.get(&stack(2)), 4);
        assert_eq!(before.get(&stack(2)), 3);
        // Dropping BEFORE leaves AFTER whole.
        drop(before);
        assert_eq!(after.get(&stack(2)), 4);
        let mut again: Vec<(String, u64)> = was.clone();
        again.push(("new;in_after".into(), 5));
        let now: Vec<(String, u64)> = after.iter().map(|(s, c)| (s.to_string(), c)).collect();
        assert_eq!(now, again);
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
