"""Disk-level hits: repeats read a file kept open, on the event loop, without a thread.

The service runs with the memory level off, so the disk level answers. Threads are seen where
the service would use them: the event loop's default executor, which `asyncio.to_thread` hands
every disk read to, is one that counts its jobs.
"""

import asyncio
import io
import logging
import os
import tempfile
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import diskcache
import pytest
from PIL import Image

from conftest import Service, ServiceFactory
from thumbproxy.cache.disk import DiskCache
from thumbproxy.cache.heldfiles import LINK_CHECK_SECONDS, MAX_HELD_BYTES, HeldFiles
from thumbproxy.cache.memory import MemoryCache
from thumbproxy.cache.tiered import TieredCache
from thumbproxy.ops.metrics import Metrics

# The disk level answers; no frame preview is written in the background while threads are counted.
DISK_ONLY = {"THUMBPROXY_MEMORY_CACHE_MB": "0", "THUMBPROXY_PREVIEW_SIZE": "0"}
REPEATS = 20


class CountingExecutor(ThreadPoolExecutor):
    """A thread pool that counts the jobs given to it."""

    jobs = 0

    def submit(self, *args: Any, **kwargs: Any) -> Future:
        self.jobs += 1
        return super().submit(*args, **kwargs)


@pytest.fixture
async def executor() -> CountingExecutor:
    """The event loop's default executor, counting."""
    counting = CountingExecutor()
    asyncio.get_running_loop().set_default_executor(counting)
    return counting


def open_descriptors() -> dict[str, str]:
    """This process's open descriptors and what each points at."""
    targets = {}
    for descriptor in os.listdir("/proc/self/fd"):
        try:
            targets[descriptor] = os.readlink(f"/proc/self/fd/{descriptor}")
        except OSError:
            continue
    return targets


def files_open_under(directory: Path) -> list[str]:
    """What this process's open descriptors point at below directory."""
    return [target for target in open_descriptors().values() if target.startswith(str(directory))]


async def image_bytes(service: Service, path: str) -> bytes:
    response = await service.get(path)
    assert response.status == 200, await response.text()
    data = await response.read()
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG" and image.width == 120
    return data


def disk_hits(service: Service) -> float:
    return service.metric("thumbproxy_cache_requests_total", level="disk", result="hit")


def renders(service: Service) -> float:
    return service.metric("thumbproxy_renders_total", kind="mono", result="ok")


@pytest.mark.parametrize(("open_files", "threads_per_hit"), [("512", 0), ("0", 1)])
async def test_repeat_disk_hits_are_the_same_bytes_read_without_a_thread(
    start_service: ServiceFactory, frame: dict, executor: CountingExecutor, open_files: str, threads_per_hit: int
) -> None:
    service = await start_service(**DISK_ONLY, THUMBPROXY_OPEN_FILES=open_files)
    path = f"/{frame['basename']}/?image=true&width=120"
    rendered = await image_bytes(service, path)
    # Read from the disk level in a thread, as every first hit is.
    assert await image_bytes(service, path) == rendered
    jobs, hits = executor.jobs, disk_hits(service)
    for _ in range(REPEATS):
        assert await image_bytes(service, path) == rendered
    assert executor.jobs - jobs == threads_per_hit * REPEATS
    assert disk_hits(service) - hits == REPEATS
    assert renders(service) == 1


async def test_a_thumbnail_the_disk_level_drops_keeps_its_bytes_and_is_stored_again(
    start_service: ServiceFactory, frame: dict, tmp_path: Path
) -> None:
    service = await start_service(**DISK_ONLY)
    path = f"/{frame['id']}/?image=true&width=120"
    rendered = await image_bytes(service, path)
    assert await image_bytes(service, path) == rendered
    directory = tmp_path / "cache" / "thumbnails"
    assert [target for target in files_open_under(directory) if target.endswith(".val")]
    # Emptied from outside, as another process sharing the directory or an operator would.
    with diskcache.Cache(str(directory)) as shared:
        await asyncio.to_thread(shared.clear)
    # Until the service notices, the file it holds still has the very same bytes.
    assert await image_bytes(service, path) == rendered
    await asyncio.sleep(LINK_CHECK_SECONDS * 1.2)
    for _ in range(3):
        assert await image_bytes(service, path) == rendered
    assert renders(service) == 2
    # The dropped file is let go, and the thumbnail is on the disk level again.
    assert not [target for target in files_open_under(directory) if target.endswith("(deleted)")]
    assert list(directory.rglob("*.val"))


async def test_files_kept_open_are_closed_when_the_service_stops(
    start_service: ServiceFactory, frame: dict, tmp_path: Path
) -> None:
    directory = tmp_path / "cache"
    # The first service of a process starts the render pool's forkserver, which outlives every service.
    await (await start_service(**DISK_ONLY)).client.close()
    before = open_descriptors().items()
    service = await start_service(**DISK_ONLY)
    for width in (100, 120, 140):
        for _ in range(3):
            assert (await service.get(f"/{frame['id']}/?image=true&width={width}")).status == 200
    assert len([target for target in files_open_under(directory) if target.endswith(".val")]) == 3
    await service.client.close()
    # All that stays open is diskcache's SQLite index: one connection per thread that used it, closed by those
    # threads or with the cache object, not by the service.
    # Compared descriptor by descriptor: earlier tests' leftovers may close meanwhile.
    opened = [target for _, target in open_descriptors().items() - before]
    assert all(Path(target).name.startswith("cache.db") for target in opened), opened


@pytest.fixture
def no_nowait_directory() -> Iterator[Path]:
    """A directory on tmpfs, whose files this kernel will not read with RWF_NOWAIT."""
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no tmpfs at /dev/shm")
    with tempfile.TemporaryDirectory(dir="/dev/shm") as directory:
        probe = Path(directory) / "probe"
        probe.write_bytes(b"probe")
        descriptor = os.open(probe, os.O_RDONLY)
        try:
            os.preadv(descriptor, [bytearray(5)], 0, os.RWF_NOWAIT)
            pytest.skip("tmpfs here reads with RWF_NOWAIT: no filesystem at hand refuses it")
        except OSError:
            pass
        finally:
            os.close(descriptor)
        yield Path(directory)


async def test_a_cache_on_a_filesystem_without_nowait_reads_still_answers(
    start_service: ServiceFactory,
    frame: dict,
    executor: CountingExecutor,
    no_nowait_directory: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = await start_service(**DISK_ONLY, THUMBPROXY_CACHE_DIR=str(no_nowait_directory))
    path = f"/{frame['id']}/?image=true&width=120"
    with caplog.at_level(logging.INFO, logger="thumbproxy.cache.heldfiles"):
        rendered = await image_bytes(service, path)
        for _ in range(5):
            assert await image_bytes(service, path) == rendered
    # Every hit read in a thread instead, and no file kept open.
    assert disk_hits(service) == 5 and executor.jobs >= 5
    assert [record.getMessage() for record in caplog.records if "RWF_NOWAIT" in record.getMessage()] == [
        f"the disk cache's filesystem at {no_nowait_directory / 'thumbnails'} cannot read without waiting "
        "(RWF_NOWAIT): disk-level hits are read in a thread"
    ]
    assert not [target for target in files_open_under(no_nowait_directory) if target.endswith(".val")]


def test_held_files_are_bounded_and_large_ones_never_held(tmp_path: Path) -> None:
    held = HeldFiles(max_files=2, directory=str(tmp_path))
    opened = {}
    for name, size in (("a", 10), ("b", 20), ("c", 30), ("large", MAX_HELD_BYTES + 1)):
        (tmp_path / name).write_bytes(name[0].encode() * size)
        opened[name] = (tmp_path / name).open("rb")
        held.hold(name, opened[name], size)
        if name == "b":
            assert held.read("a") == b"a" * 10  # "a" is now the most recently read
    assert held.read("b") is None and opened["b"].closed
    assert held.read("a") == b"a" * 10 and held.read("c") == b"c" * 30
    assert held.read("large") is None and opened["large"].closed
    held.close()
    assert all(file.closed for file in opened.values())


async def test_a_hit_read_from_a_held_file_fills_the_memory_level(tmp_path: Path) -> None:
    metrics = Metrics()
    disk = DiskCache(tmp_path, size_limit_bytes=2**30, open_files=8)
    tiered = TieredCache(MemoryCache(max_bytes=1000), disk, None, metrics.cache_requests)
    first, second = os.urandom(600), os.urandom(600)
    await tiered.put("first", first, wait_for_s3=False)
    await tiered.put("second", second, wait_for_s3=False)
    # Each read from the disk level (in a thread) pushes the other thumbnail out of memory.
    assert await tiered.get("first") == (first, "disk")
    assert await tiered.get("second") == (second, "disk")
    assert tiered.hit_nowait("first") == (first, "disk")
    assert tiered.hit_nowait("first") == (first, "memory")
    disk.close()
