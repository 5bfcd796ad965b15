#!/usr/bin/env bash
# POP3S full-fetch benchmark: popbridge against mpop, fetchmail, getmail and the pipelined limit
# reader, in the same run (../shared/harness/bench-pop-fetch.sh). Usage: scripts/bench/pop-fetch.sh [N]
# Env passes through to the harness: RUNS, TOOLS, NOSYNC=1, SEED, HARNESS (path to the harness dir).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
H=${HARNESS:-$root/../shared/harness}
[ -x "$H/bench-pop-fetch.sh" ] || { echo "harness not found at $H (set HARNESS=...)" >&2; exit 2; }
(cd "$root" && cargo build --release --quiet)
export BRIDGE_NAME=${BRIDGE_NAME:-popbridge}
export BRIDGE_FETCH_CMD="$root/scripts/bench/bridge-fetch.sh"
export BRIDGE_COUNT_CMD="$root/scripts/bench/bridge-count.sh"
exec "$H/bench-pop-fetch.sh" "${1:-1000}"
