//! Glue to nflame-diagnose: the category table and verdict printed by
//! `nflame report`, `nflame diff` and `nflame demo`.

use std::io::Write;
use std::path::Path;

use anyhow::{Context as _, Result};
use nflame_diagnose::{CategoryReport, CategoryReportOptions, ChangeReport, Rules};
use nflame_profile::tree::StackTree;
use nflame_profile::Profile;

/// The rules: the built-in ones, or those of `path`.
pub fn rules(path: Option<&Path>) -> Result<Rules> {
    match path {
        None => Ok(Rules::default()),
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read the rules file {}", p.display()))?;
            Ok(Rules::parse(&p.display().to_string(), &text)?)
        }
    }
}

/// The report of one profile.
pub fn report(profile: &Profile, rules: &Rules, per: Option<f64>) -> Result<CategoryReport> {
    let mut o = CategoryReportOptions::default();
    o.per = per;
    Ok(CategoryReport::new(profile, rules, &o)?)
}

/// The comparison of two profiles.
pub fn diff_report(
    before: &Profile,
    after: &Profile,
    rules: &Rules,
    per_before: Option<f64>,
    per_after: Option<f64>,
) -> Result<ChangeReport> {
    let (b, a) = rayon::join(
        || report(before, rules, per_before),
        || report(after, rules, per_after),
    );
    Ok(ChangeReport::new(b?, a?))
}

/// The comparison of the two columns of a diff's tree (see
/// [`nflame_profile::diff::Diff::tree`]): the same as [`diff_report`] of its
/// profiles, with each distinct stack classified once.
pub fn diff_report_tree(
    tree: &StackTree<'_>,
    rules: &Rules,
    per_before: Option<f64>,
    per_after: Option<f64>,
) -> Result<ChangeReport> {
    let mut ob = CategoryReportOptions::default();
    ob.per = per_before;
    let mut oa = CategoryReportOptions::default();
    oa.per = per_after;
    let [b, a] = CategoryReport::pair_from_tree(tree, rules, [&ob, &oa])?;
    Ok(ChangeReport::new(b, a))
}

/// Prints the comparison of two profiles with the built-in rules.
pub fn print_diff<W: Write>(
    w: &mut W,
    before: &Profile,
    after: &Profile,
    per_before: Option<f64>,
    per_after: Option<f64>,
) -> Result<()> {
    let d = diff_report(before, after, &Rules::default(), per_before, per_after)?;
    writeln!(w)?;
    d.write_text(w)?;
    Ok(())
}
