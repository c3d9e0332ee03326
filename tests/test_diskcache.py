"""The disk level: persistent, bounded, and harmless when the disk misbehaves."""

import os
import shutil
from pathlib import Path

from thumbproxy.cache.disk import DiskCache, map_elsewhere, write_elsewhere


async def test_survives_a_restart(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path, size_limit_bytes=10 * 2**20)
    await cache.put("k", b"jpeg bytes" * 10_000)
    cache.close()
    reopened = DiskCache(tmp_path, size_limit_bytes=10 * 2**20)
    assert await reopened.get("k") == b"jpeg bytes" * 10_000
    assert await reopened.get("other") is None
    reopened.close()


async def test_bounded_size_evicts_least_recently_used(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path, size_limit_bytes=2 * 2**20)
    blob = os.urandom(50_000)
    await cache.put("first", blob)
    for number in range(100):
        # Reading "first" keeps it recent while the others push the cache past its bound.
        assert await cache.get("first") == blob
        await cache.put(f"k{number}", os.urandom(50_000))
    assert await cache.get("first") == blob
    kept = [await cache.get(f"k{number}") for number in range(100)]
    assert kept[0] is None and kept[-1] is not None
    # Thumbnails live in .val files beside the SQLite index; together they keep to the bound.
    assert sum(path.stat().st_size for path in tmp_path.rglob("*.val")) <= 2 * 2**20
    cache.close()


async def test_unwritable_directory_is_a_miss_not_an_error(tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    cache = DiskCache(directory, size_limit_bytes=2**20)
    # Root writes through permission bits, so make the directory unusable another way.
    shutil.rmtree(directory)
    directory.write_bytes(b"")
    await cache.put("k", os.urandom(100_000))
    assert await cache.get("k") is None
    cache.close()


async def test_a_broken_disk_warns_once_not_per_request(tmp_path: Path, caplog) -> None:
    directory = tmp_path / "cache"
    cache = DiskCache(directory, size_limit_bytes=2**20)
    shutil.rmtree(directory)
    directory.write_bytes(b"")
    for _ in range(20):
        assert await cache.put("k", os.urandom(100_000)) is False
    assert len([record for record in caplog.records if record.levelname == "WARNING"]) == 1
    cache.close()


async def test_another_process_maps_and_writes_values_of_the_disk_level(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path, size_limit_bytes=10 * 2**20)
    await cache.put("k", b"preview bytes" * 10_000)
    await cache.put("empty", b"")
    directory = str(tmp_path)
    # The calls a render worker makes; a second handle on the cache stands in for its process.
    mapped = map_elsewhere(directory, "k")
    assert mapped is not None and mapped[:] == b"preview bytes" * 10_000
    assert map_elsewhere(directory, "empty") == b""
    assert map_elsewhere(directory, "absent") is None
    assert write_elsewhere(directory, "written", b"made in a worker")
    assert await cache.get("written") == b"made in a worker"
    cache.close()
