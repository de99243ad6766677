#!/usr/bin/env bash
# The whole test suite: installs what the tests use, then runs every test of the workspace.
# Sampling tests open real perf events and need root (or CAP_PERFMON with perf_event_paranoid <= 1).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
# The committed BPF objects must be what their sources compile to.
scripts/build-bpf.sh --check
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
