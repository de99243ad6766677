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
        Command::Render(a) => render(a),
        Command::Diff(a) => diff(a),
        Command::Report(a) => report(a),
        Command::Demo(a) => demo::run(a),
        Command::Worker(a) => demo::worker(a),
        Command::Export(a) => export(a),
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
    let out = a.output.as_ref().map(Output::create).transpose()?;
    let removed = a.removed.as_ref().map(Output::create).transpose()?;
    let (before, after) = rayon::join(
        || Profile::from_path(&a.before),
        || Profile::from_path(&a.after),
    );
    let diff = Diff::new(before?, after?, &diff_opts)?;
    let rules = verdict::rules(a.rules.as_deref())?;
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
    // Both profiles as one tree of frames feeds the graph, the frame report and
    // the category report; the SVG's metadata (both profiles compressed) needs
    // only the profiles: build them side by side.
    let want_svg = out.is_some() || removed.is_some();
    let (tree, metadata) = rayon::join(
        || diff.tree(),
        || want_svg.then(|| nflame_render::diff_metadata(&diff, &o)),
    );
    let metadata = metadata.unwrap_or_default();
    // The graphs, the frame report and the category report are independent:
    // compute them side by side.
    let draw = |wanted: bool, removed_view: bool| -> Result<Option<Vec<u8>>> {
        if !wanted {
            return Ok(None);
        }
        let mut svg = Vec::with_capacity(metadata.len() + (1 << 20));
        if removed_view {
            nflame_render::render_removed_with(&diff, &metadata, &o, &mut svg)?;
        } else {
            nflame_render::render_diff_with(&diff, &tree, &metadata, &o, &mut svg)?;
        }
        Ok(Some(svg))
    };
    let ((graph, reverse), (report, categories)) = rayon::join(
        || {
            rayon::join(
                || draw(out.is_some(), false),
                || draw(removed.is_some(), true),
            )
        },
        || {
            rayon::join(
                || diff.report_from(&tree),
                || verdict::diff_report_tree(&tree, &rules, a.scale_before, a.scale_after),
            )
        },
    );
    let categories = categories?;
    for (output, svg) in [(out, graph?), (removed, reverse?)] {
        if let (Some(mut output), Some(svg)) = (output, svg) {
            output
                .writer()
                .write_all(&svg)
                .map_err(|e| output.write_error(e))?;
            output.commit()?;
        }
    }
    let stdout = io::stdout();
    let mut w = io::BufWriter::new(stdout.lock());
    if a.json {
        let mut v = serde_json::to_value(&categories)?;
        v["frames"] = serde_json::to_value(&report)?;
        serde_json::to_writer_pretty(&mut w, &v)?;
        writeln!(w)?;
    } else {
        categories.write_text(&mut w)?;
        writeln!(w)?;
        report.write_text(&mut w)?;
    }
    w.flush()?;
    // The process ends here: freeing millions of stacks one by one is wasted time.
    std::mem::forget(tree);
    std::mem::forget(diff);
    Ok(ExitCode::SUCCESS)
}

fn export(a: args::Export) -> Result<ExitCode> {
    use nflame_profile::export::{export_file, ExportMeta, Format};
    let format: Format = a.format.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    let profile = Profile::from_path(&a.input)?;
    let mut meta = ExportMeta::new(
        a.input
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "profile".into()),
    );
    meta.event = a.event;
    meta.period_ns = a.period_ns;
    export_file(&profile, &meta, format, &a.output)?;
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

fn report(a: args::Report) -> Result<ExitCode> {
    let rules = verdict::rules(a.rules.as_deref())?;
    // Fail on an unwritable page before reading anything.
    let mut html = a.html.as_ref().map(Output::create).transpose()?;
    let profile = Profile::from_path(&a.profile)?;
    let after = a.after.as_ref().map(Profile::from_path).transpose()?;
    let stdout = io::stdout();
    let mut w = io::BufWriter::new(stdout.lock());
    let mut text = Vec::new();
    match &after {
        None => {
            let report = verdict::report(&profile, &rules, a.per)?;
            report.write_text(&mut text)?;
            if a.json {
                serde_json::to_writer_pretty(&mut w, &report)?;
                writeln!(w)?;
            }
        }
        Some(after) => {
            let d = verdict::diff_report(&profile, after, &rules, a.per, a.per_after)?;
            d.write_text(&mut text)?;
            if a.json {
                serde_json::to_writer_pretty(&mut w, &d)?;
                writeln!(w)?;
            }
        }
    }
    if !a.json {
        w.write_all(&text)?;
    }
    w.flush()?;
    if let Some(mut out) = html.take() {
        let page = html_page(
            &a,
            &profile,
            after.as_ref(),
            String::from_utf8_lossy(&text).into_owned(),
        )?;
        nflame_render::html::write_html(&page, out.writer()).map_err(|e| out.write_error(e))?;
        out.commit()?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The one-file incident report: verdict and table, the graphs, the commands.
fn html_page(
    a: &args::Report,
    before: &Profile,
    after: Option<&Profile>,
    verdict_text: String,
) -> Result<nflame_render::html::HtmlPage> {
    use nflame_render::html::{Block, HtmlPage};
    let name = |p: &std::path::Path| p.display().to_string();
    let graph = |p: &Profile, path: &std::path::Path| -> Result<Vec<u8>> {
        let mut o = nflame_render::RenderOptions::default();
        o.title = name(path);
        let mut ctx = svg_context("profile");
        ctx.inputs = vec![name(path)];
        ctx.command = None;
        o.context = Some(ctx);
        let mut svg = Vec::new();
        nflame_render::render_profile(p, &o, &mut svg)?;
        Ok(svg)
    };
    let mut blocks = vec![Block::Heading("Verdict".into()), Block::Pre(verdict_text)];
    let mut commands = vec![std::env::args_os()
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")];
    // The commands that made the inputs, when they are nflame SVGs that say so.
    for p in std::iter::once(&a.profile).chain(a.after.as_ref()) {
        if let Ok(mut input) = Input::open(p) {
            if input.starts_like_svg().unwrap_or(false) {
                if let Ok(e) = nflame_profile::embed::read_svg(&mut input) {
                    if let Some(c) = e.context.and_then(|c| c.command) {
                        commands.push(c);
                    }
                }
            }
        }
    }
    match after {
        None => {
            blocks.push(Block::Heading("Flame graph".into()));
            blocks.push(Block::Svg {
                caption: format!("{} ({} samples)", name(&a.profile), before.total()),
                svg: graph(before, &a.profile)?,
            });
        }
        Some(after) => {
            let after_path = a.after.as_deref().expect("after is given");
            let mut dopts = nflame_profile::diff::DiffOptions::default();
            dopts.scale_before = a.per;
            dopts.scale_after = a.per_after;
            let diff = Diff::new(before.clone(), after.clone(), &dopts)?;
            let mut o = nflame_render::RenderOptions::default();
            o.title = format!("{} → {}", name(&a.profile), name(after_path));
            o.context = Some(svg_context("diff"));
            let mut dsvg = Vec::new();
            nflame_render::render_diff(&diff, &o, &mut dsvg)?;
            blocks.push(Block::Heading("Differential flame graph".into()));
            blocks.push(Block::Svg {
                caption: "widths: after; colour: change of inclusive share (red grew, blue shrank); hatched: gone after".into(),
                svg: dsvg,
            });
            blocks.push(Block::Heading("Before".into()));
            blocks.push(Block::Svg {
                caption: format!("{} ({} samples)", name(&a.profile), before.total()),
                svg: graph(before, &a.profile)?,
            });
            blocks.push(Block::Heading("After".into()));
            blocks.push(Block::Svg {
                caption: format!("{} ({} samples)", name(after_path), after.total()),
                svg: graph(after, after_path)?,
            });
        }
    }
    blocks.push(Block::Heading("Commands".into()));
    blocks.push(Block::Commands(commands));
    Ok(HtmlPage {
        title: match &a.after {
            None => format!("nflame report: {}", name(&a.profile)),
            Some(b) => format!("nflame report: {} → {}", name(&a.profile), name(b)),
        },
        blocks,
    })
}

fn scaling_text(diff: &Diff) -> &'static str {
    use nflame_profile::diff::Scaling;
    match diff.scaling() {
        Scaling::None => "raw counts",
        Scaling::Normalized => "before normalised to after's total",
        Scaling::PerUnit => "samples per unit of work",
    }
}

fn collapse(a: args::Collapse, verbosity: Verbosity) -> Result<ExitCode> {
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
    if verbosity == Verbosity::Verbose {
        eprintln!(
            "nflame: {} samples, {} distinct stacks, {} samples of other events skipped",
            stats.samples,
            profile.len(),
            stats.skipped_other_events
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn filter(a: args::Filter, verbosity: Verbosity) -> Result<ExitCode> {
    if a.include.is_empty() && a.exclude.is_empty() {
        anyhow::bail!("give at least one --include or --exclude pattern");
    }
    let f = FrameFilter::new(&a.include, &a.exclude)?;
    let mut out = Output::create(&a.output)?;
    let mut input = Input::open(&a.input)?;
    let stats = f.filter_folded(&mut input, &mut out)?;
    out.commit()?;
    if stats.kept_lines == 0 && verbosity != Verbosity::Quiet {
        eprintln!(
            "nflame: warning: no stack matched; {} is empty",
            a.output.display()
        );
    }
    if verbosity == Verbosity::Verbose {
        eprintln!(
            "nflame: kept {} samples in {} stacks, dropped {} samples in {} stacks",
            stats.kept_samples, stats.kept_lines, stats.dropped_samples, stats.dropped_lines
        );
    }
    Ok(ExitCode::SUCCESS)
}
