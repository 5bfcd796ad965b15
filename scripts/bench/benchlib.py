"""What the Python benchmarks in scripts/bench/ share: where things are, ports, a private Dovecot
from the harness (../shared/harness), popbridge's data directory with Dovecot's certificate, and
the wait for the daemon's text index. `python3 scripts/bench/benchlib.py` runs its self-test."""
import os, shutil, socket, sqlite3, subprocess, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HARNESS = os.environ.get("HARNESS", os.path.join(ROOT, "..", "shared", "harness"))
BIN = os.environ.get("POPBRIDGE_BIN", os.path.join(ROOT, "target", "release", "popbridge"))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, timeout=60):
    t = time.time()
    while time.time() - t < timeout:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("port %d did not open" % port)


def parse_env(text):
    """The `export K=V` lines of the harness's env file, as a dict (comments and quotes dropped)."""
    out = {}
    for line in text.splitlines():
        if line.startswith("export "):
            k, _, v = line[7:].strip().partition("=")
            out[k] = v.split("#")[0].strip().strip("'\"")
    return out


def dovecot_up(work, users):
    """A private Dovecot in `work` with `users` ("name:password" each); its env file as a dict."""
    env = dict(os.environ, HARNESS_DIR=work, DOVECOT_USERS=" ".join(users))
    subprocess.run([os.path.join(HARNESS, "dovecot-up.sh")], env=env, check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(work, "env")) as f:
        return parse_env(f.read())


def dovecot_stop(work):
    subprocess.run([os.path.join(work, "stop.sh")])


def make_store_dir(store):
    """popbridge's data directory `store` with its tls/ (0700: popbridge refuses one others can read)."""
    os.makedirs(os.path.join(store, "tls"), mode=0o700)
    os.chmod(store, 0o700)


def install_server_cert(henv, store):
    """Dovecot's server certificate and key as popbridge's local ones (so one CA serves both)."""
    cert = henv["TLS_SERVER_CERT"]
    for src, dst in ((cert, "cert.pem"), (cert.replace(".pem", ".key"), "key.pem")):
        path = os.path.join(store, "tls", dst)
        shutil.copyfile(src, path)
        os.chmod(path, 0o600)


def wait_for_text_index(store_db, poll=0.2, timeout=None):
    """Until the daemon has indexed every body in `store_db` (it does so in the background)."""
    t0 = time.perf_counter()
    db = sqlite3.connect("file:%s?mode=ro" % store_db, uri=True)
    try:
        while db.execute("SELECT count(*) FROM bodies WHERE indexed = 0").fetchone()[0] > 0:
            if timeout is not None and time.perf_counter() - t0 > timeout:
                raise SystemExit("the text index was not built within %d s" % timeout)
            time.sleep(poll)
    finally:
        db.close()
    return time.perf_counter() - t0


def _self_test():
    import tempfile
    env = parse_env("export A=1    # note\nexport HARNESS_USERS=\"a b\"\nnot this\nexport B='x'\n")
    assert env == {"A": "1", "HARNESS_USERS": "a b", "B": "x"}, env
    p = free_port()
    l = socket.socket()
    l.bind(("127.0.0.1", p))
    l.listen()
    wait_port(p, 5)
    l.close()
    with tempfile.TemporaryDirectory() as d:
        store = os.path.join(d, "store")
        make_store_dir(store)
        assert os.stat(store).st_mode & 0o777 == 0o700
        db = sqlite3.connect(os.path.join(store, "s.sqlite"))
        db.execute("CREATE TABLE bodies (indexed INTEGER)")
        db.execute("INSERT INTO bodies VALUES (1)")
        db.commit()
        db.close()
        assert wait_for_text_index(os.path.join(store, "s.sqlite"), timeout=5) < 5
    print("benchlib: ok")


if __name__ == "__main__":
    _self_test()
