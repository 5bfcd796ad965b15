#!/usr/bin/env bash
# IMAP serving benchmark: mbsync full sync of the harness corpus from popbridge and from Dovecot
# in the same run, plus curl single-message latency (../shared/harness/bench-imap-sync.sh).
# Usage: scripts/bench/imap-sync.sh [N]   (env passes through: RUNS, SEED, LAT_SAMPLES, HARNESS)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
H=${HARNESS:-$root/../shared/harness}
[ -x "$H/bench-imap-sync.sh" ] || { echo "harness not found at $H (set HARNESS=...)" >&2; exit 2; }
(cd "$root" && cargo build --release --quiet)
export BRIDGE_NAME=${BRIDGE_NAME:-popbridge}
export BRIDGE_LOAD_CMD="$root/scripts/bench/bridge-load.sh"
export BRIDGE_SERVE_CMD="$root/scripts/bench/bridge-serve.sh"
export BRIDGE_IMAP_USER=bench+Bench BRIDGE_IMAP_PASS=bench BRIDGE_IMAP_TLS=imaps
exec "$H/bench-imap-sync.sh" "${1:-1000}"
