//! `nflame demo`: the whole job on a built-in workload, with nothing but nflame.
//!
//! It starts a loopback HTTP server, a load client and a userland relay (each a
//! child process running `nflame __worker …`, see [`crate::workload`]), records
//! the server with the client talking to it directly, then through the relay,
//! and writes `relayed.svg`, `direct.svg`, `diff.svg` (plus the folded
//! profiles) into the output directory and prints the verdict — the same
//! shape of evidence `nflame record` + `nflame diff` give for docker-proxy.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use clap::{Args, Subcommand};
use nflame_profile::diff::{Diff, DiffOptions};
use nflame_profile::io::Output;
use nflame_profile::Profile;
use nflame_sampler::{RecordOptions, Target};

use crate::workload;

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
    /// Load TARGET with CONNECTIONS connections for SECS seconds, from the
    /// first line read on standard input (the recorder samples by then);
    /// prints the requests done.
    Load {
        target: SocketAddr,
        connections: usize,
        secs: f64,
    },
}

/// Runs one worker role until its deadline.
pub fn worker(args: WorkerArgs) -> Result<ExitCode> {
    let deadline = |secs: f64| Instant::now() + Duration::from_secs_f64(secs.clamp(0.1, 3600.0));
    match args.role {
        Role::Server { secs } => {
            workload::set_process_name("nflame-server");
            workload::serve(deadline(secs))?;
        }
        Role::Relay { upstream, secs } => {
            workload::set_process_name("nflame-relay");
            workload::relay(upstream, deadline(secs))?;
        }
        Role::Load {
            target,
            connections,
            secs,
        } => {
            workload::set_process_name("nflame-load");
            let mut go = String::new();
            std::io::stdin()
                .read_line(&mut go)
                .context("waiting for the go line")?;
            let n = workload::load(
                target,
                connections,
                Duration::from_secs_f64(secs.clamp(0.1, 3600.0)),
            )?;
            println!("{n}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A child worker, killed when dropped.
struct Worker {
    child: Child,
    stdout: BufReader<ChildStdout>,
}

impl Worker {
    fn spawn(args: &[String]) -> Result<Worker> {
        Worker::spawn_with(args, Stdio::null())
    }

    fn spawn_with(args: &[String], stdin: Stdio) -> Result<Worker> {
        let exe = std::env::current_exe().context("finding nflame's own executable")?;
        let mut child = Command::new(exe)
            .arg("__worker")
            .args(args)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting the demo worker {args:?}"))?;
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        Ok(Worker { child, stdout })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The first line the worker prints (an address, or a count).
    fn line(&mut self) -> Result<String> {
        let mut s = String::new();
        self.stdout.read_line(&mut s)?;
        if s.trim().is_empty() {
            bail!(
                "demo worker {} printed nothing (did it fail to start?)",
                self.pid()
            );
        }
        Ok(s.trim().to_string())
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One recorded run of the demo.
struct Run {
    profile: Profile,
    requests: u64,
    /// How long the load ran (its own clock): requests/s.
    load_secs: f64,
    /// How long the recording ran.
    secs: f64,
    samples: u64,
    lost: u64,
    event: String,
}

fn record_run(name: &str, target: SocketAddr, extra_pids: &[u32], a: &DemoArgs) -> Result<Run> {
    let secs = a.duration;
    // The load starts when sampling does (the first progress call comes from
    // the recording loop, once every counter is enabled): on a loaded
    // machine, opening the counters can outlast a load started beforehand.
    let mut load = Worker::spawn_with(
        &[
            "load".into(),
            target.to_string(),
            a.connections.to_string(),
            secs.to_string(),
        ],
        Stdio::piped(),
    )?;
    let mut go = load.child.stdin.take();
    let mut pids = extra_pids.to_vec();
    pids.push(load.pid());
    let mut opts = RecordOptions::new(Target::Pids(pids));
    opts.frequency = a.freq;
    // Ended when the load is done (below); this only bounds it.
    opts.duration = Some(Duration::from_secs_f64(secs + 60.0));
    let stop = AtomicBool::new(false);
    eprintln!(
        "nflame demo: recording {name} for {secs} s ({} connections)…",
        a.connections
    );
    let recording = nflame_sampler::record(&opts, &stop, |_| {
        if let Some(mut w) = go.take() {
            // A load that is gone already shows in its request count.
            let _ = w.write_all(b"go\n");
        } else if load.child.try_wait().is_ok_and(|s| s.is_some()) {
            stop.store(true, Ordering::Relaxed);
        }
    })
    .with_context(|| format!("recording the {name} run"))?;
    let requests: u64 = load
        .line()?
        .parse()
        .map_err(|e| anyhow!("the load client's request count: {e}"))?;
    let (profile, _stats) = nflame_symbolizer::fold(&recording, &Default::default())
        .with_context(|| format!("symbolizing the {name} run"))?;
    if profile.is_empty() {
        bail!("the {name} run recorded no samples");
    }
    Ok(Run {
        samples: profile.total(),
        profile,
        requests,
        load_secs: secs,
        secs: recording.duration.as_secs_f64(),
        lost: recording.lost,
        event: recording.event.clone(),
    })
}

fn write_outputs(
    dir: &Path,
    name: &str,
    run: &Run,
    opts: &nflame_render::RenderOptions,
) -> Result<()> {
    let mut o = opts.clone();
    o.title = format!("nflame demo: {name}");
    let mut ctx = crate::svg_context("profile");
    ctx.event = Some(run.event.clone());
    ctx.duration_secs = Some(run.secs);
    ctx.samples = Some(run.samples);
    ctx.lost = Some(run.lost);
    ctx.targets = vec![format!(
        "{name} run of the demo workload, {} requests",
        run.requests
    )];
    o.context = Some(ctx);
    let mut out = Output::create(dir.join(format!("{name}.svg")))?;
    nflame_render::render_profile(&run.profile, &o, out.writer())?;
    out.commit()?;
    let mut out = Output::create(dir.join(format!("{name}.folded.gz")))?;
    run.profile
        .write_folded(out.writer())
        .map_err(|e| out.write_error(e))?;
    out.commit()?;
    Ok(())
}

/// Runs the demo.
pub fn run(a: DemoArgs) -> Result<ExitCode> {
    if !(a.duration > 0.0 && a.duration <= 600.0) {
        bail!("--duration must be between 0 and 600 seconds");
    }
    std::fs::create_dir_all(&a.output)
        .with_context(|| format!("creating the output directory {}", a.output.display()))?;
    let total = a.duration * 2.0 + 30.0;
    let mut server = Worker::spawn(&["server".into(), total.to_string()])?;
    let server_addr: SocketAddr = server.line()?.parse()?;
    let direct = record_run("direct", server_addr, &[server.pid()], &a)?;
    let mut relay = Worker::spawn(&["relay".into(), server_addr.to_string(), total.to_string()])?;
    let relay_addr: SocketAddr = relay.line()?.parse()?;
    let relayed = record_run("relayed", relay_addr, &[server.pid(), relay.pid()], &a)?;
    drop(relay);
    drop(server);

    let render = nflame_render::RenderOptions::default();
    write_outputs(&a.output, "direct", &direct, &render)?;
    write_outputs(&a.output, "relayed", &relayed, &render)?;

    // relayed → direct, as `nflame diff bridge.folded host.folded`: per request.
    let mut dopts = DiffOptions::default();
    dopts.scale_before = Some(relayed.requests.max(1) as f64);
    dopts.scale_after = Some(direct.requests.max(1) as f64);
    let diff = Diff::new(relayed.profile.clone(), direct.profile.clone(), &dopts)?;
    let mut o = render.clone();
    o.title = "nflame demo: relayed → direct, CPU per request".into();
    o.count_name = "samples per request".into();
    o.context = Some(crate::svg_context("diff"));
    let mut out = Output::create(a.output.join("diff.svg"))?;
    nflame_render::render_diff(&diff, &o, out.writer())?;
    out.commit()?;

    let stdout = std::io::stdout();
    let mut w = stdout.lock();
    let rps = |r: &Run| r.requests as f64 / r.load_secs.max(1e-9);
    writeln!(
        w,
        "direct:  {:>9.0} requests/s, {:.4} samples per request ({} samples)",
        rps(&direct),
        direct.samples as f64 / direct.requests.max(1) as f64,
        direct.samples
    )?;
    writeln!(
        w,
        "relayed: {:>9.0} requests/s, {:.4} samples per request ({} samples)",
        rps(&relayed),
        relayed.samples as f64 / relayed.requests.max(1) as f64,
        relayed.samples
    )?;
    crate::verdict::print_diff(
        &mut w,
        &relayed.profile,
        &direct.profile,
        Some(relayed.requests as f64),
        Some(direct.requests as f64),
    )?;
    writeln!(
        w,
        "\nwrote {}/{{direct,relayed,diff}}.svg and the folded profiles",
        a.output.display()
    )?;
    Ok(ExitCode::SUCCESS)
}
