//! Docker-aware targets: which processes serve a published port or make up a
//! container, and the root label each gets (`[docker-proxy :8080]`,
//! `[container web]`, `[dockerd]`).
//!
//! [`DockerTargets::discover`] finds, from `/proc` alone (the reads live in
//! `procfs`; parsing here is tested on text):
//!
//! - for a published port (`--docker-port`): the `docker-proxy` whose command
//!   line has `-host-port PORT`, and the processes behind it: those in the
//!   network namespace that owns the proxy's `-container-ip` as a local
//!   address (`/proc/PID/net/fib_trie`), labelled with their container's name
//!   when their cgroup names a container, otherwise with that address;
//! - for a container (`--container NAME|ID`): its processes, by cgroup
//!   (`/proc/PID/cgroup` naming the 64-hex container id, as both the cgroupfs
//!   `/docker/ID` and systemd `docker-ID.scope` layouts do), and its
//!   `containerd-shim` (`-id ID`). A name is resolved to an id by
//!   `docker inspect` when the `docker` command and a running `dockerd` are
//!   there, otherwise from the `Name` and `ID` fields of
//!   `DATA_ROOT/containers/*/config.v2.json` (`DATA_ROOT` from dockerd's
//!   `--data-root`, `/etc/docker/daemon.json`, or `/var/lib/docker`); an id or
//!   id prefix also matches the ids seen in cgroups;
//! - `dockerd` and `containerd`, whenever they run.
//!
//! A process is believed to be `dockerd` (its flags, its data root, asking
//! `docker inspect`) or `containerd` only when it is what it claims:
//! running as root from a root-owned executable in nflame's own mount and
//! pid namespaces ([`procfs::daemon_trust`]); any user, and any
//! container's root, can run a program named `dockerd`. Others are left
//! out with a line in [`DockerTargets::skipped`] (and in the error, when
//! discovery fails). Docker's files are read as root's files only, within
//! bounds and without blocking ([`system::read_config`]).
//!
//! It does not record and knows no output format: the recorder samples every
//! CPU and the symbolizer, while folding, puts [`DockerTargets::root_labels`]
//! at the root of the chosen processes' stacks and keeps only the network
//! softirq part ([`NET_SOFTIRQ_FUNCTIONS`], under [`NET_SOFTIRQ_LABEL`]) of
//! every other task's (softirqs run in whatever task they interrupt, so the
//! receive path of a relayed connection is often charged to an unrelated
//! process or to `ksoftirqd`). Missing Docker is an error that says what was
//! looked for and how to fix it ([`DockerError`]). IPv6 container addresses
//! are not matched to a network namespace (the proxy itself is still found).
//!
//! Process facts come from `nflame-procfs` (bounded reads); parsing here is
//! tested on text.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nflame_procfs::process::{self as procfs, parse_cmdline};
use nflame_procfs::system;

/// What to look for. Default is nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DockerQuery {
    /// Published host ports: their `docker-proxy` and the processes behind it.
    pub ports: Vec<u16>,
    /// Containers by name or id (or id prefix): their processes and shim.
    pub containers: Vec<String>,
}

/// The part a process plays; its [`Role::label`] becomes the root frame.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Role {
    /// The `docker-proxy` publishing this host port.
    Proxy {
        /// The published host port.
        port: u16,
    },
    /// A process of a container (or behind a proxy, in the namespace that owns
    /// its container address).
    Container {
        /// The container's name, short id, or the address it was found by.
        name: String,
        /// The full container id, when the process's cgroup names one.
        id: Option<String>,
    },
    /// The container's `containerd-shim`.
    Shim {
        /// The container's name (or short id).
        container: String,
    },
    /// The Docker daemon.
    Dockerd,
    /// containerd.
    Containerd,
}

impl Role {
    /// The root frame: `[docker-proxy :8080]`, `[container web]`,
    /// `[containerd-shim web]`, `[dockerd]`, `[containerd]`.
    pub fn label(&self) -> String {
        match self {
            Role::Proxy { port } => format!("[docker-proxy :{port}]"),
            Role::Container { name, .. } => format!("[container {name}]"),
            Role::Shim { container } => format!("[containerd-shim {container}]"),
            Role::Dockerd => "[dockerd]".into(),
            Role::Containerd => "[containerd]".into(),
        }
    }
}

/// The root label of network softirq work done in other tasks.
pub const NET_SOFTIRQ_LABEL: &str = "[net softirq]";

/// Kernel functions that start the network softirq work: another task's
/// stack is kept from the outermost of these on.
pub const NET_SOFTIRQ_FUNCTIONS: [&str; 2] = ["net_rx_action", "net_tx_action"];

/// Docker is not there as asked; the message says what was looked for and
/// how to fix it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DockerError {
    /// No `docker-proxy` has `-host-port PORT`.
    #[error("no docker-proxy publishes port {port}: {explanation}")]
    NoProxy {
        /// The port asked for.
        port: u16,
        /// What was looked for, what was found instead, and what to do.
        explanation: String,
    },
    /// No container has this name or id.
    #[error("no container `{name}`: {explanation}")]
    NoContainer {
        /// The name or id asked for.
        name: String,
        /// Where it was looked for and what to do.
        explanation: String,
    },
    /// The container exists but no process runs in it.
    #[error(
        "container `{name}` (id {id}) has no running process (no /proc/*/cgroup names its id): \
         start it with `docker start {name}`"
    )]
    NotRunning {
        /// The name asked for.
        name: String,
        /// Its full id.
        id: String,
    },
}

/// A container: full id and name (without Docker's leading `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContainerRef {
    pub(crate) id: String,
    pub(crate) name: Option<String>,
}

impl ContainerRef {
    fn display_name(&self) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => short_id(&self.id).to_string(),
        }
    }
}

/// What `/proc` says about one process, for discovery.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ProcFacts {
    pub(crate) pid: u32,
    pub(crate) comm: String,
    pub(crate) args: Vec<String>,
    pub(crate) cgroup: String,
    pub(crate) netns: Option<u64>,
    /// For a process named like a daemon (`dockerd`, `containerd`): why it
    /// is not trusted as one, `None` when it is (or is no daemon).
    pub(crate) untrusted: Option<String>,
}

/// Names of the daemons whose processes must prove what they are.
const DAEMONS: [&str; 2] = ["dockerd", "containerd"];

impl ProcFacts {
    /// A daemon `name` that is trusted as such.
    fn is_daemon(&self, name: &str) -> bool {
        self.comm == name && self.untrusted.is_none()
    }
}

/// The chosen processes and their labels.
#[derive(Debug, Clone, Default)]
pub struct DockerTargets {
    /// Role of every chosen process, by pid.
    pub roles: BTreeMap<u32, Role>,
    /// One line per chosen process, for the user (`docker-proxy :18082  pid 812  -> 10.0.0.2:80`).
    pub found: Vec<String>,
    /// Things the user should know (e.g. "dockerd is not running").
    pub notes: Vec<String>,
    /// Processes claiming to be a daemon that were not trusted, a line each
    /// (`dockerd pid 42: not trusted as the Docker daemon: runs as uid 65534,
    /// not root`).
    pub skipped: Vec<String>,
    query: DockerQuery,
    containers: Vec<ContainerRef>,
}

impl DockerTargets {
    /// Finds the processes for `query` in `/proc` (see the module doc).
    pub fn discover(query: &DockerQuery) -> Result<DockerTargets, DockerError> {
        let procs = scan();
        let env = DockerEnv::of(&procs);
        let mut containers = Vec::new();
        for want in &query.containers {
            containers
                .push(resolve_container(want, &procs, &env).map_err(|e| with_skips(e, &env))?);
        }
        let mut t = DockerTargets {
            query: query.clone(),
            containers,
            skipped: env.skipped.clone(),
            ..DockerTargets::default()
        };
        t.classify(&procs, &env);
        for &port in &query.ports {
            if !t.roles.values().any(|r| *r == Role::Proxy { port }) {
                let e = DockerError::NoProxy {
                    port,
                    explanation: no_proxy_explanation(port, &procs, &env),
                };
                return Err(with_skips(e, &env));
            }
        }
        for (want, c) in query.containers.iter().zip(&t.containers) {
            let has = t
                .roles
                .values()
                .any(|r| matches!(r, Role::Container { id: Some(id), .. } if *id == c.id));
            if !has {
                return Err(DockerError::NotRunning {
                    name: want.clone(),
                    id: c.id.clone(),
                });
            }
        }
        if env.dockerd.is_empty() {
            t.notes.push(
                "dockerd is not running: recording the docker-proxy and containers found \
                 without it"
                    .into(),
            );
        }
        Ok(t)
    }

    /// Looks at `/proc` again and adds processes that started since (new
    /// container processes, a restarted proxy). Known pids keep their role.
    pub fn refresh(&mut self) {
        let procs = scan();
        let env = DockerEnv::of(&procs);
        for line in env.skipped.iter() {
            if !self.skipped.contains(line) {
                self.skipped.push(line.clone());
            }
        }
        self.classify(&procs, &env);
    }

    /// The pids chosen.
    pub fn pids(&self) -> Vec<u32> {
        self.roles.keys().copied().collect()
    }

    fn classify(&mut self, procs: &[ProcFacts], env: &DockerEnv) {
        let names = |id: &str| container_name(id, env);
        let addrs = |pid: u32| {
            procfs::fib_trie(pid)
                .map(|t| fib_local_addrs(&t))
                .unwrap_or_default()
        };
        let found = classify(procs, &self.query.ports, &self.containers, &names, &addrs);
        for (pid, (role, line)) in found {
            if let std::collections::btree_map::Entry::Vacant(e) = self.roles.entry(pid) {
                e.insert(role);
                self.found.push(line);
            }
        }
    }

    /// The root frame of every chosen process's stacks, by pid
    /// (`[docker-proxy :8080]`, `[container web]`, …).
    pub fn root_labels(&self) -> BTreeMap<u32, String> {
        self.roles
            .iter()
            .map(|(&pid, r)| (pid, r.label()))
            .collect()
    }
}

fn short_id(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// Every process in `/proc` (those that vanish while scanning are skipped).
/// Names are cleaned of control characters: they are shown.
fn scan() -> Vec<ProcFacts> {
    procfs::all_pids()
        .into_iter()
        .filter_map(|pid| {
            let comm = procfs::comm(pid)?;
            let untrusted = if DAEMONS.contains(&comm.as_str()) {
                procfs::daemon_trust(pid).err()
            } else {
                None
            };
            Some(ProcFacts {
                pid,
                comm: printable(&comm),
                args: parse_cmdline(&procfs::cmdline(pid).unwrap_or_default()),
                cgroup: procfs::cgroup(pid).unwrap_or_default(),
                netns: procfs::netns(pid),
                untrusted,
            })
        })
        .collect()
}

/// `text` with control characters replaced by spaces (it reaches the
/// terminal).
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The error, with the skipped daemons said after it (they may be why).
fn with_skips(e: DockerError, env: &DockerEnv) -> DockerError {
    if env.skipped.is_empty() {
        return e;
    }
    let mut lines = String::new();
    for l in &env.skipped {
        lines.push_str("\n  skipped ");
        lines.push_str(l);
    }
    match e {
        DockerError::NoProxy { port, explanation } => DockerError::NoProxy {
            port,
            explanation: explanation + &lines,
        },
        DockerError::NoContainer { name, explanation } => DockerError::NoContainer {
            name,
            explanation: explanation + &lines,
        },
        other => other,
    }
}

/// What is known about the Docker installation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DockerEnv {
    pub(crate) dockerd: Vec<u32>,
    pub(crate) data_root: PathBuf,
    /// `userland-proxy` is off (dockerd flag or daemon.json).
    pub(crate) userland_proxy_off: bool,
    /// Processes named like a daemon that are not trusted, a line each.
    pub(crate) skipped: Vec<String>,
}

impl DockerEnv {
    fn of(procs: &[ProcFacts]) -> DockerEnv {
        let daemon_json = system::read_config(Path::new("/etc/docker/daemon.json"));
        DockerEnv::from_parts(procs, daemon_json.as_deref())
    }

    pub(crate) fn from_parts(procs: &[ProcFacts], daemon_json: Option<&str>) -> DockerEnv {
        let dockerd: Vec<&ProcFacts> = procs.iter().filter(|p| p.is_daemon("dockerd")).collect();
        let skipped = procs
            .iter()
            .filter_map(|p| {
                let why = p.untrusted.as_ref()?;
                let what = if p.comm == "dockerd" {
                    "the Docker daemon: its flags and files are not used"
                } else {
                    "a daemon"
                };
                Some(format!(
                    "{} pid {}: not trusted as {what} ({why})",
                    p.comm, p.pid
                ))
            })
            .collect();
        let json: Option<serde_json::Value> =
            daemon_json.and_then(|t| serde_json::from_str(t).ok());
        let mut data_root = json
            .as_ref()
            .and_then(|j| j.get("data-root")?.as_str().map(PathBuf::from));
        let mut proxy_off = json
            .as_ref()
            .and_then(|j| j.get("userland-proxy")?.as_bool())
            .is_some_and(|on| !on);
        for d in &dockerd {
            if let Some(r) = flag_value(&d.args, &["data-root", "graph", "g"]) {
                data_root = Some(PathBuf::from(r));
            }
            if let Some(v) = flag_value(&d.args, &["userland-proxy"]) {
                proxy_off = v == "false" || v == "0";
            }
        }
        DockerEnv {
            dockerd: dockerd.iter().map(|p| p.pid).collect(),
            data_root: data_root.unwrap_or_else(|| PathBuf::from("/var/lib/docker")),
            userland_proxy_off: proxy_off,
            skipped,
        }
    }
}

/// The value of a Go-style flag: `-name V`, `--name V`, `-name=V`, `--name=V`.
pub(crate) fn flag_value<'a>(args: &'a [String], names: &[&str]) -> Option<&'a str> {
    let mut it = args.iter().skip(1);
    let mut last = None;
    while let Some(a) = it.next() {
        let Some(flag) = a.strip_prefix("--").or_else(|| a.strip_prefix('-')) else {
            continue;
        };
        match flag.split_once('=') {
            Some((n, v)) if names.contains(&n) => last = Some(v),
            None if names.contains(&flag) => last = it.next().map(String::as_str),
            _ => {}
        }
    }
    last
}

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

fn is_docker_proxy(p: &ProcFacts) -> bool {
    p.comm == "docker-proxy"
        || p.args
            .first()
            .is_some_and(|a| basename(a) == "docker-proxy")
}

/// The host port a `docker-proxy` publishes.
pub(crate) fn proxy_port(p: &ProcFacts) -> Option<u16> {
    if !is_docker_proxy(p) {
        return None;
    }
    flag_value(&p.args, &["host-port"])?.parse().ok()
}

/// Container ids (64 hex digits) named by a `/proc/PID/cgroup` text: cgroup
/// v2 `0::/system.slice/docker-ID.scope` (systemd driver), `0::/docker/ID`
/// (cgroupfs driver), the same in v1 hierarchies, and nested layouts.
pub(crate) fn cgroup_container_ids(text: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for line in text.lines() {
        let Some(path) = line.splitn(3, ':').nth(2) else {
            continue;
        };
        for part in path.split('/') {
            let part = part.strip_suffix(".scope").unwrap_or(part);
            let cand = part.rsplit('-').next().unwrap_or(part);
            if cand.len() == 64
                && cand
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                && !ids.iter().any(|i| i == cand)
            {
                ids.push(cand.to_string());
            }
        }
    }
    ids
}

/// Local IPv4 addresses listed in a `/proc/PID/net/fib_trie` text (the
/// `|-- ADDR` lines followed by `/32 host LOCAL`).
pub(crate) fn fib_local_addrs(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut last: Option<&str> = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(a) = t.strip_prefix("|-- ") {
            last = Some(a.trim());
        } else if t.starts_with("/32 host LOCAL") {
            if let Some(a) = last {
                if !out.iter().any(|o| o == a) {
                    out.push(a.to_string());
                }
            }
        }
    }
    out
}

/// `(ID, Name)` of a container's `config.v2.json`, the name without its `/`.
pub(crate) fn parse_config(json: &str) -> Option<ContainerRef> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let id = v.get("ID")?.as_str()?.to_string();
    let name = v
        .get("Name")
        .and_then(|n| n.as_str())
        .map(|n| n.trim_start_matches('/').to_string())
        .filter(|n| !n.is_empty());
    Some(ContainerRef { id, name })
}

/// The chosen processes with their roles and a line for the user.
pub(crate) fn classify(
    procs: &[ProcFacts],
    ports: &[u16],
    containers: &[ContainerRef],
    name_of_id: &dyn Fn(&str) -> Option<String>,
    local_addrs: &dyn Fn(u32) -> Vec<String>,
) -> BTreeMap<u32, (Role, String)> {
    let mut out = BTreeMap::new();
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut container_of = |p: &ProcFacts| -> Option<(String, String)> {
        let id = cgroup_container_ids(&p.cgroup).pop()?;
        let name = names
            .entry(id.clone())
            .or_insert_with(|| {
                containers
                    .iter()
                    .find(|c| c.id == id)
                    .and_then(|c| c.name.clone())
                    .or_else(|| name_of_id(&id))
                    .unwrap_or_else(|| short_id(&id).to_string())
            })
            .clone();
        Some((id, name))
    };

    // Published ports: the proxy, then the namespace owning its container address.
    let mut backends: Vec<(String, u16, Option<u64>)> = Vec::new();
    for p in procs {
        let Some(port) = proxy_port(p).filter(|port| ports.contains(port)) else {
            continue;
        };
        let ip = flag_value(&p.args, &["container-ip"]).unwrap_or("?");
        let cport = flag_value(&p.args, &["container-port"]).unwrap_or("?");
        out.insert(
            p.pid,
            (
                Role::Proxy { port },
                format!("docker-proxy :{port}  pid {}  -> {ip}:{cport}", p.pid),
            ),
        );
        if ip != "?" && !ip.starts_with("127.") && !ip.contains(':') {
            backends.push((ip.to_string(), port, p.netns));
        }
    }
    if !backends.is_empty() {
        // One address lookup per network namespace, not the proxy's own.
        let mut seen: BTreeMap<u64, Vec<String>> = BTreeMap::new();
        for p in procs {
            let Some(ns) = p.netns else { continue };
            if backends.iter().any(|b| b.2 == Some(ns)) || out.contains_key(&p.pid) {
                continue;
            }
            let addrs = seen.entry(ns).or_insert_with(|| local_addrs(p.pid));
            let Some((ip, port, _)) = backends.iter().find(|b| addrs.contains(&b.0)) else {
                continue;
            };
            let (id, name) = match container_of(p) {
                Some((id, name)) => (Some(id), name),
                None => (None, ip.clone()),
            };
            let line = format!(
                "container {name}  pid {} ({})  behind docker-proxy :{port} (owns {ip})",
                p.pid, p.comm
            );
            out.insert(p.pid, (Role::Container { name, id }, line));
        }
    }

    // Containers asked for: their processes and shims.
    for p in procs {
        if out.contains_key(&p.pid) {
            continue;
        }
        if p.comm.starts_with("containerd-shim") {
            let id = flag_value(&p.args, &["id"]).unwrap_or("");
            if let Some(c) = containers.iter().find(|c| c.id == id) {
                let name = c.display_name();
                let line = format!("containerd-shim {name}  pid {}", p.pid);
                out.insert(p.pid, (Role::Shim { container: name }, line));
            }
            continue;
        }
        let ids = cgroup_container_ids(&p.cgroup);
        if let Some(c) = containers.iter().find(|c| ids.contains(&c.id)) {
            let name = c.display_name();
            let line = format!("container {name}  pid {} ({})", p.pid, p.comm);
            let role = Role::Container {
                name,
                id: Some(c.id.clone()),
            };
            out.insert(p.pid, (role, line));
        }
    }

    // The daemons, whenever they run (and are what they claim).
    for p in procs.iter().filter(|p| p.untrusted.is_none()) {
        let role = match p.comm.as_str() {
            "dockerd" => Role::Dockerd,
            "containerd" => Role::Containerd,
            _ => continue,
        };
        out.entry(p.pid)
            .or_insert_with(|| (role, format!("{}  pid {}", p.comm, p.pid)));
    }
    out
}

/// Explains a missing `docker-proxy` for `port`.
pub(crate) fn no_proxy_explanation(port: u16, procs: &[ProcFacts], env: &DockerEnv) -> String {
    let mut s = format!(
        "looked for a process named docker-proxy with `-host-port {port}` in its command line \
         (/proc/*/cmdline); "
    );
    let others: BTreeSet<u16> = procs.iter().filter_map(proxy_port).collect();
    if others.is_empty() {
        s.push_str("no docker-proxy is running. ");
    } else {
        let list: Vec<String> = others.iter().map(u16::to_string).collect();
        s.push_str(&format!(
            "docker-proxy runs only for port(s) {}. ",
            list.join(", ")
        ));
    }
    if env.dockerd.is_empty() {
        s.push_str(&format!(
            "dockerd is not running either ({}): start Docker \
             (`systemctl start docker`) and publish the port (`docker run -p {port}:80 …`), \
             or record the serving process with --name or --pid.",
            no_dockerd(env)
        ));
    } else if env.userland_proxy_off {
        s.push_str(
            "dockerd runs with the userland proxy off (`\"userland-proxy\": false`), so \
             published ports are forwarded by iptables DNAT in the kernel and no process relays \
             them: record the container with --container NAME (the kernel's network work is \
             recorded with it).",
        );
    } else {
        s.push_str(&format!(
            "Check the published ports with `docker ps` (PORTS: 0.0.0.0:{port}->80/tcp); a \
             container on --net=host or without -p has no docker-proxy: record it with \
             --container NAME."
        ));
    }
    s
}

/// Why no dockerd counts: none runs, or none is trusted.
fn no_dockerd(env: &DockerEnv) -> &'static str {
    if env.skipped.iter().any(|l| l.starts_with("dockerd ")) {
        "no process named dockerd is trusted as the Docker daemon"
    } else {
        "no process named dockerd"
    }
}

/// Resolves a `--container` value to a container (see the module doc).
fn resolve_container(
    want: &str,
    procs: &[ProcFacts],
    env: &DockerEnv,
) -> Result<ContainerRef, DockerError> {
    let mut looked = Vec::new();
    // An id or id prefix of a running container.
    let hex = want.len() >= 12 && want.bytes().all(|b| b.is_ascii_hexdigit());
    if hex {
        let want_lower = want.to_ascii_lowercase();
        let running: BTreeSet<String> = procs
            .iter()
            .flat_map(|p| cgroup_container_ids(&p.cgroup))
            .collect();
        let hits: Vec<&String> = running
            .iter()
            .filter(|id| id.starts_with(&want_lower))
            .collect();
        if let [id] = hits[..] {
            return Ok(ContainerRef {
                id: id.clone(),
                name: container_name(id, env),
            });
        }
        looked.push("as a container id (prefix) in /proc/*/cgroup".to_string());
    }
    if !env.dockerd.is_empty() {
        match docker_inspect(want) {
            Ok(Some(c)) => return Ok(c),
            Ok(None) => looked.push("with `docker inspect`".into()),
            Err(why) => looked.push(format!("with `docker inspect` ({why})")),
        }
    }
    let dir = env.data_root.join("containers");
    let ids = system::subdirs(&dir);
    if ids.is_empty() {
        looked.push(format!(
            "in {}/*/config.v2.json (none there)",
            dir.display()
        ));
    } else {
        looked.push(format!("in {}/*/config.v2.json", dir.display()));
    }
    for id in ids {
        let Some(c) = system::read_config(&dir.join(&id).join("config.v2.json"))
            .and_then(|t| parse_config(&t))
        else {
            continue;
        };
        let by_name = c.name.as_deref() == Some(want.trim_start_matches('/'));
        if by_name || (hex && c.id.starts_with(&want.to_ascii_lowercase())) {
            return Ok(c);
        }
    }
    let mut explanation = format!("looked for it {}. ", looked.join(", "));
    if env.dockerd.is_empty() {
        explanation.push_str(&format!(
            "dockerd is not running ({}): start Docker (`systemctl start \
             docker`) and the container (`docker start NAME`), or record its processes with \
             --name or --pid.",
            no_dockerd(env)
        ));
    } else {
        explanation.push_str("List the containers with `docker ps -a`.");
    }
    Err(DockerError::NoContainer {
        name: want.to_string(),
        explanation,
    })
}

/// The name of the container with this full id, from its `config.v2.json`.
fn container_name(id: &str, env: &DockerEnv) -> Option<String> {
    let path = env
        .data_root
        .join("containers")
        .join(id)
        .join("config.v2.json");
    parse_config(&system::read_config(&path)?)?.name
}

/// Why `docker inspect` gave no answer.
#[derive(Debug, thiserror::Error)]
enum InspectError {
    #[error("cannot run docker: {0}")]
    Spawn(std::io::Error),
    #[error("no answer in 5 s")]
    Timeout,
    #[error("waiting for docker: {0}")]
    Wait(std::io::Error),
}

/// `docker inspect` of one container, bounded to 5 seconds. `Ok(None)` when
/// Docker says there is no such container.
fn docker_inspect(want: &str) -> Result<Option<ContainerRef>, InspectError> {
    let mut child = Command::new("docker")
        .args([
            "inspect",
            "--type",
            "container",
            "--format",
            "{{.Id}} {{.Name}}",
            want,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(InspectError::Spawn)?;
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(InspectError::Timeout);
            }
            Err(e) => return Err(InspectError::Wait(e)),
        }
    };
    let mut out = String::new();
    if let Some(o) = child.stdout.take() {
        use std::io::Read as _;
        let _ = o.take(1 << 16).read_to_string(&mut out);
    }
    if !status.success() {
        return Ok(None);
    }
    let mut it = out.split_whitespace();
    let id = it.next().filter(|id| id.len() == 64);
    Ok(id.map(|id| ContainerRef {
        id: id.to_string(),
        name: it
            .next()
            .map(|n| n.trim_start_matches('/').to_string())
            .filter(|n| !n.is_empty()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f3c1a9e0b7d6c5e4f3c1a9e0b7d6c5e4f3c1a9e0b7d6c5e4f3c1a9e0b7d6c5e";

    fn args(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_string).collect()
    }

    fn proc(pid: u32, comm: &str, cmd: &str, cgroup: &str, netns: u64) -> ProcFacts {
        ProcFacts {
            pid,
            comm: comm.into(),
            args: args(cmd),
            cgroup: cgroup.into(),
            netns: Some(netns),
            untrusted: None,
        }
    }

    #[test]
    fn cmdline_and_go_flags() {
        let a = parse_cmdline(
            b"/usr/sbin/docker-proxy\0-proto\0tcp\0-host-port\08080\0--container-ip=172.17.0.2\0",
        );
        assert_eq!(a.len(), 6);
        assert_eq!(flag_value(&a, &["host-port"]), Some("8080"));
        assert_eq!(flag_value(&a, &["container-ip"]), Some("172.17.0.2"));
        assert_eq!(flag_value(&a, &["proto"]), Some("tcp"));
        assert_eq!(flag_value(&a, &["container-port"]), None);
        // The program name is never a flag.
        assert_eq!(flag_value(&args("-host-port 1"), &["host-port"]), None);
    }

    #[test]
    fn proxy_ports_only_for_docker_proxy() {
        let p = proc(
            5,
            "docker-proxy",
            "/usr/bin/docker-proxy -host-port 80",
            "",
            1,
        );
        assert_eq!(proxy_port(&p), Some(80));
        let p = proc(5, "socat", "socat -host-port 80", "", 1);
        assert_eq!(proxy_port(&p), None);
        let p = proc(5, "docker-proxy", "docker-proxy -host-port x", "", 1);
        assert_eq!(proxy_port(&p), None);
    }

    #[test]
    fn container_ids_from_cgroups() {
        let v2_systemd = format!("0::/system.slice/docker-{ID}.scope\n");
        assert_eq!(cgroup_container_ids(&v2_systemd), vec![ID.to_string()]);
        let v2_cgroupfs = format!("0::/docker/{ID}\n");
        assert_eq!(cgroup_container_ids(&v2_cgroupfs), vec![ID.to_string()]);
        let v1 = format!("12:pids:/docker/{ID}\n11:cpu,cpuacct:/docker/{ID}\n1:name=systemd:/\n");
        assert_eq!(cgroup_container_ids(&v1), vec![ID.to_string()]);
        assert!(cgroup_container_ids("0::/user.slice/session-3.scope\n").is_empty());
        assert!(cgroup_container_ids("0::/system.slice/docker.service\n").is_empty());
        // Upper case is not an id the kernel prints.
        assert!(cgroup_container_ids(&format!("0::/docker/{}", ID.to_uppercase())).is_empty());
    }

    #[test]
    fn local_addresses_from_fib_trie() {
        let t = "\
Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 10.213.77.0/24 2 0 2
        |-- 10.213.77.0
           /24 link UNICAST
        |-- 10.213.77.2
           /32 host LOCAL
     |-- 127.0.0.1
        /32 host LOCAL
Local:
  +-- 10.213.77.0/24 2 0 2
     |-- 10.213.77.2
        /32 host LOCAL
";
        assert_eq!(fib_local_addrs(t), vec!["10.213.77.2", "127.0.0.1"]);
        assert!(fib_local_addrs("").is_empty());
    }

    #[test]
    fn config_v2_json() {
        let c = parse_config(&format!(r#"{{"ID":"{ID}","Name":"/web","State":{{}}}}"#)).unwrap();
        assert_eq!(c.id, ID);
        assert_eq!(c.name.as_deref(), Some("web"));
        assert!(parse_config("{").is_none());
        assert!(parse_config(r#"{"Name":"/web"}"#).is_none());
    }

    #[test]
    fn docker_environment() {
        let procs = [proc(
            9,
            "dockerd",
            "/usr/sbin/dockerd --data-root=/srv/docker --userland-proxy=false",
            "",
            1,
        )];
        let env = DockerEnv::from_parts(&procs, None);
        assert_eq!(env.dockerd, vec![9]);
        assert_eq!(env.data_root, PathBuf::from("/srv/docker"));
        assert!(env.userland_proxy_off);
        let env =
            DockerEnv::from_parts(&[], Some(r#"{"userland-proxy": false, "data-root": "/d"}"#));
        assert!(env.dockerd.is_empty());
        assert_eq!(env.data_root, PathBuf::from("/d"));
        assert!(env.userland_proxy_off);
        let env = DockerEnv::from_parts(&[], Some("not json"));
        assert_eq!(env.data_root, PathBuf::from("/var/lib/docker"));
        assert!(!env.userland_proxy_off);
    }

    /// A process named dockerd that is not root's is not believed: its
    /// flags are not read, it gets no role, and it is said (issue 17).
    #[test]
    fn untrusted_daemons_are_skipped() {
        let mut fake = proc(66, "dockerd", "/tmp/dockerd --data-root=/tmp/evil", "", 1);
        fake.untrusted = Some("runs as uid 65534, not root".into());
        let env = DockerEnv::from_parts(std::slice::from_ref(&fake), None);
        assert!(env.dockerd.is_empty());
        assert_eq!(env.data_root, PathBuf::from("/var/lib/docker"));
        assert_eq!(
            env.skipped,
            [
                "dockerd pid 66: not trusted as the Docker daemon: its flags and files are not \
              used (runs as uid 65534, not root)"
            ]
        );
        let found = classify(&[fake], &[], &[], &|_| None, &|_| Vec::new());
        assert!(found.is_empty());
        let e = with_skips(
            DockerError::NoContainer {
                name: "web".into(),
                explanation: format!("dockerd is not running ({}).", no_dockerd(&env)),
            },
            &env,
        )
        .to_string();
        assert!(e.contains("is trusted as the Docker daemon"), "{e}");
        assert!(
            e.lines()
                .any(|l| l.trim_start().starts_with("skipped dockerd pid 66")),
            "{e}"
        );
    }

    fn machine() -> Vec<ProcFacts> {
        let cg = format!("0::/system.slice/docker-{ID}.scope\n");
        vec![
            proc(1, "systemd", "/sbin/init", "0::/init.scope", 100),
            proc(10, "dockerd", "/usr/sbin/dockerd -H fd://", "0::/system.slice/docker.service", 100),
            proc(11, "containerd", "/usr/bin/containerd", "0::/system.slice/containerd.service", 100),
            proc(
                20,
                "docker-proxy",
                "/usr/sbin/docker-proxy -proto tcp -host-ip 0.0.0.0 -host-port 8080 -container-ip 172.17.0.2 -container-port 80",
                "0::/system.slice/docker.service",
                100,
            ),
            proc(
                21,
                "docker-proxy",
                "/usr/sbin/docker-proxy -proto tcp -host-port 9090 -container-ip 172.17.0.3 -container-port 80",
                "0::/system.slice/docker.service",
                100,
            ),
            proc(
                30,
                "containerd-shim",
                &format!("/usr/bin/containerd-shim-runc-v2 -namespace moby -id {ID} -address /run/containerd/containerd.sock"),
                "0::/system.slice/containerd.service",
                100,
            ),
            proc(40, "nginx", "nginx: master process", &cg, 200),
            proc(41, "nginx", "nginx: worker process", &cg, 200),
            proc(50, "nginx", "nginx: master process", "0::/lab", 300),
            proc(60, "wrk", "wrk -t2", "0::/user.slice", 100),
        ]
    }

    fn addrs(pid: u32) -> Vec<String> {
        match pid {
            40 | 41 => vec!["172.17.0.2".into(), "127.0.0.1".into()],
            50 => vec!["10.1.0.2".into(), "127.0.0.1".into()],
            _ => vec!["127.0.0.1".into(), "192.168.1.5".into()],
        }
    }

    #[test]
    fn port_finds_proxy_backend_and_daemons() {
        let names = |id: &str| (id == ID).then(|| "web".to_string());
        let found = classify(&machine(), &[8080], &[], &names, &addrs);
        let roles: BTreeMap<u32, String> =
            found.iter().map(|(p, (r, _))| (*p, r.label())).collect();
        assert_eq!(roles[&20], "[docker-proxy :8080]");
        assert_eq!(roles[&40], "[container web]");
        assert_eq!(roles[&41], "[container web]");
        assert_eq!(roles[&10], "[dockerd]");
        assert_eq!(roles[&11], "[containerd]");
        assert_eq!(roles.len(), 5, "{roles:?}");
        assert!(
            found[&20].1.contains("-> 172.17.0.2:80"),
            "{}",
            found[&20].1
        );
    }

    #[test]
    fn backend_without_container_is_named_by_address() {
        let mut procs = machine();
        procs[4].args =
            args("docker-proxy -host-port 9090 -container-ip 10.1.0.2 -container-port 80");
        let found = classify(&procs, &[9090], &[], &|_| None, &addrs);
        assert_eq!(found[&21].0.label(), "[docker-proxy :9090]");
        assert_eq!(found[&50].0.label(), "[container 10.1.0.2]");
        assert!(!found.contains_key(&40));
    }

    #[test]
    fn container_finds_processes_and_shim() {
        let c = ContainerRef {
            id: ID.into(),
            name: Some("web".into()),
        };
        let found = classify(&machine(), &[], &[c], &|_| None, &addrs);
        let roles: BTreeMap<u32, String> =
            found.iter().map(|(p, (r, _))| (*p, r.label())).collect();
        assert_eq!(roles[&40], "[container web]");
        assert_eq!(roles[&30], "[containerd-shim web]");
        assert!(!roles.contains_key(&20) && !roles.contains_key(&50) && !roles.contains_key(&60));
    }

    #[test]
    fn explanations_name_what_was_looked_for() {
        let procs = machine();
        let env = DockerEnv::from_parts(&procs, None);
        let e = no_proxy_explanation(1234, &procs, &env);
        assert!(e.contains("-host-port 1234"), "{e}");
        assert!(e.contains("port(s) 8080, 9090"), "{e}");
        assert!(e.contains("docker ps"), "{e}");
        let e = no_proxy_explanation(1234, &[], &DockerEnv::from_parts(&[], None));
        assert!(e.contains("no docker-proxy is running"), "{e}");
        assert!(e.contains("dockerd is not running"), "{e}");
        let env = DockerEnv::from_parts(&procs, Some(r#"{"userland-proxy": false}"#));
        let e = no_proxy_explanation(1, &procs, &env);
        assert!(e.contains("userland proxy off"), "{e}");
        assert!(e.contains("iptables DNAT"), "{e}");
        assert!(
            e.contains("record the container with --container NAME"),
            "{e}"
        );
        assert!(!e.contains("docker ps"), "{e}");
    }

    fn targets() -> DockerTargets {
        let mut t = DockerTargets::default();
        t.roles.insert(20, Role::Proxy { port: 8080 });
        t.roles.insert(
            40,
            Role::Container {
                name: "web".into(),
                id: None,
            },
        );
        t
    }

    #[test]
    fn root_labels_by_pid() {
        let labels = targets().root_labels();
        assert_eq!(labels[&20], "[docker-proxy :8080]");
        assert_eq!(labels[&40], "[container web]");
        assert_eq!(labels.len(), 2);
    }
}
