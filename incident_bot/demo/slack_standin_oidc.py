"""The Slack stand-in as an identity provider: Sign in with Slack (OpenID Connect) for tests and the demo.

- ``GET /openid/connect/authorize``: Slack's consent page. With :meth:`OidcProvider.sign_in_as` set,
  it redirects straight back with a code for that identity (tests); otherwise it shows a page listing
  the identities to choose from (the demo), each a link that redirects back with a code.
- ``POST /api/openid.connect.token``: client id + secret + code + redirect_uri -> access and ID token.
  The ID token is a JWT signed HS256 with the client secret (Slack signs RS256; the bot does not check
  the signature of a token it fetched itself over TLS, see incident_bot/web/oidc.py).
- ``POST /api/openid.connect.userInfo``: ``Authorization: Bearer <access token>`` -> the claims.

Codes are single-use and live 10 minutes, as Slack's do; a replayed code is ``invalid_code``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from incident_bot.demo.http_standin import Reply, Request
from incident_bot.demo.slack_standin_state import TEAM_ID

ISSUER = "https://slack.com"
CODE_SECONDS = 600


@dataclass(frozen=True)
class Identity:
    user_id: str
    name: str
    email: str
    team_id: str = TEAM_ID
    team_name: str = "Stand-in"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt_hs256(claims: dict[str, Any], secret: str) -> str:
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "standin"}).encode())
    body = _b64(json.dumps(claims).encode())
    sig = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(sig)}"


class OidcProvider:
    """Registered clients, identities that can sign in, and the codes and tokens issued."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.clients: dict[str, str] = {}  # client_id -> secret
        self.identities: dict[str, Identity] = {}
        self.auto: str | None = None  # the identity the authorize page signs in without asking
        self._codes: dict[str, dict[str, Any]] = {}
        self._tokens: dict[str, Identity] = {}
        self.nonce_override: str | None = None  # tests: answer with another nonce

    def register_client(self, client_id: str, secret: str) -> None:
        with self._lock:
            self.clients[client_id] = secret

    def add_identity(self, user_id: str, name: str, email: str, *, team_id: str = TEAM_ID) -> Identity:
        ident = Identity(user_id, name, email, team_id)
        with self._lock:
            self.identities[user_id] = ident
        return ident

    def sign_in_as(self, user_id: str | None) -> None:
        """The next authorize requests sign in as ``user_id`` with no page (None: show the chooser)."""
        with self._lock:
            self.auto = user_id

    # -- HTTP ----------------------------------------------------------------------------------------------

    def handles(self, request: Request, key: str) -> bool:
        return request.path.startswith("/openid/connect/authorize") or key.startswith("openid.connect.")

    def answer(self, request: Request, key: str, params: dict[str, Any]) -> Reply:
        if request.path == "/openid/connect/authorize":
            return self._authorize(params)
        if request.path == "/openid/connect/authorize/choose":
            return self._authorize(params, chosen=str(params.get("user") or ""))
        if key == "openid.connect.token":
            return self._token(params)
        if key == "openid.connect.userInfo":
            return self._userinfo(request)
        return _json({"ok": False, "error": "unknown_method"})

    def _authorize(self, p: dict[str, Any], chosen: str = "") -> Reply:
        client_id, redirect = str(p.get("client_id") or ""), str(p.get("redirect_uri") or "")
        if client_id not in self.clients or not redirect.startswith(("http://", "https://")):
            return _page(400, "<h1>Slack stand-in</h1><p>invalid client_id or redirect_uri</p>")
        if p.get("response_type") != "code" or "openid" not in str(p.get("scope") or "").split():
            return _redirect(redirect, {"error": "invalid_scope", "state": p.get("state", "")})
        user = chosen or self.auto
        if not user:
            return self._chooser(p)
        ident = self.identities.get(user)
        if ident is None:
            return _redirect(redirect, {"error": "access_denied", "state": p.get("state", "")})
        code = secrets.token_urlsafe(18)
        with self._lock:
            self._codes[code] = {"identity": ident, "client_id": client_id, "redirect_uri": redirect,
                                 "nonce": p.get("nonce"), "expires": time.time() + CODE_SECONDS}
        return _redirect(redirect, {"code": code, "state": p.get("state", "")})

    def _chooser(self, p: dict[str, Any]) -> Reply:
        base = {k: str(v) for k, v in p.items() if k != "user"}
        items = "".join(
            f'<li><a href="/openid/connect/authorize/choose?{html.escape(urlencode({**base, "user": i.user_id}))}">'
            f"{html.escape(i.name)}</a> ({html.escape(i.email)}, workspace {html.escape(i.team_id)})</li>"
            for i in self.identities.values())
        return _page(200, "<h1>Slack stand-in: sign in</h1><p>Choose who signs in (no password: this is the "
                          f"local stand-in of Slack).</p><ul>{items}</ul>")

    def _token(self, p: dict[str, Any]) -> Reply:
        client_id = str(p.get("client_id") or "")
        if client_id not in self.clients or not hmac.compare_digest(
                self.clients[client_id].encode(), str(p.get("client_secret") or "").encode()):
            return _json({"ok": False, "error": "invalid_client_id"})
        with self._lock:
            grant = self._codes.pop(str(p.get("code") or ""), None)
        if grant is None or grant["expires"] < time.time() or grant["client_id"] != client_id:
            return _json({"ok": False, "error": "invalid_code"})
        if grant["redirect_uri"] != p.get("redirect_uri"):
            return _json({"ok": False, "error": "bad_redirect_uri"})
        ident: Identity = grant["identity"]
        access = "xoxp-oidc-" + secrets.token_urlsafe(18)
        with self._lock:
            self._tokens[access] = ident
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": ident.user_id, "aud": client_id, "exp": now + 3600, "iat": now,
                  "auth_time": now, "nonce": self.nonce_override or grant["nonce"], **self._claims(ident)}
        return _json({"ok": True, "access_token": access, "token_type": "Bearer",
                      "id_token": jwt_hs256(claims, self.clients[client_id])})

    def _userinfo(self, request: Request) -> Reply:
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        with self._lock:
            ident = self._tokens.get(token)
        if ident is None:
            return _json({"ok": False, "error": "invalid_auth"})
        return _json({"ok": True, "sub": ident.user_id, **self._claims(ident)})

    @staticmethod
    def _claims(ident: Identity) -> dict[str, Any]:
        return {"https://slack.com/user_id": ident.user_id, "https://slack.com/team_id": ident.team_id,
                "https://slack.com/team_name": ident.team_name, "email": ident.email, "email_verified": True,
                "name": ident.name, "given_name": ident.name.split()[0], "locale": "en-US"}


def _json(body: dict[str, Any]) -> Reply:
    return Reply(200, json.dumps(body).encode())


def _redirect(url: str, params: dict[str, Any]) -> Reply:
    sep = "&" if "?" in url else "?"
    return Reply(302, b"", {"Location": f"{url}{sep}{urlencode(params)}"}, content_type="text/plain")


def _page(status: int, body: str) -> Reply:
    doc = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>Slack stand-in</title></head>"
           f"<body>{body}</body></html>")
    return Reply(status, doc.encode(), content_type="text/html; charset=utf-8")


