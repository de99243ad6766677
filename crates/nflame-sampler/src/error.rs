//! Errors of [`crate::record()`]. Each names what failed and keeps the cause.

use std::io;

/// Why a recording could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A target pid does not exist.
    #[error("process {pid} does not exist")]
    NoSuchProcess {
        /// The pid asked for.
        pid: u32,
    },
    /// A target process exited before its counters could be attached.
    #[error("process {pid} exited before recording started")]
    ProcessExited {
        /// The pid asked for.
        pid: u32,
    },
    /// No process matched the names during the whole recording.
    #[error("no process named {} was running or started during the recording", names.join(", "))]
    NoProcessMatched {
        /// The names asked for.
        names: Vec<String>,
    },
    /// The kernel refused to open perf events for lack of privilege.
    #[error(
        "permission denied opening perf events ({what}): kernel.perf_event_paranoid is {paranoid}. \
         Run as root, or grant CAP_PERFMON (e.g. `setcap cap_perfmon+ep` on the binary), or lower \
         the setting: `sysctl kernel.perf_event_paranoid=1` also allows kernel frames of your own \
         processes, 0 allows system-wide sampling{hint}"
    )]
    PermissionDenied {
        /// What was being opened.
        what: String,
        /// The current `perf_event_paranoid` (as text; "unknown" if unreadable).
        paranoid: String,
        /// Extra advice for this case.
        hint: &'static str,
        /// The kernel's error.
        #[source]
        source: io::Error,
    },
    /// The kernel has no perf events (CONFIG_PERF_EVENTS off, or blocked by seccomp).
    #[error("this kernel does not support perf events: check CONFIG_PERF_EVENTS, or a container seccomp profile blocking perf_event_open")]
    Unsupported {
        /// The kernel's error.
        #[source]
        source: io::Error,
    },
    /// The requested event does not exist here.
    #[error(
        "perf event `{event}` is not available on this machine (no hardware PMU?); use cpu-clock"
    )]
    EventUnavailable {
        /// The event name.
        event: &'static str,
        /// The kernel's error.
        #[source]
        source: io::Error,
    },
    /// The frequency exceeds `kernel.perf_event_max_sample_rate`.
    #[error(
        "sampling frequency {requested} Hz exceeds kernel.perf_event_max_sample_rate ({max} Hz)"
    )]
    FrequencyTooHigh {
        /// Requested frequency.
        requested: u64,
        /// The kernel's limit.
        max: u64,
    },
    /// The options contradict each other.
    #[error("invalid recording options: {0}")]
    InvalidOptions(String),
    /// The command to record could not be started.
    #[error("cannot run {program}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Another system call failed.
    #[error("{op} failed")]
    Io {
        /// The operation, e.g. "opening a perf counter on CPU 3".
        op: String,
        /// Why.
        #[source]
        source: io::Error,
    },
}
