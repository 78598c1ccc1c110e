"""The HTTP machinery shared by the stand-ins (Slack, PagerDuty, GitHub, Jira, Linear).

A stand-in is a real server on 127.0.0.1 (stdlib ``ThreadingHTTPServer`` in a daemon thread) so that the
real clients (slack_sdk, Bolt, pagerduty, httpx) run their real HTTP code, retries and timeouts. This module
owns what the stand-ins share: the server lifecycle (start/stop, down/up on the same port; HTTPS when
``tls`` is set, see :mod:`tls`), the call log, and fault injection (failures, delays, a sliding-window rate
limit). Subclasses turn a request into a reply.
"""

from __future__ import annotations

import contextlib
import math
import socket
import socketserver
import ssl
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import urlsplit

from incident_bot.demo.tls import ThrowawayTLS


def matches_rest_route(pattern: str, key: str) -> bool:
    """For REST stand-ins whose keys are ``"VERB /path"``: ``"*"``, or ``"[VERB ]/prefix"`` matching that path
    and every path under it (``"POST /issues"`` matches ``POST /issues/7/comments``)."""
    if pattern == "*":
        return True
    verb, _, path = key.partition(" ")
    want_verb, _, prefix = pattern.rpartition(" ")
    if want_verb and want_verb.upper() != verb:
        return False
    prefix = prefix.rstrip("/")
    return path == prefix or path.startswith(prefix + "/")


@dataclass(frozen=True)
class Call:
    """A request as the stand-in saw it: ``at`` is ``time.monotonic()`` on arrival; lower-case header keys."""

    method: str
    params: dict[str, Any]
    headers: dict[str, str]
    at: float
    status: int


@dataclass(frozen=True)
class Request:
    verb: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json; charset=utf-8"


@dataclass
class Fault:
    """A canned failure, consumed once per matching call."""

    status: int
    remaining: int
    retry_after: int | None = None
    error: str | None = None


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keep-alive as the real APIs do; every reply sets Content-Length.
    protocol_version = "HTTP/1.1"
    timeout = 60  # an idle keep-alive connection does not hold a thread forever
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without NODELAY, Nagle plus delayed ACK adds ~40 ms a call.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.owner._track(self.connection, add=True)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.owner._track(self.connection, add=False)

    def _serve(self) -> None:
        split = urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        request = Request(self.command, split.path, split.query, headers, self._read_body(headers))
        reply = self.server.owner._dispatch(request)
        if reply is None:  # the stand-in went down while answering: drop the connection like a crash would
            self.close_connection = True
            return
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(reply.body)

    def _read_body(self, headers: dict[str, str]) -> bytes:
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while (size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)) > 0:
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(headers.get("content-length") or 0))

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the call log is the record, stderr noise hides test output."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True  # up() re-binds the same port right after down()
    request_queue_size = 128  # the default backlog of 5 drops bursts of connections (1 s SYN retry each)

    def __init__(self, address: tuple[str, int], owner: StandInServer) -> None:
        self.owner = owner
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls getfqdn(), a reverse DNS lookup that can take seconds on some hosts.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def finish_request(self, request: Any, client_address: Any) -> None:
        context = self.owner._tls_context()
        if context is not None:  # TLS handshake here, in the connection's thread, not in the accept loop
            request.settimeout(10)
            try:
                request = context.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError):
                return
            request.settimeout(None)
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that time out or a down() that cuts connections are expected here; stay quiet."""


class StandInServer:
    """Base class: lifecycle, call log and fault injection. Subclasses implement :meth:`_answer`."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._calls: list[Call] = []
        self._faults: list[tuple[str, Fault]] = []
        self._delays_after: dict[str, float] = {}
        self._delays_before: dict[str, float] = {}
        self._limits: dict[str, tuple[int, float, deque[float]]] = {}
        self._connections: set[socket.socket] = set()
        self._crashes: list[str] = []
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port = 0
        self._is_down = False
        self.tls: ThrowawayTLS | None = None  # set by an HTTPS stand-in: serve TLS with its certificate

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind an ephemeral port on 127.0.0.1 and serve in a daemon thread."""
        if self._httpd is None:
            self._serve_on(self._port)
        return self

    def stop(self) -> None:
        """Close the listener and every open connection; the stand-in can be started again on a new port."""
        self._halt()
        self._port = 0
        self._is_down = False

    def down(self) -> None:
        """Refuse connections (listener closed, open connections cut) until :meth:`up`, as an outage would."""
        self._halt()
        self._is_down = True

    def up(self) -> None:
        """Serve again on the same port, so clients configured with :attr:`url` reconnect unchanged."""
        if self._httpd is not None:
            return
        try:
            self._serve_on(self._port)
        except OSError as exc:
            raise RuntimeError(f"cannot re-bind 127.0.0.1:{self._port} after down(): {exc}") from exc
        self._is_down = False

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("the stand-in is not started")
        return self._port

    @property
    def is_down(self) -> bool:
        return self._is_down

    def _serve_on(self, port: int) -> None:
        httpd = _Server(("127.0.0.1", port), self)
        self._port = httpd.server_address[1]
        self._httpd = httpd
        # stop() waits for serve_forever to look at its flag: every 10 ms, since the tests stop a stand-in
        # or more in most of their ~900 tests.
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True,
            name=f"{type(self).__name__}:{self._port}",
        )
        self._thread.start()

    def _halt(self) -> None:
        httpd, thread, self._httpd, self._thread = self._httpd, self._thread, None, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)
        with self._lock:
            connections, self._connections = list(self._connections), set()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def _tls_context(self) -> ssl.SSLContext | None:
        return self.tls.server_context if self.tls is not None else None

    # -- call log --------------------------------------------------------------------------------------------

    def calls(self, method: str | None = None) -> list[Call]:
        """Calls so far, oldest first; ``method`` filters with the same matching rule as :meth:`fail_next`."""
        with self._lock:
            return [c for c in self._calls if method is None or self._matches(method, c.method)]

    def crashes(self) -> list[str]:
        """Tracebacks of requests the stand-in itself failed on (answered 500): a fixture can assert none."""
        with self._lock:
            return list(self._crashes)

    def reset_calls(self) -> None:
        with self._lock:
            self._calls.clear()

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01) -> Any:
        """Poll ``predicate`` until it returns something truthy (returned), else raise ``TimeoutError``.

        For effects of background work (an outbox worker, a lazy listener) that a test cannot join directly.
        """
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() >= deadline:
                raise TimeoutError(f"condition not met within {timeout} s")
            time.sleep(interval)

    # -- fault injection -------------------------------------------------------------------------------------

    def fail_next(
        self, method: str, times: int = 1, status: int = 500, retry_after: int | None = None,
        error: str | None = None,
    ) -> None:
        """Answer the next ``times`` matching calls with a failure instead of applying them.

        ``status=429`` adds a ``Retry-After`` header (``retry_after`` seconds, default 1); ``status=200``
        needs ``error`` and answers the API's own error shape. A failed call never changes the state.
        """
        if status == 200 and not error:
            raise ValueError("status=200 needs an error code to answer")
        if status == 429 and retry_after is None:
            retry_after = 1
        with self._lock:
            self._faults.append((method, Fault(status, times, retry_after, error)))

    def delay(self, method: str, seconds: float) -> None:
        """Apply matching calls, then wait ``seconds`` before answering (0 clears).

        Models a reply lost or late after the work was done: a client that times out and retries creates a
        duplicate unless it is idempotent, which is what exactly-once tests need to provoke.
        """
        self._set_delay(self._delays_after, method, seconds)

    def delay_before(self, method: str, seconds: float) -> None:
        """Wait ``seconds`` before applying matching calls (0 clears).

        Models a slow server: the effect lands late, and still lands even if the client gave up meanwhile
        (the server cannot know), as with the real APIs.
        """
        self._set_delay(self._delays_before, method, seconds)

    def rate_limit(self, method: str, per_minute: int, window: float = 60.0) -> None:
        """Sliding-window limit: beyond ``per_minute`` accepted calls within ``window`` seconds, answer 429
        with ``Retry-After`` (seconds until the oldest call leaves the window). ``per_minute=0`` clears."""
        with self._lock:
            if per_minute <= 0:
                self._limits.pop(method, None)
            else:
                self._limits[method] = (per_minute, window, deque())

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._delays_after.clear()
            self._delays_before.clear()
            self._limits.clear()

    def _set_delay(self, table: dict[str, float], method: str, seconds: float) -> None:
        with self._lock:
            if seconds > 0:
                table[method] = seconds
            else:
                table.pop(method, None)

    def _take_fault(self, key: str) -> Fault | None:
        with self._lock:
            for index, (pattern, fault) in enumerate(self._faults):
                if self._matches(pattern, key):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        del self._faults[index]
                    return fault
        return None

    def _delay_for(self, table: dict[str, float], key: str) -> float:
        with self._lock:
            return max((s for pattern, s in table.items() if self._matches(pattern, key)), default=0.0)

    def _over_limit(self, key: str) -> int | None:
        """Seconds to wait if ``key`` is over its limit now; otherwise count this call and return None."""
        now = time.monotonic()
        with self._lock:
            for pattern, (limit, window, accepted) in self._limits.items():
                if not self._matches(pattern, key):
                    continue
                while accepted and accepted[0] <= now - window:
                    accepted.popleft()
                if len(accepted) >= limit:
                    return max(1, math.ceil(accepted[0] + window - now))
            for pattern, (_, _, accepted) in self._limits.items():
                if self._matches(pattern, key):
                    accepted.append(now)
        return None

    # -- request pipeline ------------------------------------------------------------------------------------

    def _dispatch(self, request: Request) -> Reply | None:
        arrived = time.monotonic()
        key, params = self._describe(request)
        if (pause := self._delay_for(self._delays_before, key)) > 0:
            time.sleep(pause)
        fault = self._take_fault(key)
        try:
            reply = self._fault_reply(fault) if fault else self._answer(request, key, params)
        except Exception:  # a bug in the stand-in: answer it visibly rather than dropping the connection
            crash = traceback.format_exc()
            with self._lock:
                self._crashes.append(crash)
            reply = Reply(500, crash.encode(), content_type="text/plain; charset=utf-8")
        with self._lock:
            self._calls.append(Call(key, params, dict(request.headers), arrived, reply.status))
        if (pause := self._delay_for(self._delays_after, key)) > 0:
            time.sleep(pause)
        return None if self._httpd is None else reply

    def _matches(self, pattern: str, key: str) -> bool:
        return pattern in ("*", key)

    def _describe(self, request: Request) -> tuple[str, dict[str, Any]]:
        """The call's name (Slack method, or ``VERB /path``) and its parsed parameters."""
        raise NotImplementedError

    def _answer(self, request: Request, key: str, params: dict[str, Any]) -> Reply:
        raise NotImplementedError

    def _fault_reply(self, fault: Fault) -> Reply:
        raise NotImplementedError
