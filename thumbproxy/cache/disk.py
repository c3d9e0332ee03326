"""Level 1: a size-bounded, least-recently-used cache on local disk that survives restarts."""

import asyncio
import logging
import sqlite3
from functools import lru_cache
from pathlib import Path

import diskcache

from thumbproxy.throttledlog import ThrottledWarning

log = logging.getLogger(__name__)
# A broken disk fails every request: one warning a minute says so without flooding the log.
WARN_INTERVAL_SECONDS = 60.0
# Thumbnail keys are "<id>/<digest>", so this one can never collide with a thumbnail.
PROBE_KEY = "readiness-probe"


class DiskCache:
    """diskcache behind an async get/put; its SQLite and file I/O runs in threads.

    A directory that cannot be opened (read-only, full, not a directory) leaves the level out:
    every read is a miss, every write a no-op, and readiness reports the disk as failing.
    """

    def __init__(self, directory: Path, size_limit_bytes: int) -> None:
        # For readers in other processes (read_elsewhere).
        self.directory = str(directory)
        self._failure_warning = ThrottledWarning(log, WARN_INTERVAL_SECONDS)
        self._cache: diskcache.Cache | None = None
        try:
            self._cache = diskcache.Cache(
                str(directory), size_limit=size_limit_bytes, eviction_policy="least-recently-used"
            )
        except Exception as error:
            self._failure_warning.warn("disk cache %s cannot be opened, serving without it: %r", directory, error)

    async def get(self, key: str) -> bytes | None:
        """The thumbnail under key, or None; a failing disk reads as a miss."""
        if self._cache is None:
            return None
        try:
            return await asyncio.to_thread(self._cache.get, key)
        except Exception as error:
            self._failure_warning.warn("disk cache read failed, serving without it: %r", error)
            return None

    async def put(self, key: str, thumbnail: bytes) -> bool:
        """Store a thumbnail; a full or unwritable disk is logged and answers False, never raises."""
        if self._cache is None:
            return False
        try:
            return await asyncio.to_thread(self._cache.set, key, thumbnail)
        except Exception as error:
            self._failure_warning.warn("disk cache write failed, serving without it: %r", error)
            return False

    async def writable(self) -> bool:
        """Whether a small value can be written and read back."""
        probe = b"readiness"
        return await self.put(PROBE_KEY, probe) and await self.get(PROBE_KEY) == probe

    def close(self) -> None:
        """Release the cache's database connections."""
        if self._cache is not None:
            self._cache.close()


@lru_cache(maxsize=None)
def _opened_elsewhere(directory: str) -> diskcache.Cache:
    # Once per process: opening costs milliseconds. diskcache is safe to share between processes.
    return diskcache.Cache(directory)


def open_elsewhere(directory: str) -> None:
    """Open the disk cache at directory in this process (a pool worker) before its first read_elsewhere."""
    try:
        _opened_elsewhere(directory)
    except (OSError, sqlite3.Error):
        # read_elsewhere tries again and reads as a miss.
        pass


def read_elsewhere(directory: str, key: str) -> bytes | None:
    """The value under key in the disk cache at directory, read from another process (a pool worker);
    None when it is not there or the disk fails."""
    try:
        return _opened_elsewhere(directory).get(key)
    except (OSError, sqlite3.Error):
        return None
