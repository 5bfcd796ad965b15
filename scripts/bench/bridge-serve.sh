#!/usr/bin/env bash
# Harness slot (BRIDGE_SERVE_CMD): serve the loaded store over IMAPS on $BRIDGE_IMAP_PORT.
# The account login (bench+Bench) shows the account's mailbox as INBOX.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
BIN=${POPBRIDGE_BIN:-$here/../../target/release/popbridge}
export POPBRIDGE_CONFIG=$BRIDGE_DATA_DIR/config.toml POPBRIDGE_DATA_DIR=$BRIDGE_DATA_DIR/store
python3 - "$POPBRIDGE_CONFIG" "$BRIDGE_IMAP_PORT" <<'PY'
import re, sys
path, port = sys.argv[1], sys.argv[2]
text = open(path).read()
local = '[local]\nuser = "bench"\npassword = "bench"\nimap = "off"\nimaps = "127.0.0.1:%s"\nsubmission = "off"\nsubmissions = "off"\n' % port
text = re.sub(r'\[local\]\n(?:[^\[].*\n)*', local, text, count=1)
# A long interval: the benchmark measures serving, not fetching.
text = text.replace('[account.pop]', 'interval = "24h"\n[account.pop]', 1)
open(path, 'w').write(text)
PY
if [ -z "${BRIDGE_RSS_FILE:-}" ]; then exec "$BIN" run; fi
# Peak RSS of the daemon while serving, for imap-sync.sh: VmHWM sampled until the harness stops
# this process group (VmHWM only grows, so the last sample is the peak up to 0.2 s before the end).
"$BIN" run & pid=$!
while kill -0 "$pid" 2>/dev/null; do
  awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" > "$BRIDGE_RSS_FILE.tmp" 2>/dev/null &&
    mv -f "$BRIDGE_RSS_FILE.tmp" "$BRIDGE_RSS_FILE"
  sleep 0.2
done
wait "$pid"
