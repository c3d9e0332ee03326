"""The server's connections: how many may be open, how long a request's head may take, how they end.

A client that opens connections and never finishes a request (slowloris) would otherwise hold
every file descriptor: a connection whose request line and headers are not complete within
`head_timeout` seconds is answered 408 and closed, and at `max_connections` a new connection
takes the place of the one that has waited longest for a request; only when every open
connection has a request under way is the new one refused (503) at once.
"""

import asyncio
import json
import logging
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from prometheus_client import Counter

from thumbproxy.ops.throttledlog import ThrottledWarning

log = logging.getLogger(__name__)

# One line a minute about refused or unparsable requests, however many a client sends.
LOG_INTERVAL = 60.0


def _answer(status: int, reason: str, message: str, extra_headers: str = "") -> bytes:
    """A whole HTTP/1.1 answer with a JSON body that closes its connection, made once and sent as is;
    `extra_headers` are header lines, each ending in CRLF."""
    body = json.dumps({"message": message}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\n{extra_headers}Connection: close\r\n\r\n"
    )
    return head.encode() + body


class Connections:
    """Every open connection of the server, oldest-waiting first, and the limits they live under.

    `closed` counts connections the server ended itself, by reason (slow_head, evicted, refused).
    While `draining`, every answer closes its connection (web.observe sees to it), so clients move
    to other replicas.
    """

    def __init__(self, max_connections: int, head_timeout: float, closed: Counter) -> None:
        self.max_connections = max_connections
        self.head_timeout = head_timeout
        self.draining = False
        self._closed = {reason: closed.labels(reason) for reason in ("slow_head", "evicted", "refused")}
        # Insertion-ordered: the first is the connection waiting longest for a request.
        self._waiting: dict[GuardedRequestHandler, None] = {}
        self._busy: set[GuardedRequestHandler] = set()
        self.too_slow = _answer(408, "Request Timeout", f"request head not complete within {head_timeout:g} s")
        self.too_many = _answer(503, "Service Unavailable", "too many connections", "Retry-After: 1\r\n")
        self.refusals = ThrottledWarning(log, LOG_INTERVAL)
        self.bad_requests = ThrottledWarning(log, LOG_INTERVAL)

    def count(self) -> int:
        """Open connections."""
        return len(self._waiting) + len(self._busy)

    def admit(self, connection: "GuardedRequestHandler") -> bool:
        """Take a new connection, ending the one waiting longest if full; False when every one is busy."""
        if self.count() >= self.max_connections:
            if not self._waiting:
                self._closed["refused"].inc()
                self.refusals.warn(
                    "refused a connection: %d connections open, each with a request under way "
                    "(THUMBPROXY_MAX_CONNECTIONS)",
                    self.count(),
                )
                return False
            oldest = next(iter(self._waiting))
            self.forget(oldest)
            self._closed["evicted"].inc()
            oldest.force_close()
        self._waiting[connection] = None
        return True

    def busy(self, connection: "GuardedRequestHandler") -> None:
        """This connection has a request under way: it is not ended to make room."""
        self._waiting.pop(connection, None)
        self._busy.add(connection)

    def waiting(self, connection: "GuardedRequestHandler") -> None:
        """This connection waits for its next request: the newest to wait, the last to be ended."""
        self._busy.discard(connection)
        self._waiting[connection] = None

    def forget(self, connection: "GuardedRequestHandler") -> None:
        self._busy.discard(connection)
        self._waiting.pop(connection, None)

    def head_too_slow(self) -> None:
        self._closed["slow_head"].inc()


class GuardedRequestHandler(RequestHandler):
    """aiohttp's connection handler under `Connections`' limits, answering unparsable requests in JSON.

    aiohttp's own answer to an unparsable request is text/plain and echoes what it could not
    parse (an Authorization header with a control character, say), and its log line holds it
    too; here the answer and the log line name the status only.
    """

    def __init__(self, manager: web.Server, connections: Connections, **options: Any) -> None:
        super().__init__(manager, **options)
        self._connections = connections
        self._head_deadline: asyncio.TimerHandle | None = None
        # Requests whose head has arrived and whose answer is not finished yet.
        self._requests_open = 0
        self._admitted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if not self._connections.admit(self):
            self._close_with(self._connections.too_many)
            return
        self._admitted = True
        self._start_head_deadline()

    def data_received(self, data: bytes) -> None:
        heads_before = self._request_count
        super().data_received(data)
        heads = self._request_count - heads_before
        if heads:
            self._requests_open += heads
            if self._head_deadline is not None:
                self._stop_head_deadline()
            if self._admitted:
                self._connections.busy(self)
        elif self._requests_open == 0 and self._head_deadline is None and self._admitted:
            # The first bytes of the next request on a kept-alive connection.
            self._start_head_deadline()

    def log_access(self, request: web.BaseRequest, response: web.StreamResponse, time: float | None) -> None:
        # Called once each answer is written (or its client gone): the one hook aiohttp has there.
        super().log_access(request, response, time)
        self._requests_open -= 1
        if self._requests_open == 0 and self._admitted and self.transport is not None:
            self._connections.waiting(self)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_head_deadline()
        self._connections.forget(self)
        self._admitted = False
        super().connection_lost(exc)

    def handle_error(
        self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        # The exception's text may hold the request's own bytes, credentials included: its class only.
        self._connections.bad_requests.warn(
            "answered %d to a request from %s that could not be handled (%s)",
            status,
            request.remote,
            type(exc).__name__ if exc is not None else "-",
        )
        if request.writer.output_size > 0:
            raise ConnectionError("an answer was being sent already: the connection is broken")
        text = "Bad request: it could not be parsed" if status < 500 else "Internal error"
        response = web.json_response({"message": text}, status=status, headers={"Cache-Control": "no-store"})
        response.force_close()
        return response

    def _start_head_deadline(self) -> None:
        self._head_deadline = self._loop.call_later(self._connections.head_timeout, self._head_too_slow)

    def _stop_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if self._requests_open == 0:
            self._connections.head_too_slow()
            self._close_with(self._connections.too_slow)

    def _close_with(self, answer: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(answer)
        self.force_close()


CONNECTIONS = web.AppKey("connections", Connections)
