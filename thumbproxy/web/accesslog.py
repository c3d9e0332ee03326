"""The access log: one line per request, written in batches by a thread so hits stay cheap.

Going through `logging` costs a cache hit more than the rest of its handling; here the event
loop only queues a tuple, and a writer thread formats and writes what queued up a few times
a second.
"""

import logging
import queue
import threading
import time
from functools import lru_cache
from typing import TextIO

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

WRITE_INTERVAL_SECONDS = 0.2

Entry = tuple[float, str, str, int, float]


class AccessLogWriter:
    """Formats queued entries and writes them to a stream from a thread of its own."""

    def __init__(self, stream: TextIO, interval: float = WRITE_INTERVAL_SECONDS) -> None:
        self._stream = stream
        self._interval = interval
        self._entries: queue.SimpleQueue[Entry] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="access-log", daemon=True)

    def start(self) -> None:
        """Start writing."""
        self._thread.start()

    def add(self, method: str, path: str, status: int, seconds: float) -> None:
        """Queue one request's line; called on the event loop, so it only queues."""
        self._entries.put((time.time(), method, path, status, seconds))

    def close(self) -> None:
        """Write what is queued and stop (blocking: call from a thread)."""
        self._stopping.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stopping.wait(self._interval):
            self._write_queued()
        self._write_queued()

    def _write_queued(self) -> None:
        lines = []
        while True:
            try:
                lines.append(_line(*self._entries.get_nowait()))
            except queue.Empty:
                break
        if lines:
            self._stream.write("".join(lines))
            self._stream.flush()


@lru_cache(maxsize=4)
def _second(whole_seconds: int) -> str:
    # Lines of one second share their date and time: formatted once, not per request.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole_seconds))


def _line(at: float, method: str, path: str, status: int, seconds: float) -> str:
    whole = int(at)
    return f"{_second(whole)}.{int((at - whole) * 1000):03d}Z {method} {path} {status} {seconds * 1000:.1f}ms\n"


ACCESS_LOG = web.AppKey("access_log", AccessLogWriter)


class AccessLogger(AbstractAccessLogger):
    """Method, path, status and duration; never headers, so Authorization stays out of the log."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        writer = request.app.get(ACCESS_LOG) if isinstance(request, web.Request) else None
        if writer is not None:
            writer.add(request.method, request.path, response.status, time)

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)
