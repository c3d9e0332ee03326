"""The S3 level and the tiered cache, against moto's S3 over real HTTP."""

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from conftest import MotoS3
from thumbproxy.cache.disk import DiskCache
from thumbproxy.cache.memory import MemoryCache
from thumbproxy.cache.s3 import S3Cache
from thumbproxy.cache.tiered import TieredCache
from thumbproxy.ops.metrics import Metrics
from thumbproxy.ops.throttledlog import ThrottledWarning

KEY = "42/" + "ab" * 32 + ".jpg"
OBJECT_KEY = f"thumbs/{KEY}"
JPEG = b"\xff\xd8\xff\xe0 a thumbnail \xff\xd9"
URL_EXPIRY = 900


def s3_count(metrics: Metrics, operation: str, result: str) -> float:
    """How many S3 calls of this operation ended with this result."""
    labels = {"operation": operation, "result": result}
    return metrics.registry.get_sample_value("thumbproxy_s3_requests_total", labels) or 0.0


def cache_count(metrics: Metrics, level: str, result: str) -> float:
    """How many lookups at this cache level ended with this result."""
    labels = {"level": level, "result": result}
    return metrics.registry.get_sample_value("thumbproxy_cache_requests_total", labels) or 0.0


def s3_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "thumbproxy.cache.s3" and r.levelno == logging.WARNING]


# These tests are about the disk and S3 levels, so the memory level in front holds nothing.
NO_MEMORY = MemoryCache(max_bytes=0)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def s3_cache(s3_client: Any, s3_server: MotoS3, metrics: Metrics) -> S3Cache:
    # Slashes around the prefix are forgiven: objects still land under "thumbs/".
    return S3Cache(s3_client, s3_server.bucket, "/thumbs/", URL_EXPIRY, metrics.s3_requests)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[DiskCache]:
    cache = DiskCache(tmp_path / "disk", size_limit_bytes=2**20)
    yield cache
    cache.close()


@pytest.fixture
async def tiered(disk: DiskCache, s3_cache: S3Cache, metrics: Metrics) -> AsyncIterator[TieredCache]:
    cache = TieredCache(NO_MEMORY, disk, s3_cache, metrics.cache_requests)
    yield cache
    await cache.close()


@pytest.fixture
def s3_down(s3_server: MotoS3) -> Iterator[MotoS3]:
    """S3 refusing connections for the test's duration."""
    s3_server.stop()
    yield s3_server
    s3_server.start()


# --- the S3 level ---------------------------------------------------------------------------


async def test_put_stores_an_immutable_jpeg_under_the_prefixed_key(
    s3_cache: S3Cache, s3_server: MotoS3, metrics: Metrics
) -> None:
    assert await s3_cache.put(KEY, JPEG) is True
    assert s3_server.list_keys() == [OBJECT_KEY]
    body, headers = s3_server.get_object(OBJECT_KEY)
    assert body == JPEG
    assert headers["content-type"] == "image/jpeg"
    assert headers["cache-control"] == "public, max-age=31536000, immutable"
    assert await s3_cache.get(KEY) == JPEG
    assert await s3_cache.contains(KEY) is True
    assert [s3_count(metrics, op, "ok") for op in ("put", "get", "head")] == [1, 1, 1]


def test_object_key_follows_the_prefix() -> None:
    def key_under(prefix: str) -> str:
        return S3Cache(None, "bucket", prefix, URL_EXPIRY, Metrics().s3_requests).object_key(KEY)

    assert key_under("thumbs") == OBJECT_KEY
    assert key_under("/a/b/") == f"a/b/{KEY}"
    assert key_under("") == KEY


async def test_presigned_url_serves_the_thumbnail(s3_cache: S3Cache) -> None:
    await s3_cache.put(KEY, JPEG)
    url = await s3_cache.url(KEY)
    query = parse_qs(urlsplit(url).query)
    assert urlsplit(url).path.endswith(f"/{OBJECT_KEY}")
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Expires"] == [str(URL_EXPIRY)]
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "image/jpeg"
        assert await response.read() == JPEG


async def test_url_is_signed_without_reaching_s3(s3_cache: S3Cache, s3_server: MotoS3) -> None:
    await s3_cache.put(KEY, JPEG)
    s3_server.stop()
    url = await s3_cache.url(KEY)
    s3_server.start()
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert await response.read() == JPEG


async def test_missing_object_is_a_miss_not_an_error(
    s3_cache: S3Cache, metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    assert await s3_cache.get(KEY) is None
    assert await s3_cache.contains(KEY) is False
    assert s3_count(metrics, "get", "miss") == 1
    assert s3_count(metrics, "head", "miss") == 1
    assert s3_count(metrics, "get", "error") == s3_count(metrics, "head", "error") == 0
    assert s3_warnings(caplog) == []


async def test_missing_bucket_is_an_error_not_a_miss(
    s3_client: Any, metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    s3_cache = S3Cache(s3_client, "no-such-bucket", "thumbs", URL_EXPIRY, metrics.s3_requests)
    assert await s3_cache.put(KEY, JPEG) is False
    assert await s3_cache.get(KEY) is None
    assert s3_count(metrics, "put", "error") == 1
    assert s3_count(metrics, "get", "error") == 1
    assert len(s3_warnings(caplog)) == 1


async def test_stopped_s3_degrades_with_one_warning(
    s3_cache: S3Cache, s3_server: MotoS3, metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    await s3_cache.put(KEY, JPEG)
    s3_server.stop()
    for _ in range(5):
        assert await s3_cache.get(KEY) is None
        assert await s3_cache.put(KEY, JPEG) is False
        assert await s3_cache.contains(KEY) is False
    assert [s3_count(metrics, op, "error") for op in ("get", "put", "head")] == [5, 5, 5]
    [warning] = s3_warnings(caplog)
    assert OBJECT_KEY in warning.getMessage()
    s3_server.start()
    assert await s3_cache.get(KEY) == JPEG


def test_throttled_warning_reports_what_it_held_back(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    warning = ThrottledWarning(logging.getLogger("thumbproxy.cache.s3"), 60.0, clock=lambda: now[0])
    for second in (0.0, 10.0, 59.0, 61.0, 62.0):
        now[0] = second
        warning.warn("S3 is %s", "down")
    assert [r.getMessage() for r in s3_warnings(caplog)] == [
        "S3 is down",
        "S3 is down (and 2 more since the last warning)",
    ]


# --- the tiered cache -----------------------------------------------------------------------


async def test_s3_hit_fills_the_disk(tiered: TieredCache, s3_cache: S3Cache, metrics: Metrics) -> None:
    await s3_cache.put(KEY, JPEG)
    assert await tiered.get(KEY) == (JPEG, "s3")
    assert await tiered.get(KEY) == (JPEG, "disk")
    assert cache_count(metrics, "disk", "miss") == 1
    assert cache_count(metrics, "disk", "hit") == 1
    assert cache_count(metrics, "s3", "hit") == 1


async def test_miss_everywhere(tiered: TieredCache, metrics: Metrics) -> None:
    assert await tiered.get(KEY) is None
    assert cache_count(metrics, "disk", "miss") == cache_count(metrics, "s3", "miss") == 1


async def test_put_waiting_for_s3_stores_both_levels(tiered: TieredCache, s3_server: MotoS3) -> None:
    assert await tiered.put(KEY, JPEG, wait_for_s3=True) is True
    assert s3_server.get_object(OBJECT_KEY)[0] == JPEG
    assert await tiered.get(KEY) == (JPEG, "disk")


async def test_background_upload_lands_by_close(
    disk: DiskCache, s3_cache: S3Cache, s3_server: MotoS3, metrics: Metrics
) -> None:
    tiered = TieredCache(NO_MEMORY, disk, s3_cache, metrics.cache_requests)
    assert await tiered.put(KEY, JPEG, wait_for_s3=False) is False
    assert await disk.get(KEY) == JPEG
    # The upload has not had a turn of the loop yet; close() must wait for it.
    await tiered.close()
    assert s3_server.list_keys() == [OBJECT_KEY]


async def test_ensure_in_s3_uploads_a_disk_only_thumbnail(
    tiered: TieredCache, disk: DiskCache, s3_server: MotoS3, metrics: Metrics
) -> None:
    await disk.put(KEY, JPEG)
    assert await tiered.ensure_in_s3(KEY, JPEG) is True
    assert s3_server.get_object(OBJECT_KEY)[0] == JPEG
    assert await tiered.ensure_in_s3(KEY, JPEG) is True
    # The second call found the object and did not upload it again.
    assert s3_count(metrics, "put", "ok") == 1
    assert s3_count(metrics, "head", "ok") == 1
    url = await tiered.url(KEY)
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert await response.read() == JPEG


async def test_tiered_serves_from_disk_while_s3_is_down(tiered: TieredCache, s3_down: MotoS3, metrics: Metrics) -> None:
    assert await tiered.get(KEY) is None
    assert cache_count(metrics, "s3", "error") == 1
    assert await tiered.put(KEY, JPEG, wait_for_s3=True) is False
    assert await tiered.ensure_in_s3(KEY, JPEG) is False
    assert await tiered.get(KEY) == (JPEG, "disk")


async def test_tiered_without_s3_is_the_disk(disk: DiskCache, metrics: Metrics) -> None:
    tiered = TieredCache(NO_MEMORY, disk, None, metrics.cache_requests)
    assert await tiered.get(KEY) is None
    assert await tiered.put(KEY, JPEG, wait_for_s3=True) is False
    assert await tiered.put(KEY, JPEG, wait_for_s3=False) is False
    assert await tiered.get(KEY) == (JPEG, "disk")
    assert await tiered.url(KEY) is None
    assert await tiered.ensure_in_s3(KEY, JPEG) is False
    await tiered.close()
    assert cache_count(metrics, "disk", "miss") == cache_count(metrics, "disk", "hit") == 1
    assert cache_count(metrics, "s3", "miss") == cache_count(metrics, "s3", "error") == 0


async def test_hung_s3_times_out_without_raising(metrics: Metrics, s3_server: MotoS3) -> None:
    # A server that accepts connections and never answers: S3 hung rather than gone.
    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = AioConfig(connect_timeout=1, read_timeout=0.5, retries={"total_max_attempts": 1})
    async with (
        server,
        get_session().create_client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{port}",
            region_name=s3_server.region,
            aws_access_key_id=s3_server.access_key,
            aws_secret_access_key=s3_server.secret_key,
            config=config,
        ) as client,
    ):
        s3_cache = S3Cache(client, s3_server.bucket, "thumbs", URL_EXPIRY, metrics.s3_requests)
        assert await s3_cache.get(KEY) is None
        assert s3_count(metrics, "get", "error") == 1


async def test_memory_level_answers_before_disk_and_s3(disk: DiskCache, s3_cache: S3Cache, metrics: Metrics) -> None:
    tiered = TieredCache(MemoryCache(max_bytes=2**20), disk, s3_cache, metrics.cache_requests)
    await tiered.put(KEY, JPEG, wait_for_s3=True)
    assert await tiered.get(KEY) == (JPEG, "memory")
    assert cache_count(metrics, "disk", "hit") == 0 and cache_count(metrics, "memory", "hit") == 1
    await tiered.close()
