#!/usr/bin/env python3
"""IMAP latency at scale: popbridge and Dovecot serving the same mailbox of N small messages,
measured in the same run.

  scripts/bench/imap-scale.py [N ...]          (default: 1000 10000 100000)

For each N: a private Dovecot (../shared/harness/dovecot-up.sh) gets N messages in alice's maildir
and N/100 (at least 10) in each of four more users'; popbridge, configured with those five POP3S
accounts, fetches them all (timed) and serves its store over IMAPS. Timed on one logged-in
connection per server (median of REPS, milliseconds): SELECT, UID FETCH 1:* (FLAGS), SEARCH UNSEEN,
SEARCH TEXT "zebra" (one message in 1000 has the word), STATUS of every mailbox the login sees
(Dovecot: alice's; popbridge's combined login: five accounts and the local folders), and IDLE
fan-out: 10 sessions IDLE on the big mailbox, another session APPENDs, time until the last of the
10 has seen the new EXISTS.
Env: REPS (7), HARNESS (path to the harness), POPBRIDGE_BIN (default target/release/popbridge).
"""
import imaplib, os, re, shutil, signal, socket, sqlite3, ssl, statistics, subprocess, sys, tempfile, threading, time

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
    if i % 1000 == 500:
        body += "A zebra crossed the text index here.\r\n"
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

    def text():
        typ, data = m.search(None, "TEXT", "zebra")
        assert typ == "OK" and data[0], data
    res['SEARCH TEXT "zebra"'] = timed(text)

    def status():
        typ, _ = m.status(mailbox, "(MESSAGES UIDNEXT UNSEEN)")
        assert typ == "OK"
    res["STATUS"] = timed(status)

    def status_all():
        typ, boxes = m.list()
        assert typ == "OK"
        for b in boxes:
            flags, _, name = re.match(r'\((.*?)\) (NIL|"(?:[^"\\]|\\.)*") (.*)$', b.decode()).groups()
            if "\\noselect" in flags.lower():
                continue
            typ, _ = m.status(name, "(MESSAGES UIDNEXT UNSEEN)")
            assert typ == "OK", (name, _)
    res["STATUS of every mailbox"] = timed(status_all)
    res["IDLE fan-out to 10"] = idle_fanout(port, ca, user, password, mailbox, m)
    m.logout()
    return res


def idle_fanout(port, ca, user, password, mailbox, appender):
    """10 sessions IDLE on `mailbox`; `appender` APPENDs; ms until the last saw the new EXISTS."""
    ctx = ssl.create_default_context(cafile=ca)
    sessions = []
    for k in range(10):
        c = imaplib.IMAP4_SSL("localhost", port, ssl_context=ctx)
        c.login(user, password)
        c.select(mailbox)
        sessions.append(c)
    out = []
    for rep in range(REPS):
        seen = [None] * len(sessions)
        ready = threading.Barrier(len(sessions) + 1)

        def watch(k, c):
            c.send(b"i%d IDLE\r\n" % rep)
            line = c.readline()
            assert line.startswith(b"+"), line
            ready.wait()
            while True:
                line = c.readline()
                if not line:
                    return
                if line.endswith(b" EXISTS\r\n"):
                    seen[k] = time.perf_counter()
                    c.send(b"DONE\r\n")
                    while not c.readline().startswith(b"i%d " % rep):
                        pass
                    return

        threads = [threading.Thread(target=watch, args=(k, c)) for k, c in enumerate(sessions)]
        for t in threads:
            t.start()
        ready.wait()
        msg = b"From: a@example.com\r\nSubject: idle %d\r\n\r\nnew mail\r\n" % rep
        t0 = time.perf_counter()
        typ, _ = appender.append(mailbox, None, None, msg)
        assert typ == "OK", _
        for t in threads:
            t.join(60)
        assert all(seen), "a session never saw the new message"
        out.append((max(seen) - t0) * 1000)
    for c in sessions:
        c.logout()
    return statistics.median(out)


USERS = ["alice", "u2", "u3", "u4", "u5"]


def run(n):
    work = tempfile.mkdtemp(prefix="popbridge-scale.")
    os.chmod(work, 0o755)
    env = dict(os.environ, HARNESS_DIR=os.path.join(work, "dovecot"),
               DOVECOT_USERS=" ".join("%s:%s-pw" % (u, u) for u in USERS))
    subprocess.run([os.path.join(HARNESS, "dovecot-up.sh")], env=env, check=True, stdout=subprocess.DEVNULL)
    henv = {}
    for line in open(os.path.join(work, "dovecot", "env")):
        if line.startswith("export "):
            k, _, v = line[7:].strip().partition("=")
            henv[k] = v.split("#")[0].strip()
    daemon = None
    try:
        t = int(time.time()) - n
        for user in USERS:
            md = henv["MAILDIR_" + user]
            count = n if user == "alice" else max(10, n // 100)
            for i in range(1, count + 1):
                raw, flags = message(i)
                name = "%d.M%dP1.scale,S=%d:2,%s" % (t + i, i, len(raw), flags)
                with open(os.path.join(md, "cur", name), "wb") as f:
                    f.write(raw)
            uid, gid = henv["MAIL_OWNER"].split(":")
            subprocess.run(["chown", "-R", "%s:%s" % (uid, gid), md], check=True)
        data = os.path.join(work, "bridge")
        os.makedirs(os.path.join(data, "store", "tls"), mode=0o700)
        os.chmod(os.path.join(data, "store"), 0o700)  # popbridge refuses a data dir others can read
        conf = os.path.join(data, "config.toml")
        port = free_port()
        with open(os.open(conf, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write('[local]\nuser = "bench"\npassword = "bench"\nimap = "off"\nimaps = "127.0.0.1:%d"\n'
                    'submission = "off"\nsubmissions = "off"\n' % port)
            for user in USERS:
                name = "Bench" if user == "alice" else user.upper()
                f.write('[[account]]\nname = "%s"\nemail = "%s@example.com"\ninterval = "24h"\n[account.pop]\n'
                        'host = "127.0.0.1"\nport = %s\ntls = "implicit"\nuser = "%s"\npassword = "%s-pw"\n'
                        'ca_file = "%s"\n' % (name, user, henv["POP3S_PORT"], user, user, henv["TLS_CA"]))
        for src, dst in ((henv["TLS_SERVER_CERT"], "cert.pem"),
                         (henv["TLS_SERVER_CERT"].replace(".pem", ".key"), "key.pem")):
            shutil.copyfile(src, os.path.join(data, "store", "tls", dst))
            os.chmod(os.path.join(data, "store", "tls", dst), 0o600)
        benv = dict(os.environ, POPBRIDGE_CONFIG=conf, POPBRIDGE_DATA_DIR=os.path.join(data, "store"))
        t0 = time.perf_counter()
        subprocess.run([BIN, "fetch"], env=benv, check=True, stdout=subprocess.DEVNULL)
        fetch_s = time.perf_counter() - t0
        daemon = subprocess.Popen([BIN, "run"], env=benv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)
        wait_port(port)
        # The daemon builds the text index in the background (at most half a core): wait for it,
        # so SEARCH TEXT is measured on the index (until then it also scans what is not indexed).
        t0 = time.perf_counter()
        db = sqlite3.connect("file:%s?mode=ro" % os.path.join(data, "store", "store.sqlite"), uri=True)
        while db.execute("SELECT count(*) FROM bodies WHERE indexed = 0").fetchone()[0] > 0:
            if time.perf_counter() - t0 > 1800:
                raise SystemExit("the text index was not built within 30 minutes")
            time.sleep(0.2)
        db.close()
        index_s = time.perf_counter() - t0
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
        return fetch_s, index_s, dv, pb, rss
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
    print("%-8s %-26s %10s %10s %8s" % ("N", "operation", "dovecot", "popbridge", "ratio"))
    for n, fetch_s, index_s, dv, pb, rss in rows:
        for op in dv:
            print("%-8d %-26s %10.2f %10.2f %8.2f" % (n, op, dv[op], pb[op], pb[op] / dv[op] if dv[op] else 0))
        print("%-8d %-24s %21.1f s   (popbridge fetch of all five accounts over POP3S)" % (n, "fetch", fetch_s))
        print("%-8d %-24s %21.1f s   (daemon's background text index of all of it, after the fetch)" % (n, "index", index_s))
        print("%-8d %-24s %21d MiB (popbridge daemon peak RSS while serving)" % (n, "rss", rss))


if __name__ == "__main__":
    main()
