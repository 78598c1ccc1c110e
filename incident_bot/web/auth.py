"""Sign-in routes (``/ui/login``, ``/ui/auth/slack``, ``/ui/auth/callback``, ``/ui/logout``) and
:func:`viewer`, which every page calls first.

The round trip: ``/ui/auth/slack`` sets a short-lived signed cookie holding a fresh ``state`` and
``nonce`` and sends the browser to Slack; Slack sends it back to ``/ui/auth/callback`` with a code and
the state. The state must equal the cookie's (no login CSRF), the ID token must carry the cookie's nonce
(no code injection), and the user must belong to SLACK_TEAM_ID. Then the session cookie is set:
signed, HttpOnly, Secure (except plain http on loopback), SameSite=Lax, with an expiry.

Logout is a POST whose form carries the session's CSRF token (and whose Origin, when the browser
sends one, is ours): a link or an image on another site cannot sign anybody out.
"""

from __future__ import annotations

import hmac
import logging
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from incident_bot.web import oidc, session
from incident_bot.web.render import headers, page
from incident_bot.web.settings import WebConfig, is_loopback

log = logging.getLogger(__name__)
MAX_FORM = 4096


def safe_next(value: str | None) -> str:
    """Only a path of these pages: never another site (``//evil``, ``/\\evil``, ``https://...``)."""
    if not value or not value.startswith("/ui/") or value.startswith(("//", "/\\")) or "\\" in value:
        return "/ui/incidents"
    if any(c in value for c in "\r\n\t"):
        return "/ui/incidents"
    return value


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers=headers())


def viewer(config: WebConfig, request: Request) -> session.Viewer | None:
    """Who is reading, or None (not signed in, or a cookie that is forged, expired or of another team)."""
    if config.auth == "none":
        client = request.client.host if request.client else None
        return session.local_viewer() if is_loopback(client) else None
    return session.read_session(config, request.cookies.get(session.session_cookie(config)))


def sign_in_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return _redirect("/ui/login?" + urlencode({"next": safe_next(target)}))


def _set_cookie(config: WebConfig, response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", secure=config.secure_cookies, httponly=True,
                        samesite="lax")


def _refused(config: WebConfig, message: str, status: int) -> Response:
    response = page("login.html.j2", {"viewer": None, "error": message, "next": "/ui/incidents", "signed_out": False,
                                      "auth": config.auth}, status=status)
    response.delete_cookie(session.sign_in_cookie(config), path="/", secure=config.secure_cookies,
                           httponly=True, samesite="lax")
    return response


def build(config: WebConfig) -> APIRouter:
    r = APIRouter()

    @r.get("/ui/login")
    async def login(request: Request, next: str = "/ui/incidents", signed_out: str = "") -> Response:
        if viewer(config, request) is not None:
            return _redirect(safe_next(next))
        return page("login.html.j2", {"viewer": None, "error": None, "next": safe_next(next),
                                      "signed_out": bool(signed_out), "auth": config.auth})

    @r.get("/ui/auth/slack")
    async def start(next: str = "/ui/incidents") -> Response:
        if config.auth != "slack":
            return _redirect("/ui/incidents")
        value, state, nonce = session.issue_sign_in(config, next_path=safe_next(next))
        response = RedirectResponse(oidc.authorize_url(config, state=state, nonce=nonce), status_code=303,
                                    headers=headers())
        _set_cookie(config, response, session.sign_in_cookie(config), value, session.SIGN_IN_SECONDS)
        return response

    @r.get("/ui/auth/callback")
    async def callback(request: Request) -> Response:
        if config.auth != "slack":
            return _redirect("/ui/incidents")
        params = request.query_params
        pending = session.read_sign_in(config, request.cookies.get(session.sign_in_cookie(config)))
        if params.get("error"):
            log.info("web sign-in: Slack answered %s", params.get("error")[:64])
            return _refused(config, "Sign-in was cancelled or refused by Slack.", 400)
        state, code = params.get("state") or "", params.get("code") or ""
        if pending is None or not state or not hmac.compare_digest(state.encode(), pending["state"].encode()):
            log.info("web sign-in refused: state missing or not this browser's")
            return _refused(config, "This sign-in link is stale or was not started here; sign in again.", 400)
        if not code or len(code) > 512:
            return _refused(config, "Slack sent no sign-in code; sign in again.", 400)
        try:
            who = await oidc.exchange(config, code, nonce=pending["nonce"])
        except oidc.SignInError as exc:
            log.warning("web sign-in refused: %s", exc)
            return _refused(config, exc.public, exc.status)
        log.info("web sign-in: %s", who.user_id)
        response = _redirect(pending["next"])
        _set_cookie(config, response, session.session_cookie(config),
                    session.issue_session(config, user_id=who.user_id, team_id=who.team_id, name=who.name),
                    config.session_seconds)
        response.delete_cookie(session.sign_in_cookie(config), path="/", secure=config.secure_cookies,
                               httponly=True, samesite="lax")
        return response

    @r.post("/ui/logout")
    async def logout(request: Request) -> Response:
        who = viewer(config, request)
        body = await request.body()
        form = dict(parse_qsl(body[:MAX_FORM].decode("utf-8", "replace"))) if len(body) <= MAX_FORM else {}
        origin = request.headers.get("origin")
        if config.auth == "none":
            return _redirect("/ui/incidents")
        if who is None:
            return _redirect("/ui/login")
        token = form.get("csrf", "")
        if not token or not hmac.compare_digest(token.encode(), who.csrf.encode()) or (
                origin and origin != config.origin):
            log.info("web logout refused: bad CSRF token or origin %s", (origin or "")[:100])
            return Response("Forbidden: the sign-out form is not from these pages.", status_code=403,
                            media_type="text/plain", headers=headers())
        response = _redirect("/ui/login?signed_out=1")
        response.delete_cookie(session.session_cookie(config), path="/", secure=config.secure_cookies,
                               httponly=True, samesite="lax")
        return response

    return r
