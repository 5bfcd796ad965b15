#!/usr/bin/env bash
# The long crash run: every crash series of tests/crash.rs with more kills — the named points
# (mid-RETR, after-RETR, on-DELE, after-DELE, on-QUIT, QUIT-applied) REPS times each per series
# (default 20), and KILLS random instants per random series (default 200) — checking the
# invariants after every kill. POINTS=on-DELE,QUIT-applied restricts the named points.
# What each series hit: target/tmp/crash/*.txt (and the test output).
set -euo pipefail
cd "$(dirname "$0")/.."
export CRASH_KILLS=${KILLS:-200} CRASH_REPS=${REPS:-20} CRASH_POINTS=${POINTS:-}
cargo test --release --locked --test tests -- crash:: --test-threads=2 --nocapture
cat target/tmp/crash/*.txt
