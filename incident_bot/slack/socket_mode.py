"""Socket Mode for installs without a public URL: started and stopped with the ASGI lifespan."""

from __future__ import annotations

from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp


class SocketModeHook:
    def __init__(self, app: AsyncApp, app_token: str) -> None:
        self.handler = AsyncSocketModeHandler(app, app_token)

    async def start(self) -> None:
        await self.handler.connect_async()

    async def stop(self) -> None:
        await self.handler.close_async()
