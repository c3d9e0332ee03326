"""Repeated hits are written whole (WholeResponse): what HTTP clients see must be what every other answer gives.

These talk raw HTTP/1.x over a socket, so framing, keep-alive and pipelining are checked byte for byte.
"""

import asyncio
from dataclasses import dataclass

import pytest
from aiohttp import web

from conftest import Service
from thumbproxy.web.hotanswers import HOT_ANSWERS
from thumbproxy.web.wholeresponse import serialized_headers

# Headers that differ between any two answers.
PER_ANSWER = {"date", "x-request-id"}


@dataclass
class Answer:
    version: str
    status: int
    headers: dict[str, str]
    body: bytes


class Connection:
    """One TCP connection to the service, speaking raw HTTP/1.x."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, *requests: bytes) -> None:
        self.writer.write(b"".join(requests))
        await self.writer.drain()

    async def answer(self, has_body: bool = True) -> Answer:
        """The next answer, framed by its Content-Length (no body for HEAD or a 304)."""
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 10)
        status_line, *lines = head.decode().split("\r\n")[:-2]
        version, status, _ = status_line.split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines:
            name, value = line.split(": ", 1)
            assert name.lower() not in headers, f"{name} sent twice"
            headers[name.lower()] = value
        body = b""
        if has_body and "content-length" in headers:
            body = await asyncio.wait_for(self.reader.readexactly(int(headers["content-length"])), 10)
        return Answer(version, int(status), headers, body)

    async def closed_by_server(self) -> bool:
        return await asyncio.wait_for(self.reader.read(1), 10) == b""

    def close(self) -> None:
        self.writer.close()


async def connect(service: Service) -> Connection:
    return Connection(*await asyncio.open_connection("127.0.0.1", service.client.port))


def request(path: str, method: str = "GET", version: str = "1.1", *headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/{version}", "Host: thumbs.example.org", *headers, "", ""]
    return "\r\n".join(lines).encode()


def without_per_answer(answer: Answer) -> dict[str, str]:
    return {name: value for name, value in answer.headers.items() if name not in PER_ANSWER}


@pytest.fixture
async def hot(service: Service, frame: dict) -> tuple[Service, str, Answer]:
    """A service whose image answer for one path is remembered, the path, and that first answer."""
    path = f"/{frame['id']}/?image=true&width=120"
    connection = await connect(service)
    await connection.send(request(path))
    first = await connection.answer()
    connection.close()
    assert first.status == 200 and path in service.app[HOT_ANSWERS]._entries
    return service, path, first


async def test_a_repeated_hit_is_the_first_answer_again(hot: tuple[Service, str, Answer]) -> None:
    service, path, first = hot
    connection = await connect(service)
    await connection.send(request(path), request(path, "HEAD"))
    again, head = await connection.answer(), await connection.answer(has_body=False)
    assert (again.version, again.status, again.body) == ("HTTP/1.1", 200, first.body)
    assert without_per_answer(again) == without_per_answer(first)
    assert int(again.headers["content-length"]) == len(first.body)
    assert again.headers["date"].endswith(" GMT") and again.headers["x-request-id"] != first.headers["x-request-id"]
    # HEAD: the same headers, no body, and the connection still in step (the next answer below).
    assert without_per_answer(head) == without_per_answer(first)
    await connection.send(request(path, "GET", "1.1", f"If-None-Match: {first.headers['etag']}"))
    not_modified = await connection.answer(has_body=False)
    assert not_modified.status == 304 and "content-length" not in not_modified.headers
    assert not_modified.headers["etag"] == first.headers["etag"]
    assert not_modified.headers["cache-control"] == first.headers["cache-control"]
    await connection.send(request(path))
    assert (await connection.answer()).body == first.body
    connection.close()


async def test_pipelined_hits_are_answered_in_order_and_close_when_asked(hot: tuple[Service, str, Answer]) -> None:
    service, path, first = hot
    connection = await connect(service)
    etag = first.headers["etag"]
    await connection.send(
        request(path),
        request(path, "GET", "1.1", f"If-None-Match: {etag}"),
        request(path, "HEAD"),
        request(path, "GET", "1.1", "Connection: close"),
    )
    answers = [
        await connection.answer(),
        await connection.answer(has_body=False),
        await connection.answer(has_body=False),
        await connection.answer(),
    ]
    assert [answer.status for answer in answers] == [200, 304, 200, 200]
    assert answers[0].body == answers[3].body == first.body
    assert "connection" not in answers[0].headers and answers[3].headers["connection"] == "close"
    assert await connection.closed_by_server()


async def test_many_pipelined_hits_are_all_answered_to_a_slow_reader(hot: tuple[Service, str, Answer]) -> None:
    service, path, first = hot
    connection = await connect(service)
    # Far more than the socket and the transport buffer hold: the service has to wait for the reader.
    count = max(200, 4 * 1024 * 1024 // len(first.body))
    await connection.send(*[request(path)] * count)
    await asyncio.sleep(0.5)
    bodies = [(await connection.answer()).body for _ in range(count)]
    assert bodies == [first.body] * count
    connection.close()


async def test_http_1_0_closes_unless_kept_alive(hot: tuple[Service, str, Answer]) -> None:
    service, path, first = hot
    connection = await connect(service)
    await connection.send(request(path, "GET", "1.0"))
    answer = await connection.answer()
    assert (answer.version, answer.status, answer.body) == ("HTTP/1.0", 200, first.body)
    assert "connection" not in answer.headers and await connection.closed_by_server()
    connection = await connect(service)
    for _ in range(2):
        await connection.send(request(path, "GET", "1.0", "Connection: keep-alive"))
        answer = await connection.answer()
        assert answer.body == first.body and answer.headers["connection"] == "keep-alive"
    connection.close()


async def test_hot_answers_carry_the_headers_of_the_full_path(
    service: Service, frame: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    hot_answers = service.app[HOT_ANSWERS]
    answer_hot = hot_answers.answer
    answered_hot: list[bool] = []

    def counting(request: web.Request) -> web.StreamResponse | None:
        answer = answer_hot(request)
        answered_hot.append(answer is not None)
        return answer

    monkeypatch.setattr(hot_answers, "answer", counting)
    path = f"/{frame['id']}/?image=true&width=120"
    connection = await connect(service)
    # A 304 is never remembered: the second request finds nothing either, and remembers its 200.
    await connection.send(request(path, "GET", "1.1", "If-None-Match: *"), request(path))
    full_304, full_200 = await connection.answer(has_body=False), await connection.answer()
    await connection.send(request(path, "GET", "1.1", "If-None-Match: *"), request(path))
    hot_304, hot_200 = await connection.answer(has_body=False), await connection.answer()
    connection.close()
    assert answered_hot == [False, False, True, True]
    assert [full_304.status, full_200.status, hot_304.status, hot_200.status] == [304, 200, 304, 200]
    # In the same order too.
    assert list(without_per_answer(hot_304).items()) == list(without_per_answer(full_304).items())
    assert list(without_per_answer(hot_200).items()) == list(without_per_answer(full_200).items())
    assert hot_200.body == full_200.body


def test_a_header_value_with_a_line_break_is_refused() -> None:
    assert serialized_headers({"ETag": '"abc"'}) == b'ETag: "abc"\r\n'
    with pytest.raises(ValueError, match="line break"):
        serialized_headers({"Cache-Control": "public\r\nSet-Cookie: a=b"})
