//! Keep or drop whole stacks by the frames they contain.
//!
//! A stack is kept when it has a frame matching one of the `include` patterns
//! (or there are none) and no frame matching one of the `exclude` patterns.
//! Patterns are regular expressions matched against each frame on its own, so
//! `^nginx$` matches a frame named exactly `nginx`, wherever it is in the stack.

use std::io::Write;

use regex::Regex;

use crate::io::{Input, Output};
use crate::{folded, Error, ParseError, ParseErrorKind};

/// Which stacks to keep.
#[derive(Debug, Clone, Default)]
pub struct FrameFilter {
    include: Vec<Regex>,
    exclude: Vec<Regex>,
}

/// What a filter run kept and dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FilterStats {
    /// Samples of the stacks kept.
    pub kept_samples: u64,
    /// Samples of the stacks dropped.
    pub dropped_samples: u64,
    /// Lines kept.
    pub kept_lines: u64,
    /// Lines dropped.
    pub dropped_lines: u64,
}

impl FrameFilter {
    /// Compiles the patterns; an invalid pattern is an error naming it.
    pub fn new<S: AsRef<str>>(include: &[S], exclude: &[S]) -> Result<FrameFilter, Error> {
        let compile = |pats: &[S]| -> Result<Vec<Regex>, Error> {
            pats.iter()
                .map(|p| {
                    Regex::new(p.as_ref()).map_err(|source| Error::Regex {
                        pattern: p.as_ref().to_string(),
                        source,
                    })
                })
                .collect()
        };
        Ok(FrameFilter {
            include: compile(include)?,
            exclude: compile(exclude)?,
        })
    }

    /// Whether `stack` (frames joined by `;`) is kept.
    pub fn keeps(&self, stack: &str) -> bool {
        let any = |pats: &[Regex]| stack.split(';').any(|f| pats.iter().any(|r| r.is_match(f)));
        (self.include.is_empty() || any(&self.include))
            && (self.exclude.is_empty() || !any(&self.exclude))
    }

    /// Streams folded lines from `input` to `out`, keeping the matching stacks in
    /// their original order. Malformed lines are errors, as everywhere. An
    /// nflame SVG is read as the profile it carries.
    pub fn filter_folded(&self, input: &mut Input, out: &mut Output) -> Result<FilterStats, Error> {
        let mut stats = FilterStats::default();
        if input.starts_like_svg()? {
            let profile = crate::Profile::from_input(input)?;
            let out_path = out.path().to_path_buf();
            let w = out.writer();
            for (stack, count) in profile.sorted() {
                if self.keeps(stack) {
                    stats.kept_samples += count;
                    stats.kept_lines += 1;
                    folded::write_line(w, stack, count).map_err(|source| Error::Write {
                        path: out_path.clone(),
                        source,
                    })?;
                } else {
                    stats.dropped_samples += count;
                    stats.dropped_lines += 1;
                }
            }
            return Ok(stats);
        }
        let name = input.name();
        let out_path = out.path().to_path_buf();
        let mut total = 0u64;
        let w: &mut dyn Write = out.writer();
        input.for_each_line(|line_no, line| {
            let parsed = folded::parse_line(line).map_err(|kind| {
                Error::Parse(ParseError {
                    source_name: name.clone(),
                    line: line_no,
                    kind,
                })
            })?;
            let Some((stack, count)) = parsed else {
                return Ok(());
            };
            total = total.checked_add(count).ok_or_else(|| {
                Error::Parse(ParseError {
                    source_name: name.clone(),
                    line: line_no,
                    kind: ParseErrorKind::CountOverflow(format!(
                        "{count} (the total of all samples)"
                    )),
                })
            })?;
            if self.keeps(stack) {
                stats.kept_samples += count;
                stats.kept_lines += 1;
                folded::write_line(w, stack, count).map_err(|source| Error::Write {
                    path: out_path.clone(),
                    source,
                })?;
            } else {
                stats.dropped_samples += count;
                stats.dropped_lines += 1;
            }
            Ok(())
        })?;
        if stats.kept_lines + stats.dropped_lines == 0 {
            return Err(Error::Empty {
                path: input.path().to_path_buf(),
            });
        }
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_and_exclude_by_frame() {
        let f = FrameFilter::new(&["^nginx$"], &["^epoll_wait"]).unwrap();
        assert!(f.keeps("nginx;ngx_process_events;read"));
        assert!(!f.keeps("nginx;ngx_process_events;epoll_wait_[k]"));
        assert!(!f.keeps("nginx-worker;main"));
        let all = FrameFilter::new::<&str>(&[], &[]).unwrap();
        assert!(all.keeps("anything"));
    }

    #[test]
    fn bad_regex_names_pattern() {
        let e = FrameFilter::new(&["(unclosed"], &[]).unwrap_err();
        assert!(e.to_string().contains("(unclosed"), "{e}");
    }
}
