"""uvicorn as ``serve`` runs it: connection limits and deadlines against slow or idle clients.

uvicorn bounds idle keep-alive connections (``timeout_keep_alive``), the header size
(``h11_max_incomplete_event_size``) and the number of open connections (``limit_concurrency``, then 503),
but it has no deadline for a request's headers: a client that sends one header byte every few seconds
holds a connection for ever (slowloris). :class:`HeaderDeadline` adds that deadline to uvicorn's HTTP
protocol: httptools (llhttp, C; what ``uvicorn[standard]`` installs and what the benchmarks measure: the
pure-Python h11 parser cost a third of the accept path's CPU) or h11 where httptools is missing. The
body has its own deadline in the request handler (``http_body.read_body``, 408). Behind a reverse proxy,
set the proxy's own header/body timeouts too (nginx ``client_header_timeout``, ``client_body_timeout``):
it is the better place to shed slow clients.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools is optional in uvicorn; the h11 protocol then serves
    HttpToolsProtocol = None  # type: ignore[assignment,misc]

from incident_bot.config import Settings

log = logging.getLogger(__name__)


class HeaderDeadline:
    """Mixed into a uvicorn HTTP protocol: a request's headers must arrive within ``header_timeout`` seconds
    of the connection opening (or of the client starting its next request on a kept-alive connection)."""

    header_timeout = 10.0
    cycle: Any
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[misc]
        self._header_deadline: asyncio.TimerHandle | None = None
        self._arm()

    def _waiting_for_headers(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        if self._header_deadline is None:
            self._header_deadline = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def data_received(self, data: bytes) -> None:
        if self._waiting_for_headers():
            self._arm()  # the first byte of the next request on a kept-alive connection starts its clock
        super().data_received(data)  # type: ignore[misc]
        if not self._waiting_for_headers():
            self._disarm()  # headers complete: the body has its own deadline in the handler

    def on_response_complete(self) -> None:
        self._disarm()  # idle from here: uvicorn's keep-alive timeout applies until the next byte
        super().on_response_complete()  # type: ignore[misc]

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if self._waiting_for_headers() and not self.transport.is_closing():
            log.info("closed a connection whose request headers took over %.0f s", self.header_timeout)
            self.transport.close()


class DeadlineH11Protocol(HeaderDeadline, H11Protocol):
    pass


PROTOCOL: type = (type("DeadlineHttpToolsProtocol", (HeaderDeadline, HttpToolsProtocol), {})
                  if HttpToolsProtocol is not None else DeadlineH11Protocol)


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.Config`` (shared by ``serve``, the demo and the tests). Header size:
    h11's bound is set below; llhttp's is its built-in 80 KB (Slack's and PagerDuty's are under 2 KB)."""
    protocol = type("ConfiguredProtocol", (PROTOCOL,), {"header_timeout": settings.http_header_timeout})
    return {
        "http": protocol,
        "timeout_keep_alive": settings.http_keep_alive_timeout,
        "limit_concurrency": settings.http_limit_concurrency,
        "h11_max_incomplete_event_size": 32 * 1024,  # headers: Slack's and PagerDuty's are under 2 KB
        "log_config": None,
        "access_log": False,
    }


def config(app: Any, settings: Settings, **kwargs: Any) -> uvicorn.Config:
    return uvicorn.Config(app, **{**uvicorn_options(settings), **kwargs})
