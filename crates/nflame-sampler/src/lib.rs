//! nflame-sampler: on-CPU sampling with Linux perf events (work in progress).
