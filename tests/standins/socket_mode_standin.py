"""A local stand-in of Slack's Socket Mode WebSocket, beside the Web API stand-in.

The protocol, as slack_sdk's own mock server speaks it: the app calls ``apps.connections.open`` with its
``xapp-`` token (answered by :class:`~incident_bot.demo.slack_standin.SlackStandIn` with this server's
``ws://`` URL), connects, receives ``{"type": "hello"}``, then envelopes
``{"envelope_id", "type": "slash_commands" | "interactive" | "events_api", "payload",
"accepts_response_payload"}``, and answers each with ``{"envelope_id", "payload"?}`` (the ack).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from typing import Any

from aiohttp import WSMsgType, web

from incident_bot.demo.slack_standin import SlackStandIn


class SocketModeStandIn:
    def __init__(self, slack: SlackStandIn) -> None:
        self.slack = slack
        self.acks: dict[str, dict[str, Any]] = {}
        self.connections = 0
        self._cond = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._sockets: list[web.WebSocketResponse] = []
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0

    # -- lifecycle -------------------------------------------------------------------------------------------

    def __enter__(self) -> SocketModeStandIn:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        self.slack.ws.socket_mode_url = f"ws://127.0.0.1:{self.port}/link/?ticket={uuid.uuid4().hex}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.slack.ws.socket_mode_url = None
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/link/", self._link)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _link(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._sockets.append(ws)
        with self._cond:
            self.connections += 1
            self._cond.notify_all()
        await ws.send_str(json.dumps({"type": "hello", "num_connections": 1,
                                      "connection_info": {"app_id": "A0STANDIN"},
                                      "debug_info": {"host": "standin", "approximate_connection_time": 3600}}))
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                doc = json.loads(msg.data)
                if isinstance(doc, dict) and "envelope_id" in doc:
                    with self._cond:
                        self.acks[doc["envelope_id"]] = doc
                        self._cond.notify_all()
        self._sockets.remove(ws)
        return ws

    # -- what tests use ----------------------------------------------------------------------------------------

    def wait_connected(self, timeout: float = 20.0) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: self._sockets, timeout), "the app never connected"

    def send(self, kind: str, payload: dict[str, Any]) -> str:
        """Push one envelope to the connected app; returns its envelope id."""
        envelope_id = str(uuid.uuid4())
        doc = {"envelope_id": envelope_id, "type": kind, "payload": payload,
               "accepts_response_payload": kind != "events_api", "retry_attempt": 0, "retry_reason": ""}
        asyncio.run_coroutine_threadsafe(self._sockets[-1].send_str(json.dumps(doc)), self._loop).result(10)
        return envelope_id

    def wait_ack(self, envelope_id: str, timeout: float = 20.0) -> dict[str, Any]:
        with self._cond:
            assert self._cond.wait_for(lambda: envelope_id in self.acks, timeout), f"no ack for {envelope_id}"
            return self.acks[envelope_id]


def slash_payload(text: str, *, user: str, channel: str, command: str = "/incident",
                  response_url: str = "https://hooks.slack.com/commands/T0/1/x") -> dict[str, Any]:
    """A slash command as Socket Mode carries it: the form fields as a JSON object."""
    return {"token": "legacy", "team_id": "T0STANDIN", "team_domain": "acme", "channel_id": channel,
            "channel_name": "x", "user_id": user, "user_name": user.lower(), "command": command, "text": text,
            "api_app_id": "A0STANDIN", "trigger_id": f"{int(time.time())}.42.{uuid.uuid4().hex[:8]}",
            "response_url": response_url, "is_enterprise_install": "false"}
