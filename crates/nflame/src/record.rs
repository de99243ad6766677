//! `nflame record`: glue between the sampler, the symbolizer and the outputs (being written).

use std::process::ExitCode;

/// Arguments of `nflame record` (being written).
#[derive(Debug, clap::Args)]
pub struct RecordArgs {}

/// Runs `nflame record`.
pub fn run(_args: RecordArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("nflame record is not available in this build yet")
}
