#!/usr/bin/env bash
# The long crash run: kill -9 of `popbridge fetch` (never, after-fetch, after-days) and of
# `popbridge run` (when-deleted-locally, with an IMAP client expunging) at random instants,
# KILLS times per series (default 200), checking the invariants after every kill.
set -euo pipefail
cd "$(dirname "$0")/.."
export CRASH_KILLS=${KILLS:-200}
exec cargo test --release --test tests -- crash:: --test-threads=1 --nocapture
