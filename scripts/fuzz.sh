#!/usr/bin/env bash
# The long fuzz run: every target for SECONDS each (default 600), two at a time (the machine has
# 2 cores), then one line per target with its executions and findings. Exits 1 on any finding.
#
#   pop3, config, imap_syntax — libFuzzer through cargo-fuzz (coverage-guided; stable toolchain with
#                  RUSTC_BOOTSTRAP=1), crate in tests/fuzz/, seeds from tests/fuzz/corpus/<target>/.
#                  The fuzzer's growing corpus stays in tests/fuzz/target/work-corpus/ (not
#                  committed); a crashing input lands in tests/fuzz/artifacts/<target>/.
#   smtp, imap   — the session harnesses of tests/fuzz.rs (seeded mutation of the corpus, many
#                  connections at once against an in-process server) with a time budget.
#
# The short version of all four runs in every `cargo test` (tests/fuzz.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-600}
logs=tests/fuzz/target/logs
mkdir -p "$logs"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
echo "building the libFuzzer targets and the session harnesses"
cargo fuzz build --fuzz-dir tests/fuzz -O >"$logs/build-fuzz.log" 2>&1 || { cat "$logs/build-fuzz.log"; exit 1; }
cargo test --release --test tests --no-run >"$logs/build-tests.log" 2>&1 || { cat "$logs/build-tests.log"; exit 1; }

libfuzzer() { # target
  local t=$1 work=tests/fuzz/target/work-corpus/$1
  mkdir -p "$work" "tests/fuzz/artifacts/$t"
  # The work corpus comes first: libFuzzer writes new inputs there, the committed seeds are read only.
  cargo fuzz run --fuzz-dir tests/fuzz -O "$t" "$work" "tests/fuzz/corpus/$t" -- \
    -max_total_time="$secs" -timeout=10 -max_len=16384 -dict="tests/fuzz/dict/$t.dict" \
    -print_final_stats=1 -artifact_prefix="tests/fuzz/artifacts/$t/" >"$logs/$t.log" 2>&1
}

session() { # target
  POPBRIDGE_FUZZ_SECONDS=$secs POPBRIDGE_FUZZ_SEED=${POPBRIDGE_FUZZ_SEED:-$RANDOM$RANDOM} \
    cargo test --release --test tests "fuzz_$1" -- --nocapture >"$logs/$1.log" 2>&1
}

start=$(date +%s)
status=0
echo "pop3 + config: libFuzzer, ${secs}s each"
libfuzzer pop3 & p1=$!
libfuzzer config & p2=$!
wait $p1 || true
wait $p2 || true
echo "smtp + imap: session harnesses, ${secs}s each"
session smtp & p1=$!
session imap & p2=$!
wait $p1 || true
wait $p2 || true
echo "imap_syntax: libFuzzer, ${secs}s"
libfuzzer imap_syntax || true

echo
echo "target  executions  per second  findings"
for t in pop3 config imap_syntax; do
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$logs/$t.log" | grep -o '[0-9]*$' || true)
  time=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$logs/$t.log" | grep -o 'in [0-9]*' | grep -o '[0-9]*' || true)
  found=$(find "tests/fuzz/artifacts/$t" -type f -newermt "@$start" | wc -l)
  if grep -q 'ERROR: libFuzzer\|panicked at' "$logs/$t.log" && [ "$found" = 0 ]; then found=1; fi
  [ "$found" = 0 ] || status=1
  printf '%-7s %10s  %10s  %s\n' "$t" "${runs:-?}" "$(( ${runs:-0} / ${time:-1} ))" \
    "$([ "$found" = 0 ] && echo none || echo "$found: tests/fuzz/artifacts/$t/, $logs/$t.log")"
done
for t in smtp imap; do
  line=$(grep "^fuzz $t: " "$logs/$t.log" || true)
  if [ -n "$line" ] && grep -q "^test fuzz::$t::fuzz_${t}_session ... ok" "$logs/$t.log"; then
    runs=$(echo "$line" | grep -o '[0-9]* executions' | grep -o '[0-9]*')
    rate=$(echo "$line" | grep -o '= [0-9]*/s' | grep -o '[0-9]*')
    printf '%-7s %10s  %10s  none\n' "$t" "$runs" "$rate"
  else
    status=1
    printf '%-7s %10s  %10s  %s\n' "$t" "?" "?" "FOUND (or failed): $logs/$t.log, inputs in target/tmp/fuzz-failures/$t/"
  fi
done
echo "logs: $logs/"
exit $status
