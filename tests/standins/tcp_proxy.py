"""A small threaded TCP proxy on 127.0.0.1, to take a dependency (PostgreSQL) away from the app in tests.

The real PostgreSQL is shared with other engineers and other test runs, so an outage is never made by
stopping it: the app's ``DATABASE_URL`` points at this proxy instead, and :meth:`TcpProxy.down` does to the
app what a database restart does (every live connection is cut, new connections are refused) without the
real server noticing anything but a few closed sessions. :meth:`TcpProxy.up` serves again on the same
port, so the app's URL stays valid, as it does when the real server comes back on its address.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Self

_CHUNK = 65536


class TcpProxy:
    """Forward ``127.0.0.1:<port>`` to ``target_host:target_port``, one pair of pump threads a connection.

    ``down()`` closes the listener (connections are refused, as by a server that is not running) and cuts
    every live connection; ``stall()`` is a network partition instead: connections stay open and bytes
    vanish, new connections are accepted and never answered; ``deafen()`` loses only the answers;
    ``up()`` heals any of these (stalled connections are cut, as TCP would eventually do) and serves on
    the same port; ``stop()`` is ``down()`` for good.
    """

    def __init__(self, target_host: str, target_port: int, *, connect_timeout: float = 5.0) -> None:
        self.target = (target_host, target_port)
        self.connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._listener: socket.socket | None = None
        self._accepting = threading.Event()
        self._stalled = threading.Event()
        self._deaf = threading.Event()
        self._thread: threading.Thread | None = None
        self._port = 0
        self.accepted = 0  # connections accepted over the proxy's life (tests check the app used it)

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind an ephemeral port and start accepting."""
        self._listen(0)
        return self

    def down(self) -> None:
        """Refuse new connections and cut the live ones (the app sees its connections die mid-use)."""
        self._close_listener()
        with self._lock:
            pairs, self._pairs = list(self._pairs), set()
        for pair in pairs:
            for sock in pair:
                _shutdown(sock)  # wakes both pumps; the last one to finish closes the sockets

    def deafen(self) -> None:
        """Forward requests but swallow every answer: the server acts (a COMMIT commits), the client never
        hears it. ``down()`` then gives the client its error, with the outcome on the server unknown to it."""
        self._deaf.set()

    def stall(self) -> None:
        """Blackhole: nothing is forwarded or answered any more, and nothing is closed either."""
        self._stalled.set()

    def up(self) -> None:
        """Accept again on the same port (after a stall: cut the stalled connections first)."""
        if self._stalled.is_set() or self._deaf.is_set():
            self.down()
            self._stalled.clear()
            self._deaf.clear()
        if self._listener is None:
            self._listen(self._port)

    def stop(self) -> None:
        self.down()

    @property
    def is_down(self) -> bool:
        return self._listener is None

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("the proxy is not started")
        return self._port

    @property
    def live_connections(self) -> int:
        with self._lock:
            return len(self._pairs)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- plumbing --------------------------------------------------------------------------------------------

    def _listen(self, port: int) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            sock.close()
            raise
        sock.listen(128)
        # A short timeout lets the accept loop notice down() without relying on close() waking accept().
        sock.settimeout(0.05)
        self._port = sock.getsockname()[1]
        self._listener = sock
        self._accepting.set()
        self._thread = threading.Thread(target=self._accept_loop, args=(sock,), daemon=True,
                                        name=f"tcp-proxy:{self._port}")
        self._thread.start()

    def _close_listener(self) -> None:
        listener, thread, self._listener, self._thread = self._listener, self._thread, None, None
        self._accepting.clear()
        if thread is not None:
            thread.join(timeout=5)
        if listener is not None:
            listener.close()

    def _accept_loop(self, listener: socket.socket) -> None:
        while self._accepting.is_set() and self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            threading.Thread(target=self._open, args=(client,), daemon=True).start()

    def _open(self, client: socket.socket) -> None:
        if self._stalled.is_set():  # accepted, then never answered: what it sends is swallowed
            pair = (client, client)
            with self._lock:
                self._pairs.add(pair)
            threading.Thread(target=self._pump, args=(client, client, pair, [1], False), daemon=True).start()
            return
        try:
            upstream = socket.create_connection(self.target, timeout=self.connect_timeout)
        except OSError:
            _kill(client)
            return
        upstream.settimeout(None)
        pair = (client, upstream)
        with self._lock:
            if not self._accepting.is_set():  # went down while we were connecting
                _kill(client)
                _kill(upstream)
                return
            self._pairs.add(pair)
            self.accepted += 1
        pumps = [2]
        for src, dst, answers in ((client, upstream, False), (upstream, client, True)):
            threading.Thread(target=self._pump, args=(src, dst, pair, pumps, answers), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, pair: tuple[socket.socket, socket.socket],
              pumps: list[int], answers: bool) -> None:
        try:
            while data := src.recv(_CHUNK):
                if not self._stalled.is_set() and not (answers and self._deaf.is_set()):
                    dst.sendall(data)
        except OSError:
            pass
        # One side ended: end both, as a TCP connection through a real network path would. Sockets are
        # closed only by the last pump, so no thread is ever blocked on a closed (and reusable) descriptor.
        _shutdown(src)
        _shutdown(dst)
        with self._lock:
            self._pairs.discard(pair)
            pumps[0] -= 1
            last = pumps[0] == 0
        if last:
            src.close()
            dst.close()


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _kill(sock: socket.socket) -> None:
    _shutdown(sock)
    with contextlib.suppress(OSError):
        sock.close()
