"""Running the app on a port: its connections under their limits, signals, and a drain before shutdown.

SIGTERM (a rolling restart) first drains: /readyz answers 503 so load balancers stop sending
here, and for `drain_seconds` every request is still answered, with `Connection: close`, so
clients that had a connection open move elsewhere instead of losing a request sent on it.
Then the listener closes and requests under way get `shutdown_timeout` seconds to finish.
SIGINT (Ctrl-C) skips the drain.
"""

import asyncio
import contextlib
import errno
import logging
import os
import resource
import signal
from collections.abc import Callable
from typing import Any

from aiohttp import web

from thumbproxy.ops.throttledlog import ThrottledWarning
from thumbproxy.web.connections import Connections, GuardedRequestHandler
from thumbproxy.web.operations import READINESS

log = logging.getLogger(__name__)

# File descriptors kept for what is not a client connection: cache files, downloads, archive and S3 sockets.
RESERVED_DESCRIPTORS = 256
# After the listener closes: requests on connections it had just accepted are still on their way.
LAST_ARRIVALS_SECONDS = 0.5
# asyncio logs each failed accept() (out of descriptors, say): once a minute per kind of message is enough.
LOOP_ERROR_INTERVAL = 60.0


class CannotListen(Exception):
    """The listener could not be opened on host:port (taken, refused, or no such address)."""

    def __init__(self, host: str, port: int, error: OSError) -> None:
        # asyncio's bind errors repeat the address in their text: the reason alone is the system's.
        code = error.errno or 0
        reason = os.strerror(code) if code > 0 else error.strerror or str(error)
        super().__init__(f"cannot listen on {host}:{port}: {reason}")
        self.in_use = code == errno.EADDRINUSE


class GuardedSite(web.BaseSite):
    """A TCP listener whose connections are GuardedRequestHandlers under `connections`."""

    def __init__(self, runner: web.AppRunner, connections: Connections, host: str, port: int) -> None:
        super().__init__(runner)
        self._connections = connections
        self._host = host
        self._port = port

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None, "the runner is set up before its sites start"
        connections = self._connections

        def connection() -> GuardedRequestHandler:
            return GuardedRequestHandler(server, connections, loop=loop, access_log=None)

        self._server = await loop.create_server(
            connection, self._host, self._port, backlog=self._backlog, reuse_address=True
        )


def _make_room_for(connections: int) -> None:
    """Raise the open-file limit to what `connections` need, as far as the hard limit allows."""
    needed = connections + RESERVED_DESCRIPTORS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        raised = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
        if raised < needed:
            log.warning(
                "THUMBPROXY_MAX_CONNECTIONS (%d) needs %d open files; the limit is %d: clients may be "
                "refused before it is reached",
                connections,
                needed,
                raised,
            )


def _throttled_loop_errors(loop: asyncio.AbstractEventLoop) -> None:
    """Log the loop's own errors (a failed accept(), say) once a minute per message, not once per attempt."""
    by_message: dict[str, ThrottledWarning] = {}
    loop_log = logging.getLogger("asyncio")

    def report(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message", "error in the event loop"))
        throttled = by_message.setdefault(message, ThrottledWarning(loop_log, LOOP_ERROR_INTERVAL, level=logging.ERROR))
        error = context.get("exception")
        throttled.warn("%s", message, exc_info=error if isinstance(error, BaseException) else None)

    loop.set_exception_handler(report)


async def serve(
    app: web.Application,
    connections: Connections,
    host: str,
    port: int,
    drain_seconds: float,
    shutdown_timeout: float,
    announce: Callable[[str], None],
) -> None:
    """Serve `app` on host:port until SIGINT, or SIGTERM and its drain; then shut it down.

    Raises CannotListen when host:port cannot be listened on.
    """
    loop = asyncio.get_running_loop()
    _throttled_loop_errors(loop)
    _make_room_for(connections.max_connections)
    stop = asyncio.Event()
    terminated = asyncio.Event()

    def terminate() -> None:
        terminated.set()
        stop.set()

    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGTERM, terminate)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout)
    try:
        await runner.setup()
        site = GuardedSite(runner, connections, host, port)
        try:
            await site.start()
        except OSError as error:
            raise CannotListen(host, port, error) from error
        announce(f"======== Running on {site.name} ========\n(Press CTRL+C to quit)")
        await stop.wait()
        if terminated.is_set() and drain_seconds > 0:
            stop.clear()
            await _drain(app, connections, drain_seconds, stop)
            for listener in list(runner.sites):
                await listener.stop()
            await asyncio.sleep(LAST_ARRIVALS_SECONDS)
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        loop.remove_signal_handler(signal.SIGTERM)
        await runner.cleanup()


async def _drain(app: web.Application, connections: Connections, seconds: float, cut_short: asyncio.Event) -> None:
    """Answer requests for `seconds`, each closing its connection, while readiness says not to send any."""
    log.info("draining for %g s: answers close their connections, /readyz answers 503", seconds)
    connections.draining = True
    if READINESS in app:
        app[READINESS].shutting_down = True
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(cut_short.wait(), seconds)
