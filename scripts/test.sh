#!/usr/bin/env bash
# The test command: make sure the machine can run every test and the real peers the tests talk to
# are installed, then run every test (`cargo test --locked`; arguments go to cargo test).
# Tests never skip when something is missing — they fail — so this checks up front, installs what
# is missing (apt-get, as root) or says exactly what to do, and exits non-zero rather than letting
# tests fail obscurely.
set -euo pipefail
cd "$(dirname "$0")/.."

die() {
  echo "scripts/test.sh: $*" >&2
  exit 1
}

# Root, for the full-disk tests (tests/resources.rs): they mount a small tmpfs for the data
# directory and fill it. Checked by mounting one, so a root without the right to mount (a
# container without CAP_SYS_ADMIN) is told too.
if [ "$(id -u)" != 0 ]; then
  die "the full-disk tests (tests/resources.rs) mount a tmpfs, which needs root: run scripts/test.sh as root (sudo scripts/test.sh)"
fi
probe=$(mktemp -d)
if ! mount -t tmpfs -o size=1m,mode=0700 popbridge-probe "$probe" 2>"$probe.err"; then
  err=$(cat "$probe.err")
  rm -rf "$probe" "$probe.err"
  die "the full-disk tests (tests/resources.rs) mount a tmpfs, and \`mount -t tmpfs\` fails here ($err): run as root on a machine or in a container allowed to mount (docker: --privileged or --cap-add SYS_ADMIN)"
fi
umount "$probe"
rm -rf "$probe" "$probe.err"

# Open files: tests/resources.rs opens 1000 IMAP connections at once from the test process, while
# other tests run beside it in the same process; it wants at least 2048. Raise the soft limit (and
# the hard one, as root may) to WANT_FILES; never lower it.
WANT_FILES=8192
NEED_FILES=4096
soft=$(ulimit -Sn)
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$WANT_FILES" ]; then
  ulimit -Hn "$WANT_FILES" 2>/dev/null || true
  hard=$(ulimit -Hn)
fi
if [ "$soft" != unlimited ] && [ "$soft" -lt "$WANT_FILES" ]; then
  if [ "$hard" = unlimited ] || [ "$hard" -ge "$WANT_FILES" ]; then
    ulimit -Sn "$WANT_FILES"
  elif [ "$hard" -ge "$NEED_FILES" ]; then
    ulimit -Sn "$hard"
  else
    die "the tests open 1000 connections at once and need at least $NEED_FILES open files, but the hard limit is $hard and cannot be raised here: raise it (ulimit -Hn $WANT_FILES as root; systemd LimitNOFILE=$WANT_FILES; docker --ulimit nofile=$WANT_FILES)"
  fi
fi

missing=()
[ -x /usr/sbin/dovecot ] || missing+=(dovecot-core)
[ -x /usr/lib/dovecot/pop3 ] || missing+=(dovecot-pop3d)
[ -x /usr/lib/dovecot/imap ] || missing+=(dovecot-imapd)
[ -x /usr/lib/dovecot/submission ] || missing+=(dovecot-submissiond)
[ -x /usr/lib/dovecot/lmtp ] || missing+=(dovecot-lmtpd)
command -v python3 >/dev/null || missing+=(python3)
command -v mbsync >/dev/null || missing+=(isync)
command -v curl >/dev/null || missing+=(curl)
command -v mutt >/dev/null || missing+=(mutt)
command -v swaks >/dev/null || missing+=(swaks)
command -v systemd-analyze >/dev/null || missing+=(systemd)
command -v mpop >/dev/null || missing+=(mpop)
command -v fetchmail >/dev/null || missing+=(fetchmail)
[ -x /usr/bin/getmail ] || missing+=(getmail6)
/usr/bin/python3 -c "import aiosmtpd" 2>/dev/null || missing+=(python3-aiosmtpd)
perl -MMail::IMAPClient -e 1 2>/dev/null || missing+=(libmail-imapclient-perl)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# IMAPClient from PyPI (tests/imap_clients_ext.rs), for the python3 on PATH that the tests run.
python3 -c "import imapclient" 2>/dev/null || python3 -m pip install -q imapclient==4.1.0 2>/dev/null || python3 -m pip install -q --break-system-packages imapclient==4.1.0 || die "tests/imap_clients_ext.rs needs IMAPClient for $(command -v python3): python3 -m pip install imapclient==4.1.0 (Debian's python3: apt-get install python3-pip first)"
# authlib and Flask from PyPI (tests/oauth.rs: the OAuth2 authorization server, tests/util/oauth_server.py).
python3 -c "import authlib, flask" 2>/dev/null || python3 -m pip install -q authlib==1.9.10 flask==3.1.3 2>/dev/null || python3 -m pip install -q --break-system-packages authlib==1.9.10 flask==3.1.3 || die "tests/oauth.rs needs authlib and Flask for $(command -v python3): python3 -m pip install authlib==1.9.10 flask==3.1.3"

# dnslib from PyPI (tests/util/dns_stub.py: a real DNS server for the SRV lookups in tests/setup.rs).
python3 -c "import dnslib" 2>/dev/null || python3 -m pip install -q dnslib==0.9.26 2>/dev/null || python3 -m pip install -q --break-system-packages dnslib==0.9.26 || die "tests/setup.rs needs dnslib for $(command -v python3): python3 -m pip install dnslib==0.9.26"

exec cargo test --locked "$@"
