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
The issue 15 extensions, each only where the server advertises it ("n/a (not advertised)" otherwise)
and each checked for a sensible answer: SORT (DATE) ALL, THREAD REFERENCES UTF-8 ALL,
SEARCH RETURN (COUNT) ALL (ESEARCH), UID FETCH 1:* (FLAGS) (CHANGEDSINCE m) after 100 flag changes
(CONDSTORE; m is HIGHESTMODSEQ before them), SELECT mailbox (QRESYNC (uidvalidity m)) on a
connection that did ENABLE QRESYNC (it reports the same 100 messages).
Env: REPS (7), HARNESS (path to the harness), POPBRIDGE_BIN (default target/release/popbridge).
"""
import imaplib, os, re, shutil, signal, ssl, statistics, subprocess, sys, tempfile, threading, time

from benchlib import BIN, dovecot_stop, dovecot_up, free_port, install_server_cert, make_store_dir, \
    wait_for_text_index, wait_port

REPS = int(os.environ.get("REPS", "7"))


def message(i):
    flags = "" if i % 3 else "S"  # a third are read, so UNSEEN has work to do
    body = ("Line %d of a small message used to measure IMAP latency at scale.\r\n" % i) * 8
    if i % 1000 == 500:
        body += "A zebra crossed the text index here.\r\n"
    raw = ("From: Sender %d <sender%d@example.com>\r\nTo: alice@example.com\r\n"
           "Subject: scale message %d\r\nDate: Mon, 3 Mar 2025 10:%02d:%02d +0000\r\n"
           "Message-ID: <scale-%d@example.com>\r\n\r\n%s") % (i % 97, i % 97, i, (i // 60) % 60, i % 60, i, body)
    return raw.encode(), flags


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

    def ok(command, want=lambda data: True):
        """`command` as a timed step: it must answer OK, with data that `want` accepts."""
        def step():
            typ, data = command()
            assert typ == "OK" and want(data), data
        return step

    res = {"SELECT": timed(ok(lambda: m.select(mailbox, readonly=True)))}
    m.select(mailbox, readonly=True)
    for name, command, want in (
            ("UID FETCH 1:* (FLAGS)", lambda: m.uid("FETCH", "1:*", "(FLAGS)"), lambda data: len(data) > 0),
            ("SEARCH UNSEEN", lambda: m.search(None, "UNSEEN"), lambda data: True),
            ('SEARCH TEXT "zebra"', lambda: m.search(None, "TEXT", "zebra"), lambda data: data[0]),
            ("STATUS", lambda: m.status(mailbox, "(MESSAGES UIDNEXT UNSEEN)"), lambda data: True)):
        res[name] = timed(ok(command, want))

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
    res.update(extensions(port, ca, user, password, mailbox, m))
    res["IDLE fan-out to 10"] = idle_fanout(port, ca, user, password, mailbox, m)
    m.logout()
    return res


def capabilities(m):
    """The capabilities after login (imaplib keeps only the greeting's)."""
    typ, data = m.capability()
    assert typ == "OK", data
    return set(data[0].decode().upper().split())


def code(m, name):
    """The argument of the last `[NAME arg]` response code imaplib collected (then forgotten)."""
    got = m.untagged_responses.pop(name, None)
    assert got, "no [%s] in the reply" % name
    return got[-1].decode() if isinstance(got[-1], bytes) else got[-1]


def extensions(port, ca, user, password, mailbox, m):
    """The issue 15 commands, timed; None where the capability is not advertised."""
    caps = capabilities(m)
    typ, data = m.select(mailbox, readonly=True)
    assert typ == "OK", data
    n = int(data[0])
    res = {}

    def numbers(data):
        return re.findall(rb"\d+", b" ".join(d for d in data if isinstance(d, bytes)))

    def esearch_count():
        m.untagged_responses.pop("ESEARCH", None)
        typ, dat = m._simple_command("SEARCH", "RETURN", "(COUNT)", "ALL")
        return m._untagged_response(typ, dat, "ESEARCH")

    steps = (
        ("SORT (DATE) ALL", "SORT", lambda: m.sort("(DATE)", "UTF-8", "ALL"), lambda data: len(numbers(data)) == n),
        # The bench messages have no References: every message is a thread of its own.
        ("THREAD REFERENCES ALL", "THREAD=REFERENCES", lambda: m.thread("REFERENCES", "UTF-8", "ALL"),
         lambda data: len(numbers(data)) == n),
        ("SEARCH RETURN (COUNT) ALL", "ESEARCH", esearch_count,
         lambda data: re.search(rb"COUNT (\d+)\s*$", data[0]).group(1) == str(n).encode()),
    )
    for name, cap, command, want in steps:
        if cap not in caps:
            res[name] = None
            continue

        def step():
            typ, data = command()
            assert typ == "OK" and data and want(data), (name, typ, data[:3] if data else data)
        res[name] = timed(step)

    # CONDSTORE: 100 flag changes (spread over the mailbox), then only those come back.
    fetch_name, qresync_name = "UID FETCH CHANGEDSINCE (100)", "SELECT (QRESYNC) (100)"
    if "CONDSTORE" not in caps:
        res[fetch_name] = res[qresync_name] = None
        return res
    m.untagged_responses.clear()
    typ, data = m._simple_command("SELECT", mailbox, "(CONDSTORE)")
    assert typ == "OK", data
    uidvalidity = int(code(m, "UIDVALIDITY"))
    m0 = int(code(m, "HIGHESTMODSEQ"))
    typ, data = m.uid("SEARCH", None, "ALL")
    uids = data[0].split()
    changed = uids[:: max(1, len(uids) // 100)][:100]
    assert len(changed) == 100, len(changed)
    for uid in changed:
        typ, data = m.uid("STORE", uid, "+FLAGS.SILENT", "(\\Flagged)")
        assert typ == "OK", data

    def changedsince():
        typ, data = m.uid("FETCH", "1:*", "(FLAGS) (CHANGEDSINCE %d)" % m0)
        assert typ == "OK" and len([d for d in data if d]) == 100, (typ, len(data), data[:2])
    res[fetch_name] = timed(changedsince)
    m.untagged_responses.clear()
    m.select(mailbox, readonly=True)

    if "QRESYNC" not in caps:
        res[qresync_name] = None
        return res
    ctx = ssl.create_default_context(cafile=ca)
    q = imaplib.IMAP4_SSL("localhost", port, ssl_context=ctx)
    q.login(user, password)
    typ, data = q._simple_command("ENABLE", "QRESYNC")
    assert typ == "OK" and q.untagged_responses.get("ENABLED"), (typ, data, q.untagged_responses)

    def select_qresync():
        q.untagged_responses.clear()
        typ, data = q._simple_command("SELECT", mailbox, "(QRESYNC (%d %d))" % (uidvalidity, m0))
        fetched = q.untagged_responses.get("FETCH", [])
        assert typ == "OK" and len(fetched) == 100, (typ, data, len(fetched))
    res[qresync_name] = timed(select_qresync)
    q.logout()
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
    henv = dovecot_up(os.path.join(work, "dovecot"), ["%s:%s-pw" % (u, u) for u in USERS])
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
        make_store_dir(os.path.join(data, "store"))
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
        install_server_cert(henv, os.path.join(data, "store"))
        benv = dict(os.environ, POPBRIDGE_CONFIG=conf, POPBRIDGE_DATA_DIR=os.path.join(data, "store"))
        t0 = time.perf_counter()
        subprocess.run([BIN, "fetch"], env=benv, check=True, stdout=subprocess.DEVNULL)
        fetch_s = time.perf_counter() - t0
        daemon = subprocess.Popen([BIN, "run"], env=benv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)
        wait_port(port)
        # The daemon builds the text index in the background (at most half a core): wait for it,
        # so SEARCH TEXT is measured on the index (until then it also scans what is not indexed).
        index_s = wait_for_text_index(os.path.join(data, "store", "store.sqlite"), timeout=1800)
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
        dovecot_stop(os.path.join(work, "dovecot"))
        shutil.rmtree(work, ignore_errors=True)


def main():
    sizes = [int(a) for a in sys.argv[1:]] or [1000, 10000, 100000]
    rows = []
    for n in sizes:
        print("N=%d ..." % n, file=sys.stderr, flush=True)
        rows.append((n,) + run(n))
    print("IMAP latency, median of %d (ms); popbridge vs Dovecot on the same mailbox" % REPS)
    print("%-8s %-30s %10s %10s %8s" % ("N", "operation", "dovecot", "popbridge", "ratio"))
    for n, fetch_s, index_s, dv, pb, rss in rows:
        for op in dv:
            if dv[op] is None or pb[op] is None:
                show = lambda v: "%10s" % ("n/a" if v is None else "%.2f" % v)
                print("%-8d %-30s %s %s   n/a (not advertised)" % (n, op, show(dv[op]), show(pb[op])))
                continue
            print("%-8d %-30s %10.2f %10.2f %8.2f" % (n, op, dv[op], pb[op], pb[op] / dv[op] if dv[op] else 0))
        print("%-8d %-28s %21.1f s   (popbridge fetch of all five accounts over POP3S)" % (n, "fetch", fetch_s))
        print("%-8d %-28s %21.1f s   (daemon's background text index of all of it, after the fetch)" % (n, "index", index_s))
        print("%-8d %-28s %21d MiB (popbridge daemon peak RSS while serving)" % (n, "rss", rss))


if __name__ == "__main__":
    main()
