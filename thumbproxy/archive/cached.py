"""An archive in front of another that remembers frame records for a while, without leaking them.

A public frame (``public_date`` in the past) is visible to everyone, so its record is shared by
all callers. A proprietary record is remembered only for the caller whose credentials fetched
it, under a hash of their Authorization header, and never for an anonymous caller.
"""

import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from pathlib import Path

from thumbproxy.archive.base import Archive, Frame
from thumbproxy.singleflight import SingleFlight

# Whose records an entry holds: _PUBLIC, or the hash of one caller's Authorization header.
_PUBLIC = "public"
# (scope, "id" or "basename", the id or basename looked up)
_Key = tuple[str, str, int | str]
# A lookup in flight: the caller's scope (None for anonymous), then what is looked up.
_FlightKey = tuple[str | None, str, int | str]


class CachedArchive:
    """An `Archive` that answers repeated frame lookups from memory; lists and files pass through."""

    def __init__(
        self,
        archive: Archive,
        public_ttl: float = 300.0,
        private_ttl: float = 60.0,
        max_records: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Public records are kept `public_ttl` seconds, a caller's proprietary ones `private_ttl`.

        At most `max_records` entries (one per id or basename) are kept, least recently used dropped first.
        """
        self._archive = archive
        self._public_ttl = public_ttl
        self._private_ttl = private_ttl
        self._records = _ExpiringRecords(max_records, clock)
        self._flights: SingleFlight[_FlightKey, Frame] = SingleFlight()

    async def frame(self, frame_id: int, authorization: str | None) -> Frame:
        """The frame with this id; ThumbproxyError(404) if missing or not visible to the caller."""
        return await self._lookup("id", frame_id, authorization, lambda: self._archive.frame(frame_id, authorization))

    async def frame_by_basename(self, basename: str, authorization: str | None) -> Frame:
        """The one frame with this basename; ThumbproxyError(404) for none or several."""
        return await self._lookup(
            "basename", basename, authorization, lambda: self._archive.frame_by_basename(basename, authorization)
        )

    def public_record(self, field: str, value: int | str) -> Frame | None:
        """The remembered public record found by this lookup ("id" or "basename"), without awaiting anything."""
        return self._records.get((_PUBLIC, field, value))

    async def frames(self, filters: Mapping[str, str], authorization: str | None) -> list[Frame]:
        """Every frame matching the filters, always asked of the archive."""
        return await self._archive.frames(filters, authorization)

    async def reachable(self) -> bool:
        """Whether the archive answers."""
        return await self._archive.reachable()

    def fits_file(self, frame: Frame) -> AbstractAsyncContextManager[Path]:
        """The archive's own FITS file context."""
        return self._archive.fits_file(frame)

    async def close(self) -> None:
        """Cancel the lookups still under way."""
        await self._flights.close()

    async def _lookup(
        self, field: str, value: int | str, authorization: str | None, fetch: Callable[[], Awaitable[Frame]]
    ) -> Frame:
        """A remembered record the caller may see, else one fetch shared by the caller's identical lookups."""
        scope = _scope_of(authorization)
        for candidate in (_PUBLIC,) if scope is None else (_PUBLIC, scope):
            cached = self._records.get((candidate, field, value))
            if cached is not None:
                return cached

        async def fetch_and_remember() -> Frame:
            frame = await fetch()
            self._remember(frame, scope, field, value)
            return frame

        frame, _ = await self._flights.run((scope, field, value), fetch_and_remember)
        return frame

    def _remember(self, frame: Frame, scope: str | None, field: str, value: int | str) -> None:
        """Keep a fetched record for everyone if public, else for its caller alone (never anonymous)."""
        if _is_public(frame):
            scope, ttl = _PUBLIC, self._public_ttl
        elif scope is not None:
            ttl = self._private_ttl
        else:
            return
        # A frame found by basename is also the answer to a lookup of its id; not the reverse,
        # since the archive refuses a basename that several frames share.
        for key in {(scope, field, value), (scope, "id", frame.id)}:
            self._records.put(key, frame, ttl)


class _ExpiringRecords:
    """Frame records that expire after a time to live, at most `max_records`, least recently used dropped."""

    def __init__(self, max_records: int, clock: Callable[[], float]) -> None:
        self._max_records = max_records
        self._clock = clock
        self._entries: OrderedDict[_Key, tuple[float, Frame]] = OrderedDict()

    def get(self, key: _Key) -> Frame | None:
        """The record kept under `key`, unless missing or expired."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, frame = entry
        if self._clock() >= expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return frame

    def put(self, key: _Key, frame: Frame, ttl: float) -> None:
        """Keep `frame` under `key` for `ttl` seconds."""
        self._entries[key] = (self._clock() + ttl, frame)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_records:
            self._entries.popitem(last=False)


def _scope_of(authorization: str | None) -> str | None:
    """The caller's private scope: a hash of the exact header, so the credential itself is never kept."""
    if authorization is None:
        return None
    # surrogateescape: how aiohttp decodes header bytes that are not UTF-8.
    return hashlib.sha256(authorization.encode("utf-8", "surrogateescape")).hexdigest()


def _is_public(frame: Frame) -> bool:
    """Whether everyone may see the frame now: its public date has passed."""
    return frame.public_date is not None and frame.public_date <= datetime.now(UTC)
