"""Connections that never finish a request, more of them than descriptors, and a SIGTERM under load:
the service keeps answering normal requests, logs each trouble once, and loses no request."""

import asyncio
import json
import resource
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from conftest import resident_mib, serving
from fakearchive import FakeArchive, Fault

# Request heads that never end: a slowloris client sends these, then nothing more.
UNFINISHED_HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
ATTACKERS = 3000


@pytest.fixture(autouse=True)
def enough_descriptors() -> None:
    """This test process holds thousands of sockets: raise its own open-file limit as far as allowed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = ATTACKERS + 500
    if soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip(f"this machine allows {hard} open files per process; the test needs {wanted}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


async def open_unfinished(port: int, count: int) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """`count` connections, each with a request head it never finishes."""

    async def one() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(UNFINISHED_HEAD)
        return reader, writer

    connections = []
    for start in range(0, count, 200):
        connections += await asyncio.gather(*(one() for _ in range(start, min(count, start + 200))))
    return connections


async def what_each_got(
    connections: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]], within: float
) -> list[bytes]:
    """What the server sent on each connection before closing it (b"": closed without a word)."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
        try:
            return await asyncio.wait_for(reader.read(), within)
        except ConnectionResetError:
            return b""
        finally:
            writer.close()

    return await asyncio.gather(*(answer(reader, writer) for reader, writer in connections))


def metric(text: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


async def test_thousands_of_unfinished_requests_leave_normal_requests_answered_within_a_second(
    fake_archive: FakeArchive, frame: dict[str, Any], tmp_path: Path, http_session: aiohttp.ClientSession
) -> None:
    async with serving(
        fake_archive.base_url,
        tmp_path,
        THUMBPROXY_MAX_CONNECTIONS="300",
        THUMBPROXY_HEAD_TIMEOUT="3",
        THUMBPROXY_LOG_LEVEL="WARNING",
    ) as served:
        base = served.base_url
        image = f"{base}/{frame['id']}/?image=true&width=200&height=200"
        async with http_session.get(image) as response:
            assert response.status == 200
        attack = await open_unfinished(served.port, ATTACKERS)
        # Each normal request on a connection of its own, while every descriptor an attacker could get is taken.
        for url in (f"{base}/healthz", image, f"{base}/{frame['id']}/"):
            async with aiohttp.ClientSession() as fresh:
                async with asyncio.timeout(1.0):
                    async with fresh.get(url) as response:
                        assert response.status == 200, url
                        await response.read()
        async with http_session.get(f"{base}/metrics") as response:
            during = await response.text()
        assert metric(during, "thumbproxy_connections_open ") <= 300
        # Thousands of connections came and went: the server holds a few hundred at most, and little memory.
        assert resident_mib(served.process.pid) < 300
        # The oldest were ended to make room; the rest are answered 408 once their head is 3 s late.
        answers = await what_each_got(attack, within=10.0)
        timed_out = [answer for answer in answers if answer]
        assert timed_out and all(answer.startswith(b"HTTP/1.1 408 ") for answer in timed_out)
        assert json.loads(timed_out[0].split(b"\r\n\r\n", 1)[1]) == {"message": "request head not complete within 3 s"}
        async with http_session.get(f"{base}/metrics") as response:
            after = await response.text()
        assert metric(after, 'thumbproxy_connections_closed_total{reason="evicted"}') >= ATTACKERS - 300
        assert metric(after, 'thumbproxy_connections_closed_total{reason="slow_head"}') == len(timed_out)


async def test_a_connection_past_the_limit_when_every_one_is_busy_is_refused_at_once(
    fake_archive: FakeArchive, frame: dict[str, Any], tmp_path: Path
) -> None:
    async with serving(
        fake_archive.base_url, tmp_path, THUMBPROXY_MAX_CONNECTIONS="2", THUMBPROXY_LOG_LEVEL="WARNING"
    ) as served:
        fake_archive.api_fault = Fault(delay=3.0)
        async with aiohttp.ClientSession() as first, aiohttp.ClientSession() as second:
            slow = [
                asyncio.create_task(session.get(f"{served.base_url}/{frame['id']}/")) for session in (first, second)
            ]
            await asyncio.sleep(0.5)
            async with aiohttp.ClientSession() as third:
                async with asyncio.timeout(1.0):
                    async with third.get(f"{served.base_url}/healthz") as response:
                        assert response.status == 503
                        assert await response.json() == {"message": "too many connections"}
                        assert response.headers["Connection"] == "close"
                        assert response.headers["Retry-After"] == "1"
            fake_archive.api_fault = None
            for answered in await asyncio.gather(*slow):
                assert answered.status == 200
                answered.release()
    assert served.output.count("refused a connection") == 1, served.output


async def test_running_out_of_descriptors_logs_once_and_the_service_recovers(
    fake_archive: FakeArchive, tmp_path: Path
) -> None:
    async with serving(fake_archive.base_url, tmp_path, THUMBPROXY_HEAD_TIMEOUT="60") as served:
        # Fewer descriptors than THUMBPROXY_MAX_CONNECTIONS lets connections use: accept() fails.
        resource.prlimit(served.process.pid, resource.RLIMIT_NOFILE, (200, 200))
        # More than the 200 descriptors, fewer than those and the listen backlog (128), whose overflow would hang.
        attack = await open_unfinished(served.port, 250)
        await asyncio.sleep(4.0)
        for _, writer in attack:
            writer.close()
        async with aiohttp.ClientSession() as session, asyncio.timeout(5.0):
            while True:
                try:
                    async with session.get(f"{served.base_url}/healthz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.2)
    # asyncio tries again every second, and logged each failure with its traceback.
    assert served.output.count("socket.accept() out of system resource") == 1, served.output


async def test_a_sigterm_under_load_answers_every_request_sent_on_an_open_connection(
    fake_archive: FakeArchive, frame: dict[str, Any], tmp_path: Path
) -> None:
    answered_after_term: list[str] = []
    lost: list[str] = []
    terminated_at: list[float] = []
    async with serving(
        fake_archive.base_url, tmp_path, THUMBPROXY_DRAIN_SECONDS="2", THUMBPROXY_LOG_LEVEL="WARNING"
    ) as served:
        image = f"{served.base_url}/{frame['id']}/?image=true&width=200&height=200"

        async def client() -> None:
            # One kept-alive connection per client, as a load balancer or a browser keeps them.
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
                while served.process.poll() is None:
                    try:
                        async with session.get(image) as response:
                            assert response.status == 200
                            await response.read()
                            if terminated_at:
                                answered_after_term.append(response.headers.get("Connection", "keep-alive"))
                    except aiohttp.ClientConnectorError:
                        return  # The listener is closed: a load balancer sends this client elsewhere.
                    except aiohttp.ClientError as error:
                        lost.append(repr(error))
                        return

        async with aiohttp.ClientSession() as session:
            async with session.get(image) as response:
                assert response.status == 200
            clients = [asyncio.create_task(client()) for _ in range(8)]
            await asyncio.sleep(1.0)
            terminated_at.append(time.monotonic())
            served.process.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.5)
            async with session.get(f"{served.base_url}/readyz") as response:
                assert response.status == 503
                assert (await response.json())["status"] == "shutting down"
        await asyncio.gather(*clients)
        assert await asyncio.to_thread(served.process.wait, 30) == 0
    assert lost == [], served.output
    # Clients were answered through the whole drain, each answer closing its connection.
    assert len(answered_after_term) > 50
    assert answered_after_term.count("close") >= len(answered_after_term) - 8
    assert "Traceback" not in served.output
