//! Keep or drop whole stacks by the frames they contain.
//!
//! A stack is kept when it has a frame matching one of the `include` patterns
//! (or there are none) and no frame matching one of the `exclude` patterns.
//! Patterns are regular expressions matched against each frame on its own, so
//! `^nginx$` matches a frame named exactly `nginx`, wherever it is in the stack.

use std::io::Write;

use regex::Regex;

use crate::folded::{LineReader, ReadOptions, SkippedLines};
use crate::io::{Input, Output};
use crate::unit::{Measure, Sum};
use crate::{folded, Error, ParseErrorKind};

/// Which stacks to keep.
#[derive(Debug, Clone, Default)]
pub struct FrameFilter {
    include: Vec<Regex>,
    exclude: Vec<Regex>,
}

/// What a filter run kept and dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FilterStats {
    /// The counts of the stacks kept (stored with [`FilterStats::measure`]'s decimals).
    pub kept_samples: u64,
    /// The counts of the stacks dropped (likewise).
    pub dropped_samples: u64,
    /// Lines kept.
    pub kept_lines: u64,
    /// Lines dropped.
    pub dropped_lines: u64,
    /// The input's unit, and the decimals the two counts above are stored with.
    pub measure: Measure,
    /// Lines skipped as unreadable ([`ReadOptions::skip_bad_lines`]).
    pub skipped: Option<SkippedLines>,
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
    /// their original order (and the unit header). Malformed lines are errors,
    /// as everywhere. An nflame SVG is read as the profile it carries.
    pub fn filter_folded(&self, input: &mut Input, out: &mut Output) -> Result<FilterStats, Error> {
        self.filter_folded_with(input, out, &ReadOptions::default())
    }

    /// [`FrameFilter::filter_folded`] with options: with
    /// [`ReadOptions::skip_bad_lines`], unreadable lines are skipped and
    /// reported in [`FilterStats::skipped`].
    pub fn filter_folded_with(
        &self,
        input: &mut Input,
        out: &mut Output,
        opts: &ReadOptions,
    ) -> Result<FilterStats, Error> {
        let mut stats = FilterStats::default();
        let out_path = out.path().to_path_buf();
        let write_err = |source| Error::Write {
            path: out_path.clone(),
            source,
        };
        if input.starts_like_svg()? {
            let profile = crate::Profile::from_input(input)?;
            stats.measure = profile.measure();
            let w = out.writer();
            folded::write_header(w, profile.unit()).map_err(write_err)?;
            for (stack, count) in profile.sorted() {
                if self.keeps(stack) {
                    stats.kept_samples += count;
                    stats.kept_lines += 1;
                    folded::write_line(w, stack, count, profile.decimals()).map_err(write_err)?;
                } else {
                    stats.dropped_samples += count;
                    stats.dropped_lines += 1;
                }
            }
            return Ok(stats);
        }
        let mut reader = LineReader::new(input.name(), opts);
        let (mut total, mut kept, mut dropped) = (Sum::default(), Sum::default(), Sum::default());
        let mut header_written = false;
        let w: &mut dyn Write = out.writer();
        input.for_each_line_checked(|line_no, line| {
            let Some((stack, count)) = reader.line(line_no, line)? else {
                return Ok(());
            };
            if total.add(count).is_none() {
                let text = folded::count_text(count);
                return reader.bad(line_no, ParseErrorKind::TotalOverflow(text));
            }
            if !header_written {
                folded::write_header(w, reader.unit()).map_err(write_err)?;
                header_written = true;
            }
            // Both sums are at most the total: they cannot overflow.
            if self.keeps(stack) {
                let _ = kept.add(count);
                stats.kept_lines += 1;
                folded::write_line(w, stack, count.value, count.decimals).map_err(write_err)?;
            } else {
                let _ = dropped.add(count);
                stats.dropped_lines += 1;
            }
            Ok(())
        })?;
        if stats.kept_lines + stats.dropped_lines == 0 {
            return Err(Error::Empty {
                path: input.path().to_path_buf(),
            });
        }
        stats.measure = Measure {
            unit: reader.unit(),
            decimals: total.decimals,
        };
        // At the total's decimals both fit, being at most the total.
        stats.kept_samples = kept.at(total.decimals).unwrap_or(u64::MAX);
        stats.dropped_samples = dropped.at(total.decimals).unwrap_or(u64::MAX);
        stats.skipped = reader.finish();
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
