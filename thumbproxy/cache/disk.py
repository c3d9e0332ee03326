"""Level 1: a size-bounded, least-recently-used cache on local disk that survives restarts."""

import asyncio
import logging
from pathlib import Path

import diskcache

log = logging.getLogger(__name__)


class DiskCache:
    """diskcache behind an async get/put; its SQLite and file I/O runs in threads."""

    def __init__(self, directory: Path, size_limit_bytes: int) -> None:
        self._cache = diskcache.Cache(
            str(directory), size_limit=size_limit_bytes, eviction_policy="least-recently-used"
        )

    async def get(self, key: str) -> bytes | None:
        """The thumbnail under key, or None; a failing disk reads as a miss."""
        try:
            return await asyncio.to_thread(self._cache.get, key)
        except Exception:
            log.warning("disk cache read failed; serving without it", exc_info=True)
            return None

    async def put(self, key: str, thumbnail: bytes) -> bool:
        """Store a thumbnail; a full or unwritable disk is logged and answers False, never raises."""
        try:
            return await asyncio.to_thread(self._cache.set, key, thumbnail)
        except Exception:
            log.warning("disk cache write failed; serving without it", exc_info=True)
            return False

    def close(self) -> None:
        """Release the cache's database connections."""
        self._cache.close()
