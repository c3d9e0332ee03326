"""Disk-level files kept open: bounded, and closed when the service stops."""

import os
from pathlib import Path

from conftest import ServiceFactory
from thumbproxy.cache.heldfiles import MAX_HELD_BYTES, HeldFiles

DISK_ONLY = {"THUMBPROXY_MEMORY_CACHE_MB": "0", "THUMBPROXY_PREVIEW_SIZE": "0"}


def files_open_under(directory: Path) -> list[str]:
    """What this process's open descriptors point at below directory."""
    targets = []
    for descriptor in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{descriptor}")
        except OSError:
            continue
        if target.startswith(str(directory)):
            targets.append(target)
    return targets


async def test_files_kept_open_are_closed_when_the_service_stops(
    start_service: ServiceFactory, frame: dict, tmp_path: Path
) -> None:
    directory = tmp_path / "cache"
    # The first service of a process starts the render pool's forkserver, which outlives every service.
    await (await start_service(**DISK_ONLY)).client.close()
    before = len(os.listdir("/proc/self/fd"))
    service = await start_service(**DISK_ONLY)
    for width in (100, 120, 140):
        for _ in range(3):
            assert (await service.get(f"/{frame['id']}/?image=true&width={width}")).status == 200
    assert len([target for target in files_open_under(directory) if target.endswith(".val")]) == 3
    await service.client.close()
    # All that stays open is diskcache's SQLite index: one connection per thread that used it, closed by those
    # threads or with the cache object, not by the service.
    left = files_open_under(directory)
    assert all(Path(target).name.startswith("cache.db") for target in left)
    assert len(os.listdir("/proc/self/fd")) == before + len(left)


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

