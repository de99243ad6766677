//! The one-file incident page of `nflame report --html`: the verdict and its
//! table, the flame graphs (and, for two profiles, the differential graph),
//! and the commands that made the page and its inputs. Writing HTML is
//! `nflame-render`'s ([`nflame_render::html`]); this module picks the blocks.

use std::path::Path;

use nflame_profile::diff::{Diff, DiffOptions};
use nflame_profile::io::Input;
use nflame_profile::Profile;
use nflame_render::html::{Block, HtmlPage};
use nflame_render::RenderOptions;

use crate::diagnosis::DiagnosisOptions;
use crate::{svg_context, Error};

/// The page: verdict and table (`verdict_text`, as printed), the graphs, the
/// commands. `before` is the profile of `opts.profile`, `after` that of
/// `opts.after`.
pub fn html_page(
    opts: &DiagnosisOptions,
    before: &Profile,
    after: Option<&Profile>,
    verdict_text: String,
) -> Result<HtmlPage, Error> {
    let name = |p: &Path| p.display().to_string();
    let graph = |p: &Profile, path: &Path| -> Result<Vec<u8>, Error> {
        let mut o = RenderOptions::default();
        o.title = name(path);
        let mut ctx = svg_context("profile", None);
        ctx.inputs = vec![name(path)];
        o.context = Some(ctx);
        let mut svg = Vec::new();
        nflame_render::render_profile(p, &o, &mut svg)?;
        Ok(svg)
    };
    let mut blocks = vec![Block::Heading("Verdict".into()), Block::Pre(verdict_text)];
    let mut commands: Vec<String> = opts.command_line.iter().cloned().collect();
    // The commands that made the inputs, when they are nflame SVGs that say so.
    for p in std::iter::once(&opts.profile).chain(opts.after.as_ref()) {
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
    match (after, opts.after.as_deref()) {
        (Some(after), Some(after_path)) => {
            let mut dopts = DiffOptions::default();
            dopts.scale_before = opts.per;
            dopts.scale_after = opts.per_after;
            let diff = Diff::new(before.clone(), after.clone(), &dopts)?;
            let mut o = RenderOptions::default();
            o.title = format!("{} → {}", name(&opts.profile), name(after_path));
            o.context = Some(svg_context("diff", opts.command_line.as_deref()));
            let mut dsvg = Vec::new();
            nflame_render::render_diff(&diff, &o, &mut dsvg)?;
            blocks.push(Block::Heading("Differential flame graph".into()));
            blocks.push(Block::Svg {
                caption: "widths: after; colour: change of inclusive share (red grew, blue shrank); hatched: gone after".into(),
                svg: dsvg,
            });
            blocks.push(Block::Heading("Before".into()));
            blocks.push(Block::Svg {
                caption: format!(
                    "{} ({})",
                    name(&opts.profile),
                    before.measure().with_symbol(before.total())
                ),
                svg: graph(before, &opts.profile)?,
            });
            blocks.push(Block::Heading("After".into()));
            blocks.push(Block::Svg {
                caption: format!(
                    "{} ({})",
                    name(after_path),
                    after.measure().with_symbol(after.total())
                ),
                svg: graph(after, after_path)?,
            });
        }
        _ => {
            blocks.push(Block::Heading("Flame graph".into()));
            blocks.push(Block::Svg {
                caption: format!(
                    "{} ({})",
                    name(&opts.profile),
                    before.measure().with_symbol(before.total())
                ),
                svg: graph(before, &opts.profile)?,
            });
        }
    }
    blocks.push(Block::Heading("Commands".into()));
    blocks.push(Block::Commands(commands));
    Ok(HtmlPage {
        title: match &opts.after {
            None => format!("nflame report: {}", name(&opts.profile)),
            Some(b) => format!("nflame report: {} → {}", name(&opts.profile), name(b)),
        },
        blocks,
    })
}
