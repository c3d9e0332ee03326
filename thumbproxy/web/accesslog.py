"""The access log: one line per request, written in batches by a thread so hits stay cheap.

Going through `logging` costs a cache hit more than the rest of its handling; here the event
loop only queues a line's fields, and a writer thread formats and writes what queued up a few
times a second. Lines carry no headers and no query string, so no token or signature is ever logged.
"""

import json
import threading
import time
from collections import deque
from collections.abc import Iterable
from functools import lru_cache
from typing import TextIO

from aiohttp import web

WRITE_INTERVAL_SECONDS = 0.2
# Lines formatted while holding the GIL at a stretch (well under a millisecond of work): the event
# loop waits meanwhile, and one whole batch at a time made every request's 99th percentile 5 ms.
CHUNK_LINES = 512
# How long the writer leaves the GIL to the event loop between chunks.
YIELD_SECONDS = 0.0005


# What the access log says of one request, as a plain tuple (cheapest to make on every hit):
# (time, method, target, status, seconds, source, coalesced, request id). `target` is the request
# target as sent, whose query the writer cuts off; `source` is where the answer came from: memory,
# disk, s3, render, or "-" for answers without a thumbnail.
AccessEntry = tuple[float, str, str, int, float, str, bool, str]
FIELDS = 8


class AccessLogWriter:
    """Formats queued entries as text or JSON lines and writes them to a stream from a thread of its own."""

    def __init__(self, stream: TextIO, log_format: str, interval: float = WRITE_INTERVAL_SECONDS) -> None:
        self._stream = stream
        self._format = _json_lines if log_format == "json" else _text_lines
        self._interval = interval
        # The fields of queued entries, one after another: numbers and strings are not tracked by the
        # garbage collector, where a queued tuple each would set off a collection every few hundred hits.
        self._fields: deque[float | str | int | bool] = deque()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="access-log", daemon=True)

    def start(self) -> None:
        """Start writing."""
        self._thread.start()

    def add(self, entry: AccessEntry) -> None:
        """Queue one request's line; called on the event loop, so it only queues."""
        # One extend, so the writer never sees part of an entry.
        self._fields.extend(entry)

    def close(self) -> None:
        """Write what is queued and stop (blocking: call from a thread)."""
        self._stopping.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stopping.wait(self._interval):
            self._write_queued()
        self._write_queued()

    def _write_queued(self) -> None:
        fields = self._fields
        while True:
            lines = min(len(fields) // FIELDS, CHUNK_LINES)
            if lines:
                taken = [fields.popleft() for _ in range(lines * FIELDS)]
                self._stream.write(self._format(zip(*[iter(taken)] * FIELDS)))
                self._stream.flush()
            if lines < CHUNK_LINES:
                return
            time.sleep(YIELD_SECONDS)


@lru_cache(maxsize=4)
def _second(whole_seconds: int) -> str:
    # Lines of one second share their date and time: formatted once, not per request.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole_seconds))


def _timestamp(at: float) -> str:
    whole = int(at)
    return f"{_second(whole)}.{int((at - whole) * 1000):03d}Z"


def _text_lines(entries: Iterable[AccessEntry]) -> str:
    # One format operation per line, in one loop: this runs for every request the service answers.
    lines: list[str] = []
    line = lines.append
    for at, method, target, status, seconds, source, coalesced, request_id in entries:
        whole = int(at)
        line(
            f"{_second(whole)}.{int((at - whole) * 1000):03d}Z {method} {target.partition('?')[0]} {status} "
            f"{seconds * 1000:.1f}ms {source}{' coalesced' if coalesced else ''} id={request_id}\n"
        )
    return "".join(lines)


def _json_lines(entries: Iterable[AccessEntry]) -> str:
    return "".join(
        [
            json.dumps(
                {
                    "time": _timestamp(at),
                    "method": method,
                    "path": target.partition("?")[0],
                    "status": status,
                    "duration_ms": round(seconds * 1000, 1),
                    "source": source,
                    "coalesced": coalesced,
                    "request_id": request_id,
                }
            )
            + "\n"
            for at, method, target, status, seconds, source, coalesced, request_id in entries
        ]
    )


ACCESS_LOG = web.AppKey("access_log", AccessLogWriter)
