//! nflame-diagnose: where the CPU of a containerised service goes, and what to change.
//!
//! The question this crate answers is the one behind "`docker run -p` caps us at 45k
//! requests/s and a Docker process sits at 100% CPU; `--net=host` does not": is the
//! cost the userland proxy copying every byte, the veth/bridge/NAT path, or the
//! application itself? It works on a folded [`Profile`](nflame_profile::Profile) and
//! makes no syscalls, so everything here is tested on fixtures.
//!
//! The stages:
//!
//! - [`rules`]: the rules language (`CATEGORY KIND PATTERN` lines) and the default
//!   rules compiled into the crate ([`rules::DEFAULT_RULES`]); callers may pass
//!   their own text (the CLI's `--rules FILE`);
//! - [`classify`]: every stack gets exactly one category — `userland-proxy`,
//!   `bridge`, `netfilter`, `tcp-ip`, `app`, `container-runtime` or `other` (plus
//!   any a custom rules file adds) — by a documented precedence;
//! - [`report`]: samples, shares, cost per unit of work and top frames per category,
//!   and the [`Verdict`] with its thresholds ([`Thresholds`]); for LuaJIT processes,
//!   the VM's own view read back from the Lua frames ([`LuaVmView`]);
//! - [`blocking`]: in profiles of time (off-CPU, wall-clock), how an event-loop
//!   worker's time splits (on the CPU, idle in its event wait, blocked outside
//!   it, preempted) and where it blocks, for the `blocking` verdict;
//! - [`change`]: two category reports compared ([`ChangeReport`]), with a verdict
//!   on what changed;
//! - [`text`]: aligned plain-text rendering; JSON comes from `serde`.
//!
//! ```
//! use nflame_diagnose::{CategoryReport, CategoryReportOptions, Rules, VerdictKind};
//! use nflame_profile::Profile;
//!
//! let profile = Profile::from_stacks([
//!     ("nginx;ngx_http_lua_content_handler", 500),
//!     ("docker-proxy;[docker-proxy];__x64_sys_splice_[k];do_splice_[k]", 400),
//! ]);
//! let opts = CategoryReportOptions::default();
//! let report = CategoryReport::new(&profile, &Rules::default(), &opts)?;
//! assert_eq!(report.verdict.kind, VerdictKind::UserlandProxy);
//! let json = serde_json::to_string(&report).unwrap();
//! assert!(json.starts_with(r#"{"total_samples":900,"#));
//! # Ok::<(), nflame_diagnose::Error>(())
//! ```

pub mod blocking;
pub mod change;
pub mod classify;
pub mod report;
pub mod rules;
pub mod text;

pub use blocking::{BlockingPath, EventLoop};
pub use change::{CategoryChange, ChangeReport};
pub use report::{
    CategoryReport, CategoryReportOptions, CategoryRow, FrameCount, LuaVmView, Thresholds, Verdict,
    VerdictKind,
};
pub use rules::{Rules, DEFAULT_RULES};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The rules text is invalid; `line` is 1-based (0 when no single line is at fault).
    #[error("{}", rules_message(source_name, *line, message))]
    Rules {
        /// The name the text was given (e.g. its file name).
        source_name: String,
        /// The offending line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// An option value that cannot be used.
    #[error("{0}")]
    InvalidOption(String),
}

fn rules_message(source_name: &str, line: usize, message: &str) -> String {
    if line == 0 {
        format!("{source_name}: {message}")
    } else {
        format!("{source_name}:{line}: {message}")
    }
}
