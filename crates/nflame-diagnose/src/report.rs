//! [`CategoryReport`]: per-category samples and shares of one profile, the top frames of
//! each category, the cost per unit of work, and the [`Verdict`].
//!
//! This module owns the thresholds and the verdict wording; classification is
//! [`crate::classify`], text rendering [`crate::text`].
//!
//! # The verdict
//!
//! Shares for the verdict are taken of the *serving path*: the samples of
//! `userland-proxy`, `bridge`, `netfilter`, `tcp-ip` and `app` together. Idle CPUs,
//! the load generator's own code, compilers running beside the service and any
//! other process are `other` and do not dilute the evidence, so the same
//! thresholds hold for a system-wide recording on a busy 64-core host and for a
//! recording of just the service's processes. With the defaults of [`Thresholds`]:
//!
//! - `userland-proxy` when the relay holds at least 50 samples and at least 15% of
//!   the serving path. A relay that copies every request and response through user
//!   space costs about as much as serving a small response; in the lab
//!   (`scripts/lab.sh`) docker-proxy took about 45% of the serving path. 15% is a
//!   third of that and far above what any non-relaying setup shows (0%).
//! - `bridge-nat` when there is no relay verdict, bridge + netfilter hold at least
//!   50 samples and 5% of the serving path, *and* bridge/veth frames alone hold at
//!   least 2%. The bridge condition keeps host networking out: on a Docker host,
//!   conntrack and the NAT hooks see loopback traffic too (about 5% of the serving
//!   path in the lab's host mode), and `--net=host` would not remove them; only a
//!   veth/bridge crossing shows that container networking is in the path.
//!   These shares count the bridge and netfilter functions themselves; the extra
//!   softirq passes they cause appear under `tcp-ip`, so the throughput loss is a
//!   few times the share (lab: 4% bridge + 5% netfilter of the serving path, 20%
//!   fewer requests/s than host networking).
//! - `none` otherwise.
//!
//! Before those, in a profile of time (`nflame record --off-cpu` or
//! `--wall`): `blocking` when an event-loop worker (nginx/OpenResty, see
//! [`crate::blocking`]) is asleep outside its event wait for at least 10%
//! ([`Thresholds::blocking_share`]) of its time in the profile and at least
//! 50 ms ([`Thresholds::min_time_us`]). A worker holds many connections on one
//! thread: while it blocks, none of them progresses, so a tenth of its time
//! blocked is a tenth of its capacity gone and a stall added to every request
//! it holds (the lab's `os.execute("sleep 0.05")` handler blocks its worker
//! about 90% of its time; a worker that yields with `ngx.sleep`, or is idle,
//! waits in `epoll_wait` only: 0%). Its time is its whole time in a
//! wall-clock profile, its time off the CPU in an off-CPU profile (which has
//! no on-CPU time): record with `--wall` for shares of the whole time. A
//! worker that waits only in its event wait is never `blocking`.
//!
//! A system-wide recording on a host where *other* containers use the bridge will
//! show their bridge work too; record the service's processes (or the Docker-aware
//! recorder's selection) when that matters.
//!
//! # Units
//!
//! A profile weighted by time (off-CPU, wall-clock) is reported in its unit:
//! the counts of the report are its stored counts ([`CategoryReport::measure`]
//! says how they read), the text says `µs` where it says `samples` for a
//! profile of samples, and the JSON adds `"unit": "microseconds"` (it has no
//! `unit` for samples) and gives fractional counts as decimal numbers. The
//! fewest samples a verdict needs ([`Thresholds::min_samples`]) becomes, in
//! time, [`Thresholds::min_time_us`]: 50 ms, what 50 samples at about 1 kHz
//! stand for.

use std::fmt::Write as _;

use nflame_profile::unit::{pow10, Amount};
use nflame_profile::{Measure, Profile, Unit};
use rustc_hash::FxHashMap;
use serde::ser::{SerializeMap, SerializeStruct, Serializer};
use serde::Serialize;

use nflame_profile::tree::StackTree;

use crate::blocking::{event_loops, BlockingPath, EventLoop, EventLoopTally};
use crate::classify::{is_role_annotation, strip_annotation, Classifier, UNKNOWN_FRAME};
use crate::rules::Rules;
use crate::Error;

/// The categories whose samples form the serving path (see the module docs).
pub const SERVING_CATEGORIES: [&str; 5] =
    ["userland-proxy", "bridge", "netfilter", "tcp-ip", "app"];

/// When a verdict is given. Shares are fractions (0.15 is 15%) of the serving path.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Thresholds {
    /// The fewest samples a category (or bridge + netfilter together) needs before
    /// it can carry a verdict. Default is 50.
    pub min_samples: u64,
    /// The same for a profile weighted by time, in microseconds. Default is
    /// 50,000 (50 ms: what 50 samples stand for at about 1 kHz).
    pub min_time_us: u64,
    /// The share of the serving path above which a userland relay is a dominant
    /// cost. Default is 0.15.
    pub proxy_share: f64,
    /// The share of the serving path of bridge + netfilter above which they are a
    /// significant cost. Default is 0.05.
    pub bridge_nat_share: f64,
    /// The share of the serving path that bridge/veth frames alone need, to show the
    /// traffic crosses a container network (netfilter alone is host firewalling).
    /// Default is 0.02.
    pub bridge_share: f64,
    /// The share of an event-loop worker's time (in a profile of time) asleep
    /// outside its event wait from which it is `blocking`. Default is 0.10.
    pub blocking_share: f64,
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            min_samples: 50,
            min_time_us: 50_000,
            proxy_share: 0.15,
            bridge_nat_share: 0.05,
            bridge_share: 0.02,
            blocking_share: 0.10,
        }
    }
}

/// How a [`CategoryReport`] is built.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CategoryReportOptions {
    /// Units of work done during the recording (e.g. requests served): adds the
    /// samples per unit to each category. Must be positive and finite.
    /// Default is `None`.
    pub per: Option<f64>,
    /// How many frames to list per category. Default is 5.
    pub top_frames: usize,
    /// When verdicts are given. Default is [`Thresholds::default`].
    pub thresholds: Thresholds,
}

impl Default for CategoryReportOptions {
    fn default() -> CategoryReportOptions {
        CategoryReportOptions {
            per: None,
            top_frames: 5,
            thresholds: Thresholds::default(),
        }
    }
}

impl Thresholds {
    /// [`Thresholds::min_samples`], or [`Thresholds::min_time_us`] for time,
    /// in stored counts of `measure`.
    pub fn min_count(&self, measure: Measure) -> u64 {
        let min = match measure.unit {
            Unit::Microseconds => self.min_time_us,
            _ => self.min_samples,
        };
        min.saturating_mul(pow10(measure.decimals))
    }
}

/// A frame and the samples of a category it accounts for (serialized by the
/// report, with the count in its unit).
#[derive(Debug, Clone, PartialEq)]
pub struct FrameCount {
    /// The frame, without annotation suffix.
    pub frame: String,
    /// Samples.
    pub samples: u64,
    /// Share of all samples (0..1).
    pub share: f64,
}

/// One category of a [`CategoryReport`] (serialized by the report, as a value
/// of its `categories` object).
#[derive(Debug, Clone, PartialEq)]
pub struct CategoryRow {
    /// Its name (the key of the `categories` object).
    pub name: String,
    /// Samples classified into it.
    pub samples: u64,
    /// Share of all samples (0..1).
    pub share: f64,
    /// Share of the serving path (0..1), for the serving categories.
    pub serving_share: Option<f64>,
    /// Samples (or time, in the profile's unit) per unit of work, with
    /// [`CategoryReportOptions::per`].
    pub per_unit: Option<f64>,
    /// The frames that show why, most samples first (see
    /// [`crate::classify::Classification::frame`]).
    pub top_frames: Vec<FrameCount>,
    /// The processes, most samples first (at most 3).
    pub top_processes: Vec<FrameCount>,
    /// Samples inside relay system calls (splice, read, write, …).
    pub relay_syscall_samples: u64,
}

/// What the verdict points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerdictKind {
    /// A userland relay (docker-proxy, socat, …) is a dominant cost.
    UserlandProxy,
    /// veth/bridge/netfilter is a significant cost without a userland relay.
    BridgeNat,
    /// An event-loop worker (nginx/OpenResty) blocks outside its event wait
    /// (profiles of time only).
    Blocking,
    /// Neither.
    None,
}

impl VerdictKind {
    /// The name used in JSON and text.
    pub fn as_str(self) -> &'static str {
        match self {
            VerdictKind::UserlandProxy => "userland-proxy",
            VerdictKind::BridgeNat => "bridge-nat",
            VerdictKind::Blocking => "blocking",
            VerdictKind::None => "none",
        }
    }
}

/// A verdict in plain language: what, the evidence, the fix.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// What it points at.
    pub kind: VerdictKind,
    /// The finding with its evidence (shares, frames).
    pub summary: String,
    /// What to change.
    pub fix: String,
}

/// Per-category costs of one profile and a verdict. Serializes as
/// `{"unit"? (when not samples), "total_samples", "serving_samples", "per"?,
/// "categories": {name: {...}}, "verdict", "lua_vm"?}`, counts in the profile's unit.
#[derive(Debug, Clone, PartialEq)]
pub struct CategoryReport {
    /// What the counts measure, and their decimals (the profile's).
    pub measure: Measure,
    /// All samples of the profile (stored counts).
    pub total_samples: u64,
    /// Samples of the serving path ([`SERVING_CATEGORIES`]).
    pub serving_samples: u64,
    /// Units of work, from [`CategoryReportOptions::per`].
    pub per: Option<f64>,
    /// Every category of the rules, in their order (the standard ones first).
    pub categories: Vec<CategoryRow>,
    /// Event-loop workers and how their time splits (profiles of time only;
    /// see [`crate::blocking`]), most blocking first.
    pub event_loops: Vec<EventLoop>,
    /// The verdict.
    pub verdict: Verdict,
    /// The LuaJIT VM's own view per process with Lua frames, most samples
    /// first (see [`LuaVmView`]); absent from JSON when empty.
    pub lua_vm: Vec<LuaVmView>,
}

/// What the LuaJIT VM of one process was doing, read back from the Lua
/// frames of its stacks (`nflame_profile::lua::vm_state`): the share of its
/// samples with Lua frames interpreted, in compiled code, in C functions
/// called from Lua, in the garbage collector, exiting or recording traces.
/// Serializes as `{"process", "samples", "states": {state: {"samples", "share"}}}`,
/// counts in the profile's unit.
#[derive(Debug, Clone, PartialEq)]
pub struct LuaVmView {
    /// The process frame, without annotation.
    pub process: String,
    /// Its samples with Lua frames.
    pub samples: u64,
    /// Samples per state, in `nflame_profile::lua::VM_STATES` order; states
    /// without samples are left out.
    pub states: Vec<(String, u64)>,
}

impl LuaVmView {
    /// The share (0..1) of the process's Lua samples in `state`.
    pub fn share(&self, state: &str) -> f64 {
        let n = self
            .states
            .iter()
            .find(|(s, _)| s == state)
            .map_or(0, |(_, n)| *n);
        share(n, self.samples)
    }
}

/// The JSON of the [`LuaVmView`]s, counts in `measure`.
struct LuaVmJson<'a>(&'a [LuaVmView], Measure);

impl Serialize for LuaVmJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Entry {
            samples: Amount,
            share: f64,
        }
        struct States<'a>(&'a LuaVmView, Measure);
        impl Serialize for States<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut map = s.serialize_map(Some(self.0.states.len()))?;
                for (state, n) in &self.0.states {
                    let e = Entry {
                        samples: Amount::of(*n, self.1),
                        share: share(*n, self.0.samples),
                    };
                    map.serialize_entry(state, &e)?;
                }
                map.end()
            }
        }
        #[derive(Serialize)]
        struct View<'a> {
            process: &'a str,
            samples: Amount,
            states: States<'a>,
        }
        s.collect_seq(self.0.iter().map(|v| View {
            process: &v.process,
            samples: Amount::of(v.samples, self.1),
            states: States(v, self.1),
        }))
    }
}

/// Samples per (process, VM state) of stacks with Lua frames.
#[derive(Debug, Default)]
struct LuaTally<'s> {
    counts: FxHashMap<(&'s str, &'static str), u64>,
}

impl<'s> LuaTally<'s> {
    fn add(&mut self, stack: &'s str, count: u64) {
        if count == 0 || !stack.contains("_[l") {
            return;
        }
        let Some(state) = nflame_profile::lua::vm_state(stack) else {
            return;
        };
        let process = stack
            .split(';')
            .find(|f| !is_role_annotation(f))
            .map_or("", strip_annotation);
        *self.counts.entry((process, state)).or_insert(0) += count;
    }

    fn views(self) -> Vec<LuaVmView> {
        let mut by_process: FxHashMap<&str, LuaVmView> = FxHashMap::default();
        for ((process, state), n) in self.counts {
            let v = by_process.entry(process).or_insert_with(|| LuaVmView {
                process: process.to_string(),
                samples: 0,
                states: Vec::new(),
            });
            v.samples += n;
            v.states.push((state.to_string(), n));
        }
        let order = |s: &str| {
            nflame_profile::lua::VM_STATES
                .iter()
                .position(|x| *x == s)
                .unwrap_or(usize::MAX)
        };
        let mut views: Vec<LuaVmView> = by_process.into_values().collect();
        for v in &mut views {
            v.states.sort_by_key(|(s, _)| order(s));
        }
        views.sort_by(|a, b| b.samples.cmp(&a.samples).then(a.process.cmp(&b.process)));
        views
    }
}

impl Serialize for CategoryReport {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let m = self.measure;
        let unit = m.unit != Unit::Samples;
        let loops = !self.event_loops.is_empty();
        let n = 4
            + usize::from(unit)
            + usize::from(self.per.is_some())
            + usize::from(loops)
            + usize::from(!self.lua_vm.is_empty());
        let mut st = s.serialize_struct("CategoryReport", n)?;
        if unit {
            st.serialize_field("unit", m.unit.name())?;
        }
        st.serialize_field("total_samples", &Amount::of(self.total_samples, m))?;
        st.serialize_field("serving_samples", &Amount::of(self.serving_samples, m))?;
        if let Some(per) = self.per {
            st.serialize_field("per", &per)?;
        }
        st.serialize_field("categories", &Categories(&self.categories, m))?;
        if loops {
            let v: Vec<EventLoopJson<'_>> = self
                .event_loops
                .iter()
                .map(|e| EventLoopJson {
                    process: &e.process,
                    total: Amount::of(e.total, m),
                    on_cpu: Amount::of(e.on_cpu, m),
                    idle: Amount::of(e.idle, m),
                    blocking: Amount::of(e.blocking, m),
                    preempted: Amount::of(e.preempted, m),
                    blocking_share: e.blocking_share(),
                    paths: e
                        .paths
                        .iter()
                        .map(|p| PathJson {
                            path: p,
                            time: Amount::of(p.time, m),
                        })
                        .collect(),
                })
                .collect();
            st.serialize_field("event_loops", &v)?;
        }
        st.serialize_field("verdict", &self.verdict)?;
        if !self.lua_vm.is_empty() {
            st.serialize_field("lua_vm", &LuaVmJson(&self.lua_vm, m))?;
        }
        st.end()
    }
}

/// The categories as a JSON object by name, counts in `measure`.
struct Categories<'a>(&'a [CategoryRow], Measure);

impl Serialize for Categories<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let m = self.1;
        fn frames(v: &[FrameCount], m: Measure) -> Vec<FrameJson<'_>> {
            v.iter()
                .map(|f| FrameJson {
                    frame: &f.frame,
                    samples: Amount::of(f.samples, m),
                    share: f.share,
                })
                .collect()
        }
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for c in self.0 {
            let row = RowJson {
                samples: Amount::of(c.samples, m),
                share: c.share,
                serving_share: c.serving_share,
                per_unit: c.per_unit,
                top_frames: frames(&c.top_frames, m),
                top_processes: frames(&c.top_processes, m),
            };
            map.serialize_entry(&c.name, &row)?;
        }
        map.end()
    }
}

/// The JSON of a [`CategoryRow`].
#[derive(Serialize)]
struct RowJson<'a> {
    samples: Amount,
    share: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    serving_share: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    per_unit: Option<f64>,
    top_frames: Vec<FrameJson<'a>>,
    top_processes: Vec<FrameJson<'a>>,
}

/// The JSON of an [`EventLoop`].
#[derive(Serialize)]
struct EventLoopJson<'a> {
    process: &'a str,
    total: Amount,
    on_cpu: Amount,
    idle: Amount,
    blocking: Amount,
    preempted: Amount,
    blocking_share: f64,
    paths: Vec<PathJson<'a>>,
}

/// The JSON of a [`BlockingPath`].
#[derive(Serialize)]
struct PathJson<'a> {
    #[serde(flatten)]
    path: &'a BlockingPath,
    time: Amount,
}

/// The JSON of a [`FrameCount`].
#[derive(Serialize)]
struct FrameJson<'a> {
    frame: &'a str,
    samples: Amount,
    share: f64,
}

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// A percentage for messages: `12.3%`.
pub(crate) fn pct(f: f64) -> String {
    format!("{:.1}%", 100.0 * f)
}

fn top(counts: FxHashMap<&str, u64>, n: usize, total: u64) -> Vec<FrameCount> {
    let mut v: Vec<(&str, u64)> = counts.into_iter().collect();
    v.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    v.truncate(n);
    v.into_iter()
        .map(|(frame, samples)| FrameCount {
            frame: frame.to_string(),
            samples,
            share: share(samples, total),
        })
        .collect()
}

fn check_per(opts: &CategoryReportOptions) -> Result<(), Error> {
    if let Some(per) = opts.per {
        if !(per.is_finite() && per > 0.0) {
            return Err(Error::InvalidOption(format!(
                "the units of work must be a positive number, not {per}"
            )));
        }
    }
    Ok(())
}

/// Samples per category of one profile, before shares and verdict.
struct Tally<'s> {
    samples: Vec<u64>,
    relay: Vec<u64>,
    frames: Vec<FxHashMap<&'s str, u64>>,
    procs: Vec<FxHashMap<&'s str, u64>>,
    event_loops: Vec<EventLoop>,
    lua: LuaTally<'s>,
}

impl<'s> Tally<'s> {
    fn new(ncat: usize) -> Tally<'s> {
        Tally {
            samples: vec![0; ncat],
            relay: vec![0; ncat],
            frames: vec![FxHashMap::default(); ncat],
            procs: vec![FxHashMap::default(); ncat],
            event_loops: Vec::new(),
            lua: LuaTally::default(),
        }
    }
}

impl CategoryReport {
    /// Classifies every stack of `profile` with `rules` and builds the report.
    ///
    /// Fails only on an invalid option (`per` not positive and finite).
    pub fn new(
        profile: &Profile,
        rules: &Rules,
        opts: &CategoryReportOptions,
    ) -> Result<CategoryReport, Error> {
        check_per(opts)?;
        let mut t = Tally::new(rules.categories().len());
        let mut classifier = Classifier::new(rules);
        let mut loops = EventLoopTally::new(profile.unit());
        for (stack, count) in profile.iter() {
            loops.add(stack, count);
            t.lua.add(stack, count);
            let c = classifier.classify(stack);
            t.samples[c.category] += count;
            if c.in_relay_syscall {
                t.relay[c.category] += count;
            }
            *t.frames[c.category].entry(c.frame).or_insert(0) += count;
            *t.procs[c.category].entry(c.process).or_insert(0) += count;
        }
        t.event_loops = loops.finish();
        Ok(CategoryReport::from_tally(
            t,
            profile.total(),
            profile.measure(),
            rules,
            opts,
        ))
    }

    /// The reports of both columns of `tree` (BEFORE and AFTER of a diff, see
    /// [`nflame_profile::diff::Diff::tree`]), each equal to [`CategoryReport::new`] of its
    /// profile. Every distinct stack is classified once, for both. `measure`
    /// is how the counts of both columns read ([`nflame_profile::diff::Diff::measure`]).
    pub fn pair_from_tree(
        tree: &StackTree<'_>,
        measure: Measure,
        rules: &Rules,
        opts: [&CategoryReportOptions; 2],
    ) -> Result<[CategoryReport; 2], Error> {
        check_per(opts[0])?;
        check_per(opts[1])?;
        let ncat = rules.categories().len();
        // Frames and processes by (category, frame id) first: cheaper than by
        // name. Each stack is tallied as it is classified.
        let mut samples = vec![[0u64; 2]; ncat];
        let mut relay = vec![[0u64; 2]; ncat];
        let mut frames: FxHashMap<(usize, u32), [u64; 2]> = FxHashMap::default();
        let mut procs: FxHashMap<(usize, u32), [u64; 2]> = FxHashMap::default();
        let add = |a: &mut [u64; 2], b: [u64; 2]| {
            a[0] += b[0];
            a[1] += b[1];
        };
        Classifier::new(rules).classify_tree_each(tree, |i, c| {
            let counts = tree.stacks()[i].counts;
            add(&mut samples[c.category], counts);
            if c.in_relay_syscall {
                add(&mut relay[c.category], counts);
            }
            add(frames.entry((c.category, c.frame)).or_default(), counts);
            add(procs.entry((c.category, c.process)).or_default(), counts);
        });
        let name = |id: u32| {
            if id == UNKNOWN_FRAME {
                "[unknown]"
            } else {
                strip_annotation(tree.frame_name(id))
            }
        };
        let tally = |col: usize| {
            let mut t = Tally::new(ncat);
            t.event_loops = event_loops(
                measure.unit,
                tree.stacks().iter().map(|s| (s.text, s.counts[col])),
            );
            for stack in tree.stacks() {
                t.lua.add(stack.text, stack.counts[col]);
            }
            for c in 0..ncat {
                t.samples[c] = samples[c][col];
                t.relay[c] = relay[c][col];
            }
            for (by_id, by_name) in [(&frames, &mut t.frames), (&procs, &mut t.procs)] {
                for (&(c, id), n) in by_id {
                    // A profile without the stack has no entry for it.
                    if n[col] > 0 {
                        *by_name[c].entry(name(id)).or_insert(0) += n[col];
                    }
                }
            }
            t
        };
        // Each column reads every stack's text once more: side by side.
        let (before, after) = rayon::join(
            || CategoryReport::from_tally(tally(0), tree.total(0), measure, rules, opts[0]),
            || CategoryReport::from_tally(tally(1), tree.total(1), measure, rules, opts[1]),
        );
        Ok([before, after])
    }

    fn from_tally(
        t: Tally<'_>,
        total: u64,
        measure: Measure,
        rules: &Rules,
        opts: &CategoryReportOptions,
    ) -> CategoryReport {
        let serving: u64 = rules
            .categories()
            .iter()
            .zip(&t.samples)
            .filter(|(name, _)| SERVING_CATEGORIES.contains(&name.as_str()))
            .map(|(_, s)| s)
            .sum();
        let categories = rules
            .categories()
            .iter()
            .zip(t.samples)
            .zip(t.relay)
            .zip(t.frames.into_iter().zip(t.procs))
            .map(|(((name, s), r), (f, p))| CategoryRow {
                name: name.clone(),
                samples: s,
                share: share(s, total),
                serving_share: SERVING_CATEGORIES
                    .contains(&name.as_str())
                    .then(|| share(s, serving)),
                per_unit: opts.per.map(|per| measure.value(s) / per),
                top_frames: top(f, opts.top_frames, total),
                top_processes: top(p, 3, total),
                relay_syscall_samples: r,
            })
            .collect();
        let mut report = CategoryReport {
            measure,
            total_samples: total,
            serving_samples: serving,
            per: opts.per,
            lua_vm: t.lua.views(),
            categories,
            event_loops: t.event_loops,
            verdict: Verdict {
                kind: VerdictKind::None,
                summary: String::new(),
                fix: String::new(),
            },
        };
        report.verdict = verdict(&report, &opts.thresholds);
        report
    }

    /// The category named `name`, if the rules define it.
    pub fn category(&self, name: &str) -> Option<&CategoryRow> {
        self.categories.iter().find(|c| c.name == name)
    }

    /// Samples of category `name` (0 if absent).
    pub fn samples(&self, name: &str) -> u64 {
        self.category(name).map_or(0, |c| c.samples)
    }

    /// Share of the serving path of `samples` (0 without a serving path).
    pub fn serving_share_of(&self, samples: u64) -> f64 {
        share(samples, self.serving_samples)
    }

    /// Samples (or time) of all categories per unit of work, with
    /// [`CategoryReportOptions::per`].
    pub fn total_per_unit(&self) -> Option<f64> {
        self.per
            .map(|per| self.measure.value(self.total_samples) / per)
    }

    /// Serving-path samples (or time) per unit of work, with [`CategoryReportOptions::per`].
    pub fn serving_per_unit(&self) -> Option<f64> {
        self.per
            .map(|per| self.measure.value(self.serving_samples) / per)
    }

    /// Stored count `raw` with the unit: `12 samples`, `1500 µs`.
    pub fn amount(&self, raw: u64) -> String {
        self.measure.with_symbol(raw)
    }

    /// What the counts are, in prose: `samples` or `time`.
    pub fn noun(&self) -> &'static str {
        noun(self.measure.unit)
    }
}

/// What counts of `unit` are, in prose: `samples`, or `time`.
pub(crate) fn noun(unit: Unit) -> &'static str {
    if unit.is_time() {
        "time"
    } else {
        "samples"
    }
}

fn frame_list(c: Option<&CategoryRow>, n: usize) -> String {
    let Some(c) = c else { return String::new() };
    c.top_frames
        .iter()
        .take(n)
        .map(|f| format!("{} ({})", f.frame, pct(f.share)))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) const FIX_PROXY: &str =
    "Take the userland proxy out of the path: run the container with \
`--net=host` (no proxy, no bridge, no NAT), or set `\"userland-proxy\": false` in \
/etc/docker/daemon.json and restart dockerd, so published ports are forwarded by iptables DNAT \
in the kernel instead of being copied through docker-proxy.";

pub(crate) const FIX_BRIDGE: &str =
    "Run the container with `--net=host`: the service then uses the \
host's network stack directly, without the veth pair, the bridge and the NAT rules.";

pub(crate) const FIX_NONE: &str = "Nothing to change in the container networking; look at the top \
frames of the largest categories for where the CPU goes.";

pub(crate) const FIX_BLOCKING: &str = "Do not block the event loop: an nginx worker serves \
every connection it holds on one thread, so while it sleeps outside its event wait none of \
them progresses. Use the non-blocking way: `ngx.sleep` instead of a sleeping child process \
(`os.execute`, `io.popen`); cosockets (`ngx.socket.tcp`/`udp`) and the lua-resty libraries \
built on them (lua-resty-http, -redis, -mysql, -dns, lua-resty-shell for commands) instead of \
blocking sockets, files, child processes or a library's own DNS; `ngx.thread.spawn` for \
concurrent work and `ngx.timer.at` for work after the response; or move the work off the \
request path (a separate service, a queue, a background timer).";

/// The `blocking` verdict, if an event loop qualifies.
fn blocking_verdict(r: &CategoryReport, t: &Thresholds) -> Option<Verdict> {
    let min = t.min_count(r.measure);
    let e = r
        .event_loops
        .iter()
        .find(|e| e.blocking >= min && e.blocking_share() >= t.blocking_share)?;
    let whole = if e.on_cpu > 0 {
        "its time"
    } else {
        "its time off the CPU"
    };
    let mut summary = format!(
        "An event-loop worker blocks: {} is asleep outside its event wait (epoll_wait and the \
         like) for {} of {whole} ({} of {}; threshold {}), stalling every connection it holds. \
         Idle in its event wait {}, preempted {}, on the CPU {}.",
        e.process,
        pct(e.blocking_share()),
        r.amount(e.blocking),
        r.amount(e.total),
        pct(t.blocking_share),
        pct(share(e.idle, e.total)),
        pct(share(e.preempted, e.total)),
        if e.on_cpu > 0 {
            pct(share(e.on_cpu, e.total))
        } else {
            "not recorded (--wall records it)".to_string()
        },
    );
    if !e.paths.is_empty() {
        let _ = write!(
            summary,
            " Where it blocks: {}.",
            crate::blocking::describe_paths(e, 3)
        );
    }
    Some(Verdict {
        kind: VerdictKind::Blocking,
        summary,
        fix: FIX_BLOCKING.to_string(),
    })
}

fn verdict(r: &CategoryReport, t: &Thresholds) -> Verdict {
    if let Some(v) = blocking_verdict(r, t) {
        return v;
    }
    let proxy = r.samples("userland-proxy");
    let bridge = r.samples("bridge");
    let netfilter = r.samples("netfilter");
    let serving = r.serving_samples;
    let s = |x: u64| pct(r.serving_share_of(x));
    let a = |x: u64| pct(share(x, r.total_samples));
    let min = t.min_count(r.measure);
    let noun = r.noun();
    // `1616 of 3000 samples`, `1616 of 3000 µs`.
    let of = |x: u64, whole: u64| format!("{} of {}", r.measure.format(x), r.amount(whole));

    if proxy >= min && r.serving_share_of(proxy) >= t.proxy_share {
        let cat = r.category("userland-proxy");
        let who = cat
            .and_then(|c| c.top_processes.first())
            .map_or("a userland proxy".to_string(), |p| p.frame.clone());
        let relay = cat.map_or(0, |c| c.relay_syscall_samples);
        let mut summary = format!(
            "A userland proxy relays the traffic: {who} uses {} of the serving path \
             ({}; {} of all {noun}).",
            s(proxy),
            of(proxy, serving),
            a(proxy),
        );
        if relay > 0 {
            let _ = write!(
                summary,
                " {} of its {noun} {} inside the splice/read/write system calls that \
                 copy every byte from one socket to the other.",
                pct(share(relay, proxy)),
                if r.measure.unit.is_time() {
                    "is"
                } else {
                    "are"
                }
            );
        }
        let _ = write!(
            summary,
            " For comparison: app {}, tcp-ip {}, bridge {}, netfilter {} of the serving path.",
            s(r.samples("app")),
            s(r.samples("tcp-ip")),
            s(bridge),
            s(netfilter),
        );
        let frames = frame_list(cat, 4);
        if !frames.is_empty() {
            let _ = write!(summary, " Its top frames: {frames}.");
        }
        return Verdict {
            kind: VerdictKind::UserlandProxy,
            summary,
            fix: FIX_PROXY.to_string(),
        };
    }

    let bn = bridge + netfilter;
    if bn >= min
        && r.serving_share_of(bn) >= t.bridge_nat_share
        && r.serving_share_of(bridge) >= t.bridge_share
    {
        let mut frames: Vec<FrameCount> = ["bridge", "netfilter"]
            .iter()
            .filter_map(|n| r.category(n))
            .flat_map(|c| c.top_frames.iter().cloned())
            .collect();
        frames.sort_by_key(|f| std::cmp::Reverse(f.samples));
        let frames = frames
            .iter()
            .take(5)
            .map(|f| format!("{} ({})", f.frame, pct(f.share)))
            .collect::<Vec<_>>()
            .join(", ");
        let summary = format!(
            "The traffic crosses a veth pair, a Linux bridge and netfilter NAT: bridge {} and \
             netfilter {} of the serving path ({} together, {}; {} of all {noun}). \
             Top frames: {frames}. These are the functions themselves; the extra softirq \
             passes they cause are counted under tcp-ip ({} of the serving path).",
            s(bridge),
            s(netfilter),
            s(bn),
            r.amount(bn),
            a(bn),
            s(r.samples("tcp-ip")),
        );
        return Verdict {
            kind: VerdictKind::BridgeNat,
            summary,
            fix: FIX_BRIDGE.to_string(),
        };
    }

    let mut largest: Vec<&CategoryRow> = r.categories.iter().filter(|c| c.samples > 0).collect();
    largest.sort_by_key(|c| std::cmp::Reverse(c.samples));
    let largest = largest
        .iter()
        .take(3)
        .map(|c| format!("{} {}", c.name, pct(c.share)))
        .collect::<Vec<_>>()
        .join(", ");
    let summary = if serving == 0 {
        format!(
            "No container-network cost: no {} is in a userland proxy, the bridge, \
             netfilter, TCP/IP or the app. Largest categories: {}.",
            if r.measure.unit.is_time() {
                "time"
            } else {
                "sample"
            },
            if largest.is_empty() { "none" } else { &largest }
        )
    } else {
        format!(
            "No container-network bottleneck: userland proxy {}, bridge {}, netfilter {} of \
             the serving path ({}; thresholds: proxy {}, bridge + netfilter {} \
             with bridge {}). Largest categories of all {noun}: {largest}.",
            s(proxy),
            s(bridge),
            s(netfilter),
            r.amount(serving),
            pct(t.proxy_share),
            pct(t.bridge_nat_share),
            pct(t.bridge_share),
        )
    };
    Verdict {
        kind: VerdictKind::None,
        summary,
        fix: FIX_NONE.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(stacks: &[(&str, u64)], per: Option<f64>) -> CategoryReport {
        let p = Profile::from_stacks(stacks.iter().copied());
        let opts = CategoryReportOptions {
            per,
            ..CategoryReportOptions::default()
        };
        CategoryReport::new(&p, &Rules::default(), &opts).unwrap()
    }

    const APP: &str = "nginx;ngx_http_lua_content_handler";
    const TCP: &str = "nginx;writev;tcp_sendmsg_[k]";
    const PROXY: &str = "docker-proxy;[docker-proxy];__x64_sys_splice_[k];tcp_sendmsg_[k]";
    const BRIDGE: &str = "nginx;tcp_sendmsg_[k];br_dev_xmit_[k];veth_xmit_[k]";
    const NF: &str = "wrk;ip_rcv_[k];nf_hook_slow_[k];nf_conntrack_in_[k]";
    const IDLE: &str = "swapper;do_idle_[k]";

    #[test]
    fn shares_and_per_unit() {
        let r = report(&[(APP, 600), (TCP, 300), (IDLE, 100)], Some(1000.0));
        assert_eq!(r.total_samples, 1000);
        assert_eq!(r.serving_samples, 900);
        let app = r.category("app").unwrap();
        assert_eq!(app.samples, 600);
        assert!((app.share - 0.6).abs() < 1e-12);
        assert!((app.serving_share.unwrap() - 600.0 / 900.0).abs() < 1e-12);
        assert!((app.per_unit.unwrap() - 0.6).abs() < 1e-12);
        assert_eq!(app.top_frames[0].frame, "ngx_http_lua_content_handler");
        assert_eq!(r.category("other").unwrap().serving_share, None);
        assert_eq!(r.verdict.kind, VerdictKind::None);
        assert_eq!(r.categories.len(), 7);
    }

    #[test]
    fn proxy_verdict_and_its_threshold() {
        let r = report(&[(APP, 500), (TCP, 300), (PROXY, 200)], None);
        assert_eq!(r.verdict.kind, VerdictKind::UserlandProxy);
        assert!(r
            .verdict
            .summary
            .contains("docker-proxy uses 20.0% of the serving path"));
        assert!(r
            .verdict
            .summary
            .contains("100.0% of its samples are inside the splice"));
        assert!(r.verdict.fix.contains("--net=host"));
        assert!(r.verdict.fix.contains("\"userland-proxy\": false"));
        // Below 15% of the serving path: not dominant.
        let r = report(&[(APP, 600), (TCP, 300), (PROXY, 140)], None);
        assert_eq!(r.verdict.kind, VerdictKind::None);
        // Too few samples to say anything.
        let r = report(&[(APP, 10), (PROXY, 40)], None);
        assert_eq!(r.verdict.kind, VerdictKind::None);
        // Idle and unrelated work does not dilute the evidence.
        let r = report(
            &[(APP, 500), (TCP, 300), (PROXY, 200), (IDLE, 100_000)],
            None,
        );
        assert_eq!(r.verdict.kind, VerdictKind::UserlandProxy);
    }

    #[test]
    fn bridge_nat_needs_bridge_frames() {
        let r = report(&[(APP, 800), (TCP, 100), (BRIDGE, 40), (NF, 60)], None);
        assert_eq!(
            r.verdict.kind,
            VerdictKind::BridgeNat,
            "{}",
            r.verdict.summary
        );
        assert!(r.verdict.summary.contains("veth_xmit"));
        assert_eq!(r.verdict.fix, FIX_BRIDGE);
        // Conntrack on loopback alone (host networking on a Docker host): none.
        let r = report(&[(APP, 800), (TCP, 100), (NF, 100)], None);
        assert_eq!(r.verdict.kind, VerdictKind::None);
        // Too small a share.
        let r = report(&[(APP, 2000), (TCP, 1000), (BRIDGE, 70), (NF, 60)], None);
        assert_eq!(r.verdict.kind, VerdictKind::None);
    }

    #[test]
    fn rejects_bad_per() {
        let p = Profile::from_stacks([(APP, 1)]);
        for per in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let opts = CategoryReportOptions {
                per: Some(per),
                ..CategoryReportOptions::default()
            };
            assert!(CategoryReport::new(&p, &Rules::default(), &opts).is_err());
        }
    }

    #[test]
    fn reports_from_a_tree_are_the_reports_of_its_profiles() {
        let fixtures =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/folded");
        let load = |name: &str| Profile::from_path(fixtures.join(name)).unwrap();
        let pairs = [
            (load("lab-proxy.folded.gz"), load("lab-host.folded.gz")),
            (load("lab-nat.folded.gz"), load("nginx-lua.folded.gz")),
            (
                Profile::from_stacks([(APP, 600), (PROXY, 400), (NF, 3)]),
                Profile::from_stacks([(APP, 500), (BRIDGE, 70), (TCP, 1), (IDLE, 9)]),
            ),
        ];
        let per = |p: Option<f64>| CategoryReportOptions {
            per: p,
            ..CategoryReportOptions::default()
        };
        for (before, after) in &pairs {
            let mut tree = StackTree::new();
            for (s, c) in before.iter() {
                tree.add(s, 0, c);
            }
            for (s, c) in after.iter() {
                tree.add(s, 1, c);
            }
            let rules = Rules::default();
            let (ob, oa) = (per(Some(10.0)), per(None));
            let [b, a] =
                CategoryReport::pair_from_tree(&tree, before.measure(), &rules, [&ob, &oa])
                    .unwrap();
            assert_eq!(b, CategoryReport::new(before, &rules, &ob).unwrap());
            assert_eq!(a, CategoryReport::new(after, &rules, &oa).unwrap());
        }
    }

    fn time_report(stacks: &[(&str, u64)]) -> CategoryReport {
        let mut p = Profile::with_unit(Unit::Microseconds);
        for (s, c) in stacks {
            p.add(s, *c);
        }
        CategoryReport::new(&p, &Rules::default(), &CategoryReportOptions::default()).unwrap()
    }

    const WAIT: &str = "nginx;[blocked];main;ngx_worker_process_cycle;\
ngx_process_events_and_timers;ngx_epoll_process_events;epoll_wait;\
__x64_sys_epoll_wait_[k];do_epoll_wait_[k];schedule_[k]";
    const EXECUTE: &str = "nginx;[blocked];main;ngx_worker_process_cycle;\
ngx_http_lua_content_handler;handler@/srv/app.lua:3_[l];os.execute_[l];lj_cf_os_execute;\
__GI___wait4;__x64_sys_wait4_[k];do_wait_[k];schedule_[k]";
    const ON: &str = "nginx;[on-cpu];main;ngx_worker_process_cycle;ngx_http_lua_content_handler";

    #[test]
    fn a_worker_blocking_outside_its_event_wait_is_blocking() {
        let r = time_report(&[(WAIT, 200_000), (EXECUTE, 700_000), (ON, 100_000)]);
        assert_eq!(r.verdict.kind, VerdictKind::Blocking);
        let v = &r.verdict.summary;
        assert!(v.contains("nginx is asleep outside its event wait"), "{v}");
        assert!(
            v.contains("for 70.0% of its time (700000 µs of 1000000 µs"),
            "{v}"
        );
        assert!(v.contains("Lua handler@/srv/app.lua:3 → os.execute"), "{v}");
        assert!(v.contains("C lj_cf_os_execute → __GI___wait4"), "{v}");
        assert!(v.contains("the wait4 system call (100.0%)"), "{v}");
        for way in [
            "cosockets",
            "ngx.thread",
            "ngx.timer",
            "ngx.sleep",
            "lua-resty",
            "off the request path",
        ] {
            assert!(r.verdict.fix.contains(way), "{way}: {}", r.verdict.fix);
        }
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["verdict"]["kind"], "blocking");
        assert_eq!(j["event_loops"][0]["process"], "nginx");
        assert_eq!(j["event_loops"][0]["blocking"], 700_000);
        assert_eq!(j["event_loops"][0]["paths"][0]["syscall"], "wait4");
        let mut text = Vec::new();
        r.write_text(&mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.contains(
                "nginx: blocked outside its event wait 70.0% (700000 µs), idle in it 20.0%"
            ),
            "{text}"
        );
    }

    #[test]
    fn waiting_only_in_the_event_wait_or_too_little_is_not_blocking() {
        // Idle, or yielding (ngx.sleep: the worker is back in epoll_wait).
        let r = time_report(&[(WAIT, 900_000), (ON, 100_000)]);
        assert_eq!(r.verdict.kind, VerdictKind::None);
        assert_eq!(r.event_loops[0].blocking, 0);
        // 9% of the time, or 40 ms: under the thresholds.
        let r = time_report(&[(WAIT, 810_000), (EXECUTE, 90_000), (ON, 100_000)]);
        assert_eq!(r.verdict.kind, VerdictKind::None);
        let r = time_report(&[(EXECUTE, 40_000), (ON, 10_000)]);
        assert_eq!(r.verdict.kind, VerdictKind::None);
        // A profile of samples never is.
        let p = Profile::from_stacks([(EXECUTE, 900), (ON, 100)]);
        let r =
            CategoryReport::new(&p, &Rules::default(), &CategoryReportOptions::default()).unwrap();
        assert_ne!(r.verdict.kind, VerdictKind::Blocking);
        assert!(r.event_loops.is_empty());
    }

    #[test]
    fn time_profiles_speak_in_time() {
        // 40 ms of proxy time is under the 50 ms a verdict needs; 400 ms is not.
        let r = time_report(&[(APP, 60_000), (PROXY, 40_000)]);
        assert_eq!(r.verdict.kind, VerdictKind::None);
        assert!(
            r.verdict.summary.contains("(100000 µs; thresholds"),
            "{}",
            r.verdict.summary
        );
        let r = time_report(&[(APP, 600_000), (PROXY, 400_000)]);
        assert_eq!(r.verdict.kind, VerdictKind::UserlandProxy);
        assert!(
            r.verdict
                .summary
                .contains("(400000 of 1000000 µs; 40.0% of all time)"),
            "{}",
            r.verdict.summary
        );
        assert!(r.verdict.summary.contains("100.0% of its time is inside"));
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["unit"], "microseconds");
        assert_eq!(v["total_samples"], 1_000_000);
        // Fractional counts are decimal numbers in JSON.
        let mut p = Profile::new();
        p.add_count(
            APP,
            nflame_profile::unit::Count {
                value: 15,
                decimals: 1,
            },
        )
        .unwrap();
        let r =
            CategoryReport::new(&p, &Rules::default(), &CategoryReportOptions::default()).unwrap();
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["total_samples"], 1.5);
        assert_eq!(v["categories"]["app"]["samples"], 1.5);
        assert!(v.get("unit").is_none(), "samples need no unit");
    }

    #[test]
    fn json_shape() {
        let r = report(&[(APP, 3), (PROXY, 1)], Some(2.0));
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(v["total_samples"], 4);
        assert_eq!(v["categories"]["app"]["samples"], 3);
        assert_eq!(v["categories"]["app"]["share"], 0.75);
        assert_eq!(v["categories"]["app"]["per_unit"], 1.5);
        assert_eq!(v["categories"]["other"]["samples"], 0);
        assert_eq!(v["verdict"]["kind"], "none");
        assert!(v["verdict"]["summary"].is_string());
        assert!(v["verdict"]["fix"].is_string());
        // Category order is the rules' order.
        let keys: Vec<&String> = v["categories"].as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 7);
    }
}
