#!/usr/bin/env bash
# The whole test suite: installs what the tests use, then runs every test of the
# workspace (cargo-nextest) and the documentation examples (`cargo test --doc`, which
# nextest does not run). Extra arguments go to `cargo nextest run`.
#
# Sampling tests open real perf events and need root (or CAP_PERFMON with
# perf_event_paranoid <= 1). A test that needs a tool which is not installed fails; to
# leave such tests out on purpose, name their tags in NFLAME_SKIP (comma-separated):
#
#   docker    docker.io (dockerd, docker-proxy) and busybox-static
#   go        golang-go
#   nginx     nginx and libnginx-mod-http-lua
#   wrk       wrk
#   chromium  chromium, Node.js and playwright-core
#   perf      linux-perf
#
# e.g. `NFLAME_SKIP=docker,chromium scripts/test.sh`. A test carries its tags in a module
# named `needs_TAG[_TAG…]` (its path reads `needs_docker_wrk::…`); the skipped ones are
# filtered out, and nextest's summary counts them as skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

tags="docker go nginx wrk chromium perf"
filter=()
if [[ -n ${NFLAME_SKIP:-} ]]; then
  exprs=()
  IFS=, read -ra skip <<<"$NFLAME_SKIP"
  for tag in "${skip[@]}"; do
    if [[ " $tags " != *" $tag "* ]]; then
      echo "test.sh: NFLAME_SKIP: unknown tag \`$tag\` (known: $tags)" >&2
      exit 2
    fi
    exprs+=("test(/(^|::)needs(_[a-z0-9]+)*_${tag}(_[a-z0-9]+)*::/)")
  done
  joined=$(printf ' | %s' "${exprs[@]}")
  filter=(-E "not (${joined:3})")
  echo "test.sh: skipping the tests tagged ${NFLAME_SKIP}"
fi

NFLAME_SKIP=${NFLAME_SKIP:-} scripts/install-deps.sh
# The committed BPF objects must be what their sources compile to.
scripts/build-bpf.sh --check
status=0
cargo nextest run --workspace --no-fail-fast "${filter[@]}" "$@" || status=$?
cargo test --doc --workspace || status=$?
exit "$status"
