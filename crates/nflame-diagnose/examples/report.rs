//! Prints the diagnosis of one folded profile, or the comparison of two, the way
//! `nflame report` / `nflame diff` do:
//!
//! ```text
//! cargo run -p nflame-diagnose --example report -- [--json] [--rules FILE] \
//!     [--per N] PROFILE [[--per M] PROFILE_AFTER]
//! ```
//!
//! `--per` applies to the profile that follows it.

use std::io::Write;
use std::process::ExitCode;

use nflame_diagnose::{CategoryReport, CategoryReportOptions, ChangeReport, Rules};
use nflame_profile::Profile;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The error and its causes, each once.
            let mut msg = e.to_string();
            let mut cause = std::error::Error::source(&*e);
            while let Some(c) = cause {
                msg.push_str(&format!(": {c}"));
                cause = c.source();
            }
            eprintln!("report: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut json = false;
    let mut rules = Rules::default();
    let mut per = None;
    let mut inputs: Vec<(String, Option<f64>)> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--json" => json = true,
            "--rules" => {
                let path = args.next().ok_or("--rules needs a file")?;
                rules = Rules::parse(&path, &std::fs::read_to_string(&path)?)?;
            }
            "--per" => per = Some(args.next().ok_or("--per needs a number")?.parse()?),
            _ => inputs.push((a, per.take())),
        }
    }
    let mut reports = Vec::new();
    for (path, per) in &inputs {
        let profile = Profile::from_path(path)?;
        let mut opts = CategoryReportOptions::default();
        opts.per = *per;
        reports.push(CategoryReport::new(&profile, &rules, &opts)?);
    }
    let mut out = std::io::stdout().lock();
    match (reports.pop(), reports.pop()) {
        (Some(r), None) if json => serde_json::to_writer_pretty(&mut out, &r)?,
        (Some(r), None) => r.write_text(&mut out)?,
        (Some(after), Some(before)) if reports.is_empty() => {
            let d = ChangeReport::new(before, after);
            if json {
                serde_json::to_writer_pretty(&mut out, &d)?;
            } else {
                d.write_text(&mut out)?;
            }
        }
        _ => return Err("give one profile (report) or two (diff)".into()),
    }
    writeln!(out)?;
    Ok(())
}
