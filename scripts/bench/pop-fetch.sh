#!/usr/bin/env bash
# POP3S full-fetch benchmark: popbridge against mpop, fetchmail, getmail and the pipelined limit
# reader, in the same run (../shared/harness/bench-pop-fetch.sh). Usage: scripts/bench/pop-fetch.sh [N]
# Env passes through to the harness: RUNS, TOOLS, NOSYNC=1, SEED, RESULTS_TSV, HARNESS (path to the
# harness dir), and DELAY_MS: a one-way delay in front of the POP3S port (the harness's
# delay-proxy.py; every byte arrives DELAY_MS later in each direction, RTT = 2 x DELAY_MS, round
# trips not serialised) — a remote server. E.g. `DELAY_MS=25 scripts/bench/pop-fetch.sh 1000`.
# POPBRIDGE_PIPELINING=off: popbridge in lock step (`[account.pop] pipelining = "off"`), the case of
# a server without PIPELINING.
# popbridge is built in release mode in CARGO_TARGET_DIR (default target/) and run from there.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
H=${HARNESS:-$root/../shared/harness}
[ -x "$H/bench-pop-fetch.sh" ] || { echo "harness not found at $H (set HARNESS=...)" >&2; exit 2; }
(cd "$root" && cargo build --release --quiet)
target=${CARGO_TARGET_DIR:-$root/target}
case $target in /*) ;; *) target=$root/$target ;; esac
export POPBRIDGE_BIN=${POPBRIDGE_BIN:-$target/release/popbridge}
export BRIDGE_NAME=${BRIDGE_NAME:-popbridge}
export BRIDGE_FETCH_CMD="$root/scripts/bench/bridge-fetch.sh"
export BRIDGE_COUNT_CMD="$root/scripts/bench/bridge-count.sh"
[ -n "${DELAY_MS:-}" ] && export DELAY_MS && echo "DELAY_MS=$DELAY_MS: POP3S behind a ${DELAY_MS} ms one-way delay (RTT $((2 * DELAY_MS)) ms)" >&2
exec "$H/bench-pop-fetch.sh" "${1:-1000}"
