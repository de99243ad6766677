//! nflame-procfs: facts about processes, read from `/proc` and `/sys`.
//!
//! One home for everything nflame learns about a process outside perf
//! events, used by the sampler (targets, mappings at attach time), the
//! symbolizer (files to name frames from, processes whose mappings were not
//! recorded) and the Docker discovery (command lines, cgroups, namespaces):
//!
//! - [`maps`]: the one `/proc/PID/maps` parser, into [`Mapping`]s;
//! - [`files`]: where a target's mapped file is opened (its `map_files`
//!   entry, its mount namespace through `/proc/PID/root`, the path), and our
//!   own vDSO;
//! - [`process`]: comm, executable, threads, status fields (thread group,
//!   namespace pid, owner), command line, cgroup, network namespace, liveness;
//!   [`process::ProcSource`] for tests;
//! - [`system`]: online CPUs, perf-event sysctls, capabilities, small
//!   configuration files;
//! - [`read`]: bounded, non-blocking reads of regular files, which every
//!   other module uses: a target controls much of what is read here and is
//!   treated as hostile.
//!
//! It knows nothing of perf events, symbols or Docker.

pub mod files;
pub mod maps;
pub mod process;
pub mod read;
pub mod system;

pub use nflame_recording::Mapping;
