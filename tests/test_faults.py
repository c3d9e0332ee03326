"""Faults end to end: what a client sees, and what the metrics say, when a dependency fails.

Everything is real HTTP on 127.0.0.1: the service, the fake archive (slow, broken or stopped at
will) and moto's S3. Timeouts and times to live are small so that each test takes about a second.
"""

import asyncio
import functools
import io
import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from conftest import MotoS3, Service, ServiceFactory, serving
from fakearchive import FakeArchive, Fault
from thumbproxy.app import RENDER_POOL
from thumbproxy.web.routes import THUMBNAILER
from workerjobs import add, die

# Retries of a failing archive call wait at most 0.1 s, then 0.2 s.
QUICK_RETRIES = {"THUMBPROXY_ARCHIVE_RETRIES": "2"}


def archive_calls(service: Service, operation: str, status: str) -> float:
    return service.metric("thumbproxy_archive_requests_total", operation=operation, status=status)


def retries(service: Service, operation: str) -> float:
    return service.metric("thumbproxy_archive_retries_total", operation=operation)


def renders(service: Service, result: str) -> float:
    return service.metric("thumbproxy_renders_total", kind="mono", result=result)


async def error_message(response: aiohttp.ClientResponse) -> str:
    """The message of a JSON error answer, which must be nothing else and carry no traceback."""
    assert response.content_type == "application/json"
    body = await response.json()
    assert set(body) == {"message"}
    assert "Traceback" not in body["message"]
    return body["message"]


async def jpeg(response: aiohttp.ClientResponse) -> bytes:
    """The bytes of a 200 answer, which must decode as a JPEG image."""
    assert response.status == 200, await response.text()
    assert response.content_type == "image/jpeg"
    data = await response.read()
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG"
        image.load()
    return data


# The archive -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"THUMBPROXY_ARCHIVE_TIMEOUT": "0.5"}, "Timeout while accessing resource"),
        ({"THUMBPROXY_ARCHIVE_TIMEOUT": "5", "THUMBPROXY_REQUEST_TIMEOUT": "0.5"}, "request timeout of 0.5 s"),
    ],
)
async def test_an_archive_slower_than_its_timeout_is_a_504_in_time(
    start_service: ServiceFactory, frame: dict, env: dict[str, str], message: str
) -> None:
    service = await start_service(**QUICK_RETRIES, **env)
    service.archive.api_fault = Fault(delay=5)

    started = time.monotonic()
    response = await service.get(f"/{frame['id']}/?image=true")

    assert response.status == 504
    assert message in await error_message(response)
    assert time.monotonic() - started < 1.5
    # A timed-out call is not tried again: the archive is asked once.
    assert service.archive.api_calls == 1
    assert retries(service, "frame") == 0


async def test_an_archive_that_is_down_fails_new_frames_but_not_cached_public_ones(
    start_service: ServiceFactory,
    frame: dict,
    fake_archive: FakeArchive,
    write_fits: Callable[..., Path],
    tmp_path: Path,
) -> None:
    service = await start_service(**QUICK_RETRIES, THUMBPROXY_METADATA_TTL="0.2")
    cached = await jpeg(await service.get(f"/{frame['id']}/?image=true"))
    new = fake_archive.add_frame(write_fits(tmp_path / "lsc1m005-fa15-20190321-0100-e91.fits", seed=2))

    await fake_archive.close()
    try:
        response = await service.get(f"/{new['id']}/?image=true")
        assert response.status == 502
        assert "archive" in await error_message(response)
        # Well past the record's time to live: the archive is asked, fails, and the stale record answers.
        await asyncio.sleep(0.3)
        assert await jpeg(await service.get(f"/{frame['id']}/?image=true")) == cached
    finally:
        await fake_archive.start()

    assert service.metric("thumbproxy_stale_records_total") == 1
    # Two lookups, each tried three times without a connection.
    assert (archive_calls(service, "frame", "error"), retries(service, "frame")) == (6, 4)
    assert (renders(service, "ok"), fake_archive.downloads[frame["id"]]) == (1, 1)
    # Back up: the new frame is answered.
    await jpeg(await service.get(f"/{new['id']}/?image=true"))


@pytest.mark.parametrize(
    ("fault", "message", "retried"),
    [
        (Fault(body=b"<html><body>Down for maintenance</body></html>"), "not JSON", 0),
        (Fault(body=b'{"id": 11245132, "basename": "ogg0m4'), "not JSON", 0),
        # Cut short on the wire: perhaps a dropped connection, so it is tried again.
        (Fault(truncate=True), "cut short", 2),
    ],
)
async def test_an_archive_answering_html_or_truncated_json_is_a_502_with_a_message(
    start_service: ServiceFactory, frame: dict, fault: Fault, message: str, retried: int
) -> None:
    service = await start_service(**QUICK_RETRIES)
    service.archive.api_fault = fault

    response = await service.get(f"/{frame['id']}/?image=true")

    assert response.status == 502
    assert message in await error_message(response)
    assert archive_calls(service, "frame", "200") == 1 + retried
    assert retries(service, "frame") == retried


@pytest.mark.parametrize(
    ("fault", "status"),
    [
        (Fault(status=404), 404),
        (Fault(status=401), 401),
        (Fault(status=403), 403),
        (Fault(status=500), 502),
        (Fault(status=503), 502),
    ],
)
async def test_archive_failures_map_to_statuses_and_only_passing_ones_are_retried(
    start_service: ServiceFactory, frame: dict, fault: Fault, status: int
) -> None:
    service = await start_service(**QUICK_RETRIES)
    service.archive.api_fault = fault

    response = await service.get(f"/{frame['id']}/?image=true")

    assert response.status == status
    await error_message(response)
    expected_retries = 2 if fault.status == 503 else 0
    assert service.archive.api_calls == 1 + expected_retries
    assert retries(service, "frame") == expected_retries


@pytest.mark.parametrize(
    ("kind", "fault", "operation"),
    [
        ("api", Fault(status=503, times=1), "frame"),
        ("download", Fault(status=503, times=1), "download"),
        ("download", Fault(truncate=True, times=1), "download"),
    ],
)
async def test_an_archive_failing_once_is_retried_and_the_answer_is_200(
    start_service: ServiceFactory, frame: dict, kind: str, fault: Fault, operation: str
) -> None:
    service = await start_service(**QUICK_RETRIES)
    setattr(service.archive, f"{kind}_fault", fault)

    await jpeg(await service.get(f"/{frame['id']}/?image=true"))

    assert retries(service, operation) == 1
    assert service.temp_files() == []


async def test_a_download_failure_is_answered_at_once_and_not_remembered(
    start_service: ServiceFactory, frame: dict
) -> None:
    service = await start_service(**QUICK_RETRIES)
    # A 500 is the storage's own error, not one that passes: no retry.
    service.archive.download_fault = Fault(status=500, times=1)

    response = await service.get(f"/{frame['id']}/?image=true")
    assert response.status == 502
    assert "file storage" in await error_message(response)
    assert retries(service, "download") == 0

    await jpeg(await service.get(f"/{frame['id']}/?image=true"))
    assert service.temp_files() == []


# S3, the disk and the render workers -------------------------------------------------------


async def test_s3_going_away_keeps_answers_coming(
    start_service: ServiceFactory, frame: dict, s3_server: MotoS3, s3_settings: dict[str, str]
) -> None:
    service = await start_service(**s3_settings)
    await jpeg(await service.get(f"/{frame['id']}/?image=true"))
    s3_server.stop()
    try:
        # A disk hit, a cold render, and a JSON answer whose URL falls back to this service.
        await jpeg(await service.get(f"/{frame['id']}/?image=true"))
        await jpeg(await service.get(f"/{frame['id']}/?image=true&width=77"))
        response = await service.get(f"/{frame['id']}/?width=78")
        assert response.status == 200
        url = (await response.json())["url"]
        assert url.startswith(str(service.client.make_url("/")))
        await jpeg(await service.get(url.split(str(service.client.make_url("")), 1)[1]))
        assert service.metric("thumbproxy_s3_requests_total", operation="put", result="error") >= 1
    finally:
        s3_server.start()


async def test_a_disk_level_that_cannot_be_written_keeps_answers_coming(
    start_service: ServiceFactory, frame: dict, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    service = await start_service()
    first = await jpeg(await service.get(f"/{frame['id']}/?image=true"))
    # Root writes through permission bits, so the directory is made unusable another way.
    directory = tmp_path / "cache" / "thumbnails"
    # The frame's preview is written in the background after the answer: removing the directory under it
    # may race it, so the removal is tried until it holds.
    for _ in range(50):
        try:
            await asyncio.to_thread(shutil.rmtree, directory)
            break
        except OSError:
            await asyncio.sleep(0.05)
    directory.write_bytes(b"")

    assert await jpeg(await service.get(f"/{frame['id']}/?image=true")) == first
    # Another thumbnail: storing it needs a new file in the directory.
    large = await jpeg(await service.get(f"/{frame['id']}/?image=true&width=400&height=400"))
    assert await jpeg(await service.get(f"/{frame['id']}/?image=true&width=400&height=400")) == large

    assert renders(service, "ok") == 2
    # The operator hears of it once, not once per request.
    disk_warnings = [
        record for record in caplog.records if record.name == "thumbproxy.cache.disk" and record.levelname == "WARNING"
    ]
    assert len(disk_warnings) == 1
    assert "serving without it" in disk_warnings[0].getMessage()


async def test_a_read_only_disk_level_at_start_still_answers(
    start_service: ServiceFactory, frame: dict, tmp_path: Path
) -> None:
    # As root, a directory that cannot be created stands in for a read-only one.
    not_a_directory = tmp_path / "read-only"
    not_a_directory.write_bytes(b"")
    service = await start_service(THUMBPROXY_CACHE_DIR=str(not_a_directory))

    for _ in range(2):
        await jpeg(await service.get(f"/{frame['id']}/?image=true"))
    # Served without the disk level, and said so: readiness names it, the memory level still answers.
    ready = await (await service.get("/readyz")).json()
    assert ready["checks"]["disk"]["status"] != "ok"
    assert service.metric("thumbproxy_cache_requests_total", level="memory", result="hit") == 1


def render_once_killed(started: str, render: Callable[..., tuple[bytes, Any]], *args: Any) -> tuple[bytes, Any]:
    """The first call announces it has begun (by creating `started`) and outlasts any test; the next renders."""
    if Path(started).exists():
        return render(*args)
    Path(started).touch()
    time.sleep(60)
    raise AssertionError("the render worker was not killed")


async def test_a_render_whose_worker_is_killed_is_run_again_and_answered(
    service: Service, frame: dict, tmp_path: Path
) -> None:
    previews = service.app[THUMBNAILER].previews
    pool = service.app[RENDER_POOL]
    started = tmp_path / "render-started"
    previews.read_file = functools.partial(render_once_killed, str(started), previews.read_file)
    request = asyncio.create_task(service.get(f"/{frame['id']}/?image=true"))
    async with asyncio.timeout(10):
        while not started.exists():
            await asyncio.sleep(0.02)
    # Work queued behind the dying render is not its victim: it runs on a worker that replaced a dead one.
    queued = asyncio.create_task(pool.run(add, 2, 3))
    await asyncio.sleep(0.1)
    killed = pool.worker_pids()
    for pid in killed:
        os.kill(pid, signal.SIGKILL)

    # The render died with its worker, not because of its frame: run again alone, it answers.
    await jpeg(await request)
    assert await queued == 5
    assert (renders(service, "error"), renders(service, "ok")) == (0, 1)
    assert pool.worker_pids() and not set(pool.worker_pids()) & set(killed)
    assert service.temp_files() == []


async def test_a_frame_whose_render_kills_its_worker_twice_is_refused_and_remembered(
    service: Service, frame: dict
) -> None:
    service.app[THUMBNAILER].previews.read_file = die

    answers = [await service.get(f"/{frame['id']}/?image=true&width={width}") for width in (100, 120)]

    assert [answer.status for answer in answers] == [422, 422]
    assert await error_message(answers[0]) == (
        f"cannot render {frame['filename']}: it kills the renderer (its render worker died twice)"
    )
    # The second request neither downloaded the frame again nor handed it to a worker.
    assert service.archive.downloads[frame["id"]] == 1
    assert await service.app[RENDER_POOL].run(add, 1, 2) == 3


async def test_after_a_restart_the_disk_level_answers_with_no_render_and_no_download(
    start_service: ServiceFactory, frame: dict
) -> None:
    first = await start_service()
    before = await jpeg(await first.get(f"/{frame['id']}/?image=true"))
    await first.client.close()

    second = await start_service()

    assert await jpeg(await second.get(f"/{frame['id']}/?image=true")) == before
    assert second.metric("thumbproxy_cache_requests_total", level="disk", result="hit") == 1
    assert renders(second, "ok") == 0
    assert archive_calls(second, "download", "200") == 0
    assert second.archive.downloads[frame["id"]] == 1


async def test_a_storm_of_one_unexpected_error_logs_one_traceback(
    service: Service, frame: dict, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*_: object) -> None:
        raise RuntimeError("a bug")

    service.app[THUMBNAILER].thumbnail = broken  # type: ignore[method-assign]
    for width in range(100, 105):
        response = await service.get(f"/{frame['id']}/?image=true&width={width}")
        assert response.status == 500 and await error_message(response) == "Internal error"
    logged = [record for record in caplog.records if "unexpected error" in record.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info is not None


async def test_a_disk_level_whose_index_is_made_immutable_turns_off_and_the_server_lives(
    fake_archive: FakeArchive, write_fits: Callable[..., Path], tmp_path: Path
) -> None:
    frames = [
        fake_archive.add_frame(write_fits(tmp_path / f"frame{n}.fits.fz", shape=(60, 80), compressed=True))
        for n in range(6)
    ]
    index = tmp_path / "cache" / "thumbnails" / "cache.db-shm"
    async with (
        serving(
            fake_archive.base_url, tmp_path, THUMBPROXY_LOG_LEVEL="WARNING", THUMBPROXY_READY_REQUIRED="disk"
        ) as served,
        aiohttp.ClientSession() as session,
    ):
        for frame in frames[:3]:
            async with session.get(f"{served.base_url}/{frame['id']}/?image=true") as response:
                assert response.status == 200
        # SQLite writes this file through a shared mapping: a write to an immutable file there is SIGBUS.
        made = await asyncio.create_subprocess_exec("chattr", "+i", str(index), stderr=asyncio.subprocess.PIPE)
        if await made.wait() != 0:
            pytest.skip(f"files cannot be made immutable here: {(await made.stderr.read()).decode().strip()}")
        try:
            for frame in frames:
                for width in (100, 200, 300):
                    async with session.get(f"{served.base_url}/{frame['id']}/?image=true&width={width}") as response:
                        assert response.status == 200
                        Image.open(io.BytesIO(await response.read())).verify()
            await asyncio.sleep(3.5)
            async with session.get(f"{served.base_url}/readyz") as response:
                assert response.status == 503
                assert (await response.json())["checks"]["disk"]["status"] == "failing"
            assert served.process.poll() is None
        finally:
            await (await asyncio.create_subprocess_exec("chattr", "-i", str(index))).wait()
    assert served.process.returncode == 0, served.output
    assert served.output.count("cannot be written (immutable?)") == 1, served.output
