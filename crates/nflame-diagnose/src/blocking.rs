//! Event-loop workers that block: where an nginx/OpenResty worker's time goes
//! in a profile of time (off-CPU or wall-clock), split into time on the CPU,
//! idle in its event wait, blocked outside it, and preempted; and the call
//! paths of the blocking.
//!
//! An nginx worker is one thread running an event loop: it waits for events
//! in one place (`epoll_wait` and the like) and otherwise runs the handlers of
//! every connection it holds. Time asleep anywhere else (a child process
//! waited for, a blocking file or socket read, a lock) stalls every one of
//! those connections. This module reads that from the stacks nflame's
//! recorder writes for time (`nflame record --off-cpu`/`--wall`): each stack
//! carries a kind frame (`[on-cpu]`, `[blocked]`, `[preempted]`) after the
//! process frame. In a profile of time without kind frames (another tool's
//! off-CPU profile), a stack that ends in the kernel's scheduler
//! (`schedule`, `__schedule`, `io_schedule`, …) is blocked time and any other
//! is time on the CPU; a profile of samples has no event-loop times (on-CPU
//! samples cannot see waiting).
//!
//! What it does not own: the verdict's threshold and wording
//! ([`crate::report`]), which uses [`EventLoop::blocking_share`].
//!
//! Time without a stack (a kind frame and nothing below it: switches the
//! recorder took no stack at, see `nflame-sampler`'s off-CPU sampling) is in
//! no share: where it was spent is not known.
//!
//! Which processes: nginx and OpenResty workers, recognised by the process
//! frame (`nginx`, `openresty`, also as `nginx-PID` with `--per-pid`) or by
//! nginx's event-loop functions in their stacks. Stacks of nginx's other
//! processes and threads, which are not event loops (the master waiting for
//! signals, the cache manager and loader, thread-pool threads whose job is
//! to block), are left out of the worker's time.

use std::fmt::Write as _;

use nflame_profile::Unit;
use regex::Regex;
use rustc_hash::FxHashMap;
use serde::Serialize;

/// Kernel and user functions that *are* an event loop's wait for events:
/// system call entries and their kernel bodies, the C library wrappers, and
/// nginx's event modules' process-events functions. Matched against frame
/// names without their annotation (`_[k]`).
const EVENT_WAIT: &str = r"^(?:(?:__x64_sys_|__ia32_sys_|__arm64_sys_|__se_sys_|__do_sys_|sys_|__GI_|__GI___|__|do_)?(?:epoll_wait|epoll_pwait2?|select|pselect6?|poll|ppoll|sys_poll|epoll_wait_common|kevent|io_uring_enter)|ep_poll|do_epoll_wait|core_sys_select|do_select|ngx_(?:epoll|poll|select|eventport|kqueue|devpoll|iocp)_process_events|ngx_process_events)$";

/// Frames of code that runs a request's handler (Lua, the nginx Lua module):
/// a wait for events below them is the handler's own (LuaSocket's `select`,
/// a library polling one socket), not the event loop's.
const HANDLER: &str = r"(?:_\[lj?\]$|^lj_|^lua_|^luaL_|^ngx_http_lua_|^ngx_stream_lua_)";

/// Frames of nginx's processes and threads that are not event loops (the
/// master's `ngx_master_process_cycle` is below every process it forks too:
/// see [`MASTER`]).
const NOT_A_WORKER: &str = r"^(?:ngx_cache_manager_process_cycle|ngx_cache_loader_process_cycle|ngx_thread_pool_cycle|ngx_privileged_agent_process_cycle|(?:__x64_sys_|__se_sys_|__do_sys_|sys_|__GI___|__)?(?:rt_sigsuspend|sigsuspend|pause))$";

/// The master's cycle, and the call through which it starts the workers:
/// a stack with the first and not the second is the master's.
const MASTER: [&str; 2] = ["ngx_master_process_cycle", "ngx_spawn_process"];

/// Frames that show a process is an nginx worker's event loop.
const WORKER: &str =
    r"^(?:ngx_worker_process_cycle|ngx_single_process_cycle|ngx_process_events_and_timers)$";

/// Process frames of event-loop servers.
const SERVER_PROCESS: &str = r"^(?:nginx|openresty)(?:-[0-9]+)?$";

/// Kernel functions a thread leaves the CPU in (for stacks without a kind frame).
const SCHEDULER: &str = r"^(?:__schedule|schedule|schedule_\w+|io_schedule\w*|preempt_schedule\w*|finish_task_switch\w*)$";

/// A system call entry point: its name is the second group.
const SYSCALL: &str = r"^(__x64_sys_|__ia32_sys_|__arm64_sys_|__se_sys_|__do_sys_|ksys_)(\w+)$";

/// Kernel functions that dispatch a system call to its implementation.
const SYSCALL_DISPATCH: [&str; 6] = [
    "entry_SYSCALL_64",
    "entry_SYSCALL_64_after_hwframe",
    "do_syscall_64",
    "x64_sys_call",
    "do_fast_syscall_32",
    "do_int80_syscall_32",
];

/// How a stack's time was spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    OnCpu,
    Blocked,
    Preempted,
}

/// One call path of the blocking time, named by its parts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BlockingPath {
    /// The Lua functions, leaf last (`handler@/srv/app.lua:3 → os.execute`),
    /// when the stack has Lua frames.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lua: Option<String>,
    /// The C functions: a LuaJIT library function (`lj_cf_os_execute`) when
    /// there is one, and the user-space frame that entered the kernel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub c: Option<String>,
    /// The system call the worker slept in (`wait4`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syscall: Option<String>,
    /// Time blocked on this path (stored counts of the profile).
    #[serde(skip)]
    pub time: u64,
    /// Share of the worker's blocking time (0..1).
    pub share: f64,
}

impl BlockingPath {
    /// `os.execute (handler@x.lua:3) → C lj_cf_os_execute, wait → wait4
    /// system call`, whatever parts are known.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(l) = &self.lua {
            parts.push(format!("Lua {l}"));
        }
        if let Some(c) = &self.c {
            parts.push(format!("C {c}"));
        }
        if let Some(s) = &self.syscall {
            parts.push(format!("the {s} system call"));
        }
        if parts.is_empty() {
            "an unnamed path (no frames outside the kernel's scheduler)".into()
        } else {
            parts.join(" → ")
        }
    }
}

/// The time of one event-loop server's workers in a profile (stored counts
/// of the profile's unit).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventLoop {
    /// The process frame (`nginx`, or `nginx-PID` with `--per-pid`).
    pub process: String,
    /// The workers' time in the profile: the sum of the four below.
    #[serde(skip)]
    pub total: u64,
    /// On a CPU (wall-clock profiles only).
    #[serde(skip)]
    pub on_cpu: u64,
    /// Asleep in the event wait: idle, waiting for events.
    #[serde(skip)]
    pub idle: u64,
    /// Asleep anywhere else: blocking every connection the worker holds.
    #[serde(skip)]
    pub blocking: u64,
    /// Runnable but preempted.
    #[serde(skip)]
    pub preempted: u64,
    /// The heaviest call paths of `blocking`, at most five.
    pub paths: Vec<BlockingPath>,
}

impl EventLoop {
    /// `blocking` as a share of the workers' time in the profile (0..1): of
    /// their whole time in a wall-clock profile, of their time off the CPU
    /// in an off-CPU profile.
    pub fn blocking_share(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.blocking as f64 / self.total as f64
        }
    }
}

/// Compiled patterns.
#[derive(Debug)]
struct Patterns {
    wait: Regex,
    handler: Regex,
    not_worker: Regex,
    worker: Regex,
    server: Regex,
    syscall: Regex,
    scheduler: Regex,
}

impl Patterns {
    fn new() -> Patterns {
        let re = |p: &str| Regex::new(p).expect("valid event-loop pattern");
        Patterns {
            wait: re(EVENT_WAIT),
            handler: re(HANDLER),
            not_worker: re(NOT_A_WORKER),
            worker: re(WORKER),
            server: re(SERVER_PROCESS),
            syscall: re(SYSCALL),
            scheduler: re(SCHEDULER),
        }
    }
}

/// A call path's parts: Lua, C, system call.
type PathKey = (Option<String>, Option<String>, Option<String>);

/// Times of one process frame while tallying.
#[derive(Debug, Default)]
struct Acc {
    worker_evidence: bool,
    on_cpu: u64,
    idle: u64,
    blocking: u64,
    preempted: u64,
    paths: FxHashMap<PathKey, u64>,
}

/// Stacks added one by one ([`EventLoopTally::add`]), then
/// [`EventLoopTally::finish`].
#[derive(Debug)]
pub struct EventLoopTally {
    unit: Unit,
    patterns: Patterns,
    procs: FxHashMap<String, Acc>,
}

impl EventLoopTally {
    /// A tally for a profile of `unit` (a profile of samples tallies nothing).
    pub fn new(unit: Unit) -> EventLoopTally {
        EventLoopTally {
            unit,
            patterns: Patterns::new(),
            procs: FxHashMap::default(),
        }
    }

    /// Adds one folded stack (`frame;frame;…`, root first) of `count`.
    pub fn add(&mut self, stack: &str, count: u64) {
        if !self.unit.is_time() || count == 0 {
            return;
        }
        let p = &self.patterns;
        let frames: Vec<&str> = stack.split(';').collect();
        // The process frame: the first one that is not a bracketed label.
        let Some(pi) = frames.iter().position(|f| !is_label(f)) else {
            return;
        };
        let process = frames[pi];
        let mut kind = None;
        let mut body = pi + 1;
        // The kind frame follows the process frame, or its thread frame.
        for (i, f) in frames.iter().enumerate().skip(pi + 1).take(2) {
            let k = match *f {
                "[on-cpu]" => Kind::OnCpu,
                "[blocked]" => Kind::Blocked,
                "[preempted]" => Kind::Preempted,
                _ => continue,
            };
            kind = Some(k);
            body = i + 1;
            break;
        }
        let names: Vec<&str> = frames[body.min(frames.len())..]
            .iter()
            .map(|f| strip_frame(f))
            .collect();
        if names.is_empty() {
            // Time without a stack (switches the recorder took no stack
            // at, in a class none of whose intervals got one): where it was
            // spent is unknown, so it is in no share.
            return;
        }
        let master = names.contains(&MASTER[0]) && !names.contains(&MASTER[1]);
        if master || names.iter().any(|n| p.not_worker.is_match(n)) {
            return;
        }
        let kind = kind.unwrap_or_else(|| {
            if names.iter().any(|n| p.scheduler.is_match(n)) {
                Kind::Blocked
            } else {
                Kind::OnCpu
            }
        });
        let worker = names.iter().any(|n| p.worker.is_match(n));
        let waits = names.iter().any(|n| p.wait.is_match(n))
            && !frames[body.min(frames.len())..]
                .iter()
                .any(|f| p.handler.is_match(f));
        let server = p.server.is_match(process);
        let acc = self.procs.entry(process.to_string()).or_default();
        acc.worker_evidence |= server || worker;
        match kind {
            Kind::OnCpu => acc.on_cpu += count,
            Kind::Preempted => acc.preempted += count,
            Kind::Blocked if waits => acc.idle += count,
            Kind::Blocked => {
                acc.blocking += count;
                let key = path_of(&frames[body.min(frames.len())..], p);
                *acc.paths.entry(key).or_insert(0) += count;
            }
        }
    }

    /// The event loops found, most blocking first.
    pub fn finish(self) -> Vec<EventLoop> {
        let mut out: Vec<EventLoop> = self
            .procs
            .into_iter()
            .filter(|(_, a)| a.worker_evidence)
            .map(|(process, a)| {
                let mut paths: Vec<BlockingPath> = a
                    .paths
                    .into_iter()
                    .map(|((lua, c, syscall), time)| BlockingPath {
                        lua,
                        c,
                        syscall,
                        time,
                        share: if a.blocking == 0 {
                            0.0
                        } else {
                            time as f64 / a.blocking as f64
                        },
                    })
                    .collect();
                paths.sort_by(|x, y| {
                    y.time
                        .cmp(&x.time)
                        .then_with(|| x.describe().cmp(&y.describe()))
                });
                paths.truncate(5);
                EventLoop {
                    process,
                    total: a.on_cpu + a.idle + a.blocking + a.preempted,
                    on_cpu: a.on_cpu,
                    idle: a.idle,
                    blocking: a.blocking,
                    preempted: a.preempted,
                    paths,
                }
            })
            .filter(|e| e.total > 0)
            .collect();
        out.sort_by(|x, y| {
            y.blocking_share()
                .total_cmp(&x.blocking_share())
                .then_with(|| x.process.cmp(&y.process))
        });
        out
    }
}

/// The event loops of the stacks of a profile of `unit` (see the module docs).
pub fn event_loops<'a>(
    unit: Unit,
    stacks: impl IntoIterator<Item = (&'a str, u64)>,
) -> Vec<EventLoop> {
    let mut t = EventLoopTally::new(unit);
    for (s, n) in stacks {
        t.add(s, n);
    }
    t.finish()
}

/// A bracketed label before the process frame (`[container web]`), not
/// `[unknown]`.
fn is_label(frame: &str) -> bool {
    frame.len() > 2 && frame.starts_with('[') && frame.ends_with(']') && frame != "[unknown]"
}

/// A frame without its annotation: `_[k]`, `_[j]`, `_[i]`, `_[w]`, `_[l]`, `_[lj]`.
fn strip_frame(f: &str) -> &str {
    for suffix in ["_[k]", "_[j]", "_[i]", "_[w]", "_[l]", "_[lj]"] {
        if let Some(s) = f.strip_suffix(suffix) {
            return s;
        }
    }
    f
}

/// The Lua part, the C part and the system call of a blocked stack (frames
/// root first, after the kind frame).
fn path_of(frames: &[&str], p: &Patterns) -> PathKey {
    let is_lua = |f: &str| f.ends_with("_[l]") || f.ends_with("_[lj]");
    let is_kernel = |f: &str| f.ends_with("_[k]");
    // Lua: the leaf-most Lua frame, and if it is a builtin (no `@chunk`),
    // the nearest Lua function above it that is one.
    let lua_frames: Vec<&str> = frames
        .iter()
        .filter(|f| is_lua(f))
        .map(|f| strip_frame(f))
        // `[lua: no stack]` and the like name no function.
        .filter(|f| !f.starts_with('['))
        .collect();
    let lua = lua_frames.last().map(|leaf| {
        if leaf.contains('@') {
            leaf.to_string()
        } else {
            match lua_frames.iter().rev().find(|f| f.contains('@')) {
                Some(caller) => format!("{caller} → {leaf}"),
                None => leaf.to_string(),
            }
        }
    });
    // C: a LuaJIT library function, and the two leaf-most named user
    // frames (`do_system → __wait4`).
    let user: Vec<&str> = frames
        .iter()
        .filter(|f| !is_lua(f) && !is_kernel(f) && !f.starts_with('['))
        .map(|f| strip_frame(f))
        .collect();
    let lib = user.iter().rev().find(|f| f.starts_with("lj_cf_")).copied();
    let mut leaf: Vec<&str> = user.iter().rev().take(2).copied().collect();
    leaf.reverse();
    if let Some(l) = lib {
        if !leaf.contains(&l) {
            leaf.insert(0, l);
        }
    }
    let c = (!leaf.is_empty()).then(|| leaf.join(" → "));
    let kernel: Vec<&str> = frames
        .iter()
        .filter(|f| is_kernel(f))
        .map(|f| strip_frame(f))
        .collect();
    let syscall = kernel
        .iter()
        .find_map(|f| p.syscall.captures(f).map(|c| c[2].to_string()))
        .or_else(|| {
            // The entry point was inlined: the first function the system
            // call dispatch called (`kernel_wait4`, `ksys_read`).
            let at = kernel.iter().position(|f| SYSCALL_DISPATCH.contains(f))?;
            let f = kernel[at + 1..]
                .iter()
                .find(|f| !SYSCALL_DISPATCH.contains(f))?;
            let name = ["kernel_", "ksys_", "do_sys_", "__sys_", "__do_"]
                .iter()
                .find_map(|pre| f.strip_prefix(pre))
                .unwrap_or(f);
            Some(name.to_string())
        });
    (lua, c, syscall)
}

/// The call paths of `e`, for a summary: `Lua … → C … → the wait4 system
/// call (97.0%); …`.
pub fn describe_paths(e: &EventLoop, n: usize) -> String {
    let mut s = String::new();
    for (i, path) in e.paths.iter().take(n).enumerate() {
        if i > 0 {
            s.push_str("; ");
        }
        let _ = write!(s, "{} ({:.1}%)", path.describe(), 100.0 * path.share);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loops(stacks: &[(&str, u64)]) -> Vec<EventLoop> {
        event_loops(Unit::Microseconds, stacks.iter().copied())
    }

    const IDLE: &str = "nginx;[blocked];__libc_start_main;main;ngx_spawn_process;\
ngx_worker_process_cycle;ngx_process_events_and_timers;ngx_epoll_process_events;epoll_wait;\
entry_SYSCALL_64_[k];do_syscall_64_[k];__x64_sys_epoll_wait_[k];do_epoll_wait_[k];ep_poll_[k];\
schedule_hrtimeout_range_[k];schedule_[k];__schedule_[k]";

    const EXECUTE: &str = "nginx;[blocked];main;ngx_worker_process_cycle;\
ngx_process_events_and_timers;ngx_epoll_process_events;ngx_http_lua_content_handler;\
lj_BC_FUNCC;content_by_lua(nginx.conf:20)_[l];handler@/srv/app.lua:3_[l];os.execute_[l];\
lj_cf_os_execute;__libc_system;do_system;__GI___wait4;entry_SYSCALL_64_[k];do_syscall_64_[k];\
__x64_sys_wait4_[k];__do_sys_wait4_[k];kernel_wait4_[k];do_wait_[k];schedule_[k]";

    const MASTER: &str = "nginx;[blocked];main;ngx_master_process_cycle;__sigsuspend;\
__x64_sys_rt_sigsuspend_[k];schedule_[k]";

    /// A worker's stack starts in the master, which forked it.
    const FORKED: &str = "nginx;[blocked];main;ngx_master_process_cycle;[nginx];\
ngx_spawn_process;[nginx];ngx_process_events_and_timers;[nginx];ngx_http_core_run_phases;\
ngx_http_lua_run_thread;[libluajit-5.1.so.2.1.0];do_system;__wait4;\
entry_SYSCALL_64_after_hwframe_[k];do_syscall_64_[k];kernel_wait4_[k];do_wait_[k];schedule_[k]";

    #[test]
    fn a_worker_forked_by_the_master_is_not_the_master() {
        let l = loops(&[(FORKED, 500), (MASTER, 1000)]);
        assert_eq!((l[0].blocking, l[0].total), (500, 500));
        let p = &l[0].paths[0];
        assert_eq!(p.c.as_deref(), Some("do_system → __wait4"));
        assert_eq!(p.syscall.as_deref(), Some("wait4"));
    }

    #[test]
    fn an_idle_worker_is_not_blocking() {
        let l = loops(&[(IDLE, 2_000_000), (MASTER, 2_000_000)]);
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].idle, 2_000_000);
        assert_eq!(l[0].blocking, 0);
        assert_eq!(l[0].blocking_share(), 0.0);
    }

    #[test]
    fn a_child_waited_for_is_blocking_and_named() {
        let l = loops(&[
            (IDLE, 100_000),
            (EXECUTE, 800_000),
            (
                "nginx;[on-cpu];main;ngx_worker_process_cycle;ngx_http_lua_content_handler",
                50_000,
            ),
            (
                "nginx;[preempted];main;ngx_worker_process_cycle;schedule_[k]",
                50_000,
            ),
            (MASTER, 1_000_000),
        ]);
        let e = &l[0];
        assert_eq!((e.total, e.blocking, e.idle), (1_000_000, 800_000, 100_000));
        assert!((e.blocking_share() - 0.8).abs() < 1e-9);
        let p = &e.paths[0];
        assert_eq!(
            p.lua.as_deref(),
            Some("handler@/srv/app.lua:3 → os.execute")
        );
        assert_eq!(
            p.c.as_deref(),
            Some("lj_cf_os_execute → do_system → __GI___wait4")
        );
        assert_eq!(p.syscall.as_deref(), Some("wait4"));
        assert!(describe_paths(e, 3).contains("the wait4 system call (100.0%)"));
    }

    #[test]
    fn a_handler_polling_its_own_socket_is_not_idle() {
        let s = "nginx;[blocked];ngx_worker_process_cycle;ngx_http_lua_content_handler;\
socket.select_[l];__GI___poll;__x64_sys_poll_[k];do_sys_poll_[k]";
        let l = loops(&[(s, 100)]);
        assert_eq!((l[0].blocking, l[0].idle), (100, 0));
        assert_eq!(l[0].paths[0].syscall.as_deref(), Some("poll"));
    }

    #[test]
    fn time_without_a_stack_is_in_no_share() {
        let l = loops(&[(IDLE, 900), ("nginx;[blocked]", 100)]);
        assert_eq!((l[0].total, l[0].blocking, l[0].idle), (900, 0, 900));
    }

    #[test]
    fn samples_and_other_processes_have_no_event_loop() {
        assert!(event_loops(Unit::Samples, [(EXECUTE, 100)]).is_empty());
        assert!(loops(&[(
            "sleep;[blocked];main;nanosleep;__x64_sys_nanosleep_[k]",
            100
        )])
        .is_empty());
    }

    #[test]
    fn labels_and_profiles_without_kind_frames() {
        let s = "[container web];nginx-7;main;ngx_worker_process_cycle;read;\
__x64_sys_read_[k];schedule_[k]";
        let on = "[container web];nginx-7;main;ngx_worker_process_cycle;ngx_http_handler";
        let l = loops(&[(s, 300), (on, 100)]);
        assert_eq!(l[0].process, "nginx-7");
        assert_eq!((l[0].blocking, l[0].on_cpu), (300, 100));
    }
}
