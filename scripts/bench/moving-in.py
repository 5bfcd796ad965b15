#!/usr/bin/env python3
"""Moving in (issue 17): what switching from another tool costs.

  scripts/bench/moving-in.py

1. `popbridge import` of an N_MBOX-message mbox (default 20,000) written from the harness corpus
   (gen-mail.py, seed SEED, mboxrd-quoted): wall time and peak RSS of the process (wait4's
   ru_maxrss), RUNS times on a fresh data directory; every message must arrive.
2. A bounded first import (`first_import = "newest:NEWEST"`, default 1000) of N_SERVER messages
   (default 10,000) on a private Dovecot (POP3S, ../shared/harness) against a full first fetch of
   the same mailbox, alternating, RUNS times each in the same run; the store must hold NEWEST and
   N_SERVER messages respectively.

Prints one line per run and the medians. Env: PARTS ("12": both; "1" or "2"), N_MBOX, N_SERVER, NEWEST, RUNS (3), SEED (42),
POPBRIDGE_BIN (default target/release/popbridge; build it first), HARNESS, KEEP=1 (keep the work
directory).
"""
import os, shutil, sqlite3, statistics, subprocess, sys, tempfile, time

from benchlib import BIN, HARNESS, dovecot_stop, dovecot_up

N_MBOX = int(os.environ.get("N_MBOX", "20000"))
N_SERVER = int(os.environ.get("N_SERVER", "10000"))
NEWEST = int(os.environ.get("NEWEST", "1000"))
RUNS = int(os.environ.get("RUNS", "3"))
SEED = int(os.environ.get("SEED", "42"))


def timed(cmd, env):
    """Runs `cmd`; (seconds, peak RSS in MiB of that process alone)."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    secs = time.perf_counter() - t
    out, err = p.stdout.read().decode(), p.stderr.read().decode()
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit("%s exited with %d\n%s%s" % (" ".join(cmd), p.returncode, out, err))
    return secs, usage.ru_maxrss / 1024, out, err


def write_mbox(eml_dir, path):
    """The corpus as one mboxrd file (a `From ` line with a date, `>`-quoted From lines)."""
    n = 0
    with open(path, "wb") as out:
        for name in sorted(os.listdir(eml_dir)):
            with open(os.path.join(eml_dir, name), "rb") as f:
                raw = f.read()
            out.write(b"From bench@example.net Mon Jan  5 09:00:00 2026\n")
            for line in raw.splitlines(keepends=True):
                if line.lstrip(b">").startswith(b"From "):
                    line = b">" + line
                out.write(line)
            if not raw.endswith(b"\n"):
                out.write(b"\n")
            out.write(b"\n")
            n += 1
    return n


def config(data, pop_port=1, ca=None, first_import=None):
    conf = os.path.join(data, "config.toml")
    os.makedirs(os.path.join(data, "store"), mode=0o700, exist_ok=True)
    with open(os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write('[local]\nuser = "bench"\npassword = "bench"\nimap = "off"\nimaps = "off"\n'
                'submission = "off"\nsubmissions = "off"\n'
                '[[account]]\nname = "Bench"\nemail = "alice@example.com"\n[account.pop]\n'
                'host = "127.0.0.1"\nport = %d\ntls = "implicit"\nuser = "alice"\npassword = "alice-pw"\n' % pop_port)
        if ca:
            f.write('ca_file = "%s"\n' % ca)
        if first_import:
            f.write('first_import = "%s"\n' % first_import)
    return dict(os.environ, POPBRIDGE_CONFIG=conf, POPBRIDGE_DATA_DIR=os.path.join(data, "store"), RUST_LOG="warn")


def stored(data):
    db = sqlite3.connect(os.path.join(data, "store", "store.sqlite"))
    try:
        return db.execute("SELECT count(*) FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id "
                          "WHERE b.name = 'Bench'").fetchone()[0]
    finally:
        db.close()


def fresh(work, name):
    d = os.path.join(work, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d, mode=0o700)
    return d


def main():
    if not os.access(BIN, os.X_OK):
        raise SystemExit("no popbridge binary at %s (cargo build --release, or POPBRIDGE_BIN=…)" % BIN)
    work = tempfile.mkdtemp(prefix="popbridge-moving-in.")
    os.chmod(work, 0o711)  # Dovecot's mail user must reach its directory inside
    parts = os.environ.get("PARTS", "12")
    try:
        imports = []
        if "1" in parts:
            imports = import_mbox(work)
        times = {"newest": [], "full": []}
        if "2" in parts:
            times = first_fetches(work)
        med = statistics.median
        print()
        if imports:
            n, size, imports = imports
            print("popbridge import of %d messages (%.0f MB mbox): median %.2f s, peak RSS median %.1f MiB (max %.1f)"
                  % (n, size / 1e6, med(t for t, _ in imports), med(r for _, r in imports),
                     max(r for _, r in imports)))
        if times["full"]:
            nb, full = med(times["newest"]), med(times["full"])
            print("first fetch of a %d-message mailbox: newest:%d %.2f s, full %.2f s (%.2fx of the full one's time)"
                  % (N_SERVER, NEWEST, nb, full, nb / full))
    finally:
        if os.environ.get("KEEP") == "1":
            print("kept", work)
        else:
            shutil.rmtree(work, ignore_errors=True)


def import_mbox(work):
    """Part 1: (messages, mbox bytes, [(seconds, peak RSS MiB)] per run)."""
    eml = os.path.join(work, "eml")
    subprocess.run([sys.executable, os.path.join(HARNESS, "gen-mail.py"), "-n", str(N_MBOX), "--seed",
                    str(SEED), "--eml-dir", eml], check=True, stdout=subprocess.DEVNULL)
    mbox = os.path.join(work, "old.mbox")
    n = write_mbox(eml, mbox)
    shutil.rmtree(eml)
    size = os.path.getsize(mbox)
    print("mbox: %d messages, %.0f MB" % (n, size / 1e6))
    imports = []
    for run in range(RUNS):
        data = fresh(work, "import")
        env = config(data)
        secs, rss, out, err = timed([BIN, "import", "Bench", mbox], env)
        got = stored(data)
        if got != n:
            raise SystemExit("import stored %d of %d messages\n%s%s" % (got, n, out, err))
        imports.append((secs, rss))
        print("import run %d: %.2f s, peak RSS %.1f MiB, %d messages" % (run + 1, secs, rss, got))
    os.remove(mbox)

    return n, size, imports


def first_fetches(work):
    """Part 2: {"newest": [seconds], "full": [seconds]}."""
    # A bounded first import against a full one, same Dovecot, same mailbox, alternating.
    henv = dovecot_up(os.path.join(work, "dovecot"), ["alice:alice-pw"])
    try:
        subprocess.run([sys.executable, os.path.join(HARNESS, "gen-mail.py"), "-n", str(N_SERVER), "--seed",
                        str(SEED), "--maildir", henv["MAILDIR_alice"]], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["chown", "-R", henv["MAIL_OWNER"], henv["MAILDIR_alice"]], check=True)
        port, ca = int(henv["POP3S_PORT"]), henv["TLS_CA"]
        times = {"newest": [], "full": []}
        for run in range(RUNS):
            for kind in ("newest", "full"):
                data = fresh(work, kind)
                env = config(data, port, ca, "newest:%d" % NEWEST if kind == "newest" else None)
                secs, rss, out, err = timed([BIN, "fetch", "Bench"], env)
                want = NEWEST if kind == "newest" else N_SERVER
                got = stored(data)
                if got != want:
                    raise SystemExit("%s fetch stored %d, expected %d\n%s%s" % (kind, got, want, out, err))
                times[kind].append(secs)
                print("first fetch run %d, %s: %.2f s, peak RSS %.1f MiB, %d messages"
                      % (run + 1, kind if kind == "full" else "newest:%d" % NEWEST, secs, rss, got))
    finally:
        dovecot_stop(os.path.join(work, "dovecot"))

    return times


if __name__ == "__main__":
    main()
