//! nflame-procfs: facts about processes, read from `/proc` and `/sys`.
//!
//! One home for everything nflame learns about a process outside perf
//! events, used by the sampler (targets, mappings at attach time), the
//! symbolizer (files to name frames from, processes whose mappings were not
//! recorded) and the Docker discovery (command lines, cgroups, namespaces):
//!
//! - [`maps`]: the one `/proc/PID/maps` parser, into [`Mapping`]s;
//! - [`files`]: opening a target's files as it sees them, never outside its
//!   root, never blocking ([`files::TargetFile`]): mapped files (its
//!   `map_files` entry, its path inside its root, the path here after it
//!   exited, each checked to be the mapped inode), and our own vDSO;
//! - [`elf`]: a target's ELF file read within bounds: headers, and sections
//!   within caps (compressed ones checked to inflate to what they claim);
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

pub mod elf;
pub mod files;
pub mod maps;
pub mod process;
pub mod read;
pub mod system;

pub use nflame_recording::Mapping;
