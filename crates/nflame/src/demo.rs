//! `nflame demo` and its hidden `__worker` roles: arguments, turned into
//! [`nflame_pipeline::demo::DemoOptions`] and [`nflame_pipeline::workload::Role`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};
use nflame_pipeline::demo::DemoOptions;
use nflame_pipeline::workload;

/// Arguments of `nflame demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Directory for relayed.svg, direct.svg, diff.svg and the folded profiles.
    #[arg(short, long, default_value = "nflame-demo")]
    pub output: PathBuf,
    /// Seconds of load and recording for each of the two runs.
    #[arg(short, long, default_value_t = 5.0)]
    pub duration: f64,
    /// Concurrent keep-alive connections of the load client.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Sampling frequency in Hz.
    #[arg(long, default_value_t = 999)]
    pub freq: u64,
}

impl DemoArgs {
    fn into_options(self) -> DemoOptions {
        let mut o = DemoOptions::default();
        o.output = self.output;
        o.duration = self.duration;
        o.connections = self.connections;
        o.freq = self.freq;
        o.command_line = Some(crate::command_line());
        o
    }
}

/// The hidden `__worker` subcommand: one role of the demo workload.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    #[command(subcommand)]
    pub role: Role,
}

#[derive(Debug, Subcommand)]
pub enum Role {
    /// Serve HTTP on 127.0.0.1 (prints the address) for SECS seconds.
    Server { secs: f64 },
    /// Relay 127.0.0.1 connections to UPSTREAM (prints the address) for SECS seconds.
    Relay { upstream: SocketAddr, secs: f64 },
    /// Load TARGET with CONNECTIONS connections for SECS seconds; prints the requests done.
    Load {
        target: SocketAddr,
        connections: usize,
        secs: f64,
    },
}

/// Runs one worker role until its deadline.
pub fn worker(args: WorkerArgs) -> Result<ExitCode> {
    let role = match args.role {
        Role::Server { secs } => workload::Role::Server { secs },
        Role::Relay { upstream, secs } => workload::Role::Relay { upstream, secs },
        Role::Load {
            target,
            connections,
            secs,
        } => workload::Role::Load {
            target,
            connections,
            secs,
        },
    };
    workload::run_role(&role)?;
    Ok(ExitCode::SUCCESS)
}

/// Runs the demo.
pub fn run(a: DemoArgs) -> Result<ExitCode> {
    nflame_pipeline::demo::run(&a.into_options(), &mut std::io::stdout().lock())?;
    Ok(ExitCode::SUCCESS)
}
