#!/usr/bin/env bash
# Harness slot (BRIDGE_COUNT_CMD): prints how many messages the fetch stored.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
BIN=${POPBRIDGE_BIN:-$here/../../target/release/popbridge}
POPBRIDGE_CONFIG=$BRIDGE_DATA_DIR/config.toml POPBRIDGE_DATA_DIR=$BRIDGE_DATA_DIR/store \
  "$BIN" status --json | python3 -c 'import json,sys; print(sum(a["messages"] for a in json.load(sys.stdin)["accounts"]))'
