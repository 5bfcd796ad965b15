#!/usr/bin/env python3
"""IMAP latency at scale: SELECT, UID FETCH 1:* (FLAGS), SEARCH UNSEEN, STATUS — popbridge and
Dovecot serving the same mailbox of N small messages, measured in the same run.

  scripts/bench/imap-scale.py [N ...]          (default: 1000 10000 100000)

For each N: a private Dovecot (../shared/harness/dovecot-up.sh) gets N messages in alice's
maildir; popbridge fetches them over POP3S (timed), then serves them over IMAPS; each operation is
timed REPS times on one logged-in connection per server (median reported, milliseconds).
Env: REPS (7), HARNESS (path to the harness), POPBRIDGE_BIN (default target/release/popbridge).
"""
import imaplib, os, shutil, signal, socket, ssl, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HARNESS = os.environ.get("HARNESS", os.path.join(ROOT, "..", "shared", "harness"))
BIN = os.environ.get("POPBRIDGE_BIN", os.path.join(ROOT, "target", "release", "popbridge"))
REPS = int(os.environ.get("REPS", "7"))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def message(i):
    flags = "" if i % 3 else "S"  # a third are read, so UNSEEN has work to do
    body = ("Line %d of a small message used to measure IMAP latency at scale.\r\n" % i) * 8
    raw = ("From: Sender %d <sender%d@example.com>\r\nTo: alice@example.com\r\n"
           "Subject: scale message %d\r\nDate: Mon, 3 Mar 2025 10:%02d:%02d +0000\r\n"
           "Message-ID: <scale-%d@example.com>\r\n\r\n%s") % (i % 97, i % 97, i, (i // 60) % 60, i % 60, i, body)
    return raw.encode(), flags


def wait_port(port, timeout=60):
    t = time.time()
    while time.time() - t < timeout:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("port %d did not open" % port)


def timed(fn):
    out = []
    for _ in range(REPS):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return statistics.median(out)


def measure(port, ca, user, password, mailbox):
    ctx = ssl.create_default_context(cafile=ca)
    m = imaplib.IMAP4_SSL("localhost", port, ssl_context=ctx)
    m.login(user, password)
    res = {}

    def select():
        typ, _ = m.select(mailbox, readonly=True)
        assert typ == "OK"
    res["SELECT"] = timed(select)
    m.select(mailbox, readonly=True)

    def fetch_flags():
        typ, data = m.uid("FETCH", "1:*", "(FLAGS)")
        assert typ == "OK" and len(data) > 0
    res["UID FETCH 1:* (FLAGS)"] = timed(fetch_flags)

    def unseen():
        typ, _ = m.search(None, "UNSEEN")
        assert typ == "OK"
    res["SEARCH UNSEEN"] = timed(unseen)

    def status():
        typ, _ = m.status(mailbox, "(MESSAGES UIDNEXT UNSEEN)")
        assert typ == "OK"
    res["STATUS"] = timed(status)
    m.logout()
    return res


def run(n):
    work = tempfile.mkdtemp(prefix="popbridge-scale.")
    os.chmod(work, 0o755)
    env = dict(os.environ, HARNESS_DIR=os.path.join(work, "dovecot"))
    subprocess.run([os.path.join(HARNESS, "dovecot-up.sh")], env=env, check=True, stdout=subprocess.DEVNULL)
    henv = {}
    for line in open(os.path.join(work, "dovecot", "env")):
        if line.startswith("export "):
            k, _, v = line[7:].strip().partition("=")
            henv[k] = v.split("#")[0].strip()
    daemon = None
    try:
        md = henv["MAILDIR_alice"]
        t = int(time.time()) - n
        for i in range(1, n + 1):
            raw, flags = message(i)
            name = "%d.M%dP1.scale,S=%d:2,%s" % (t + i, i, len(raw), flags)
            with open(os.path.join(md, "cur", name), "wb") as f:
                f.write(raw)
        uid, gid = henv["MAIL_OWNER"].split(":")
        subprocess.run(["chown", "-R", "%s:%s" % (uid, gid), md], check=True)
        data = os.path.join(work, "bridge")
        benv = dict(os.environ, POP_HOST="127.0.0.1", POP_PORT=henv["POP3S_PORT"], POP_TLS="implicit",
                    POP_USER="alice", POP_PASS="alice-pw", POP_CA=henv["TLS_CA"], BRIDGE_DATA_DIR=data,
                    TLS_CERT=henv["TLS_SERVER_CERT"], TLS_KEY=henv["TLS_SERVER_CERT"].replace(".pem", ".key"),
                    POPBRIDGE_BIN=BIN)
        t0 = time.perf_counter()
        subprocess.run([os.path.join(ROOT, "scripts", "bench", "bridge-load.sh")], env=benv, check=True)
        fetch_s = time.perf_counter() - t0
        port = free_port()
        benv["BRIDGE_IMAP_PORT"] = str(port)
        daemon = subprocess.Popen([os.path.join(ROOT, "scripts", "bench", "bridge-serve.sh")], env=benv,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_port(port)
        ca = henv["TLS_CA"]
        dv = measure(int(henv["IMAPS_PORT"]), ca, "alice", "alice-pw", "INBOX")
        pb = measure(port, ca, "bench+Bench", "bench", "INBOX")
        rss = 0
        try:
            for pid in os.listdir("/proc"):
                if pid.isdigit():
                    try:
                        cmd = open("/proc/%s/cmdline" % pid, "rb").read()
                    except OSError:
                        continue
                    if cmd.startswith(BIN.encode()) and b"run" in cmd:
                        for line in open("/proc/%s/status" % pid):
                            if line.startswith("VmHWM:"):
                                rss = int(line.split()[1]) // 1024
        except OSError:
            pass
        return fetch_s, dv, pb, rss
    finally:
        if daemon:
            os.killpg(daemon.pid, signal.SIGTERM)
            daemon.wait()
        subprocess.run([os.path.join(work, "dovecot", "stop.sh")])
        shutil.rmtree(work, ignore_errors=True)


def main():
    sizes = [int(a) for a in sys.argv[1:]] or [1000, 10000, 100000]
    rows = []
    for n in sizes:
        print("N=%d ..." % n, file=sys.stderr, flush=True)
        rows.append((n,) + run(n))
    print("IMAP latency, median of %d (ms); popbridge vs Dovecot on the same mailbox" % REPS)
    print("%-8s %-24s %10s %10s %8s" % ("N", "operation", "dovecot", "popbridge", "ratio"))
    for n, fetch_s, dv, pb, rss in rows:
        for op in dv:
            print("%-8d %-24s %10.2f %10.2f %8.2f" % (n, op, dv[op], pb[op], pb[op] / dv[op] if dv[op] else 0))
        print("%-8d %-24s %21.1f s   (popbridge fetch of N messages over POP3S)" % (n, "fetch", fetch_s))
        print("%-8d %-24s %21d MiB (popbridge daemon peak RSS while serving)" % (n, "rss", rss))


if __name__ == "__main__":
    main()
