//! `nflame report`: the category report of one profile, or the change report
//! of two, and the one-file HTML page; and the glue every subcommand that
//! gives a verdict shares (`nflame diff`, `nflame demo`): loading the
//! classification rules and building category and change reports.
//!
//! The reports themselves, their verdicts and their text are
//! `nflame-diagnose`'s; this module reads the inputs and orders the work.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use nflame_diagnose::{CategoryReport, CategoryReportOptions, ChangeReport, Rules};
use nflame_profile::io::Output;
use nflame_profile::tree::StackTree;
use nflame_profile::{Measure, Profile, ReadOptions, SkippedLines};

use crate::Error;

/// The rules: the built-in ones, or those of the file `path`.
pub fn load_rules(path: Option<&Path>) -> Result<Rules, Error> {
    match path {
        None => Ok(Rules::default()),
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|source| Error::RulesFile {
                path: p.to_path_buf(),
                source,
            })?;
            Ok(Rules::parse(&p.display().to_string(), &text)?)
        }
    }
}

/// The category report of one profile; `per` is its units of work.
pub fn category_report(
    profile: &Profile,
    rules: &Rules,
    per: Option<f64>,
) -> Result<CategoryReport, Error> {
    let mut o = CategoryReportOptions::default();
    o.per = per;
    Ok(CategoryReport::new(profile, rules, &o)?)
}

/// The change report of two profiles, their reports built side by side.
pub fn change_report(
    before: &Profile,
    after: &Profile,
    rules: &Rules,
    per_before: Option<f64>,
    per_after: Option<f64>,
) -> Result<ChangeReport, Error> {
    let (b, a) = rayon::join(
        || category_report(before, rules, per_before),
        || category_report(after, rules, per_after),
    );
    Ok(ChangeReport::new(b?, a?))
}

/// The change report of the two columns of a diff's tree (see
/// [`nflame_profile::diff::Diff::tree`]), whose counts read as `measure`: the
/// same as [`change_report`] of its profiles, with each distinct stack
/// classified once.
pub fn change_report_from_tree(
    tree: &StackTree<'_>,
    measure: Measure,
    rules: &Rules,
    per_before: Option<f64>,
    per_after: Option<f64>,
) -> Result<ChangeReport, Error> {
    let mut ob = CategoryReportOptions::default();
    ob.per = per_before;
    let mut oa = CategoryReportOptions::default();
    oa.per = per_after;
    let [b, a] = CategoryReport::pair_from_tree(tree, measure, rules, [&ob, &oa])?;
    Ok(ChangeReport::new(b, a))
}

/// Writes the change report of two profiles with the built-in rules, after a
/// blank line.
pub fn write_change<W: Write + ?Sized>(
    w: &mut W,
    before: &Profile,
    after: &Profile,
    per_before: Option<f64>,
    per_after: Option<f64>,
) -> Result<(), Error> {
    let d = change_report(before, after, &Rules::default(), per_before, per_after)?;
    writeln!(w)
        .and_then(|()| d.write_text(w))
        .map_err(Error::WriteReport)
}

/// What `nflame report` does.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct DiagnosisOptions {
    /// The profile (folded, plain or gzip, `-` for standard input, or an SVG
    /// nflame wrote). Default is empty: set it.
    pub profile: PathBuf,
    /// A second profile, after a change: the report compares the two.
    /// Default is `None`.
    pub after: Option<PathBuf>,
    /// Write the one-file HTML page here. Default is `None`.
    pub html: Option<PathBuf>,
    /// Units of work of `profile` (e.g. requests served). Default is `None`.
    pub per: Option<f64>,
    /// Units of work of `after`. Default is `None`.
    pub per_after: Option<f64>,
    /// A classification rules file replacing the built-in rules. Default is `None`.
    pub rules: Option<PathBuf>,
    /// The command line shown on the page and stored in its differential
    /// graph. Default is `None`.
    pub command_line: Option<String>,
    /// How the inputs are read (e.g. skipping unreadable lines). Default is
    /// [`ReadOptions::default`]: one unreadable line is an error.
    pub read: ReadOptions,
}

impl DiagnosisOptions {
    /// The report of `profile`, with the other options at their defaults.
    pub fn new(profile: impl Into<PathBuf>) -> DiagnosisOptions {
        DiagnosisOptions {
            profile: profile.into(),
            ..DiagnosisOptions::default()
        }
    }
}

/// The result of `nflame report`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Diagnosis {
    /// One profile's category report.
    Profile(CategoryReport),
    /// Two profiles' change report (boxed: it holds two category reports).
    Change(Box<ChangeReport>),
}

impl Diagnosis {
    /// Writes the report as text (tables and verdict).
    pub fn write_text<W: Write + ?Sized>(&self, w: &mut W) -> io::Result<()> {
        match self {
            Diagnosis::Profile(r) => r.write_text(w),
            Diagnosis::Change(r) => r.write_text(w),
        }
    }

    /// Writes the report as pretty-printed JSON and a newline.
    pub fn write_json<W: Write>(&self, mut w: W) -> io::Result<()> {
        match self {
            Diagnosis::Profile(r) => serde_json::to_writer_pretty(&mut w, r)?,
            Diagnosis::Change(r) => serde_json::to_writer_pretty(&mut w, r)?,
        }
        writeln!(w)
    }
}

/// Runs `nflame report`: reads the profile(s), builds the report and, with
/// [`DiagnosisOptions::html`], writes the page (created before anything is
/// read, so an unwritable page fails first). Two profiles must be of one unit.
pub fn diagnose(opts: &DiagnosisOptions) -> Result<Diagnosis, Error> {
    diagnose_inputs(opts).map(|(d, _)| d)
}

/// [`diagnose`], and the lines skipped as unreadable while reading the inputs
/// ([`ReadOptions::skip_bad_lines`]).
pub fn diagnose_inputs(opts: &DiagnosisOptions) -> Result<(Diagnosis, Vec<SkippedLines>), Error> {
    let rules = load_rules(opts.rules.as_deref())?;
    let mut html = opts.html.as_ref().map(Output::create).transpose()?;
    let (profile, after, skipped) = match &opts.after {
        None => {
            let (p, s) = Profile::from_path_with(&opts.profile, &opts.read)?;
            (p, None, s.into_iter().collect())
        }
        Some(after) => {
            let (b, a, s) = crate::compare::read_pair(&opts.profile, after, &opts.read)?;
            (b, Some(a), s)
        }
    };
    let diagnosis = match &after {
        None => Diagnosis::Profile(category_report(&profile, &rules, opts.per)?),
        Some(after) => Diagnosis::Change(Box::new(change_report(
            &profile,
            after,
            &rules,
            opts.per,
            opts.per_after,
        )?)),
    };
    if let Some(mut out) = html.take() {
        let mut text = Vec::new();
        diagnosis
            .write_text(&mut text)
            .map_err(|e| out.write_error(e))?;
        let page = crate::page::html_page(
            opts,
            &profile,
            after.as_ref(),
            String::from_utf8_lossy(&text).into_owned(),
        )?;
        nflame_render::html::write_html(&page, out.writer()).map_err(|e| out.write_error(e))?;
        out.commit()?;
    }
    Ok((diagnosis, skipped))
}
