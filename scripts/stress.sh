#!/usr/bin/env bash
# The long stress run: 20 IMAP sessions doing random operations while the fetcher inserts mail,
# with the consistency checker of tests/stress.rs, for SECONDS (default 300).
set -euo pipefail
cd "$(dirname "$0")/.."
export STRESS_SECONDS=${SECONDS_TO_RUN:-300}
exec cargo test --release --test tests -- stress:: --nocapture
