#!/usr/bin/env python3
"""Daemon memory and threads under many IMAP sessions (issue 13): K sessions at once each fetch
a whole N-message mailbox (`UID FETCH 1:* (BODY.PEEK[])`) over IMAPS from one `popbridge run`.

  scripts/bench/imap-sessions.py [K ...]      (default: 1 10 50 250)

For K above 200 the config raises `[limits] imap_authenticated` to K + 16 (the default allows 224
logged-in sessions); a binary from before [limits] (which refuses the key) cannot run those cases.

For each K, on a fresh copy of the same store: the daemon's peak RSS (VmHWM) during the run, its
most threads, its RSS 5 s after every session closed ("memory returns"), and the aggregate rate
(message bytes received by all sessions / wall time from the common start to the last tagged
OK). Every session checks what it got: N FETCH responses and exactly the mailbox's bytes.
With --stalled K2, one more case: K2 sessions send the FETCH and never read; after STALL_S
seconds a new session logs in and fetches one message (timed), then the peak RSS is taken.

The store is prepared once per (N, SEED) and cached in BENCH_CACHE (default
/tmp/popbridge-bench-sessions): a private Dovecot (../shared/harness) with the harness corpus
(gen-mail.py, seed SEED), one `popbridge fetch`, then the daemon once until its text index is
built (so no case pays for indexing). Each case runs on a copy, so before/after binaries see the
same bytes; prepare with the oldest binary you compare (a newer one upgrades its copy).

Env: N (10000), SEED (42), POPBRIDGE_BIN (default target/release/popbridge), HARNESS,
BENCH_CACHE, STALL_S (20), PLAIN=1 (IMAP without TLS instead of IMAPS).
"""
import os, shutil, signal, socket, sqlite3, ssl, subprocess, sys, tempfile, threading, time

from benchlib import BIN, HARNESS, dovecot_stop, dovecot_up, free_port, install_server_cert, make_store_dir, \
    wait_for_text_index, wait_port

N = int(os.environ.get("N", "10000"))
SEED = int(os.environ.get("SEED", "42"))
CACHE = os.environ.get("BENCH_CACHE", "/tmp/popbridge-bench-sessions")
STALL_S = float(os.environ.get("STALL_S", "20"))
PLAIN = os.environ.get("PLAIN", "") == "1"
USER, PASSWORD = "bench+Bench", "bench"


def write_config(data, imap_port, imaps_port, pop_port=1, ca=None, sessions=0):
    conf = os.path.join(data, "config.toml")
    with open(os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write('[local]\nuser = "bench"\npassword = "bench"\nimap = "%s"\nimaps = "%s"\n'
                'submission = "off"\nsubmissions = "off"\n'
                % ("127.0.0.1:%d" % imap_port if imap_port else "off",
                   "127.0.0.1:%d" % imaps_port if imaps_port else "off"))
        if sessions > 200:
            # Above the default of 224 logged-in sessions ([limits], .github/SECURITY.md).
            f.write('[limits]\nimap_authenticated = %d\n' % (sessions + 16))
        f.write('[[account]]\nname = "Bench"\nemail = "alice@example.com"\ninterval = "24h"\n[account.pop]\n'
                'host = "127.0.0.1"\nport = %d\ntls = "implicit"\nuser = "alice"\npassword = "alice-pw"\n'
                % pop_port)
        if ca:
            f.write('ca_file = "%s"\n' % ca)
    return conf


def env_for(data):
    return dict(os.environ, POPBRIDGE_CONFIG=os.path.join(data, "config.toml"),
                POPBRIDGE_DATA_DIR=os.path.join(data, "store"), RUST_LOG="warn")


def prepare():
    """The cached store of N messages (fetched, indexed), its CA; made once."""
    ready = os.path.join(CACHE, "ready-%d-%d" % (N, SEED))
    data = os.path.join(CACHE, "bridge")
    if os.path.exists(ready):
        return data, os.path.join(CACHE, "ca.pem")
    shutil.rmtree(CACHE, ignore_errors=True)
    os.makedirs(CACHE)
    os.chmod(CACHE, 0o755)
    work = os.path.join(CACHE, "dovecot")
    print("preparing a store of %d messages in %s ..." % (N, CACHE), file=sys.stderr, flush=True)
    henv = dovecot_up(work, ["alice:alice-pw"])
    try:
        md = henv["MAILDIR_alice"]
        subprocess.run(["python3", os.path.join(HARNESS, "gen-mail.py"), "--count", str(N), "--seed", str(SEED),
                        "--maildir", md], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["chown", "-R", henv["MAIL_OWNER"], md], check=True)
        make_store_dir(os.path.join(data, "store"))
        shutil.copyfile(henv["TLS_CA"], os.path.join(CACHE, "ca.pem"))
        write_config(data, 0, 0, int(henv["POP3S_PORT"]), os.path.join(CACHE, "ca.pem"))
        install_server_cert(henv, os.path.join(data, "store"))
        subprocess.run([BIN, "fetch"], env=env_for(data), check=True, stdout=subprocess.DEVNULL)
    finally:
        dovecot_stop(work)
    # Build the text index once (the daemon does it in the background), so no case pays for it.
    port = free_port()
    write_config(data, port, 0)
    d = subprocess.Popen([BIN, "run"], env=env_for(data), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    try:
        wait_port(port)
        wait_for_text_index(os.path.join(data, "store", "store.sqlite"), poll=0.5)
    finally:
        os.killpg(d.pid, signal.SIGTERM)
        d.wait()
    open(ready, "w").close()
    return data, os.path.join(CACHE, "ca.pem")


def expected_bytes(store):
    db = sqlite3.connect("file:%s?mode=ro" % store, uri=True)
    n, total = db.execute("SELECT count(*), sum(m.size) FROM messages m JOIN mailboxes x ON x.id = m.mailbox_id "
                          "WHERE x.name = 'Bench'").fetchone()
    db.close()
    return n, total


class Sampler(threading.Thread):
    """VmHWM / VmRSS / Threads of the daemon every 50 ms."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.stop, self.max_threads, self.hwm, self.rss = pid, False, 0, 0, 0

    def read(self):
        vals = {}
        try:
            for line in open("/proc/%d/status" % self.pid):
                k, _, v = line.partition(":")
                if k in ("VmHWM", "VmRSS", "Threads"):
                    vals[k] = int(v.split()[0])
        except OSError:
            pass
        return vals

    def run(self):
        while not self.stop:
            v = self.read()
            self.max_threads = max(self.max_threads, v.get("Threads", 0))
            self.hwm = max(self.hwm, v.get("VmHWM", 0))
            self.rss = v.get("VmRSS", self.rss)
            time.sleep(0.05)


class Session:
    def __init__(self, port, ca):
        s = socket.create_connection(("127.0.0.1", port), 30)
        if not PLAIN:
            ctx = ssl.create_default_context(cafile=ca)
            s = ctx.wrap_socket(s, server_hostname="localhost")
        s.settimeout(600)
        self.s, self.line_buf, self.buf = s, b"", bytearray(256 * 1024)
        self.greeting = self.line()
        self.cmd(b"l LOGIN %s %s" % (USER.encode(), PASSWORD.encode()))
        self.cmd(b"e EXAMINE INBOX")

    def line(self):
        while b"\n" not in self.line_buf:
            d = self.s.recv(65536)
            if not d:
                raise RuntimeError("connection closed")
            self.line_buf += d
        line, _, self.line_buf = self.line_buf.partition(b"\n")
        return line + b"\n"

    def cmd(self, c):
        tag = c.split(b" ", 1)[0]
        self.s.sendall(c + b"\r\n")
        while True:
            line = self.line()
            if line.startswith(tag + b" "):
                if not line[len(tag) + 1:].startswith(b"OK"):
                    raise RuntimeError(line)
                return

    def fetch_all(self, tag=b"f", what=b"UID FETCH 1:* (BODY.PEEK[])", send=True):
        """(FETCH responses, literal bytes) until the tagged OK; literals are skipped, not kept."""
        if send:
            self.s.sendall(tag + b" " + what + b"\r\n")
        responses = literal = skip = 0
        pending = b""
        data, i = self.line_buf, 0
        n = len(data)
        self.line_buf = b""
        while True:
            while i < n:
                if skip:
                    take = min(skip, n - i)
                    skip -= take
                    literal += take
                    i += take
                    continue
                j = data.find(b"\n", i, n)
                if j < 0:
                    pending += bytes(data[i:n])
                    break
                line = pending + bytes(data[i:j + 1])
                pending = b""
                i = j + 1
                if line.endswith(b"}\r\n"):
                    skip = int(line[line.rfind(b"{") + 1:-3])
                    responses += line.startswith(b"* ")
                elif line.startswith(tag + b" "):
                    if not line[len(tag) + 1:].startswith(b"OK"):
                        raise RuntimeError(line)
                    self.line_buf = bytes(data[i:n])
                    return responses, literal
            n = self.s.recv_into(self.buf)
            if n == 0:
                raise RuntimeError("connection closed during FETCH")
            data, i = self.buf, 0

    def close(self):
        try:
            self.s.sendall(b"z LOGOUT\r\n")
            self.s.close()
        except OSError:
            pass


def start_daemon(src, sessions=0):
    work = tempfile.mkdtemp(prefix="popbridge-sessions.")
    os.chmod(work, 0o755)
    data = os.path.join(work, "bridge")
    shutil.copytree(src, data, symlinks=True)
    port = free_port()
    if PLAIN:
        write_config(data, port, 0, sessions=sessions)
    else:
        write_config(data, 0, port, sessions=sessions)
    d = subprocess.Popen([BIN, "run"], env=env_for(data), stdout=subprocess.DEVNULL,
                         stderr=open(os.path.join(work, "daemon.log"), "w"), start_new_session=True)
    wait_port(port)
    return work, data, d, port


def stop_daemon(work, d):
    try:
        os.killpg(d.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    d.wait()
    shutil.rmtree(work, ignore_errors=True)


def run_case(src, ca, k):
    work, data, d, port = start_daemon(src, k)
    try:
        n_msgs, total = expected_bytes(os.path.join(data, "store", "store.sqlite"))
        sampler = Sampler(d.pid)
        sampler.start()
        sessions = [Session(port, ca) for _ in range(k)]
        start = threading.Barrier(k + 1)
        results, errors = [None] * k, []

        def go(i):
            start.wait()
            try:
                results[i] = (sessions[i].fetch_all(), time.perf_counter())
            except Exception as e:  # reported below
                errors.append("session %d: %r" % (i, e))

        threads = [threading.Thread(target=go, args=(i,)) for i in range(k)]
        for t in threads:
            t.start()
        t0 = time.perf_counter()
        start.wait()
        for t in threads:
            t.join()
        if errors:
            raise SystemExit("K=%d: %s" % (k, "; ".join(errors[:3])))
        end = max(r[1] for r in results)
        for (resp, lit), _ in results:
            if resp != n_msgs or lit != total:
                raise SystemExit("K=%d: a session got %d responses, %d bytes; the mailbox has %d, %d"
                                 % (k, resp, lit, n_msgs, total))
        peak, threads_max = sampler.hwm, sampler.max_threads
        for s in sessions:
            s.close()
        time.sleep(5)
        after = sampler.read().get("VmRSS", 0)
        sampler.stop = True
        mb = k * total / 1e6
        return dict(k=k, peak=peak // 1024, threads=threads_max, after=after // 1024, s=end - t0, mbps=mb / (end - t0))
    finally:
        stop_daemon(work, d)


def run_stalled(src, ca, k):
    """K sessions send a full FETCH and never read; a new login fetches one message meanwhile."""
    work, data, d, port = start_daemon(src)
    try:
        sampler = Sampler(d.pid)
        sampler.start()
        sessions = [Session(port, ca) for _ in range(k)]
        for s in sessions:
            s.s.sendall(b"f UID FETCH 1:* (BODY.PEEK[])\r\n")
        time.sleep(STALL_S)
        t = time.perf_counter()
        probe = Session(port, ca)
        resp, _ = probe.fetch_all(b"p", b"FETCH 1 (BODY.PEEK[])")
        probe_s = time.perf_counter() - t
        assert resp == 1
        probe.close()
        time.sleep(1)
        peak, threads_max = sampler.hwm, sampler.max_threads
        for s in sessions:
            s.s.close()
        time.sleep(5)
        after = sampler.read().get("VmRSS", 0)
        sampler.stop = True
        return dict(k=k, peak=peak // 1024, threads=threads_max, after=after // 1024, probe=probe_s)
    finally:
        stop_daemon(work, d)


def main():
    args = sys.argv[1:]
    stalled = None
    if "--stalled" in args:
        i = args.index("--stalled")
        stalled = int(args[i + 1])
        del args[i:i + 2]
    ks = [int(a) for a in args] or [1, 10, 50, 250]
    src, ca = prepare()
    print("popbridge %s; %d messages; %s" % (BIN, N, "IMAP (plain)" if PLAIN else "IMAPS"))
    print("%-9s %10s %8s %14s %9s %8s" % ("sessions", "peak_MiB", "threads", "after_MiB", "time_s", "MB/s"))
    for k in ks:
        print("K=%d ..." % k, file=sys.stderr, flush=True)
        r = run_case(src, ca, k)
        print("%-9d %10d %8d %14d %9.1f %8.1f" % (r["k"], r["peak"], r["threads"], r["after"], r["s"], r["mbps"]),
              flush=True)
    if stalled:
        print("stalled K=%d ..." % stalled, file=sys.stderr, flush=True)
        r = run_stalled(src, ca, stalled)
        print("%d sessions that never read (%.0f s): peak %d MiB, %d threads, %d MiB after; a new login + FETCH 1 "
              "meanwhile took %.2f s" % (r["k"], STALL_S, r["peak"], r["threads"], r["after"], r["probe"]), flush=True)


if __name__ == "__main__":
    main()
