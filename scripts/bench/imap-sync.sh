#!/usr/bin/env bash
# IMAP serving benchmark: mbsync full sync of the harness corpus from popbridge and from Dovecot
# in the same run, plus curl single-message latency (../shared/harness/bench-imap-sync.sh).
# Usage: scripts/bench/imap-sync.sh [N]   (env passes through: RUNS, SEED, LAT_SAMPLES, HARNESS)
# Last line: the popbridge daemon's peak RSS while serving (bridge-serve.sh samples it).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
H=${HARNESS:-$root/../shared/harness}
[ -x "$H/bench-imap-sync.sh" ] || { echo "harness not found at $H (set HARNESS=...)" >&2; exit 2; }
(cd "$root" && cargo build --release --quiet)
export BRIDGE_NAME=${BRIDGE_NAME:-popbridge}
export BRIDGE_LOAD_CMD="$root/scripts/bench/bridge-load.sh"
export BRIDGE_SERVE_CMD="$root/scripts/bench/bridge-serve.sh"
export BRIDGE_IMAP_USER=bench+Bench BRIDGE_IMAP_PASS=bench BRIDGE_IMAP_TLS=imaps
BRIDGE_RSS_FILE=$(mktemp); export BRIDGE_RSS_FILE
trap 'rm -f "$BRIDGE_RSS_FILE" "$BRIDGE_RSS_FILE.tmp"' EXIT
"$H/bench-imap-sync.sh" "${1:-1000}"
[ -s "$BRIDGE_RSS_FILE" ] && echo "popbridge daemon peak RSS while serving (VmHWM): $(( $(cat "$BRIDGE_RSS_FILE") / 1024 )) MiB"
