"""Level 1: a size-bounded, least-recently-used cache on local disk that survives restarts."""

import asyncio
import logging
from pathlib import Path

import diskcache

from thumbproxy.throttledlog import ThrottledWarning

log = logging.getLogger(__name__)
# A broken disk fails every request: one warning a minute says so without flooding the log.
WARN_INTERVAL_SECONDS = 60.0
# Thumbnail keys are "<id>/<digest>", so this one can never collide with a thumbnail.
PROBE_KEY = "readiness-probe"


class DiskCache:
    """diskcache behind an async get/put; its SQLite and file I/O runs in threads."""

    def __init__(self, directory: Path, size_limit_bytes: int) -> None:
        self._cache = diskcache.Cache(
            str(directory), size_limit=size_limit_bytes, eviction_policy="least-recently-used"
        )
        self._failure_warning = ThrottledWarning(log, WARN_INTERVAL_SECONDS)

    async def get(self, key: str) -> bytes | None:
        """The thumbnail under key, or None; a failing disk reads as a miss."""
        try:
            return await asyncio.to_thread(self._cache.get, key)
        except Exception as error:
            self._failure_warning.warn("disk cache read failed, serving without it: %r", error)
            return None

    async def put(self, key: str, thumbnail: bytes) -> bool:
        """Store a thumbnail; a full or unwritable disk is logged and answers False, never raises."""
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
        self._cache.close()
