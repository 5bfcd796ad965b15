#!/usr/bin/env bash
# The test command: make sure the real peers the tests talk to are installed, then run every test.
# Tests never skip when a peer is missing — they fail — so this installs what is missing first
# (apt-get, as root) or says exactly what to install.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
[ -x /usr/sbin/dovecot ] || missing+=(dovecot-core)
[ -x /usr/lib/dovecot/pop3 ] || missing+=(dovecot-pop3d)
[ -x /usr/lib/dovecot/imap ] || missing+=(dovecot-imapd)
command -v python3 >/dev/null || missing+=(python3)
command -v mbsync >/dev/null || missing+=(isync)
command -v curl >/dev/null || missing+=(curl)
command -v swaks >/dev/null || missing+=(swaks)
command -v systemd-analyze >/dev/null || missing+=(systemd)
/usr/bin/python3 -c "import aiosmtpd" 2>/dev/null || missing+=(python3-aiosmtpd)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "the tests need: ${missing[*]} — install them (sudo apt-get install -y ${missing[*]}) and rerun" >&2
    exit 1
  fi
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

exec cargo test "$@"
