"""Clients that send what no browser sends: the service answers them and logs nothing it should not."""

import asyncio
import json
from pathlib import Path

import pytest

from conftest import serving
from fakearchive import FakeArchive

SECRET = "TOPSECRET-token-value"


async def send_raw(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        return await reader.read()
    finally:
        writer.close()


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_an_authorization_header_aiohttp_cannot_parse_is_answered_in_json_never_echoed_nor_logged(
    fake_archive: FakeArchive, tmp_path: Path, log_format: str
) -> None:
    async with serving(fake_archive.base_url, tmp_path, THUMBPROXY_LOG_FORMAT=log_format) as served:
        answer = await send_raw(
            served.port,
            b"GET /1/ HTTP/1.1\r\nHost: x\r\nAuthorization: Token "
            + SECRET.encode()
            + b"\x01abc\r\nConnection: close\r\n\r\n",
        )
        head, body = answer.split(b"\r\n\r\n", 1)
        assert head.split(b" ")[1] == b"400"
        assert b"Content-Type: application/json" in head
        assert json.loads(body) == {"message": "Bad request: it could not be parsed"}
    output = served.output
    # One line says what was refused, and nothing of what was sent.
    assert "answered 400 to a request from 127.0.0.1 that could not be handled (BadHttpMessage)" in output, output
    assert SECRET not in output
