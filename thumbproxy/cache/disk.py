"""Level 1: a size-bounded, least-recently-used cache on local disk that survives restarts."""

import asyncio
import logging
import mmap
import os
import sqlite3
from collections.abc import Callable, Sequence
from contextlib import suppress
from functools import cache, partial
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import diskcache

from thumbproxy.cache.heldfiles import HeldFiles
from thumbproxy.ops.throttledlog import ThrottledWarning

log = logging.getLogger(__name__)
T = TypeVar("T")
# A broken disk fails every request: one warning a minute says so without flooding the log.
WARN_INTERVAL_SECONDS = 60.0
# Thumbnail keys are "<id>/<digest>", so this one can never collide with a thumbnail.
PROBE_KEY = "readiness-probe"
# Every value in a file of its own, not inside the SQLite index, so a thumbnail's file can be held open.
MIN_FILE_SIZE = 0
# SQLite writes its WAL index through a shared mapping of this file: once the file cannot be written (made
# immutable), such a write kills the process with SIGBUS instead of failing. Checked before each use.
WAL_INDEX = "cache.db-shm"


class UnwritableIndex(OSError):
    """The cache's WAL index file cannot be written: using the cache could crash the process."""


def _check_index(directory: str) -> None:
    """UnwritableIndex when the WAL index exists and cannot be written; in a thread (two system calls)."""
    path = os.path.join(directory, WAL_INDEX)
    if not os.access(path, os.W_OK) and os.path.exists(path):
        raise UnwritableIndex(f"{path} cannot be written (immutable?): the disk level is left out")


class DiskCache:
    """diskcache behind an async get/put; its SQLite and file I/O runs in threads.

    Values read with `keep_open` keep their files open (up to `open_files` of them), and a later
    `read_nowait` answers from such a file on the event loop when the page cache holds it.
    A directory that cannot be opened (read-only, full, not a directory) leaves the level out:
    every read is a miss, every write a no-op, and readiness reports the disk as failing.
    """

    def __init__(self, directory: Path, size_limit_bytes: int, open_files: int = 0) -> None:
        # For workers, which map and write values themselves (map_elsewhere, write_elsewhere).
        self.directory = str(directory)
        self._failure_warning = ThrottledWarning(log, WARN_INTERVAL_SECONDS)
        self._held = HeldFiles(open_files, self.directory)
        self._cache: diskcache.Cache | None = None
        try:
            self._cache = diskcache.Cache(
                str(directory),
                size_limit=size_limit_bytes,
                eviction_policy="least-recently-used",
                disk_min_file_size=MIN_FILE_SIZE,
            )
        except Exception as error:
            self._failure_warning.warn("disk cache %s cannot be opened, serving without it: %r", directory, error)

    async def get(self, key: str, keep_open: bool = False) -> bytes | None:
        """The thumbnail under key, or None; a failing disk reads as a miss.

        With `keep_open`, its file stays open for `read_nowait`.
        """
        if self._cache is None:
            return None
        try:
            if not keep_open:
                return await asyncio.to_thread(_checked, self.directory, self._cache.get, key)
            # A file dropped by a cancelled await is closed with its file object.
            found = await asyncio.to_thread(_checked, self.directory, _read_open, self._cache, key)
        except Exception as error:
            self._failure_warning.warn("disk cache read failed, serving without it: %r", error)
            return None
        if found is None:
            return None
        thumbnail, file = found
        if file is not None:
            self._held.hold(key, file, len(thumbnail))
        return thumbnail

    def read_nowait(self, key: str) -> bytearray | None:
        """The thumbnail under key if a file kept open by `get` holds it and the page cache has it all; never waits."""
        return self._held.read(key)

    def held_keys(self) -> list[str]:
        """The keys whose files are kept open for `read_nowait`."""
        return self._held.keys()

    async def mark_used(self, keys: Sequence[str]) -> None:
        """Make these values the most recently used, as reading them would, without reading them;
        a failing disk is logged."""
        if self._cache is None or not keys:
            return
        try:
            await asyncio.to_thread(_checked, self.directory, _mark_used, self._cache, keys)
        except Exception as error:
            self._failure_warning.warn("disk cache read failed, serving without it: %r", error)

    async def put(self, key: str, thumbnail: bytes) -> bool:
        """Store a thumbnail; a full or unwritable disk is logged and answers False, never raises."""
        if self._cache is None:
            return False
        try:
            return await asyncio.to_thread(_checked, self.directory, self._cache.set, key, thumbnail)
        except Exception as error:
            self._failure_warning.warn("disk cache write failed, serving without it: %r", error)
            return False

    async def writable(self) -> bool:
        """Whether a small value can be written and read back."""
        probe = b"readiness"
        return await self.put(PROBE_KEY, probe) and await self.get(PROBE_KEY) == probe

    def close(self) -> None:
        """Close the files kept open and release the cache's database connections."""
        self._held.close()
        if self._cache is not None:
            self._cache.close()


def _checked(directory: str, use: Callable[..., T], *args: Any) -> T:
    """In a thread: use(*args) of the cache in directory, once its WAL index is known to be writable."""
    _check_index(directory)
    return use(*args)


def _mark_used(cache: diskcache.Cache, keys: Sequence[str]) -> None:
    """In a thread: look each key up, which is what refreshes its place in the eviction order."""
    for key in keys:
        # read=True opens a value's file instead of reading it.
        found = cache.get(key, read=True)
        if hasattr(found, "close"):
            found.close()


def _read_open(cache: diskcache.Cache, key: str) -> tuple[bytes, BinaryIO | None] | None:
    """In a thread: the value under key and its file, still open; no file for a value stored in the index."""
    found = cache.get(key, read=True)
    if found is None:
        return None
    if isinstance(found, bytes):
        return found, None
    try:
        return found.read(), found
    except BaseException:
        found.close()
        raise


@cache
def _opened_elsewhere(directory: str) -> diskcache.Cache:
    # Once per process: opening costs milliseconds. diskcache is safe to share between processes.
    return diskcache.Cache(directory)


def open_elsewhere(directory: str) -> None:
    """Open the disk cache at directory in this process (a pool worker) before its first read or write."""
    # On failure map_elsewhere and write_elsewhere try again, and fail as a miss or a failed write.
    with suppress(OSError, sqlite3.Error):
        _opened_elsewhere(directory)


def map_elsewhere(directory: str, key: str) -> mmap.mmap | bytes | None:
    """The value under key in the disk cache at directory, mapped read-only from another process (a pool
    worker): nothing is copied, its pages are the page cache's. None when it is not there or the disk fails."""
    try:
        found = _checked(directory, partial(_opened_elsewhere(directory).get, read=True), key)
    except (OSError, sqlite3.Error):
        return None
    if found is None:
        return None
    # Every value has a file of its own (MIN_FILE_SIZE); the mapping outlives the file's descriptor.
    with found:
        try:
            return mmap.mmap(found.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:
            # An empty file cannot be mapped: its value is empty.
            return b""


def write_elsewhere(directory: str, key: str, value: bytes) -> bool:
    """Store value under key in the disk cache at directory from another process (a pool worker); False
    when the disk fails."""
    try:
        return bool(_checked(directory, _opened_elsewhere(directory).set, key, value))
    except (OSError, sqlite3.Error, diskcache.Timeout):
        return False
