#!/usr/bin/env bash
# Harness slot (BRIDGE_FETCH_CMD of ../shared/harness/bench-pop-fetch.sh): configure popbridge for
# the harness's POP3S server from its environment and run one full fetch into $BRIDGE_DATA_DIR.
# The config is written directly (no `init`: no certificate to generate), so the timed part is the
# fetch itself plus one process start. Durability as shipped: synchronous=FULL, group commits.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
BIN=${POPBRIDGE_BIN:-$here/../../target/release/popbridge}
mkdir -p "$BRIDGE_DATA_DIR"
export POPBRIDGE_CONFIG=$BRIDGE_DATA_DIR/config.toml POPBRIDGE_DATA_DIR=$BRIDGE_DATA_DIR/store
umask 077
cat > "$POPBRIDGE_CONFIG" <<CONF
[local]
user = "bench"
password = "bench"
[[account]]
name = "Bench"
email = "$POP_USER@example.com"
[account.pop]
host = "$POP_HOST"
port = $POP_PORT
tls = "${POP_TLS:-implicit}"
user = "$POP_USER"
password = "$POP_PASS"
ca_file = "$POP_CA"
pipelining = "${POPBRIDGE_PIPELINING:-auto}"
CONF
exec "$BIN" fetch Bench >/dev/null
