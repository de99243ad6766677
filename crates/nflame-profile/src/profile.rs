//! [`Profile`]: a merged multiset of folded stacks.

use std::hash::BuildHasher;
use std::io::{self, Write};
use std::path::Path;

use rustc_hash::FxBuildHasher;

use crate::io::Input;
use crate::{folded, Error, ParseError, ParseErrorKind};

/// A distinct stack, with the hash it is filed under (its text's FxHash), kept
/// so that growing the table never reads the text again.
#[derive(Clone)]
struct Entry {
    hash: u64,
    stack: Box<str>,
    count: u64,
}

fn hash_of(stack: &str) -> u64 {
    FxBuildHasher.hash_one(stack)
}

/// Stacks (root first, frames joined by `;`) with their sample counts.
///
/// Memory is proportional to the distinct stacks, not to the input's text:
/// repeated stacks are merged as they are read.
#[derive(Clone, Default)]
pub struct Profile {
    /// Looked up by `&str` with one hash; a stack is allocated only when new.
    stacks: hashbrown::HashTable<Entry>,
    total: u64,
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
            .finish()
    }
}

impl PartialEq for Profile {
    fn eq(&self, other: &Profile) -> bool {
        self.total == other.total
            && self.len() == other.len()
            && self.iter().all(|(s, c)| other.get(s) == c)
    }
}

impl Eq for Profile {}

impl Profile {
    /// An empty profile.
    pub fn new() -> Profile {
        Profile::default()
    }

    /// Adds `count` samples of `stack`. Returns `false` (and changes nothing)
    /// if the total would overflow 64 bits.
    pub fn add(&mut self, stack: &str, count: u64) -> bool {
        let Some(total) = self.total.checked_add(count) else {
            return false;
        };
        if count == 0 {
            return true;
        }
        self.total = total;
        let hash = hash_of(stack);
        match self
            .stacks
            .entry(hash, |e| e.hash == hash && *e.stack == *stack, |e| e.hash)
        {
            hashbrown::hash_table::Entry::Occupied(mut e) => e.get_mut().count += count,
            hashbrown::hash_table::Entry::Vacant(e) => {
                e.insert(Entry {
                    hash,
                    stack: stack.into(),
                    count,
                });
            }
        }
        true
    }

    /// Adds every stack of `other`. Returns `false` if the total would overflow.
    pub fn merge(&mut self, other: Profile) -> bool {
        if self.total.checked_add(other.total).is_none() {
            return false;
        }
        if self.stacks.is_empty() {
            *self = other;
            return true;
        }
        self.total += other.total;
        for entry in other.stacks {
            let hash = entry.hash;
            match self.stacks.entry(
                hash,
                |e| e.hash == hash && e.stack == entry.stack,
                |e| e.hash,
            ) {
                hashbrown::hash_table::Entry::Occupied(mut e) => e.get_mut().count += entry.count,
                hashbrown::hash_table::Entry::Vacant(e) => {
                    e.insert(entry);
                }
            }
        }
        true
    }

    /// The total number of samples.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The number of distinct stacks.
    pub fn len(&self) -> usize {
        self.stacks.len()
    }

    /// Whether the profile holds no samples.
    pub fn is_empty(&self) -> bool {
        self.stacks.is_empty()
    }

    /// The count of one stack (0 if absent).
    pub fn get(&self, stack: &str) -> u64 {
        let hash = hash_of(stack);
        self.stacks
            .find(hash, |e| e.hash == hash && *e.stack == *stack)
            .map_or(0, |e| e.count)
    }

    /// The stacks in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> + '_ {
        self.stacks.iter().map(|e| (&*e.stack, e.count))
    }

    /// The stacks sorted by their text, as flame graph renderers want them.
    pub fn sorted(&self) -> Vec<(&str, u64)> {
        let mut v: Vec<(&str, u64)> = self.iter().collect();
        v.sort_unstable_by(|a, b| a.0.cmp(b.0));
        v
    }

    /// Keeps the stacks for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, u64) -> bool) {
        let mut total = 0u64;
        self.stacks.retain(|e| {
            let k = keep(&e.stack, e.count);
            if k {
                total += e.count;
            }
            k
        });
        self.total = total;
    }

    /// Writes the profile as folded lines, sorted by stack.
    pub fn write_folded<W: Write + ?Sized>(&self, w: &mut W) -> io::Result<()> {
        for (stack, count) in self.sorted() {
            folded::write_line(w, stack, count)?;
        }
        Ok(())
    }

    /// Reads folded lines from `input` and merges them into this profile.
    ///
    /// Errors name the input and line; see [`crate::folded`] for what is tolerated.
    pub fn read_folded(&mut self, input: &mut Input) -> Result<(), Error> {
        let name = input.name();
        let err = |line: u64, kind: ParseErrorKind| {
            Error::Parse(ParseError {
                source_name: name.clone(),
                line,
                kind,
            })
        };
        input.for_each_line(|line_no, line| match folded::parse_line(line) {
            Ok(Some((stack, count))) => {
                if self.add(stack, count) {
                    Ok(())
                } else {
                    Err(err(
                        line_no,
                        ParseErrorKind::CountOverflow(format!(
                            "{count} (the total of all samples)"
                        )),
                    ))
                }
            }
            Ok(None) => Ok(()),
            Err(kind) => Err(err(line_no, kind)),
        })
    }

    /// Reads a folded file (plain, gzip, or `-` for stdin), or the profile
    /// embedded in an SVG nflame wrote. An input without any sample is an
    /// [`Error::Empty`].
    pub fn from_path(path: impl AsRef<Path>) -> Result<Profile, Error> {
        Profile::from_input(&mut Input::open(path)?)
    }

    /// Like [`Profile::from_path`], for an input already open.
    pub fn from_input(input: &mut Input) -> Result<Profile, Error> {
        if input.starts_like_svg()? {
            let mut embedded = crate::embed::read_svg(input)?;
            return match embedded.profiles.iter().position(|(r, _)| r == "profile") {
                Some(i) => Ok(embedded.profiles.swap_remove(i).1),
                None => Err(Error::DiffSvg {
                    path: input.path().to_path_buf(),
                }),
            };
        }
        let mut profile = Profile::new();
        profile.read_folded(input)?;
        if profile.total() == 0 {
            return Err(Error::Empty {
                path: input.path().to_path_buf(),
            });
        }
        Ok(profile)
    }

    /// Reads and merges several folded files, in parallel.
    pub fn from_paths<P: AsRef<Path> + Sync>(paths: &[P]) -> Result<Profile, Error> {
        use rayon::prelude::*;
        let profiles: Vec<Profile> = paths
            .par_iter()
            .map(Profile::from_path)
            .collect::<Result<_, _>>()?;
        let mut merged = Profile::new();
        for p in profiles {
            if !merged.merge(p) {
                return Err(Error::InvalidOption(
                    "the merged inputs hold more than 2^64-1 samples".into(),
                ));
            }
        }
        Ok(merged)
    }

    /// Builds a profile from `(stack, count)` pairs (for tests and other crates).
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

    #[test]
    fn retain_updates_total() {
        let mut p = Profile::from_stacks([("a;x", 3), ("b;y", 4)]);
        p.retain(|s, _| s.contains('x'));
        assert_eq!(p.total(), 3);
        assert_eq!(p.len(), 1);
    }
}
