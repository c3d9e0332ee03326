"""Clients that send what no browser sends: the service answers them and logs nothing it should not."""

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from conftest import free_port
from fakearchive import FakeArchive

SECRET = "TOPSECRET-token-value"


async def wait_until_up(port: int) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            try:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.1)
    raise AssertionError("the service did not start")


async def send_raw(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        return await reader.read()
    finally:
        writer.close()


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_an_authorization_header_aiohttp_cannot_parse_is_never_logged(
    fake_archive: FakeArchive, tmp_path: Path, log_format: str
) -> None:
    port = free_port()
    env = {**os.environ, "ARCHIVE_API_URL": fake_archive.base_url, "THUMBPROXY_CACHE_DIR": str(tmp_path / "cache"),
           "TMP_DIR": str(tmp_path / "tmp"), "THUMBPROXY_WORKERS": "1", "THUMBPROXY_CONFIG": os.devnull,
           "THUMBPROXY_LOG_FORMAT": log_format}
    server = subprocess.Popen([sys.executable, "-m", "thumbproxy", "serve", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        await wait_until_up(port)
        answer = await send_raw(port, b"GET /1/ HTTP/1.1\r\nHost: x\r\nAuthorization: Token " + SECRET.encode()
                                + b"\x01abc\r\nConnection: close\r\n\r\n")
        assert answer.startswith(b"HTTP/1.") and b" 400 " in answer.split(b"\r\n")[0]
        server.send_signal(signal.SIGTERM)
        await asyncio.to_thread(server.wait, 30)
    finally:
        if server.poll() is None:
            server.kill()
    output = server.stdout.read() + server.stderr.read()
    # aiohttp logged the request it could not parse, without the header's value.
    assert "Authorization: [redacted]" in output, output
    assert SECRET not in output
