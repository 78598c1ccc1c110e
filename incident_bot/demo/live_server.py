"""Run an ASGI app under uvicorn on 127.0.0.1 in a background thread (the demo and the tests)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import uvicorn

TICK = 0.01  # seconds between checks for a stop request (uvicorn's own: 0.1)


class _Server(uvicorn.Server):
    """uvicorn's server, stopping in ~10 ms instead of ~150: its loop looks for a stop request every 0.1 s
    and its shutdown pauses 0.1 s before waiting for connections. The tests start and stop a server for
    each of some 300 tests, and those pauses were idle time for every one of them."""

    async def main_loop(self) -> None:
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 1) % 8_640_000
            await asyncio.sleep(TICK)
            should_exit = await self.on_tick(counter)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # uvicorn's shutdown with a short pause: stop accepting, ask each connection to close, wait for
        # them and for running tasks (up to the graceful timeout), then the lifespan's shutdown.
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        await asyncio.sleep(TICK)
        try:
            await asyncio.wait_for(self._wait_tasks_to_complete(), timeout=self.config.timeout_graceful_shutdown)
        except TimeoutError:
            for task in self.server_state.tasks:
                task.cancel(msg="Task cancelled, timeout graceful shutdown exceeded")
        if not self.force_exit:
            await self.lifespan.shutdown()


class LiveServer:
    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.host, self.port = self.sock.getsockname()[:2]
        rt = getattr(getattr(app, "state", None), "runtime", None)
        if rt is not None:  # the bot's app: the same connection limits and deadlines as `serve`
            from incident_bot.http_server import config as server_config

            config = server_config(app, rt.settings, lifespan="on", timeout_graceful_shutdown=5)
        else:
            config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on",
                                    timeout_graceful_shutdown=5)
        self.server = _Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        self.sock.close()

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
