"""Sign in with Slack (OpenID Connect, authorization code flow) as a confidential client.

Slack's three calls: the browser goes to the authorize URL (``https://slack.com/openid/connect/authorize``),
comes back with a code; the server trades it at ``openid.connect.token`` (client id and secret) for an
access token and an ID token, then reads ``openid.connect.userInfo`` with that access token.

The ID token is read, not signature-checked: it comes straight from Slack's token endpoint over TLS
in answer to our own authenticated request, which OpenID Connect Core (3.1.3.7, item 6) accepts in
place of the signature. Its claims still are checked: issuer, audience, expiry and the nonce we sent
(so a code injected from another sign-in is refused), and the workspace both in it and in userInfo.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx

from incident_bot.web.settings import WebConfig

ISSUER = "https://slack.com"
TEAM_CLAIM = "https://slack.com/team_id"
USER_CLAIM = "https://slack.com/user_id"
SCOPES = "openid email profile"
CLOCK_SKEW = 120  # seconds of tolerance on exp/iat between Slack's clock and ours


class SignInError(Exception):
    """The sign-in did not prove a user of the configured workspace. ``public`` is safe to show."""

    def __init__(self, public: str, *, detail: str = "", status: int = 400) -> None:
        super().__init__(f"{public}: {detail}" if detail else public)
        self.public, self.status = public, status


@dataclass(frozen=True)
class SlackIdentity:
    user_id: str
    team_id: str
    name: str
    email: str | None


def authorize_url(config: WebConfig, *, state: str, nonce: str) -> str:
    params = {"response_type": "code", "scope": SCOPES, "client_id": config.client_id, "state": state,
              "nonce": nonce, "redirect_uri": config.redirect_uri, "team": config.team_id}
    sep = "&" if "?" in config.authorize_url else "?"
    return f"{config.authorize_url}{sep}{urlencode(params)}"


def _claims(id_token: str) -> dict[str, Any]:
    try:
        payload = id_token.split(".")[1]
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError) as exc:
        raise SignInError("Slack answered with an unreadable ID token", detail=str(exc), status=502) from None
    if not isinstance(data, dict):
        raise SignInError("Slack answered with an unreadable ID token", status=502)
    return data


def check_id_token(config: WebConfig, id_token: str, *, nonce: str, now: float | None = None) -> dict[str, Any]:
    claims = _claims(id_token)
    now = time.time() if now is None else now
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    if claims.get("iss") != ISSUER:
        raise SignInError("the ID token was not issued by Slack", detail=str(claims.get("iss")))
    if config.client_id not in audiences:
        raise SignInError("the ID token is for another app", detail=str(aud))
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or exp + CLOCK_SKEW < now:
        raise SignInError("the ID token has expired; sign in again")
    if not isinstance(claims.get("nonce"), str) or claims["nonce"] != nonce:
        raise SignInError("the sign-in answer does not belong to this sign-in; start again")
    if claims.get(TEAM_CLAIM) != config.team_id:
        raise SignInError("this Slack account is not a member of the workspace these pages belong to",
                          detail=str(claims.get(TEAM_CLAIM)), status=403)
    return claims


async def _call(client: httpx.AsyncClient, config: WebConfig, method: str, **kwargs: Any) -> dict[str, Any]:
    try:
        response = await client.post(f"{config.api_url}{method}", **kwargs)
    except httpx.HTTPError as exc:
        raise SignInError("Slack could not be reached; try again", detail=f"{method}: {exc!r}", status=502) from None
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200 or not isinstance(body, dict):
        raise SignInError("Slack refused the sign-in; try again", detail=f"{method}: HTTP {response.status_code}",
                          status=502)
    if not body.get("ok"):
        raise SignInError("Slack refused the sign-in; try again", detail=f"{method}: {body.get('error')}")
    return body


async def exchange(config: WebConfig, code: str, *, nonce: str, timeout: float = 10.0) -> SlackIdentity:
    """Code -> tokens -> userInfo; the identity of a member of ``config.team_id`` or SignInError."""
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
        token = await _call(client, config, "openid.connect.token", data={
            "client_id": config.client_id, "client_secret": config.client_secret, "code": code,
            "redirect_uri": config.redirect_uri, "grant_type": "authorization_code"})
        access, id_token = token.get("access_token"), token.get("id_token")
        if not isinstance(access, str) or not isinstance(id_token, str):
            raise SignInError("Slack answered without tokens", status=502)
        claims = check_id_token(config, id_token, nonce=nonce)
        info = await _call(client, config, "openid.connect.userInfo",
                           headers={"Authorization": f"Bearer {access}"})
    user = info.get(USER_CLAIM) or info.get("sub")
    if info.get(TEAM_CLAIM) != config.team_id:
        raise SignInError("this Slack account is not a member of the workspace these pages belong to",
                          detail=str(info.get(TEAM_CLAIM)), status=403)
    if not isinstance(user, str) or user != (claims.get(USER_CLAIM) or claims.get("sub")):
        raise SignInError("Slack's answers name two different users", status=502)
    name = info.get("name") or info.get("given_name") or user
    email = info.get("email") if isinstance(info.get("email"), str) else None
    return SlackIdentity(user_id=user, team_id=config.team_id, name=str(name), email=email)
