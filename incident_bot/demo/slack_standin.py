"""A local stand-in of the Slack Web API: a real HTTP server with a stateful fake workspace.

Tests and ``incident-bot demo`` point real slack_sdk / Bolt clients at :attr:`SlackStandIn.url`, so the
bot's HTTP code, retry handlers and timeouts run for real. Answers follow Slack: HTTP 200 with
``{"ok": true, ...}`` or ``{"ok": false, "error": ...}``, 429 with ``Retry-After`` over a rate limit. This
module is the HTTP side and the API for tests; the Web API methods are in ``slack_standin_api``, the
workspace data in ``slack_standin_state`` and its rendering as text in ``slack_standin_render``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import time
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qsl

from incident_bot.demo.http_standin import Fault, Reply, Request, StandInServer
from incident_bot.demo.slack_standin_api import SlackWebApi
from incident_bot.demo.slack_standin_oidc import OidcProvider
from incident_bot.demo.slack_standin_render import render_channel, render_transcript
from incident_bot.demo.slack_standin_state import (
    BOT_USER_ID,
    Channel,
    SlackError,
    UploadedFile,
    User,
    Workspace,
)

_JSON_FIELDS = ("blocks", "attachments", "metadata", "view", "files", "users")
_BAD_BODY = "__unparseable_body__"


class SlackStandIn(StandInServer):
    """Fake Slack workspace on ``http://127.0.0.1:PORT/api/``. The bot user ``UBOT`` exists from the start.

    Accepts any ``xoxb-``/``xoxp-`` token, or only ``tokens`` when given.
    """

    def __init__(self, tokens: list[str] | None = None) -> None:
        super().__init__()
        self.ws = Workspace()
        self.api = SlackWebApi(self.ws, lambda file_id: f"http://127.0.0.1:{self.port}/upload/{file_id}")
        self._tokens = set(tokens) if tokens is not None else None
        self.oidc = OidcProvider()  # Sign in with Slack (slack_standin_oidc.py)

    @property
    def url(self) -> str:
        """The ``base_url`` for ``WebClient``/``AsyncWebClient`` (with the trailing slash they need)."""
        return f"http://127.0.0.1:{self.port}/api/"

    @property
    def authorize_url(self) -> str:
        """Where Sign in with Slack starts (SLACK_OIDC_AUTHORIZE_URL)."""
        return f"http://127.0.0.1:{self.port}/openid/connect/authorize"

    # -- seed data -------------------------------------------------------------------------------------------

    def add_user(self, user_id: str, name: str, email: str | None, tz: str = "UTC") -> str:
        with self.ws.lock:
            self.ws.users[user_id] = User(user_id, name, email, tz)
        return user_id

    def add_channel(
        self, name: str, members: list[str] | None = None, *, is_private: bool = False, topic: str = "",
        purpose: str = "",
    ) -> str:
        """Create a channel as if people had made it; the bot is a member only if listed in ``members``."""
        with self.ws.lock:
            for user_id in members or []:
                if user_id not in self.ws.users:
                    raise ValueError(f"unknown user {user_id!r}: add_user() first")
            if self.ws.channel_by_name(name):
                raise ValueError(f"channel name {name!r} is taken")
            creator = (members or [BOT_USER_ID])[0]
            channel = Channel(self.ws.new_id("C"), name, is_private, creator, int(time.time()),
                              list(members or []), topic=topic, purpose=purpose)
            self.ws.channels[channel.id] = channel
            return channel.id

    # -- reading state back ----------------------------------------------------------------------------------

    def messages(self, channel_id: str, include_system: bool = False) -> list[dict[str, Any]]:
        """Messages posted in a channel (thread replies included), oldest first; join/topic notices only with
        ``include_system``."""
        return self.ws.snapshot_messages(channel_id, include_system=include_system)

    def ephemerals(self, channel_id: str | None = None) -> list[dict[str, Any]]:
        with self.ws.lock:
            return [copy.deepcopy(e) for e in self.ws.ephemeral if channel_id in (None, e["channel"])]

    def channel_by_name(self, name: str) -> dict[str, Any] | None:
        """The channel as ``conversations.info`` shows it, plus its ``members``; None if there is none."""
        with self.ws.lock:
            channel = self.ws.channel_by_name(name)
            return {**channel.to_api(), "members": list(channel.members)} if channel else None

    def files(self) -> list[UploadedFile]:
        with self.ws.lock:
            return [copy.deepcopy(f) for f in self.ws.files.values()]

    def views(self) -> list[dict[str, Any]]:
        """Every modal and App Home view, in the order they were first opened or published."""
        with self.ws.lock:
            return copy.deepcopy(list(self.ws.views.values()))

    def home_view(self, user_id: str) -> dict[str, Any] | None:
        with self.ws.lock:
            view_id = self.ws.home_views.get(user_id)
            return copy.deepcopy(self.ws.views[view_id]) if view_id else None

    def duplicate_messages(self) -> list[dict[str, Any]]:
        """Messages (with their ``channel``) whose ``metadata.event_payload.outbox_id`` repeats in a channel:
        empty when every outbox entry was delivered exactly once."""
        return self.ws.duplicate_messages()

    def transcript(self, channel_id: str) -> str:
        return render_transcript(self.ws, channel_id)

    def describe_channel(self, channel_id: str) -> str:
        return render_channel(self.ws, channel_id)

    # -- HTTP plumbing ---------------------------------------------------------------------------------------

    def response_url(self, token: str) -> str:
        """A ``response_url`` for a signed request: posts to it are recorded (see :meth:`responses`)."""
        return f"http://127.0.0.1:{self.port}/response/{token}"

    def responses(self, token: str | None = None) -> list[dict[str, Any]]:
        """Bodies posted to response URLs (the outcome of a command or a click), oldest first."""
        with self.ws.lock:
            return [copy.deepcopy(r["body"]) for r in self.ws.responses if token in (None, r["token"])]

    def _describe(self, request: Request) -> tuple[str, dict[str, Any]]:
        if request.path.startswith("/response/"):
            return "response_url", {"token": request.path.removeprefix("/response/")}
        if request.path.startswith("/upload/"):
            return "upload", {"file_id": request.path.removeprefix("/upload/"), "length": len(request.body)}
        return request.path.removeprefix("/api/").strip("/"), _parse_params(request)

    def _answer(self, request: Request, key: str, params: dict[str, Any]) -> Reply:
        if key == "response_url":
            try:
                body = json.loads(request.body or b"{}")
            except ValueError:
                return Reply(400, b"invalid_payload", content_type="text/plain")
            with self.ws.lock:
                self.ws.responses.append({"token": params["token"], "body": body})
            return Reply(200, b"ok", content_type="text/plain")
        if key == "upload":
            return self._receive_upload(params["file_id"], request.body)
        if self.oidc.handles(request, key):
            return self.oidc.answer(request, key, params)
        if not request.path.startswith("/api/"):
            return Reply(404, b"Not Found", content_type="text/plain")
        try:
            if _BAD_BODY in params:
                raise SlackError("invalid_json")
            self._authenticate(request, params, app_level=key == "apps.connections.open")
            if (wait := self._over_limit(key)) is not None:
                return _json(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(wait)})
            return _json(200, {"ok": True, **self.api.call(key, params)})
        except SlackError as exc:
            return _json(200, {"ok": False, "error": exc.error})

    def _fault_reply(self, fault: Fault) -> Reply:
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
        defaults = {429: "ratelimited", 503: "service_unavailable"}
        error = fault.error or defaults.get(fault.status, "internal_error")
        return _json(fault.status, {"ok": False, "error": error}, headers)

    def _authenticate(self, request: Request, params: dict[str, Any], app_level: bool = False) -> None:
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else str(params.get("token") or "")
        if not token:
            raise SlackError("not_authed")
        if app_level:  # Socket Mode's apps.connections.open takes the app-level token, and only that
            if not token.startswith("xapp-"):
                raise SlackError("not_allowed_token_type")
            return
        allowed = token in self._tokens if self._tokens is not None else token.startswith(("xoxb-", "xoxp-"))
        if not allowed:
            raise SlackError("invalid_auth")

    def _receive_upload(self, file_id: str, body: bytes) -> Reply:
        with self.ws.lock:
            uploaded = self.ws.files.get(file_id)
            if uploaded is None or uploaded.completed:
                return Reply(404, b"Not Found", content_type="text/plain")
            uploaded.content = body
        return Reply(200, f"OK - {len(body)}".encode(), content_type="text/plain")


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, json.dumps(body).encode(), headers or {})


def _parse_params(request: Request) -> dict[str, Any]:
    """Query string plus a JSON, form or multipart body, with JSON-string fields (``blocks``...) decoded."""
    params: dict[str, Any] = dict(parse_qsl(request.query, keep_blank_values=True))
    content_type = request.headers.get("content-type", "")
    try:
        if "json" in content_type and request.body:
            body = json.loads(request.body)
            params.update(body if isinstance(body, dict) else {_BAD_BODY: True})
        elif "multipart/form-data" in content_type:
            head = f"Content-Type: {content_type}\r\n\r\n".encode()
            for part in BytesParser(policy=HTTP).parsebytes(head + request.body).iter_parts():
                data = part.get_payload(decode=True) or b""
                params[str(part.get_param("name", header="content-disposition"))] = (
                    data if part.get_filename() else data.decode())
        elif request.body:
            params.update(parse_qsl(request.body.decode(), keep_blank_values=True))
    except (ValueError, UnicodeDecodeError):
        return {_BAD_BODY: True}
    for name in _JSON_FIELDS:
        value = params.get(name)
        if isinstance(value, str) and value.lstrip().startswith(("[", "{")):
            # Left as a string when it is not JSON: the method then answers its own error (invalid_blocks...).
            with contextlib.suppress(ValueError):
                params[name] = json.loads(value)
    return params
