#!/usr/bin/env bash
# The long stress run: 20 IMAP sessions doing random operations while the fetcher inserts mail,
# with the consistency checker of tests/stress.rs, for SECONDS_TO_RUN (default 300); then the
# state-tracking checker of tests/imap_concurrent.rs (10 sessions, keywords, EXPUNGE, APPEND,
# CONDSTORE/QRESYNC where advertised) against the test Dovecot and popbridge, for
# IMAP_CONCURRENT_SECONDS each (default 60). Each prints its operations/s and error counts.
set -euo pipefail
cd "$(dirname "$0")/.."
export STRESS_SECONDS=${SECONDS_TO_RUN:-300}
export IMAP_CONCURRENT_SECONDS=${IMAP_CONCURRENT_SECONDS:-60}
exec cargo test --release --test tests -- stress:: imap_concurrent:: --nocapture --test-threads 1
