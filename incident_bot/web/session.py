"""The signed session cookie and the short-lived sign-in cookie (state and nonce of one OIDC round trip).

Signed, not encrypted: the cookie holds the Slack user id, team id and display name, which are no secret
to their owner; what matters is that nobody can make one up. itsdangerous signs with HMAC-SHA1 over a
key derived from ``WEB_SESSION_SECRET`` and a per-purpose salt, so a sign-in cookie can never be
replayed as a session. Expiry is checked twice: by the signature's timestamp (``max_age``) and by an
``exp`` inside the payload, so shortening ``WEB_SESSION_HOURS`` also shortens sessions already issued.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer

from incident_bot.web.settings import WebConfig

SESSION_SALT = "incident-bot.web.session"
SIGN_IN_SALT = "incident-bot.web.sign-in"
SIGN_IN_SECONDS = 600  # from the redirect to Slack until the callback


@dataclass(frozen=True)
class Viewer:
    """Who is reading: a Slack user of the configured workspace (or ``local`` when WEB_AUTH=none)."""

    user_id: str
    team_id: str
    name: str
    csrf: str  # the token a POST form must send back (logout)
    expires_at: int


def cookie_name(config: WebConfig, base: str) -> str:
    # The __Host- prefix makes the browser refuse the cookie unless Secure, Path=/ and without Domain:
    # a sibling subdomain cannot plant or shadow it.
    return f"__Host-{base}" if config.secure_cookies else base


def session_cookie(config: WebConfig) -> str:
    return cookie_name(config, "ib_session")


def sign_in_cookie(config: WebConfig) -> str:
    return cookie_name(config, "ib_sign_in")


def _serializer(config: WebConfig, salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(config.session_secret, salt=salt)


def issue_session(config: WebConfig, *, user_id: str, team_id: str, name: str, now: float | None = None) -> str:
    now = time.time() if now is None else now
    payload = {"u": user_id, "t": team_id, "n": name[:120], "c": secrets.token_urlsafe(24),
               "exp": int(now) + config.session_seconds}
    return _serializer(config, SESSION_SALT).dumps(payload)


def read_session(config: WebConfig, value: str | None, *, now: float | None = None) -> Viewer | None:
    """The viewer of a valid, unexpired session cookie of the configured workspace; None otherwise."""
    if not value or len(value) > 4096:
        return None
    try:
        data: Any = _serializer(config, SESSION_SALT).loads(value, max_age=config.session_seconds)
    except BadSignature:  # also SignatureExpired, a subclass
        return None
    if not isinstance(data, dict):
        return None
    now = time.time() if now is None else now
    exp, user, team = data.get("exp"), data.get("u"), data.get("t")
    if not isinstance(exp, int) or exp <= now or not isinstance(user, str) or team != config.team_id:
        return None
    return Viewer(user_id=user, team_id=team, name=str(data.get("n") or user), csrf=str(data.get("c") or ""),
                  expires_at=exp)


def issue_sign_in(config: WebConfig, *, next_path: str) -> tuple[str, str, str]:
    """``(cookie value, state, nonce)`` for one trip to Slack's authorize page and back."""
    state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    value = _serializer(config, SIGN_IN_SALT).dumps({"s": state, "n": nonce, "next": next_path})
    return value, state, nonce


def read_sign_in(config: WebConfig, value: str | None) -> dict[str, str] | None:
    if not value or len(value) > 4096:
        return None
    try:
        data: Any = _serializer(config, SIGN_IN_SALT).loads(value, max_age=SIGN_IN_SECONDS)
    except BadSignature:
        return None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("s", "n", "next")):
        return None
    return {"state": data["s"], "nonce": data["n"], "next": data["next"]}


def local_viewer() -> Viewer:
    """The reader when WEB_AUTH=none (loopback only): no session, no CSRF token to check."""
    return Viewer(user_id="local", team_id="", name="local (no sign-in)", csrf="", expires_at=0)
