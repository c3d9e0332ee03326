"""The interface every cache level offers: bytes by key, asynchronously."""

from typing import Protocol


class ThumbnailCache(Protocol):
    """A store of rendered thumbnails keyed by thumbnail key."""

    async def get(self, key: str) -> bytes | None:
        """The thumbnail stored under key, or None."""
        ...

    async def put(self, key: str, thumbnail: bytes) -> bool:
        """Store a thumbnail under key; False when the level could not store it (never raises)."""
        ...
