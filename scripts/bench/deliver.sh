#!/usr/bin/env bash
# Delivery benchmark (issue 18): a full POP3S fetch of N messages from the harness's Dovecot
# (user alice) by popbridge into its local store, by popbridge over LMTP into the same Dovecot
# (user bob), by popbridge over IMAP APPEND (bob's INBOX), and by `fetchmail --lmtp` to the same
# LMTP — in the same run, round-robin over RUNS rounds, the median reported.
# Usage: scripts/bench/deliver.sh [N=2000]. Env: RUNS (3), SEED (42), TOOLS ("store lmtp imap fetchmail"), HARNESS,
# POPBRIDGE_BIN (default: the release build, built first), KEEP_WORK=1.
# Every run starts from an empty target mailbox and a fresh popbridge state; nothing is deleted
# from alice's mailbox (delete = "never", fetchmail `keep`). Each run's delivered count is checked.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
H=${HARNESS:-$root/../shared/harness}
[ -x "$H/dovecot-up.sh" ] || { echo "harness not found at $H (set HARNESS=...)" >&2; exit 2; }
N=${1:-2000}
RUNS=${RUNS:-3}
SEED=${SEED:-42}
if [ -z "${POPBRIDGE_BIN:-}" ]; then
    (cd "$root" && cargo build --release --quiet)
    POPBRIDGE_BIN=${CARGO_TARGET_DIR:-$root/target}/release/popbridge
fi
command -v fetchmail >/dev/null || apt-get install -y fetchmail >/dev/null
[ -x /usr/lib/dovecot/lmtp ] || apt-get install -y dovecot-lmtpd >/dev/null

work=$(mktemp -d /tmp/popbridge-deliver-bench.XXXXXX)
chmod 755 "$work"   # Dovecot's mail user must reach the maildirs
cleanup() {
    [ -n "${DOVECOT_STOP:-}" ] && "$DOVECOT_STOP" >/dev/null 2>&1 || true
    [ "${KEEP_WORK:-0}" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT
HARNESS_DIR=$work/dovecot "$H/dovecot-up.sh" >"$work/dovecot-up.log"
# shellcheck disable=SC1091
. "$work/dovecot/env"
lmtp_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# LMTP on loopback, into the same users' maildirs; then the master re-reads its config.
cat >>"$DOVECOT_CONF" <<CONF
protocols = pop3 imap lmtp
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $lmtp_port
  }
}
CONF
kill -HUP "$DOVECOT_MASTER_PID"
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$lmtp_port") 2>/dev/null && break
    sleep 0.1
done
python3 "$H/gen-mail.py" --count "$N" --seed "$SEED" --maildir "$MAILDIR_alice" >"$work/corpus.json"
chown -R "$MAIL_OWNER" "$MAILDIR_alice"
bob=${MAILDIR_bob:?}
python3 "$H/pop-limit.py" --host 127.0.0.1 --port "$POP3S_PORT" --user alice --password alice-pw \
    --ca "$TLS_CA" --tls implicit --expect "$N" >/dev/null   # warm-up: index and page cache

empty_bob() { rm -rf "$bob"; mkdir -p "$bob"/{cur,new,tmp}; chown -R "$MAIL_OWNER" "$bob"; }
count_bob() { find "$bob" -type f -path '*/cur/*' -o -type f -path '*/new/*' | wc -l; }

popbridge_config() { # $1: dir, $2: the [account.deliver] section (or nothing)
    mkdir -p "$1"
    umask 077
    cat >"$1/config.toml" <<CONF
[local]
user = "bench"
password = "bench"
[[account]]
name = "Bench"
email = "alice@example.com"
[account.pop]
host = "127.0.0.1"
port = $POP3S_PORT
tls = "implicit"
user = "alice"
password = "alice-pw"
ca_file = "$TLS_CA"
delete = "never"
$2
CONF
}

run_tool() { # $1: tool; prints seconds, checks the count
    local d=$work/run-$1-$RANDOM t0 t1 got
    empty_bob
    case $1 in
        store) popbridge_config "$d" "" ;;
        lmtp) popbridge_config "$d" "[account.deliver]
lmtp = \"127.0.0.1:$lmtp_port\"
recipient = \"bob@example.com\"" ;;
        imap) popbridge_config "$d" "[account.deliver]
imap = \"imaps://localhost:$IMAPS_PORT\"
user = \"bob\"
password = \"bob-pw\"
ca_file = \"$TLS_CA\"" ;;
        fetchmail)
            mkdir -p "$d"
            cat >"$d/fetchmailrc" <<RC
poll localhost service $POP3S_PORT protocol pop3 user "alice" password "alice-pw" is "bob" here
    keep fetchall ssl sslcertck sslcertfile "$TLS_CA" smtphost "127.0.0.1/$lmtp_port" lmtp smtpname "bob@example.com"
RC
            chmod 600 "$d/fetchmailrc" ;;
    esac
    t0=$(date +%s.%N)
    case $1 in
        fetchmail) FETCHMAILHOME=$d fetchmail -f "$d/fetchmailrc" -N --nosyslog -s >"$d/out" 2>&1 || true ;;
        *) POPBRIDGE_CONFIG=$d/config.toml POPBRIDGE_DATA_DIR=$d/store "$POPBRIDGE_BIN" fetch Bench >"$d/out" 2>&1 ;;
    esac
    t1=$(date +%s.%N)
    if [ "$1" = store ]; then
        got=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from messages').fetchone()[0])" "$d/store/store.sqlite")
    else
        got=$(count_bob)
    fi
    [ "$got" = "$N" ] || { echo "$1: $got of $N messages delivered:" >&2; tail -20 "$d/out" >&2; exit 1; }
    python3 -c "print(f'{$t1 - $t0:.2f}')"
}

declare -A times
tools=${TOOLS:-"store lmtp imap fetchmail"}
for r in $(seq "$RUNS"); do
    for t in $tools; do
        s=$(run_tool "$t")
        times[$t]="${times[$t]:-} $s"
        echo "run $r $t ${s}s" >&2
    done
done
bytes=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['crlf_bytes'])" "$work/corpus.json")
printf '%-10s %8s %8s %9s %8s\n' tool median_s min_s msg/s MB/s
for t in $tools; do
    python3 - "$t" "$N" "$bytes" ${times[$t]} <<'PY'
import statistics, sys
t, n, b, xs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), [float(x) for x in sys.argv[4:]]
m = statistics.median(xs)
print(f"{t:<10} {m:8.2f} {min(xs):8.2f} {n / m:9.0f} {b / m / 1e6:8.1f}")
PY
done
