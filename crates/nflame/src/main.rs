//! The `nflame` command: argument parsing and one library call per subcommand.

mod args;
mod demo;
mod record;
mod verdict;
mod workload;

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;

use args::{Cli, Command};
use nflame_profile::diff::Diff;
use nflame_profile::embed::Context as SvgContext;
use nflame_profile::filter::FrameFilter;
use nflame_profile::io::{Input, Output};
use nflame_profile::{folded, Profile};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("nflame: error: {err:#}");
            ExitCode::from(1)
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Record(a) => record::run(a),
        Command::Render(a) => render(a),
        Command::Diff(a) => diff(a),
        Command::Report(a) => report(a),
        Command::Demo(a) => demo::run(a),
        Command::Worker(a) => demo::worker(a),
        Command::Collapse(a) => collapse(a),
        Command::Filter(a) => filter(a),
    }
}

/// The context every SVG carries: nflame's version, this command line.
pub(crate) fn svg_context(kind: &str) -> SvgContext {
    let mut c = SvgContext::new(nflame_render::VERSION, kind);
    c.command = Some(
        std::env::args_os()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" "),
    );
    c
}

fn render(a: args::Render) -> Result<ExitCode> {
    let mut opts = a.render.into_options("Flame Graph");
    let mut ctx = svg_context("profile");
    ctx.inputs = a.inputs.iter().map(|p| p.display().to_string()).collect();
    opts.context = Some(ctx);
    opts.validate()?;
    let mut out = Output::create(&a.output)?;
    if opts.flamechart {
        let mut lines = Vec::new();
        for path in &a.inputs {
            let mut input = Input::open(path)?;
            lines.extend(folded::read_ordered_lines(&mut input)?);
        }
        nflame_render::render_lines(lines.iter().map(String::as_str), &opts, out.writer())
            .with_context(|| format!("rendering {}", a.output.display()))?;
    } else {
        let profile = Profile::from_paths(&a.inputs)?;
        nflame_render::render_profile(&profile, &opts, out.writer())
            .with_context(|| format!("rendering {}", a.output.display()))?;
    }
    out.commit()?;
    Ok(ExitCode::SUCCESS)
}

fn diff(a: args::Diff) -> Result<ExitCode> {
    let diff_opts = a.diff_options();
    let render_opts = a.render.into_options("Differential Flame Graph");
    render_opts.validate()?;
    // Fail on unwritable destinations before reading anything.
    let mut out = a.output.as_ref().map(Output::create).transpose()?;
    let mut removed = a.removed.as_ref().map(Output::create).transpose()?;
    let (before, after) = rayon::join(
        || Profile::from_path(&a.before),
        || Profile::from_path(&a.after),
    );
    let diff = Diff::new(before?, after?, &diff_opts)?;
    let report = diff.report();
    let mut ctx = svg_context("diff");
    ctx.inputs = vec![
        a.before.display().to_string(),
        a.after.display().to_string(),
    ];
    let mut o = render_opts;
    o.context = Some(ctx);
    if o.subtitle.is_none() {
        o.subtitle = Some(format!(
            "{} ({} samples) → {} ({} samples), {}",
            a.before.display(),
            diff.before.total(),
            a.after.display(),
            diff.after.total(),
            scaling_text(&diff)
        ));
    }
    if let Some(out) = out.as_mut() {
        nflame_render::render_diff(&diff, &o, out.writer())?;
    }
    if let Some(out) = removed.as_mut() {
        nflame_render::render_removed(&diff, &o, out.writer())?;
    }
    if let Some(out) = out {
        out.commit()?;
    }
    if let Some(out) = removed {
        out.commit()?;
    }
    let rules = verdict::rules(a.rules.as_deref())?;
    let categories = verdict::diff_report(
        &diff.before,
        &diff.after,
        &rules,
        a.scale_before,
        a.scale_after,
    )?;
    let stdout = io::stdout();
    let mut w = io::BufWriter::new(stdout.lock());
    if a.json {
        let mut v = serde_json::to_value(&categories)?;
        v["frames"] = serde_json::to_value(&report)?;
        serde_json::to_writer_pretty(&mut w, &v)?;
        writeln!(w)?;
    } else {
        report.write_text(&mut w)?;
        writeln!(w)?;
        categories.write_text(&mut w)?;
    }
    w.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn report(a: args::Report) -> Result<ExitCode> {
    let rules = verdict::rules(a.rules.as_deref())?;
    let profile = Profile::from_path(&a.profile)?;
    let report = verdict::report(&profile, &rules, a.per)?;
    let stdout = io::stdout();
    let mut w = io::BufWriter::new(stdout.lock());
    if a.json {
        serde_json::to_writer_pretty(&mut w, &report)?;
        writeln!(w)?;
    } else {
        report.write_text(&mut w)?;
    }
    w.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn scaling_text(diff: &Diff) -> &'static str {
    use nflame_profile::diff::Scaling;
    match diff.scaling() {
        Scaling::None => "raw counts",
        Scaling::Normalized => "before normalised to after's total",
        Scaling::PerUnit => "samples per unit of work",
    }
}

fn collapse(a: args::Collapse) -> Result<ExitCode> {
    let opts = a.options();
    let mut out = Output::create(&a.output)?;
    let mut input = Input::open(&a.input)?;
    if input.starts_like_svg()? {
        // An nflame SVG carries its folded profile: write it back out.
        let profile = Profile::from_input(&mut input)?;
        profile
            .write_folded(out.writer())
            .map_err(|e| out.write_error(e))?;
        out.commit()?;
        return Ok(ExitCode::SUCCESS);
    }
    let (profile, stats) = nflame_profile::perf_script::collapse(&mut input, &opts)?;
    profile
        .write_folded(out.writer())
        .map_err(|e| out.write_error(e))?;
    out.commit()?;
    if a.verbose {
        eprintln!(
            "nflame: {} samples, {} distinct stacks, {} samples of other events skipped",
            stats.samples,
            profile.len(),
            stats.skipped_other_events
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn filter(a: args::Filter) -> Result<ExitCode> {
    if a.include.is_empty() && a.exclude.is_empty() {
        anyhow::bail!("give at least one --include or --exclude pattern");
    }
    let f = FrameFilter::new(&a.include, &a.exclude)?;
    let mut out = Output::create(&a.output)?;
    let mut input = Input::open(&a.input)?;
    let stats = f.filter_folded(&mut input, &mut out)?;
    out.commit()?;
    if stats.kept_lines == 0 {
        eprintln!(
            "nflame: warning: no stack matched; {} is empty",
            a.output.display()
        );
    }
    if a.verbose {
        eprintln!(
            "nflame: kept {} samples in {} stacks, dropped {} samples in {} stacks",
            stats.kept_samples, stats.kept_lines, stats.dropped_samples, stats.dropped_lines
        );
    }
    Ok(ExitCode::SUCCESS)
}
