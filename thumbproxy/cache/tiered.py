"""The cache the service talks to: memory, then disk, then the optional S3 level."""

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from thumbproxy.cache.disk import DiskCache
from thumbproxy.cache.memory import MemoryCache
from thumbproxy.cache.s3 import S3Cache
from thumbproxy.ops.metrics import LabelledCounts

log = logging.getLogger(__name__)

# Long enough for uploads in flight to finish, short enough not to stall a deploy.
CLOSE_TIMEOUT_SECONDS = 10.0
# How often thumbnails answered without the disk level (from memory, or from a held file) are marked
# used there: its least-recently-used eviction would otherwise take the hottest thumbnails first.
DISK_RECENCY_SECONDS = 300.0


class TieredCache:
    """Memory first, then disk, then S3; a hit fills the levels above it, and writes go to all."""

    def __init__(
        self, memory: MemoryCache, disk: DiskCache, s3: S3Cache | None, cache_requests: LabelledCounts
    ) -> None:
        self._memory = memory
        self._disk = disk
        self._s3 = s3
        self._cache_requests = cache_requests
        # Uploads under way by key: strong references (the loop keeps only weak ones), and a
        # JSON request for a thumbnail being uploaded waits for that upload instead of repeating it.
        self._uploads: dict[str, asyncio.Task[bool]] = {}
        self._recency: asyncio.Task[None] | None = None

    def start(self, recency_seconds: float = DISK_RECENCY_SECONDS) -> None:
        """Mark the thumbnails answered without the disk level used there every recency_seconds, until `close`."""
        self._recency = asyncio.create_task(self._keep_recent(recency_seconds))

    async def refresh_disk_recency(self) -> None:
        """Mark the thumbnails the memory level and the held files answer as used on the disk level,
        so that its eviction takes the coldest thumbnails, not the hottest."""
        # A held file's hit also fills the memory level: each key once.
        await self._disk.mark_used(list(dict.fromkeys([*self._memory.keys(), *self._disk.held_keys()])))

    async def _keep_recent(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            await self.refresh_disk_recency()

    def memory_hit(self, key: str) -> bytes | None:
        """The thumbnail if the memory level holds it: no await, no thread, no copy."""
        thumbnail = self._memory.get(key)
        if thumbnail is not None:
            self._count("memory", "hit")
        return thumbnail

    def hit_nowait(self, key: str) -> tuple[bytes | bytearray, str] | None:
        """The thumbnail and its level ("memory" or "disk") if it can be had without an await or a thread:
        from memory, else from a disk-level file kept open whose bytes the page cache holds."""
        thumbnail = self.memory_hit(key)
        if thumbnail is not None:
            return thumbnail, "memory"
        on_disk = self._disk.read_nowait(key)
        if on_disk is None:
            return None
        self._count("disk", "hit")
        # A hit fills the level above it.
        self._memory.put(key, on_disk)
        return on_disk, "disk"

    async def get(self, key: str) -> tuple[bytes, str] | None:
        """The thumbnail and the level that held it ("memory", "disk" or "s3"), or None everywhere."""
        thumbnail = self.memory_hit(key)
        if thumbnail is not None:
            return thumbnail, "memory"
        # Its file kept open: a repeat hit can read it without a thread (see hit_nowait).
        thumbnail = await self._disk.get(key, keep_open=True)
        self._count("disk", "miss" if thumbnail is None else "hit")
        if thumbnail is not None:
            self._memory.put(key, thumbnail)
            return thumbnail, "disk"
        if self._s3 is None:
            return None
        read = await self._s3.read(key)
        self._count("s3", "hit" if read.result == "ok" else read.result)
        if read.thumbnail is None:
            return None
        self._memory.put(key, read.thumbnail)
        await self._disk.put(key, read.thumbnail)
        return read.thumbnail, "s3"

    async def put(self, key: str, thumbnail: bytes, *, wait_for_s3: bool) -> bool:
        """Store in memory and on disk now and in S3; True only when waited for and S3 holds it.

        Without `wait_for_s3` the upload runs in the background (see `close`) and this answers False.
        """
        self._memory.put(key, thumbnail)
        await self._disk.put(key, thumbnail)
        if self._s3 is None:
            return False
        if wait_for_s3:
            return await self._s3.put(key, thumbnail)
        self._in_background(key, self._s3.put(key, thumbnail))
        return False

    async def url(self, key: str) -> str | None:
        """A pre-signed S3 URL for the thumbnail, or None without S3 or credentials; does not check it exists."""
        return None if self._s3 is None else await self._s3.url(key)

    async def ensure_in_s3(self, key: str, thumbnail: bytes) -> bool:
        """Whether S3 holds the thumbnail after uploading these bytes if it did not; False without S3."""
        if self._s3 is None:
            return False
        upload = self._uploads.get(key)
        if upload is not None:
            return await asyncio.shield(upload)
        return await self._s3.contains(key) or await self._s3.put(key, thumbnail)

    @property
    def s3(self) -> S3Cache | None:
        """The S3 level, if there is one."""
        return self._s3

    @property
    def disk(self) -> DiskCache:
        """The disk level."""
        return self._disk

    async def close(self) -> None:
        """Let background uploads finish (bounded), so a shutdown loses none that could complete."""
        if self._recency is not None:
            self._recency.cancel()
            await asyncio.gather(self._recency, return_exceptions=True)
        running = set(self._uploads.values())
        if not running:
            return
        _, unfinished = await asyncio.wait(running, timeout=CLOSE_TIMEOUT_SECONDS)
        if unfinished:
            log.warning("abandoning %d S3 uploads still running at shutdown", len(unfinished))
            for task in unfinished:
                task.cancel()
            await asyncio.wait(unfinished)

    def _in_background(self, key: str, upload: Coroutine[Any, Any, bool]) -> None:
        task = asyncio.create_task(upload)
        self._uploads[key] = task
        task.add_done_callback(lambda finished: self._finished(key, finished))

    def _finished(self, key: str, task: asyncio.Task[bool]) -> None:
        if self._uploads.get(key) is task:
            del self._uploads[key]
        # S3Cache.put does not raise; retrieving anyway keeps a surprise from going unreported.
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("background S3 upload failed", exc_info=error)

    def _count(self, level: str, result: str) -> None:
        self._cache_requests.inc(level, result)
