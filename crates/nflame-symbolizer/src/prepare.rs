//! [`Prepared`]: work done for [`fold_with`](crate::fold_with) before the
//! recording ends.
//!
//! Reading and parsing `/proc/kallsyms` takes a large share of a fold
//! (the kernel formats some 100,000 lines on every read) and does not depend
//! on the samples, so [`warm_up`] starts it on a background thread right
//! before sampling begins; the fold then finds it done. This module owns
//! only that hand-over; the table itself is [`crate::Kallsyms`].

use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;

use crate::kernel::Kallsyms;
use crate::{Error, FoldOptions};

type Loaded = Result<Arc<Kallsyms>, Error>;

/// Symbol data loaded ahead of [`fold_with`](crate::fold_with), possibly
/// still loading on a background thread. `Send + Sync`; a default
/// (`Prepared::default()`) has nothing loaded and loads on first use.
#[derive(Debug, Default)]
pub struct Prepared {
    /// The background load, until someone waits for it.
    pending: Mutex<Option<JoinHandle<Loaded>>>,
    kallsyms: OnceLock<Loaded>,
    /// Whether kernel symbols are wanted at all.
    skip_kernel: bool,
}

/// Starts loading what [`fold_with`](crate::fold_with) will need for
/// recordings folded with `opts` (kernel symbols, unless `opts.kernel` is
/// off) on a background thread, and returns at once. Call it right before
/// sampling starts; the load then overlaps the recording.
pub fn warm_up(opts: &FoldOptions) -> Prepared {
    if !opts.kernel {
        return Prepared {
            skip_kernel: true,
            ..Prepared::default()
        };
    }
    let handle = std::thread::Builder::new()
        .name("nflame-kallsyms".into())
        .spawn(|| Kallsyms::load().map(Arc::new))
        .ok(); // without a thread, the fold loads it itself
    Prepared {
        pending: Mutex::new(handle),
        ..Prepared::default()
    }
}

impl Prepared {
    /// Symbol data already at hand: this kernel symbol table (e.g. one
    /// [`Kallsyms::parse`]d from a saved `/proc/kallsyms`).
    pub fn with_kallsyms(kallsyms: Kallsyms) -> Prepared {
        let loaded = OnceLock::new();
        let _ = loaded.set(Ok(Arc::new(kallsyms)));
        Prepared {
            kallsyms: loaded,
            ..Prepared::default()
        }
    }

    /// The kernel symbol table, waiting for the background load if it is
    /// still running (or loading it now if none was started). `None` if
    /// this was prepared for a fold without kernel frames.
    pub fn kallsyms(&self) -> Option<&Result<Arc<Kallsyms>, Error>> {
        if self.skip_kernel {
            return None;
        }
        Some(self.kallsyms.get_or_init(|| {
            let handle = self
                .pending
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .take();
            match handle.map(JoinHandle::join) {
                Some(Ok(loaded)) => loaded,
                // The thread panicked or never started: load here.
                Some(Err(_)) | None => Kallsyms::load().map(Arc::new),
            }
        }))
    }
}
