#!/usr/bin/python3
"""smtp-upstream.py: a scripted, fault-injecting upstream SMTP server for popbridge's tests.

Runs under Debian's /usr/bin/python3 with python3-aiosmtpd (1.4.3). Driven from Rust by
tests/util/smtp_upstream.rs, but usable by hand:

  /usr/bin/python3 tests/data/smtp-upstream.py --record /tmp/rec.jsonl [--port 2525]
      [--tls none|starttls|implicit --cert C --key K [--require-starttls]]
      [--user U --password P [--auth-plaintext] [--auth-mechanisms PLAIN,LOGIN]]
      [--max-size N] [--no-smtputf8] [fault flags]

Prints "PORT <n>" (flushed) on stdout once it listens on 127.0.0.1:<n>; logs to stderr.

Recording. Every transaction answered 250 at end-of-DATA is appended to --record as one JSON
line, written and fsynced BEFORE the 250 is sent:
  {"mail_from", "mail_options", "rcpt_tos", "data_b64", "auth_user", "tls", "tls_version", "ehlo"}
data_b64 is the DATA payload exactly as aiosmtpd hands it over: the lines between the 354 and
the terminating ".\\r\\n" line, each keeping its CRLF (so the final CRLF before "." IS part of
the data; an empty DATA gives b""), with exactly one leading "." removed from each line that
starts with "." (dot-unstuffing). Lines are split on CRLF only: a bare LF or CR stays inside
the line and no unstuffing happens after it. The null sender is recorded as "<>". A DATA line
longer than --line-limit octets as sent, CRLF and any stuffed dot included (default 1001:
998 + CRLF + a stuffed dot), fails the transaction at end-of-DATA with "500 Line too long
(see RFC5321 4.5.3.1.6)"; more than --max-size octets fails it with "552 Error: Too much mail
data", and MAIL FROM ... SIZE=n over it gets "552 Error: message size exceeds fixed maximum
message size".

--attempts FILE (optional) gets one JSON line per transaction outcome, accepted or not:
  {"stage": "mail"|"data"|"disconnect", "reply": "451 4.3.0 ..."|null, "mail_from",
   "rcpt_tos", "rcpt_rejected", "auth_user", "tls", "data_len"}

Faults (command-line flags; overridden by --control FILE, re-read before every reply, whose
content is {"generation": n, "faults": {<same names as the flags, with underscores>}}):
  temp_fail_mail          451 4.3.0 to MAIL FROM
  temp_fail_data_times N  451 4.3.0 at end-of-DATA for the first N transactions that reach it
                          (counted per control generation, kept across restarts in --state),
                          then 250
  perm_fail_data          550 5.7.1 at end-of-DATA (after any temp failures still due)
  perm_fail_rcpt [addr]   550 5.1.1 to RCPT TO for these addresses (case-insensitive)
  disconnect_in_data      354 to DATA, read one chunk of the message, then drop the
                          connection without a reply
  reject_auth             535 5.7.8 to every AUTH
  echo_auth               535 5.7.8 to every AUTH, quoting what the client sent: the PLAIN
                          string and the password in base64, and the password itself (a broken
                          server: the client must not pass that on to its logs)
  slow_reply_ms N         sleep N ms before every reply (once per multi-line reply)
  pause_at [point]        stop at these points (below) and wait there until the control file
                          changes generation (or the client goes away)
MAIL/RCPT/DATA use the faults as they were at that transaction's MAIL FROM; AUTH, the reply
delay and the pause points use the current ones.

Pause points, so that a test can kill the client at a chosen moment instead of hoping for one:
  greeting   a connection was accepted; the 220 greeting is not sent yet
  data       DATA arrived after at least one accepted RCPT; the 354 is not sent yet (nothing of
             the message has been received: nothing can be recorded)
  committed  the message is recorded (fsynced to --record); the 250 is not sent yet
  quit       QUIT arrived; the 221 is not sent yet
Each point stops the first session that reaches it, once per control generation. On stopping,
one JSON line {"paused": point, "generation": g, "peer": [host, port]} is appended (fsynced) to
--events FILE, after whatever the point implies (the record, for "committed") is on disk.
"""

import argparse
import asyncio
import base64
import errno
import json
import logging
import os
import signal
import socket
import ssl
import sys
import threading
import warnings

try:
    from aiosmtpd.smtp import SMTP, AuthResult, Session
except ImportError:  # pragma: no cover
    sys.stderr.write("smtp-upstream.py: aiosmtpd missing; run: apt-get install -y python3-aiosmtpd\n")
    sys.exit(3)

log = logging.getLogger("smtp-upstream")

FAULT_DEFAULTS = {
    "temp_fail_mail": False,
    "temp_fail_data_times": 0,
    "perm_fail_data": False,
    "perm_fail_rcpt": [],
    "disconnect_in_data": False,
    "reject_auth": False,
    "echo_auth": False,
    "slow_reply_ms": 0,
    "pause_at": [],
}

PAUSE_POINTS = ("greeting", "data", "committed", "quit")


class Faults:
    def __init__(self, generation, values):
        self.generation = generation
        merged = dict(FAULT_DEFAULTS)
        for k, v in (values or {}).items():
            if k not in FAULT_DEFAULTS:
                log.warning("unknown fault %r ignored", k)
                continue
            merged[k] = v
        self.temp_fail_mail = bool(merged["temp_fail_mail"])
        self.temp_fail_data_times = int(merged["temp_fail_data_times"])
        self.perm_fail_data = bool(merged["perm_fail_data"])
        self.perm_fail_rcpt = {a.lower() for a in merged["perm_fail_rcpt"]}
        self.disconnect_in_data = bool(merged["disconnect_in_data"])
        self.reject_auth = bool(merged["reject_auth"])
        self.echo_auth = bool(merged["echo_auth"])
        self.slow_reply_ms = int(merged["slow_reply_ms"])
        self.pause_at = set(merged["pause_at"])
        for p in self.pause_at - set(PAUSE_POINTS):
            log.warning("unknown pause point %r ignored", p)


def fsync_append(path, obj):
    line = (json.dumps(obj, ensure_ascii=True, separators=(",", ":")) + "\n").encode("ascii")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(line)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)


class State:
    """Faults (command line or control file) and the temp-failure counter."""

    def __init__(self, args):
        self.args = args
        self.cli_faults = Faults(
            "cli",
            {
                "temp_fail_mail": args.temp_fail_mail,
                "temp_fail_data_times": args.temp_fail_data_times,
                "perm_fail_data": args.perm_fail_data,
                "perm_fail_rcpt": args.perm_fail_rcpt or [],
                "disconnect_in_data": args.disconnect_in_data,
                "reject_auth": args.reject_auth,
                "echo_auth": args.echo_auth,
                "slow_reply_ms": args.slow_reply_ms,
                "pause_at": args.pause_at or [],
            },
        )
        # (generation, point) pairs that have stopped a session already.
        self.paused = set()
        self._control_text = None
        self._control_faults = None
        self.counter_generation = None
        self.temp_failed = 0
        if args.state and os.path.exists(args.state):
            try:
                with open(args.state) as f:
                    st = json.load(f)
                self.counter_generation = st.get("generation")
                self.temp_failed = int(st.get("temp_failed", 0))
            except (OSError, ValueError) as e:
                log.warning("state file %s unreadable: %s", args.state, e)

    def faults(self):
        """The faults in force now: the control file's if it exists, else the command line's.
        Read afresh every time (no stat-based caching: a rewrite can keep size and mtime)."""
        path = self.args.control
        if not path:
            return self.cli_faults
        try:
            with open(path) as f:
                text = f.read()
        except FileNotFoundError:
            return self.cli_faults
        if text == self._control_text:
            return self._control_faults
        try:
            obj = json.loads(text)
            if "faults" in obj:
                faults = Faults(obj.get("generation", 0), obj["faults"])
            else:
                faults = Faults(0, obj)
        except (ValueError, TypeError, AttributeError) as e:
            log.warning("control file %s unusable (%s); keeping previous faults", path, e)
            return self._control_faults or self.cli_faults
        self._control_text = text
        self._control_faults = faults
        log.info("control: generation %r faults %s", faults.generation, json.dumps(obj.get("faults", obj)))
        return faults

    def take_temp_failure(self, faults):
        """True if this end-of-DATA must get a 451 (and counts it)."""
        if self.counter_generation != faults.generation:
            self.counter_generation = faults.generation
            self.temp_failed = 0
        if self.temp_failed >= faults.temp_fail_data_times:
            return False
        self.temp_failed += 1
        if self.args.state:
            tmp = self.args.state + ".tmp"
            with open(tmp, "w") as f:
                json.dump({"generation": self.counter_generation, "temp_failed": self.temp_failed}, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.args.state)
        return True


class QuietSession(Session):
    """aiosmtpd logs a deprecation warning on every login_data assignment; silence it."""

    @property
    def login_data(self):
        return self._login_data

    @login_data.setter
    def login_data(self, value):
        self._login_data = value


def conn_info(server):
    transport = server.transport
    ssl_obj = transport.get_extra_info("ssl_object") if transport is not None else None
    user = server.session.auth_data if server.session.authenticated else None
    return {
        "auth_user": user,
        "tls": ssl_obj is not None,
        "tls_version": ssl_obj.version() if ssl_obj is not None else None,
    }


class Handler:
    def __init__(self, state, args):
        self.state = state
        self.args = args

    def attempt(self, server, envelope, stage, reply, data_len=None):
        if not self.args.attempts:
            return
        obj = {
            "stage": stage,
            "reply": reply,
            "mail_from": getattr(envelope, "attempt_mail_from", envelope.mail_from),
            "rcpt_tos": list(envelope.rcpt_tos),
            "rcpt_rejected": list(getattr(envelope, "rcpt_rejected", [])),
            "data_len": data_len,
        }
        obj.update(conn_info(server))
        fsync_append(self.args.attempts, obj)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        out = []
        for r in responses:
            if r.startswith("250-AUTH") and not self.args.user:
                continue  # no AUTH configured: don't advertise it
            if r == "250 HELP":
                out.append("250-PIPELINING")
            out.append(r)
        return out

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        faults = self.state.faults()
        envelope.faults = faults
        envelope.rcpt_rejected = []
        if faults.temp_fail_mail:
            reply = "451 4.3.0 Temporary failure (fault: temp_fail_mail)"
            envelope.attempt_mail_from = address
            self.attempt(server, envelope, "mail", reply)
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        faults = getattr(envelope, "faults", None) or self.state.faults()
        if address.lower() in faults.perm_fail_rcpt:
            envelope.rcpt_rejected.append(address)
            return "550 5.1.1 No such user (fault: perm_fail_rcpt)"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        faults = getattr(envelope, "faults", None) or self.state.faults()
        data = envelope.original_content
        if self.state.take_temp_failure(faults):
            reply = "451 4.3.0 Temporary failure (fault: temp_fail_data_times)"
            self.attempt(server, envelope, "data", reply, len(data))
            return reply
        if faults.perm_fail_data:
            reply = "550 5.7.1 Message rejected (fault: perm_fail_data)"
            self.attempt(server, envelope, "data", reply, len(data))
            return reply
        record = {
            "mail_from": envelope.mail_from,
            "mail_options": list(envelope.mail_options),
            "rcpt_tos": list(envelope.rcpt_tos),
            "data_b64": base64.b64encode(data).decode("ascii"),
            "ehlo": session.host_name,
        }
        record.update(conn_info(server))
        fsync_append(self.args.record, record)  # durable before the 250 goes out
        await server.pause("committed")
        reply = "250 2.0.0 OK queued"
        self.attempt(server, envelope, "data", reply, len(data))
        log.info("%r recorded %d bytes from %s to %s", session.peer, len(data), envelope.mail_from, envelope.rcpt_tos)
        return reply


class UpstreamSMTP(SMTP):
    def __init__(self, handler, state, args, **kw):
        self.state = state
        self.line_length_limit = args.line_limit  # read by SMTP.__init__ for the stream limit
        super().__init__(handler, **kw)
        self._mid_reply = False
        self._greeted = False

    def _create_session(self):
        return QuietSession(self.loop)

    async def pause(self, point):
        """Stops here if the faults say so (once per generation), and says so in --events."""
        faults = self.state.faults()
        key = (faults.generation, point)
        if point not in faults.pause_at or key in self.state.paused:
            return
        self.state.paused.add(key)
        peer = self.session.peer if self.session else None
        log.info("%r paused at %s (generation %r)", peer, point, faults.generation)
        if self.state.args.events:
            fsync_append(self.state.args.events, {"paused": point, "generation": faults.generation, "peer": peer})
        while self.state.faults().generation == faults.generation:
            await asyncio.sleep(0.01)
        log.info("%r released at %s", peer, point)

    async def smtp_QUIT(self, arg):
        if not arg:
            await self.pause("quit")
        await super().smtp_QUIT(arg)

    async def push(self, status):
        faults = self.state.faults()
        if faults.slow_reply_ms and not self._mid_reply:
            await asyncio.sleep(faults.slow_reply_ms / 1000.0)
        text = status if isinstance(status, str) else status.decode("utf-8", "replace")
        if not self._greeted:
            self._greeted = True
            await self.pause("greeting")
        self._mid_reply = len(text) > 3 and text[3] == "-"
        if not text.startswith("334 "):
            log.info("%r << %s", self.session.peer if self.session else None, text)
        await super().push(status)

    async def smtp_DATA(self, arg):
        faults = getattr(self.envelope, "faults", None) or self.state.faults()
        if (
            faults.disconnect_in_data
            and not arg
            and self.session.host_name
            and not (self._auth_required and not self.session.authenticated)
            and self.envelope.rcpt_tos
        ):
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            chunk = b""
            try:
                chunk = await asyncio.wait_for(self._reader.read(4096), timeout=30)
            except (asyncio.TimeoutError, ConnectionError):
                pass
            log.info("%r fault disconnect_in_data: read %d bytes of DATA, dropping", self.session.peer, len(chunk))
            self.event_handler.attempt(self, self.envelope, "disconnect", None, len(chunk))
            self.transport.abort()
            self._handler_coroutine.cancel()
            return
        if not arg and self.envelope.rcpt_tos:
            await self.pause("data")
        await super().smtp_DATA(arg)


AUTH_MECHANISMS = ("PLAIN", "LOGIN")


def auth_mechanisms(text):
    """--auth-mechanisms: a non-empty comma-separated subset of AUTH_MECHANISMS."""
    names = [m.strip().upper() for m in text.split(",") if m.strip()]
    bad = [m for m in names if m not in AUTH_MECHANISMS]
    if not names or bad:
        want = ",".join(AUTH_MECHANISMS)
        raise argparse.ArgumentTypeError("want a comma-separated subset of %s, got %r" % (want, text))
    return names


def authenticator_for(args, state):
    def authenticate(server, session, envelope, mechanism, auth_data):
        faults = state.faults()
        login = auth_data.login.decode("utf-8", "replace")
        if faults.reject_auth:
            log.info("AUTH %s for %r rejected (fault: reject_auth)", mechanism, login)
            return AuthResult(success=False, handled=False)
        if faults.echo_auth:
            b64 = lambda b: base64.b64encode(b).decode("ascii")
            pw = auth_data.password
            echo = "%s %s %s" % (b64(b"\0" + auth_data.login + b"\0" + pw), b64(pw), pw.decode("utf-8", "replace"))
            log.info("AUTH %s for %r rejected, echoing the credentials (fault: echo_auth)", mechanism, login)
            return AuthResult(success=False, handled=False, message="535 5.7.8 cannot accept " + echo)
        ok = auth_data.login == args.user.encode() and auth_data.password == args.password.encode()
        log.info("AUTH %s for %r: %s", mechanism, login, "ok" if ok else "bad credentials")
        if ok:
            return AuthResult(success=True, auth_data=login)
        return AuthResult(success=False, handled=False)

    return authenticate


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--hostname", default="upstream.test", help="name in the greeting and EHLO reply")
    p.add_argument("--tls", choices=["none", "starttls", "implicit"], default="none")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--require-starttls", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--auth-plaintext", action="store_true", help="offer/accept AUTH without TLS")
    p.add_argument(
        "--auth-mechanisms",
        type=auth_mechanisms,
        default=list(AUTH_MECHANISMS),
        help="comma-separated AUTH mechanisms to offer with --user (default PLAIN,LOGIN)",
    )
    p.add_argument("--max-size", type=int, default=None, help="SIZE limit (default 33554432; 0: none)")
    p.add_argument("--line-limit", type=int, default=1001, help="max DATA line length incl. CRLF")
    p.add_argument("--no-smtputf8", action="store_true", help="do not offer SMTPUTF8 (MAIL ... SMTPUTF8 gets 555)")
    p.add_argument("--record", required=True)
    p.add_argument("--attempts")
    p.add_argument("--control")
    p.add_argument("--state")
    p.add_argument("--exit-on-stdin-eof", action="store_true", help="exit when stdin closes (parent died)")
    p.add_argument("--debug", action="store_true")
    p.add_argument("--temp-fail-mail", action="store_true")
    p.add_argument("--temp-fail-data-times", type=int, default=0)
    p.add_argument("--perm-fail-data", action="store_true")
    p.add_argument("--perm-fail-rcpt", action="append")
    p.add_argument("--disconnect-in-data", action="store_true")
    p.add_argument("--reject-auth", action="store_true")
    p.add_argument("--echo-auth", action="store_true")
    p.add_argument("--slow-reply-ms", type=int, default=0)
    p.add_argument("--pause-at", action="append", choices=PAUSE_POINTS)
    p.add_argument("--events", help="JSON lines: where sessions paused (see pause_at)")
    args = p.parse_args()
    if args.tls != "none" and not (args.cert and args.key):
        p.error("--tls %s needs --cert and --key" % args.tls)
    if bool(args.user) != (args.password is not None):
        p.error("--user and --password go together")
    return args


async def main(args):
    loop = asyncio.get_running_loop()
    state = State(args)
    handler = Handler(state, args)

    ctx = None
    if args.tls != "none":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)

    kw = dict(
        hostname=args.hostname,
        enable_SMTPUTF8=not args.no_smtputf8,
        decode_data=False,
        loop=loop,
    )
    if args.max_size is not None:
        kw["data_size_limit"] = args.max_size or None
    if args.tls == "starttls":
        kw["tls_context"] = ctx
        kw["require_starttls"] = args.require_starttls
    if args.user:
        kw["authenticator"] = authenticator_for(args, state)
        kw["auth_required"] = True
        # aiosmtpd only counts STARTTLS as TLS; over implicit TLS AUTH must be allowed "without" it.
        kw["auth_require_tls"] = not (args.auth_plaintext or args.tls == "implicit")
        kw["auth_exclude_mechanism"] = [m for m in AUTH_MECHANISMS if m not in args.auth_mechanisms]
    else:
        kw["auth_exclude_mechanism"] = ["LOGIN", "PLAIN"]
        kw["auth_require_tls"] = True

    def factory():
        return UpstreamSMTP(handler, state, args, **kw)

    server = None
    for attempt in range(200):  # the same port after a restart may take a moment to free up
        try:
            server = await loop.create_server(
                factory,
                host=args.host,
                port=args.port,
                ssl=ctx if args.tls == "implicit" else None,
                reuse_address=True,
                family=socket.AF_INET,
            )
            break
        except OSError as e:
            if e.errno != errno.EADDRINUSE or args.port == 0 or attempt == 199:
                raise
            await asyncio.sleep(0.05)
    port = server.sockets[0].getsockname()[1]
    log.info("listening on %s:%d tls=%s user=%s", args.host, port, args.tls, args.user)
    sys.stdout.write("PORT %d\n" % port)
    sys.stdout.flush()

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.exit_on_stdin_eof:

        def watch():
            try:
                while sys.stdin.buffer.read(4096):
                    pass
            except OSError:
                pass
            loop.call_soon_threadsafe(stop.set)

        threading.Thread(target=watch, daemon=True).start()

    await stop.wait()
    log.info("stopping")
    server.close()


if __name__ == "__main__":
    args = parse_args()
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
    )
    if not args.debug:
        logging.getLogger("mail.log").setLevel(logging.INFO)
    # Over implicit TLS (or with --auth-plaintext) AUTH is required "without TLS" as aiosmtpd
    # sees it; its warnings about that are noise here.
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    logging.getLogger("mail.log").addFilter(
        lambda rec: not rec.getMessage().startswith(("auth_required == True but", "Available AUTH mechanisms"))
    )
    asyncio.run(main(args))
    logging.shutdown()
    # Don't wait for open client connections: dropping them is the point of stopping.
    os._exit(0)
