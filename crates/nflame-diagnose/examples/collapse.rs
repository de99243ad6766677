//! Collapses `perf script` text into folded stacks with nflame's collapser
//! (how the lab fixtures `fixtures/folded/lab-*.folded.gz` were made):
//!
//! ```text
//! cargo run -p nflame-diagnose --example collapse -- IN.perf.txt[.gz] OUT.folded[.gz]
//! ```

use std::process::ExitCode;

use nflame_profile::io::{Input, Output};
use nflame_profile::perf_script::{collapse, CollapseOptions};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = args.as_slice() else {
        eprintln!("usage: collapse IN.perf.txt[.gz] OUT.folded[.gz]");
        return ExitCode::from(2);
    };
    match run(input, output) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The error and its causes, each once.
            let mut msg = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                msg.push_str(&format!(": {c}"));
                cause = c.source();
            }
            eprintln!("collapse: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn run(input: &str, output: &str) -> Result<(), nflame_profile::Error> {
    let mut inp = Input::open(input)?;
    let (profile, stats) = collapse(&mut inp, &CollapseOptions::default())?;
    let mut out = Output::create(output)?;
    profile
        .write_folded(out.writer())
        .map_err(|e| out.write_error(e))?;
    out.commit()?;
    eprintln!(
        "{input}: {} samples of {:?}, {} distinct stacks -> {output}",
        stats.samples,
        stats.event,
        profile.len()
    );
    Ok(())
}
