"""Socket Mode for installs without a public URL: started and stopped with the ASGI lifespan.

Three things Bolt's ``AsyncSocketModeHandler`` does not do for a server, done here:
- it builds an ``aiohttp.ClientSession`` in its constructor, which aiohttp refuses outside a running loop:
  the handler is built in :meth:`SocketModeHook.start`, inside the server's loop;
- ``connect_async`` retries an unreachable ``apps.connections.open`` for ever: it runs in a background
  task, so start-up (``/healthz``, the webhooks) never waits for Slack, and SIGTERM cancels it;
- Bolt acks an envelope only when the app answered 200: an envelope no listener handles (404) would be
  redelivered by Slack again and again. It is acked here too (and logged); a 5xx is not acked, so Slack
  redelivers it, as it retries an HTTP request answered 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.adapter.socket_mode.async_internals import run_async_bolt_app, send_async_response
from slack_bolt.async_app import AsyncApp
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

log = logging.getLogger(__name__)
MALFORMED = (KeyError, TypeError, AttributeError, IndexError, ValueError)


class _AckingHandler(AsyncSocketModeHandler):
    async def handle(self, client: Any, req: SocketModeRequest) -> None:  # type: ignore[override]
        started = time.time()
        try:
            response = await run_async_bolt_app(self.app, req)
        except MALFORMED as exc:
            # Bolt's own routing choking on a shape Slack never sends (the HTTP path answers 400):
            # redelivery cannot help, so it is acked.
            log.warning("socket mode: acked a malformed envelope (type %s): %s", str(req.type)[:64],
                        exc.__class__.__name__)
            await client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))
            return
        if response.status == 200 or response.status >= 500:
            await send_async_response(client, req, response, started)  # 5xx: not acked, Slack redelivers
            return
        log.info("socket mode: acked an envelope no listener handled (type %s, status %s)",
                 str(req.type)[:64], response.status)
        await client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))


class SocketModeHook:
    """Connects in the background; :attr:`status` is ``connecting`` until Slack's ``hello``, then
    ``connected`` (shown by ``/readyz``)."""

    def __init__(self, app: AsyncApp, app_token: str, *, ping_interval: float = 10) -> None:
        self.app, self.app_token, self.ping_interval = app, app_token, ping_interval
        self.handler: _AckingHandler | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def status(self) -> str:
        client = self.handler.client if self.handler else None
        if client is None or client.closed:
            return "stopped"
        session = client.current_session
        return "connected" if session is not None and not session.closed else "connecting"

    async def start(self) -> None:
        self.handler = _AckingHandler(self.app, self.app_token, ping_interval=self.ping_interval)
        self._task = asyncio.create_task(self._connect(), name="socket-mode-connect")

    async def _connect(self) -> None:
        assert self.handler is not None
        log.info("socket mode: connecting (apps.connections.open)")
        try:
            await self.handler.connect_async()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the client logs and retries on its own; this is a last resort
            log.error("socket mode: could not connect: %s", exc.__class__.__name__)
            return
        log.info("socket mode: connected")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self.handler is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.handler.close_async(), timeout=5)
