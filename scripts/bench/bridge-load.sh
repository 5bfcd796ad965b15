#!/usr/bin/env bash
# Harness slot (BRIDGE_LOAD_CMD of ../shared/harness/bench-imap-sync.sh): fetch the harness's
# corpus over POP3S into the store in $BRIDGE_DATA_DIR, ready to be served.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
"$here/bridge-fetch.sh"
# The harness's certificate (signed by its CA, names 127.0.0.1 and localhost) becomes the local
# certificate, so mbsync and curl verify popbridge exactly as they verify Dovecot.
mkdir -p "$BRIDGE_DATA_DIR/store/tls"
install -m 600 "$TLS_CERT" "$BRIDGE_DATA_DIR/store/tls/cert.pem"
install -m 600 "$TLS_KEY" "$BRIDGE_DATA_DIR/store/tls/key.pem"
