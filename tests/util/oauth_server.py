#!/usr/bin/env python3
"""A real OAuth2 authorization server for popbridge's OAuth tests (tests/util/oauth.rs starts it).

Built on authlib's RFC 6749/7636/7662/8628 implementation (authlib's Flask integration), in
memory, on 127.0.0.1 (plain http: the contract allows http to a loopback host):

  GET/POST /authorize            authorization code grant; PKCE S256 REQUIRED; a login form that
                                 the test submits like a browser (username, password), then a
                                 302 to the client's loopback redirect_uri (any port, RFC 8252)
  POST     /token                authorization_code (+ code_verifier), refresh_token WITH
                                 ROTATION (a rotated-away refresh token gets invalid_grant), and
                                 urn:ietf:params:oauth:grant-type:device_code (RFC 8628)
  POST     /device_authorization RFC 8628 device authorization (interval 1 s)
  GET/POST /device               the verification page: user_code + username + password
  POST     /introspect           RFC 7662, for Dovecot's passdb oauth2 (client_secret_post or
                                 basic, as the resource server "dovecot")

Test controls, only in this test server (JSON over POST/GET):
  POST /control/lifetime  {"seconds": N}         access tokens issued from now on live N s
  POST /control/fail_token {"count": N, "status": 503}   the next N /token requests get that status
  POST /control/revoke    {"user": U, "access": bool}    every refresh token of U is revoked (the
                                                 next refresh gets invalid_grant); with access,
                                                 its access tokens too
  POST /control/hold      {"hold": bool}         hold /introspect requests until released
  GET  /control/held                             {"held": n, "tokens": [...]}: how many are
                                                 waiting now, and for which token pairs
  GET  /control/log                              every /token and /introspect request so far
  GET  /control/tokens                           every token pair issued (values included: the
                                                 tests look for them in popbridge's output)

Startup: the first line on stdout is {"port": P} once the server listens. Every log entry is
also appended, one JSON object a line, to --log FILE.
"""

import argparse
import html
import json
import sys
import threading
import time
import urllib.parse

from flask import Flask, g, jsonify, request
from werkzeug.serving import make_server

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import OAuth2Error
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oauth2.rfc8628 import DeviceAuthorizationEndpoint, DeviceCodeGrant, DeviceCredentialDict

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
ALL_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]


class State:
    """Everything the server holds, behind one lock."""

    def __init__(self, users, lifetime, log_path):
        self.lock = threading.Condition()
        self.users = users  # name -> password
        self.lifetime = lifetime
        self.fail_count = 0
        self.fail_status = 503
        self.hold = False
        self.held = []  # the token pair (n) of each /introspect request being held
        self.tokens = []  # Token, in issue order
        self.by_access = {}
        self.by_refresh = {}
        self.codes = {}  # code -> AuthCode
        self.devices = {}  # device_code -> DeviceCredentialDict
        self.device_grants = {}  # user_code -> (user, approved)
        self.log = []
        self.log_path = log_path

    def record(self, entry):
        entry["time"] = time.time()
        with self.lock:
            self.log.append(entry)
            if self.log_path:
                with open(self.log_path, "a") as f:
                    f.write(json.dumps(entry) + "\n")


STATE = None


class User:
    def __init__(self, name):
        self.name = name

    def get_user_id(self):
        return self.name


class Client:
    def __init__(self, client_id, secret, grant_types):
        self.client_id = client_id
        self.client_secret = secret
        self.grant_types = grant_types

    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        return None

    def get_allowed_scope(self, scope):
        return scope or ""

    def check_redirect_uri(self, redirect_uri):
        # RFC 8252 7.3: a loopback redirect with any port.
        u = urllib.parse.urlsplit(redirect_uri)
        return u.scheme == "http" and u.hostname in ("127.0.0.1", "::1", "localhost")

    def check_client_secret(self, client_secret):
        return self.client_secret is not None and client_secret == self.client_secret

    def check_endpoint_auth_method(self, method, endpoint):
        if self.client_secret is None:
            return method == "none"
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type):
        return response_type == "code" and "authorization_code" in self.grant_types

    def check_grant_type(self, grant_type):
        return grant_type in self.grant_types


class Token:
    def __init__(self, n, client_id, user, scope, access_token, refresh_token, expires_in):
        self.n = n
        self.client_id = client_id
        self.user = user
        self.scope = scope
        self.access_token = access_token
        self.refresh_token = refresh_token
        self.expires_in = expires_in
        self.issued_at = time.time()
        self.access_revoked = False
        # None while usable; "rotated" once a refresh replaced it; "revoked" by /control/revoke
        self.refresh_gone = None

    def check_client(self, client):
        return client.get_client_id() == self.client_id

    def get_scope(self):
        return self.scope

    def get_expires_in(self):
        return self.expires_in

    def expires_at(self):
        return self.issued_at + self.expires_in

    def is_expired(self):
        return time.time() >= self.expires_at()

    def is_revoked(self):
        return self.access_revoked

    def get_user(self):
        return User(self.user)

    def get_client(self):
        return CLIENTS[self.client_id]

    def describe(self):
        return {
            "n": self.n,
            "user": self.user,
            "client_id": self.client_id,
            "scope": self.scope,
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "issued_at": self.issued_at,
            "expires_at": self.expires_at(),
            "access_revoked": self.access_revoked,
            "refresh_gone": self.refresh_gone,
        }


class AuthCode:
    def __init__(self, code, client_id, redirect_uri, scope, user, challenge, method):
        self.code = code
        self.client_id = client_id
        self.redirect_uri = redirect_uri
        self.scope = scope
        self.user = user
        self.code_challenge = challenge
        self.code_challenge_method = method
        self.expires = time.time() + 300

    def get_redirect_uri(self):
        return self.redirect_uri

    def get_scope(self):
        return self.scope

    def get_nonce(self):
        return None

    def get_auth_time(self):
        return None


CLIENTS = {}


def query_client(client_id):
    return CLIENTS.get(client_id)


def save_token(token, req):
    user = req.user.get_user_id() if req.user else None
    with STATE.lock:
        n = len(STATE.tokens) + 1
        t = Token(
            n,
            req.client.get_client_id(),
            user,
            token.get("scope", ""),
            token["access_token"],
            token.get("refresh_token"),
            token["expires_in"],
        )
        STATE.tokens.append(t)
        STATE.by_access[t.access_token] = t
        if t.refresh_token:
            STATE.by_refresh[t.refresh_token] = t
    g.issued = n


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ALL_AUTH_METHODS

    def save_authorization_code(self, code, req):
        c = AuthCode(
            code,
            req.client.get_client_id(),
            req.payload.redirect_uri,
            req.scope,
            req.user.get_user_id(),
            req.payload.data.get("code_challenge"),
            req.payload.data.get("code_challenge_method"),
        )
        with STATE.lock:
            STATE.codes[code] = c

    def query_authorization_code(self, code, client):
        with STATE.lock:
            c = STATE.codes.get(code)
        if c and c.client_id == client.get_client_id() and c.expires > time.time():
            return c
        return None

    def delete_authorization_code(self, authorization_code):
        with STATE.lock:
            STATE.codes.pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code):
        return User(authorization_code.user)


class PkceS256(CodeChallenge):
    """PKCE required, S256 only."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def get_authorization_code_challenge(self, authorization_code):
        return authorization_code.code_challenge

    def get_authorization_code_challenge_method(self, authorization_code):
        return authorization_code.code_challenge_method


class RefreshTokenGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ALL_AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token):
        with STATE.lock:
            t = STATE.by_refresh.get(refresh_token)
        if t is None or t.refresh_gone is not None:
            return None
        return t

    def authenticate_user(self, credential):
        return User(credential.user)

    def revoke_old_credential(self, credential):
        with STATE.lock:
            credential.refresh_gone = "rotated"


class DeviceGrant(DeviceCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ALL_AUTH_METHODS

    def query_device_credential(self, device_code):
        with STATE.lock:
            return STATE.devices.get(device_code)

    def query_user_grant(self, user_code):
        with STATE.lock:
            grant = STATE.device_grants.get(user_code)
        if grant is None:
            return None
        user, approved = grant
        return User(user), approved

    def should_slow_down(self, credential):
        return False

    def create_token_response(self):
        status, body, headers = super().create_token_response()
        # A device code is good for one token response.
        with STATE.lock:
            STATE.devices.pop(self.request.payload.data.get("device_code"), None)
        return status, body, headers


class DeviceEndpoint(DeviceAuthorizationEndpoint):
    INTERVAL = 1
    EXPIRES_IN = 600

    def get_verification_uri(self):
        return request.url_root + "device"

    def save_device_credential(self, client_id, scope, data):
        cred = DeviceCredentialDict(client_id=client_id, scope=scope, **data)
        cred["expires_at"] = time.time() + self.EXPIRES_IN
        with STATE.lock:
            STATE.devices[data["device_code"]] = cred


class Introspection(IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def query_token(self, token_string, token_type_hint):
        with STATE.lock:
            return STATE.by_access.get(token_string)

    def check_permission(self, token, client, req):
        return client.get_client_id() == INTROSPECTOR

    def introspect_token(self, token):
        return {
            "active": True,
            "client_id": token.client_id,
            "username": token.user,
            "sub": token.user,
            "scope": token.scope,
            "token_type": "Bearer",
            "exp": int(token.expires_at()),
            "iat": int(token.issued_at),
        }


INTROSPECTOR = "dovecot"

app = Flask(__name__)
server = AuthorizationServer()


def page(title, body, status=200):
    return (
        f"<!doctype html><html><head><title>{html.escape(title)}</title></head><body>{body}</body></html>",
        status,
        {"Content-Type": "text/html; charset=utf-8"},
    )


def check_login(form):
    user = form.get("username", "")
    with STATE.lock:
        ok = user in STATE.users and STATE.users[user] == form.get("password", "")
    return user if ok else None


@app.route("/authorize", methods=["GET", "POST"])
def authorize():
    args = request.args
    if args.get("code_challenge_method") != "S256" or not args.get("code_challenge"):
        STATE.record({"endpoint": "authorize", "status": 400, "error": "pkce_s256_required"})
        return page("error", "<p>PKCE with S256 is required</p>", 400)
    try:
        grant = server.get_consent_grant(end_user=None)
    except OAuth2Error as e:
        STATE.record({"endpoint": "authorize", "status": 400, "error": e.error})
        return page("error", f"<p>{html.escape(e.error)}: {html.escape(e.description or '')}</p>", 400)
    if request.method == "GET":
        return login_form(grant.client.get_client_id(), "")
    user = check_login(request.form)
    if user is None:
        STATE.record({"endpoint": "authorize", "status": 200, "error": "wrong_login"})
        return login_form(grant.client.get_client_id(), "<p>Wrong user name or password.</p>")
    resp = server.create_authorization_response(grant_user=User(user), grant=grant)
    STATE.record({"endpoint": "authorize", "status": resp.status_code, "user": user})
    return resp


def login_form(client_id, note):
    return page(
        "Sign in",
        f"<h1>Sign in to {html.escape(client_id)}</h1>{note}"
        '<form method="post">'
        '<label>User <input name="username"></label>'
        '<label>Password <input name="password" type="password"></label>'
        '<button type="submit">Sign in</button></form>',
    )


@app.route("/token", methods=["POST"])
def token():
    grant_type = request.form.get("grant_type")
    entry = {"endpoint": "token", "grant_type": grant_type, "client_id": request.form.get("client_id")}
    if grant_type == "refresh_token":
        presented = request.form.get("refresh_token")
        with STATE.lock:
            t = STATE.by_refresh.get(presented)
            entry["refresh_token"] = t.n if t else None
            entry["refresh_token_state"] = (t.refresh_gone or "current") if t else "unknown"
    with STATE.lock:
        injected = STATE.fail_count > 0
        if injected:
            STATE.fail_count -= 1
            status = STATE.fail_status
    if injected:
        entry.update({"status": status, "injected": True})
        STATE.record(entry)
        return ("<html><body>Service Unavailable</body></html>", status, {"Content-Type": "text/html"})
    resp = server.create_token_response()
    entry["status"] = resp.status_code
    if resp.status_code != 200:
        try:
            entry["error"] = json.loads(resp.get_data(as_text=True)).get("error")
        except ValueError:
            entry["error"] = None
    entry["issued"] = getattr(g, "issued", None)
    STATE.record(entry)
    return resp


@app.route("/device_authorization", methods=["POST"])
def device_authorization():
    resp = server.create_endpoint_response(DeviceEndpoint.ENDPOINT_NAME)
    STATE.record({"endpoint": "device_authorization", "status": resp.status_code})
    return resp


@app.route("/device", methods=["GET", "POST"])
def device():
    if request.method == "GET":
        return device_form(request.args.get("user_code", ""), "")
    code = request.form.get("user_code", "").strip().upper()
    with STATE.lock:
        known = any(d["user_code"] == code for d in STATE.devices.values())
    user = check_login(request.form)
    if not known:
        return device_form("", "<p>Unknown code.</p>")
    if user is None:
        return device_form(code, "<p>Wrong user name or password.</p>")
    with STATE.lock:
        STATE.device_grants[code] = (user, True)
    STATE.record({"endpoint": "device", "status": 200, "user": user})
    return page("Signed in", "<p>Signed in. You may close this window.</p>")


def device_form(code, note):
    return page(
        "Enter code",
        f"<h1>Enter the code shown on your device</h1>{note}"
        '<form method="post">'
        f'<label>Code <input name="user_code" value="{html.escape(code)}"></label>'
        '<label>User <input name="username"></label>'
        '<label>Password <input name="password" type="password"></label>'
        '<button type="submit">Continue</button></form>',
    )


@app.route("/introspect", methods=["POST"])
def introspect():
    presented = request.form.get("token", "")
    with STATE.lock:
        t = STATE.by_access.get(presented)
        entry = {
            "endpoint": "introspect",
            "token": t.n if t else None,
            "expired": t.is_expired() if t else None,
            "revoked": t.access_revoked if t else None,
        }
        held = STATE.hold
        if held:
            STATE.held.append(entry["token"])
            STATE.lock.notify_all()
            while STATE.hold:
                STATE.lock.wait(0.1)
            STATE.held.remove(entry["token"])
    entry["held"] = held
    resp = server.create_endpoint_response(Introspection.ENDPOINT_NAME)
    entry["status"] = resp.status_code
    try:
        entry["active"] = json.loads(resp.get_data(as_text=True)).get("active")
    except ValueError:
        entry["active"] = None
    STATE.record(entry)
    return resp


@app.route("/control/lifetime", methods=["POST"])
def control_lifetime():
    with STATE.lock:
        STATE.lifetime = int(request.get_json()["seconds"])
    return jsonify(ok=True)


@app.route("/control/fail_token", methods=["POST"])
def control_fail_token():
    body = request.get_json()
    with STATE.lock:
        STATE.fail_count = int(body["count"])
        STATE.fail_status = int(body.get("status", 503))
    return jsonify(ok=True)


@app.route("/control/revoke", methods=["POST"])
def control_revoke():
    body = request.get_json()
    n = 0
    with STATE.lock:
        for t in STATE.tokens:
            if t.user == body["user"]:
                if t.refresh_gone is None:
                    t.refresh_gone = "revoked"
                    n += 1
                if body.get("access"):
                    t.access_revoked = True
    return jsonify(revoked=n)


@app.route("/control/hold", methods=["POST"])
def control_hold():
    with STATE.lock:
        STATE.hold = bool(request.get_json()["hold"])
        STATE.lock.notify_all()
    return jsonify(ok=True)


@app.route("/control/held", methods=["GET"])
def control_held():
    with STATE.lock:
        return jsonify(held=len(STATE.held), tokens=list(STATE.held))


@app.route("/control/log", methods=["GET"])
def control_log():
    with STATE.lock:
        return jsonify(list(STATE.log))


@app.route("/control/tokens", methods=["GET"])
def control_tokens():
    with STATE.lock:
        return jsonify([t.describe() for t in STATE.tokens])


def main():
    global STATE, INTROSPECTOR
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--user", action="append", default=[], help="NAME:PASSWORD (repeatable)")
    p.add_argument("--client", action="append", default=[], help="ID (public) or ID:SECRET (repeatable)")
    p.add_argument("--introspector", default="dovecot:dovecot-secret", help="ID:SECRET of the resource server")
    p.add_argument("--access-lifetime", type=int, default=3600)
    p.add_argument("--log", default=None)
    a = p.parse_args()
    users = dict(u.split(":", 1) for u in a.user) or {"alice": "alice-pw"}
    STATE = State(users, a.access_lifetime, a.log)
    every = ["authorization_code", "refresh_token", DEVICE_GRANT]
    for c in a.client or ["popbridge-test"]:
        cid, _, secret = c.partition(":")
        CLIENTS[cid] = Client(cid, secret or None, every)
    iid, _, isecret = a.introspector.partition(":")
    INTROSPECTOR = iid
    CLIENTS[iid] = Client(iid, isecret, [])

    server.init_app(app, query_client=query_client, save_token=save_token)
    # The lifetime is read at every issue, so /control/lifetime takes effect at once.
    server.register_token_generator("default", bearer_generator())
    server.register_grant(AuthorizationCodeGrant, [PkceS256(required=True)])
    server.register_grant(RefreshTokenGrant)
    server.register_grant(DeviceGrant)
    server.register_endpoint(DeviceEndpoint)
    server.register_endpoint(Introspection)

    srv = make_server("127.0.0.1", 0, app, threaded=True)
    print(json.dumps({"port": srv.server_port}), flush=True)
    srv.serve_forever()


def bearer_generator():
    from authlib.oauth2.rfc6750 import BearerTokenGenerator
    from authlib.common.security import generate_token

    def expires_in(client, grant_type):
        with STATE.lock:
            return STATE.lifetime

    return BearerTokenGenerator(lambda *a, **k: generate_token(42), lambda *a, **k: generate_token(48), expires_in)


if __name__ == "__main__":
    sys.exit(main())
