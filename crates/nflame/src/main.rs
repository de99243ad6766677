//! The `nflame` command: argument parsing and one library call per subcommand.

mod args;
mod demo;
mod record;

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;

use args::{Cli, Command};
use nflame_profile::embed::Context as SvgContext;
use nflame_profile::filter::FrameFilter;

/// Large blocks (1 MiB and over) always get memory of their own from the
/// system, given back when freed. glibc otherwise raises that threshold to
/// the size of each such block freed (up to 32 MiB): a profile's list of
/// stacks, grown by doubling and shrunk once read, then makes every later
/// large block come from the heap, where each growth leaves a hole the size
/// of the old block. Measured (peak RSS): `nflame diff` of the bench's real
/// shape 404 -> 384 MiB with its graph, random 339 -> 309 MiB; `render`
/// 228 -> 210 MiB.
fn fixed_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before any
    // other thread exists (argument parsing starts none).
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Not for recording: its many small buffers come and go with the load,
    // and a recorder that falls behind must give their memory back (its
    // memory is bounded by a test of its own, which this would upset).
    if !matches!(
        cli.command,
        Command::Record(_) | Command::Demo(_) | Command::Worker(_)
    ) {
        fixed_mmap_threshold();
    }
    if let Command::Record(a) = &cli.command {
        if let Some(why) = a.conflicts() {
            usage_error("record", why);
        }
    }
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

/// Exits with clap's usage error (status 2) for `subcommand`, saying `why`.
fn usage_error(subcommand: &str, why: String) -> ! {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    cmd.build();
    match cmd.find_subcommand_mut(subcommand) {
        Some(sub) => sub
            .error(clap::error::ErrorKind::ArgumentConflict, why)
            .exit(),
        None => cmd
            .error(clap::error::ErrorKind::ArgumentConflict, why)
            .exit(),
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// How much the commands print besides their results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

fn run(cli: Cli) -> Result<ExitCode> {
    let verbosity = if cli.quiet {
        Verbosity::Quiet
    } else if cli.verbose {
        Verbosity::Verbose
    } else {
        Verbosity::Normal
    };
    match cli.command {
        Command::Record(a) => record::run(a, verbosity),
        Command::Render(a) => render(a, verbosity),
        Command::Diff(a) => diff(a, verbosity),
        Command::Report(a) => report(a, verbosity),
        Command::Demo(a) => demo::run(a),
        Command::Worker(a) => demo::worker(a),
        Command::Export(a) => export(a, verbosity),
        Command::Completions(a) => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(a.shell, &mut cmd, "nflame", &mut io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man(a) => man(a),
        Command::Collapse(a) => collapse(a, verbosity),
        Command::Filter(a) => filter(a, verbosity),
    }
}

/// This process's command line, as stored in SVGs and shown on pages.
pub(crate) fn command_line() -> String {
    std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The context every SVG carries: nflame's version, this command line.
pub(crate) fn svg_context(kind: &str) -> SvgContext {
    nflame_pipeline::svg_context(kind, Some(&command_line()))
}

/// Warns about the lines skipped while reading inputs (`--skip-bad-lines`).
fn warn_skipped<'a>(
    skipped: impl IntoIterator<Item = &'a nflame_profile::SkippedLines>,
    verbosity: Verbosity,
) {
    if verbosity == Verbosity::Quiet {
        return;
    }
    for s in skipped {
        eprintln!("nflame: warning: {s}");
    }
}

/// Prints notes on what a command did with its outputs (a profile written
/// beside an SVG).
fn note(notes: &[String], verbosity: Verbosity) {
    if verbosity == Verbosity::Quiet {
        return;
    }
    for n in notes {
        eprintln!("nflame: note: {n}");
    }
}

fn render(a: args::Render, verbosity: Verbosity) -> Result<ExitCode> {
    let mut opts = a.render.to_options("Flame Graph");
    let mut ctx = svg_context("profile");
    ctx.inputs = a.inputs.iter().map(|p| p.display().to_string()).collect();
    opts.context = Some(ctx);
    let rendered =
        nflame_pipeline::convert::render(&a.inputs, &a.output, &opts, &a.read.options())?;
    warn_skipped(&rendered.skipped, verbosity);
    note(&rendered.notes, verbosity);
    Ok(ExitCode::SUCCESS)
}

fn diff(a: args::DiffArgs, verbosity: Verbosity) -> Result<ExitCode> {
    let json = a.json;
    let comparison = nflame_pipeline::compare(&a.into_options(command_line()))?;
    warn_skipped(&comparison.skipped, verbosity);
    note(&comparison.notes, verbosity);
    let stdout = io::stdout();
    let mut w = io::BufWriter::new(stdout.lock());
    if json {
        comparison.write_json(&mut w)?;
    } else {
        comparison.write_text(&mut w)?;
    }
    w.flush()?;
    // The process ends here: freeing millions of stacks one by one is wasted time.
    std::mem::forget(comparison);
    Ok(ExitCode::SUCCESS)
}

fn export(a: args::Export, verbosity: Verbosity) -> Result<ExitCode> {
    use nflame_profile::export::{ExportMeta, Format};
    let format: Format = a.format.parse()?;
    let mut meta = ExportMeta::new(String::new());
    meta.event = a.event;
    meta.period_ns = a.period_ns;
    let skipped =
        nflame_pipeline::convert::export(&a.input, &a.output, format, &meta, &a.read.options())?;
    warn_skipped(&skipped, verbosity);
    Ok(ExitCode::SUCCESS)
}

fn man(a: args::Man) -> Result<ExitCode> {
    let cmd = <Cli as clap::CommandFactory>::command();
    std::fs::create_dir_all(&a.output)
        .with_context(|| format!("creating {}", a.output.display()))?;
    let mut pages = vec![(String::from("nflame"), cmd.clone())];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        pages.push((format!("nflame-{}", sub.get_name()), sub.clone()));
    }
    for (name, page) in pages {
        let path = a.output.join(format!("{name}.1"));
        nflame_profile::io::write_atomically(&path, |w| {
            clap_mangen::Man::new(page.name(name.clone())).render(w)
        })?;
    }
    Ok(ExitCode::SUCCESS)
}

fn report(a: args::ReportArgs, verbosity: Verbosity) -> Result<ExitCode> {
    let json = a.json;
    let (diagnosis, skipped) = nflame_pipeline::diagnose_inputs(&a.into_options(command_line()))?;
    warn_skipped(&skipped, verbosity);
    let stdout = io::stdout();
    let mut w = io::BufWriter::new(stdout.lock());
    if json {
        diagnosis.write_json(&mut w)?;
    } else {
        diagnosis.write_text(&mut w)?;
    }
    w.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn collapse(a: args::Collapse, verbosity: Verbosity) -> Result<ExitCode> {
    let done = nflame_pipeline::convert::collapse(&a.input, &a.output, &a.options())?;
    let stats = &done.stats;
    if verbosity != Verbosity::Quiet {
        if let Some(warning) = stats.warning(verbosity == Verbosity::Verbose) {
            eprintln!("nflame: warning: {warning}");
        }
    }
    if verbosity == Verbosity::Verbose {
        eprintln!(
            "nflame: {} samples, {} distinct stacks, {} samples of other events skipped, \
             {} lines of perf's other output skipped (side-band records, source lines)",
            stats.samples, done.stacks, stats.skipped_other_events, stats.skipped_lines
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn filter(a: args::Filter, verbosity: Verbosity) -> Result<ExitCode> {
    if a.include.is_empty() && a.exclude.is_empty() {
        anyhow::bail!("give at least one --include or --exclude pattern");
    }
    let f = FrameFilter::new(&a.include, &a.exclude)?;
    let stats = nflame_pipeline::convert::filter(&a.input, &a.output, &f, &a.read.options())?;
    warn_skipped(&stats.skipped, verbosity);
    if stats.kept_lines == 0 && verbosity != Verbosity::Quiet {
        eprintln!(
            "nflame: warning: no stack matched; {} is empty",
            a.output.display()
        );
    }
    if verbosity == Verbosity::Verbose {
        let m = stats.measure;
        eprintln!(
            "nflame: kept {} in {} stacks, dropped {} in {} stacks",
            m.with_symbol(stats.kept_samples),
            stats.kept_lines,
            m.with_symbol(stats.dropped_samples),
            stats.dropped_lines
        );
    }
    Ok(ExitCode::SUCCESS)
}
