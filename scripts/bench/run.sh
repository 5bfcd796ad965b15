#!/usr/bin/env bash
# All the benchmarks, same run, one machine: POP3S full fetch (popbridge vs mpop, fetchmail,
# getmail and the pipelined limit reader) and mbsync/curl against popbridge and Dovecot, for a
# corpus of N messages; then IMAP latency at scale (imap-scale.py, N messages) and the
# micro-benchmarks of the hot paths (cargo bench). Tables go to stdout; progress to stderr.
#   scripts/bench/run.sh [N]            (default 1000)
# Env: RUNS (3), SCALE=0 skips imap-scale.py, MICRO=0 skips cargo bench; the rest passes through
# to the harness (SEED, NOSYNC, HARNESS, LAT_SAMPLES).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
N=${1:-1000}
(cd "$here/../.." && cargo build --release --quiet)
echo "== POP3S full fetch, N=$N =="
"$here/pop-fetch.sh" "$N"
echo
echo "== IMAP full sync (mbsync) and single-message latency (curl), N=$N =="
"$here/imap-sync.sh" "$N"
if [ "${SCALE:-1}" != 0 ]; then
  echo
  echo "== IMAP latency at scale, N=$N =="
  python3 "$here/imap-scale.py" "$N"
fi
if [ "${MICRO:-1}" != 0 ]; then
  echo
  echo "== Hot paths (cargo bench) =="
  (cd "$here/../.." && cargo bench --quiet --bench hotpaths 2>/dev/null)
fi
