//! `nflame demo`: the whole job on a built-in workload, with nothing but nflame.
//!
//! It starts a loopback HTTP server, a load client and a userland relay (each a
//! child process running `PROGRAM __worker …`, see [`crate::workload`]), records
//! the server with the client talking to it directly, then through the relay,
//! and writes `relayed.svg`, `direct.svg`, `diff.svg` (plus the folded
//! profiles) into the output directory and prints the verdict — the same
//! shape of evidence `nflame record` + `nflame diff` give for docker-proxy.

use std::io::{self, BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nflame_profile::diff::{Diff, DiffOptions};
use nflame_profile::io::Output;
use nflame_profile::Profile;
use nflame_render::RenderOptions;
use nflame_sampler::{RecordOptions, Target};

/// What `nflame demo` does.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DemoOptions {
    /// Directory for relayed.svg, direct.svg, diff.svg and the folded
    /// profiles. Default `nflame-demo`.
    pub output: PathBuf,
    /// Seconds of load and recording for each of the two runs. Default 5.
    pub duration: f64,
    /// Concurrent keep-alive connections of the load client. Default 32.
    pub connections: usize,
    /// Sampling frequency in Hz. Default 999.
    pub freq: u64,
    /// The program whose `__worker ROLE …` runs a workload role (nflame's
    /// own executable). Default: this process's executable.
    pub worker_program: Option<PathBuf>,
    /// The command line stored in the SVGs. Default none.
    pub command_line: Option<String>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            output: PathBuf::from("nflame-demo"),
            duration: 5.0,
            connections: 32,
            freq: 999,
            worker_program: None,
            command_line: None,
        }
    }
}

/// Why the demo failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    /// The duration is out of range.
    #[error("--duration must be between 0 and 600 seconds")]
    Duration,
    /// The output directory cannot be made.
    #[error("creating the output directory {}", path.display())]
    OutputDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A workload process could not be started or did not answer.
    #[error("the demo worker {role}: {problem}")]
    Worker {
        /// Its role.
        role: String,
        /// What went wrong.
        problem: String,
    },
    /// Recording a run failed.
    #[error("recording the {run} run")]
    Record {
        /// `direct` or `relayed`.
        run: &'static str,
        /// Why.
        #[source]
        source: nflame_sampler::Error,
    },
    /// Symbolizing a run failed.
    #[error("symbolizing the {run} run")]
    Fold {
        /// `direct` or `relayed`.
        run: &'static str,
        /// Why.
        #[source]
        source: nflame_symbolizer::Error,
    },
    /// A run recorded nothing.
    #[error("the {0} run recorded no samples")]
    NoSamples(&'static str),
    /// Writing a profile or a graph, or comparing the runs.
    #[error(transparent)]
    Profile(#[from] nflame_profile::Error),
    /// Drawing a graph.
    #[error(transparent)]
    Render(#[from] nflame_render::Error),
    /// Writing the verdict.
    #[error(transparent)]
    Report(#[from] crate::Error),
    /// Writing the text results.
    #[error("writing the results")]
    Write(#[source] io::Error),
}

/// A child worker, killed when dropped.
struct Worker {
    role: String,
    child: Child,
    stdout: BufReader<ChildStdout>,
}

impl Worker {
    fn spawn(program: &Path, args: &[String]) -> Result<Worker, DemoError> {
        Worker::spawn_with(program, args, Stdio::null())
    }

    fn spawn_with(program: &Path, args: &[String], stdin: Stdio) -> Result<Worker, DemoError> {
        let role = args.first().cloned().unwrap_or_default();
        let mut child = Command::new(program)
            .arg("__worker")
            .args(args)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| DemoError::Worker {
                role: role.clone(),
                problem: format!("cannot start {}: {e}", program.display()),
            })?;
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        Ok(Worker {
            role,
            child,
            stdout,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The first line the worker prints (an address, or a count).
    fn line(&mut self) -> Result<String, DemoError> {
        let mut s = String::new();
        let problem = match self.stdout.read_line(&mut s) {
            Ok(_) if !s.trim().is_empty() => return Ok(s.trim().to_string()),
            Ok(_) => format!("pid {} printed nothing (did it fail to start?)", self.pid()),
            Err(e) => format!("pid {}: {e}", self.pid()),
        };
        Err(DemoError::Worker {
            role: self.role.clone(),
            problem,
        })
    }

    fn parsed<T: std::str::FromStr>(&mut self, what: &str) -> Result<T, DemoError> {
        let line = self.line()?;
        line.parse().map_err(|_| DemoError::Worker {
            role: self.role.clone(),
            problem: format!("printed {line:?}, not {what}"),
        })
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

fn record_run(
    program: &Path,
    name: &'static str,
    target: SocketAddr,
    extra_pids: &[u32],
    o: &DemoOptions,
) -> Result<Run, DemoError> {
    let secs = o.duration;
    // The load starts when sampling does (the first progress call comes from
    // the recording loop, once every counter is enabled): on a loaded
    // machine, opening the counters can outlast a load started beforehand.
    let mut load = Worker::spawn_with(
        program,
        &[
            "load".into(),
            target.to_string(),
            o.connections.to_string(),
            secs.to_string(),
        ],
        Stdio::piped(),
    )?;
    let mut go = load.child.stdin.take();
    let mut pids = extra_pids.to_vec();
    pids.push(load.pid());
    let mut opts = RecordOptions::new(Target::Pids(pids));
    opts.frequency = o.freq;
    // Ended when the load is done (below); this only bounds it.
    opts.duration = Some(Duration::from_secs_f64(secs + 60.0));
    let stop = AtomicBool::new(false);
    eprintln!(
        "nflame demo: recording {name} for {secs} s ({} connections)…",
        o.connections
    );
    let recording = nflame_sampler::record(&opts, &stop, |_| {
        if let Some(mut w) = go.take() {
            // A load that is gone already shows in its request count.
            let _ = w.write_all(b"go\n");
        } else if load.child.try_wait().is_ok_and(|s| s.is_some()) {
            stop.store(true, Ordering::Relaxed);
        }
    })
    .map_err(|source| DemoError::Record { run: name, source })?;
    let requests: u64 = load.parsed("a request count")?;
    let (profile, _stats) = nflame_symbolizer::fold(&recording, &Default::default())
        .map_err(|source| DemoError::Fold { run: name, source })?;
    if profile.is_empty() {
        return Err(DemoError::NoSamples(name));
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
    opts: &RenderOptions,
    command_line: Option<&str>,
) -> Result<(), DemoError> {
    let mut o = opts.clone();
    o.title = format!("nflame demo: {name}");
    let mut ctx = crate::svg_context("profile", command_line);
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

/// Runs the demo, printing the throughput of both runs and the verdict to `w`.
pub fn run<W: Write + ?Sized>(o: &DemoOptions, w: &mut W) -> Result<(), DemoError> {
    if !(o.duration > 0.0 && o.duration <= 600.0) {
        return Err(DemoError::Duration);
    }
    let program = match &o.worker_program {
        Some(p) => p.clone(),
        None => std::env::current_exe().map_err(|e| DemoError::Worker {
            role: "server".into(),
            problem: format!("cannot find this program's executable: {e}"),
        })?,
    };
    std::fs::create_dir_all(&o.output).map_err(|source| DemoError::OutputDir {
        path: o.output.clone(),
        source,
    })?;
    let total = o.duration * 2.0 + 30.0;
    let mut server = Worker::spawn(&program, &["server".into(), total.to_string()])?;
    let server_addr: SocketAddr = server.parsed("an address")?;
    let direct = record_run(&program, "direct", server_addr, &[server.pid()], o)?;
    let mut relay = Worker::spawn(
        &program,
        &["relay".into(), server_addr.to_string(), total.to_string()],
    )?;
    let relay_addr: SocketAddr = relay.parsed("an address")?;
    let relayed = record_run(
        &program,
        "relayed",
        relay_addr,
        &[server.pid(), relay.pid()],
        o,
    )?;
    drop(relay);
    drop(server);

    let command_line = o.command_line.as_deref();
    let render = RenderOptions::default();
    write_outputs(&o.output, "direct", &direct, &render, command_line)?;
    write_outputs(&o.output, "relayed", &relayed, &render, command_line)?;

    // relayed → direct, as `nflame diff bridge.folded host.folded`: per request.
    let mut dopts = DiffOptions::default();
    dopts.scale_before = Some(relayed.requests.max(1) as f64);
    dopts.scale_after = Some(direct.requests.max(1) as f64);
    let diff = Diff::new(relayed.profile.clone(), direct.profile.clone(), &dopts)?;
    let mut ro = render.clone();
    ro.title = "nflame demo: relayed → direct, CPU per request".into();
    ro.count_name = Some("samples per request".into());
    ro.context = Some(crate::svg_context("diff", command_line));
    let mut out = Output::create(o.output.join("diff.svg"))?;
    nflame_render::render_diff(&diff, &ro, out.writer())?;
    out.commit()?;

    let rps = |r: &Run| r.requests as f64 / r.load_secs.max(1e-9);
    let line = |name: &str, r: &Run| {
        format!(
            "{name:<8} {:>9.0} requests/s, {:.4} samples per request ({} samples)",
            rps(r),
            r.samples as f64 / r.requests.max(1) as f64,
            r.samples
        )
    };
    writeln!(w, "{}", line("direct:", &direct)).map_err(DemoError::Write)?;
    writeln!(w, "{}", line("relayed:", &relayed)).map_err(DemoError::Write)?;
    crate::diagnosis::write_change(
        w,
        &relayed.profile,
        &direct.profile,
        Some(relayed.requests as f64),
        Some(direct.requests as f64),
    )?;
    writeln!(
        w,
        "\nwrote {}/{{direct,relayed,diff}}.svg and the folded profiles",
        o.output.display()
    )
    .map_err(DemoError::Write)?;
    Ok(())
}
