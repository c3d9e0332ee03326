"""The service with its S3 level (moto over real HTTP): shared results, coalesced work, private thumbnails."""

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from conftest import WIDE, MotoS3, Service, ServiceFactory
from fakearchive import FUTURE_DATE, FakeArchive, Fault
from thumbproxy.cache.disk import DiskCache
from thumbproxy.cache.memory import MemoryCache
from thumbproxy.cache.tiered import TieredCache
from thumbproxy.ops.metrics import Metrics

KEY_PATTERN = r"thumbnails/{frame_id}/[0-9a-f]{{64}}\.jpg"


@pytest.fixture
async def service(start_service: ServiceFactory, s3_settings: dict[str, str]) -> Service:
    return await start_service(**s3_settings)


@pytest.fixture
def frame(fake_archive: FakeArchive, write_fits: Callable[..., Path], tmp_path: Path) -> dict[str, Any]:
    path = write_fits(tmp_path / "ogg0m404-kb82-20190321-0273-e91.fits.fz", shape=WIDE, compressed=True)
    return fake_archive.add_frame(path)


async def fetch(url: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.read()


async def test_json_url_is_a_presigned_s3_url_that_works(service: Service, frame: dict, s3_server: MotoS3) -> None:
    body = await (await service.get(f"/{frame['id']}/?width=150")).json()
    url = body["url"]
    assert url.startswith(s3_server.endpoint_url) and "X-Amz-Signature=" in url
    assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == ["604800"]
    status, data = await fetch(url)
    assert status == 200
    assert data == await (await service.get(f"/{frame['id']}/?width=150&image=true")).read()
    [key] = s3_server.list_keys()
    assert key.startswith(f"thumbnails/{frame['id']}/") and key.endswith(".jpg") and len(key.split("/")[2]) == 68
    _, headers = s3_server.get_object(key)
    assert headers["content-type"] == "image/jpeg"
    assert "max-age" in headers["cache-control"]


async def test_url_expiry_and_prefix_are_settings(
    start_service: ServiceFactory, s3_settings: dict[str, str], frame: dict, s3_server: MotoS3
) -> None:
    service = await start_service(**s3_settings, THUMBPROXY_URL_EXPIRY="3600", THUMBPROXY_S3_PREFIX="site/thumbs")
    url = (await (await service.get(f"/{frame['id']}/")).json())["url"]
    assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == ["3600"]
    assert s3_server.list_keys()[0].startswith(f"site/thumbs/{frame['id']}/")


async def test_a_json_answer_expires_before_its_presigned_url(
    start_service: ServiceFactory, s3_settings: dict[str, str], frame: dict
) -> None:
    service = await start_service(**s3_settings, THUMBPROXY_URL_EXPIRY="900")
    response = await service.get(f"/{frame['id']}/")
    assert "X-Amz-Signature" in (await response.json())["url"]
    assert response.headers["Cache-Control"] == "public, max-age=840"


async def test_each_format_is_its_own_object_with_its_media_type(
    service: Service, frame: dict, s3_server: MotoS3
) -> None:
    for image_format, extension, media_type in (("png", "png", "image/png"), ("webp", "webp", "image/webp")):
        url = (await (await service.get(f"/{frame['id']}/?format={image_format}")).json())["url"]
        status, body = await fetch(url)
        assert (
            status == 200 and body == await (await service.get(f"/{frame['id']}/?image=1&format={image_format}")).read()
        )
        key = next(key for key in s3_server.list_keys() if key.endswith(f".{extension}"))
        assert s3_server.get_object(key)[1]["content-type"] == media_type


async def test_another_instance_serves_from_s3_without_download_or_render(
    start_service: ServiceFactory, s3_settings: dict[str, str], frame: dict, tmp_path: Path
) -> None:
    first = await start_service(**s3_settings)
    rendered = await (await first.get(f"/{frame['id']}/?image=true")).read()
    await first.get(f"/{frame['id']}/")  # the JSON answer waits for the upload
    # A replica with an empty disk level, sharing the bucket.
    second = await start_service(**s3_settings, THUMBPROXY_CACHE_DIR=str(tmp_path / "other-cache"))
    assert await (await second.get(f"/{frame['id']}/?image=true")).read() == rendered
    assert second.archive.downloads[frame["id"]] == 1
    assert second.metric("thumbproxy_renders_total", kind="mono", result="ok") == 0
    assert second.metric("thumbproxy_cache_requests_total", level="s3", result="hit") == 1
    # The S3 hit filled the disk level: the next answer needs S3 no more.
    await second.get(f"/{frame['id']}/?image=true")
    assert second.metric("thumbproxy_cache_requests_total", level="s3", result="hit") == 1


async def test_fifty_identical_cold_requests_download_and_render_once(service: Service, frame: dict) -> None:
    answers = await asyncio.gather(*(service.get(f"/{frame['id']}/?image=true") for _ in range(50)))
    bodies = {await answer.read() for answer in answers}
    assert all(answer.status == 200 for answer in answers)
    assert len(bodies) == 1
    assert service.archive.downloads[frame["id"]] == 1
    assert service.metric("thumbproxy_renders_total", kind="mono", result="ok") == 1
    joined = service.metric("thumbproxy_coalesced_requests_total")
    hits = service.metric("thumbproxy_cache_requests_total", level="memory", result="hit")
    assert joined + hits == 49 and joined > 0


async def test_five_sizes_of_a_cold_frame_share_one_download(service: Service, frame: dict) -> None:
    sizes = [60, 90, 120, 150, 180]
    answers = await asyncio.gather(*(service.get(f"/{frame['id']}/?image=true&width={size}") for size in sizes))
    assert [answer.status for answer in answers] == [200] * 5
    assert service.archive.downloads[frame["id"]] == 1
    assert service.metric("thumbproxy_renders_total", kind="mono", result="ok") == 5
    assert service.temp_files() == []


async def test_hit_path_of_a_public_frame_makes_no_archive_call(service: Service, frame: dict) -> None:
    service.archive.add_token("x")
    await service.get(f"/{frame['id']}/?image=true")
    await service.get(f"/{frame['basename']}/?image=true")
    # A token is judged by the archive once, whatever the frame.
    await service.get(f"/{frame['basename']}/?image=true", headers={"Authorization": "Token x"})
    calls = service.archive.api_calls
    for _ in range(5):
        assert (await service.get(f"/{frame['id']}/?image=true")).status == 200
        assert (
            await service.get(f"/{frame['basename']}/?image=true", headers={"Authorization": "Token x"})
        ).status == 200
    assert service.archive.api_calls == calls


async def test_repeated_hits_are_the_same_answer_and_counted(service: Service, frame: dict) -> None:
    first = await service.get(f"/{frame['basename']}/?image=true&width=90")
    body = await first.read()
    for _ in range(3):
        again = await service.get(f"/{frame['basename']}/?image=true&width=90")
        assert await again.read() == body
        assert {k: v for k, v in again.headers.items() if k not in ("Date", "X-Request-ID")} == {
            k: v for k, v in first.headers.items() if k not in ("Date", "X-Request-ID")
        }
    assert service.metric("thumbproxy_cache_requests_total", level="memory", result="hit") == 3
    other = await service.get(f"/{frame['basename']}/?image=true&width=60")
    assert await other.read() != body


# Repeats answered from the memory level, and with it off, from the disk level's files kept open.
@pytest.mark.parametrize("memory_cache_mb", ["64", "0"])
async def test_repeated_hits_stop_once_the_frame_is_no_longer_public(
    start_service: ServiceFactory, frame: dict, memory_cache_mb: str
) -> None:
    service = await start_service(THUMBPROXY_METADATA_TTL="0.3", THUMBPROXY_MEMORY_CACHE_MB=memory_cache_mb)
    for path in (f"/{frame['id']}/?image=true", f"/{frame['basename']}?image=true") * 2:
        assert (await service.get(path)).status == 200
    service.archive.record(frame["id"])["public_date"] = FUTURE_DATE
    await asyncio.sleep(0.4)
    for path in (f"/{frame['id']}/?image=true", f"/{frame['basename']}?image=true"):
        response = await service.get(path)
        assert response.status == 404
        assert await response.json() == {"message": "Not found"}


async def test_proprietary_thumbnail_never_reaches_another_caller(
    service: Service,
    fake_archive: FakeArchive,
    write_fits: Callable[..., Path],
    tmp_path: Path,
    s3_server: MotoS3,
) -> None:
    path = write_fits(tmp_path / "secret.fits.fz", shape=WIDE, compressed=True)
    secret = fake_archive.add_frame(path, proposal_id="SECRET-1", public_date=FUTURE_DATE)
    fake_archive.add_token("alice", "SECRET-1")
    fake_archive.add_token("bob", "OTHER")
    alice = {"Authorization": "Token alice"}
    body = await (await service.get(f"/{secret['id']}/", headers=alice)).json()
    assert (await fetch(body["url"]))[0] == 200
    assert (await service.get(f"/{secret['id']}/?image=true", headers=alice)).status == 200
    # In memory, on disk and in S3 now; still nobody else's, whether by id or by basename.
    for headers in ({"Authorization": "Token bob"}, {}):
        for path in (f"/{secret['id']}/", f"/{secret['id']}/?image=true", f"/{secret['basename']}/?image=true"):
            response = await service.get(path, headers=headers)
            assert response.status == 404
            assert await response.json() == {"message": "Not found"}
    assert len(s3_server.list_keys()) == 1


async def test_new_version_gets_a_new_object(
    start_service: ServiceFactory,
    s3_settings: dict[str, str],
    frame: dict,
    write_fits: Callable[..., Path],
    tmp_path: Path,
    s3_server: MotoS3,
) -> None:
    service = await start_service(**s3_settings, THUMBPROXY_METADATA_TTL="0.3")
    old = await (await service.get(f"/{frame['id']}/?image=true")).read()
    await service.get(f"/{frame['id']}/")
    service.archive.new_version(frame["id"], write_fits(tmp_path / "v2.fits.fz", shape=WIDE, compressed=True, seed=3))
    await asyncio.sleep(0.4)
    new_url = (await (await service.get(f"/{frame['id']}/")).json())["url"]
    assert (await fetch(new_url))[1] != old
    assert len(s3_server.list_keys()) == 2


async def test_a_client_hanging_up_does_not_waste_the_render(service: Service, frame: dict) -> None:
    service.archive.download_fault = Fault(stall_after_bytes=2880, delay=0.5, times=1)
    with pytest.raises(asyncio.TimeoutError):
        await service.get(f"/{frame['id']}/?image=true", timeout=aiohttp.ClientTimeout(total=0.2))
    for _ in range(50):
        if service.metric("thumbproxy_renders_total", kind="mono", result="ok"):
            break
        await asyncio.sleep(0.1)
    assert (await service.get(f"/{frame['id']}/?image=true")).status == 200
    assert service.archive.downloads[frame["id"]] == 1
    assert service.metric("thumbproxy_renders_total", kind="mono", result="ok") == 1


async def test_thumbnails_answered_from_memory_are_the_last_the_disk_level_evicts(tmp_path: Path) -> None:
    metrics = Metrics()
    # Room on disk for about twenty 100 kB thumbnails, in memory for two: the hot one and the newest.
    disk = DiskCache(tmp_path / "disk", size_limit_bytes=2_000_000)
    tiered = TieredCache(MemoryCache(max_bytes=250_000), disk, None, metrics.cache_requests)
    hot, cold = os.urandom(100_000), os.urandom(100_000)
    await tiered.put("hot", hot, wait_for_s3=False)
    # Stored on disk at the same time, but never asked for again.
    await disk.put("cold", cold)
    for number in range(40):
        # Every hit of the hot thumbnail is a memory hit: the disk level never sees it.
        assert tiered.memory_hit("hot") == hot
        await tiered.refresh_disk_recency()
        await tiered.put(f"new/{number}", os.urandom(100_000), wait_for_s3=False)
    assert await disk.get("cold") is None, "the disk level should have had to evict"
    assert await disk.get("hot") == hot
    await tiered.close()
    disk.close()


async def test_the_service_marks_memory_hits_used_on_disk_while_it_runs(tmp_path: Path) -> None:
    disk = DiskCache(tmp_path / "disk", size_limit_bytes=2**30)
    tiered = TieredCache(MemoryCache(max_bytes=2**24), disk, None, Metrics().cache_requests)
    await tiered.put("hot", b"hot thumbnail", wait_for_s3=False)
    marked: list[list[str]] = []
    original = disk.mark_used

    async def recording(keys: list[str]) -> None:
        marked.append(list(keys))
        await original(keys)

    disk.mark_used = recording  # type: ignore[method-assign]
    tiered.start(recency_seconds=0.01)
    async with asyncio.timeout(5):
        while not marked:
            await asyncio.sleep(0.01)
    await tiered.close()
    assert marked[0] == ["hot"]
    disk.close()
