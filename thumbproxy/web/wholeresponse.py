"""Responses written whole: status line, headers and body handed to the connection in one write.

aiohttp's Response checks, completes and serializes its headers through a chain of coroutines
on every answer: about a seventh of a cache hit's time. A WholeResponse carries the headers
every answer of its kind shares already serialized (made once, when an answer is remembered),
adds the few set per request (X-Request-ID, CORS, Date) and writes everything at once through
the request's writer, which applies the connection's flow control as for any other answer.
It sends no on_response_prepare signal and never compresses; to HEAD it answers headers only.
"""

import time
from collections.abc import Mapping
from email.utils import formatdate
from functools import lru_cache
from typing import TypeVar

from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http import SERVER_SOFTWARE, HttpVersion10, HttpVersion11

# Statuses whose answers have no body, and so no Content-Length (RFC 9110 sections 6.4.1, 8.6).
WITHOUT_BODY = frozenset({204, 304})
# A header name: str, or multidict's istr as aiohttp's hdrs spells them (a mapping's keys are invariant).
Name = TypeVar("Name", bound=str)


def serialized_headers(headers: Mapping[Name, str]) -> bytes:
    """Header lines as sent ("Name: value\\r\\n" each); refuses a value that would end its line."""
    return "".join(f"{name}: {_checked(value)}\r\n" for name, value in headers.items()).encode()


def _checked(value: str) -> str:
    # A line break in a value would let it add headers, or a body, of its own.
    if "\r" in value or "\n" in value:
        raise ValueError(f"header value with a line break: {value!r}")
    return value


@lru_cache(maxsize=2)
def _date_and_server(second: int) -> str:
    # Answers within a second share these lines: formatted once, not per answer.
    return f"{hdrs.DATE}: {formatdate(second, usegmt=True)}\r\n{hdrs.SERVER}: {SERVER_SOFTWARE}\r\n"


class WholeResponse(web.StreamResponse):
    """An answer of `status` with `fixed_headers` (from serialized_headers) and `body`, written in one piece.

    Headers set on it before it is sent (its `headers`) are sent too, after the fixed ones.
    Subclassing StreamResponse, it keeps that class's own record of what was decided and sent
    (`_keep_alive`, `_eof_sent`), so the connection treats it as any other answer.
    """

    def __init__(self, status: int, fixed_headers: bytes, body: bytes | bytearray = b"") -> None:
        super().__init__(status=status)
        self._fixed_headers = fixed_headers
        self._whole_body = body

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        """Write the whole answer; a second call does nothing."""
        if self.prepared:
            return None
        version = request.version
        # What StreamResponse decides too: the response's own choice if it made one, else the request's.
        keep_alive = request.keep_alive if self._keep_alive is None else self._keep_alive
        self._keep_alive = keep_alive
        status = self.status
        has_body = status not in WITHOUT_BODY
        lines = [f"{name}: {_checked(value)}\r\n" for name, value in self.headers.items()]
        if has_body:
            lines.append(f"{hdrs.CONTENT_LENGTH}: {len(self._whole_body)}\r\n")
        lines.append(_date_and_server(int(time.time())))
        if keep_alive and version == HttpVersion10:
            lines.append(f"{hdrs.CONNECTION}: keep-alive\r\n")
        elif not keep_alive and version == HttpVersion11:
            lines.append(f"{hdrs.CONNECTION}: close\r\n")
        status_line = f"HTTP/{version.major}.{version.minor} {status} {self.reason}\r\n"
        body = self._whole_body if has_body and request.method != hdrs.METH_HEAD else b""
        # StreamResponse's own mark: from now on nothing tries to send this answer again, even if this write fails.
        self._eof_sent = True
        writer = request.writer
        await writer.write_eof(
            b"".join((status_line.encode(), self._fixed_headers, "".join(lines).encode(), b"\r\n", body))
        )
        return writer

    async def write_eof(self, data: bytes = b"") -> None:
        """Nothing left to write: prepare wrote everything."""
        if data:
            raise RuntimeError("a WholeResponse is written whole by prepare: nothing can be added")
