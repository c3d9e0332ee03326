"""An archive in front of another that remembers frame records for a while, without leaking them.

A public frame (``public_date`` in the past) is visible to everyone, so its record is shared by
all callers. A proprietary record is remembered only for the caller whose credentials fetched
it, under a hash of their Authorization header, and never for an anonymous caller.

A caller's token is checked by the archive the first time it is seen, whatever the frame: a public
record remembered for everyone is answered to a token only once the archive has accepted it, and a
token it refused (401) is refused again without asking, each verdict kept as long as a public record.

While the archive is failing (5xx, timeout, no connection) or throttling, a public record past its
time to live is still answered for a while ("stale"); a proprietary one never is, and a record the
archive has answered 404 for is forgotten at once.

When the archive answers a token's call with a 500 (what it does for token users while the
Observation Portal it checks tokens against is down), the call is tried once more, then the public
record is answered instead, as it would be to anyone: a public frame is public to everyone.
"""

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TypeVar

from thumbproxy.archive.base import Archive, Frame, TokenCallFailed, caller_scope
from thumbproxy.archive.health import Outcome
from thumbproxy.errors import ThumbproxyError
from thumbproxy.ops.metrics import Metrics
from thumbproxy.ops.throttledlog import ThrottledWarning
from thumbproxy.support.lrumap import LruMap
from thumbproxy.support.singleflight import SingleFlight

logger = logging.getLogger(__name__)
T = TypeVar("T")

# An outage answered from stale records is worth a line a minute, not one per request.
STALE_WARNING_INTERVAL = 60.0
# Tokens whose verdict is remembered at once; the least recently used are asked about again first.
MAX_VERDICTS = 10_000

# Whose records an entry holds: _PUBLIC, or the hash of one caller's Authorization header.
_PUBLIC = "public"
# (scope, "id" or "basename", the id or basename looked up)
_Key = tuple[str, str, int | str]
# A lookup in flight: the caller's scope (None for anonymous), then what is looked up.
_FlightKey = tuple[str | None, str, int | str]
# When an entry stops being fresh, when it stops being usable at all, and the record.
_Entry = tuple[float, float, Frame]
# Until when a token's verdict holds, and the archive's refusal of it (None: accepted).
_Verdict = tuple[float, ThumbproxyError | None]


class CachedArchive:
    """An `Archive` that answers repeated frame lookups from memory; lists and files pass through."""

    def __init__(
        self,
        archive: Archive,
        public_ttl: float = 300.0,
        private_ttl: float = 60.0,
        stale_ttl: float = 0.0,
        max_records: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
    ) -> None:
        """Public records are kept `public_ttl` seconds, a caller's proprietary ones `private_ttl`.

        A public record stays usable `stale_ttl` seconds more, answered only when asking the
        archive again fails with a 5xx (counted in `metrics.stale_records`). At most
        `max_records` entries (one per id or basename) are kept, least recently used dropped first.
        """
        self._archive = archive
        self._public_ttl = public_ttl
        self._private_ttl = private_ttl
        self._stale_ttl = stale_ttl
        self._records = _ExpiringRecords(max_records, clock)
        self._flights: SingleFlight[_FlightKey, Frame] = SingleFlight()
        self._verdicts: LruMap[str, _Verdict] = LruMap(MAX_VERDICTS)
        self._clock = clock
        metrics = metrics or Metrics()
        self._stale_records = metrics.stale_records
        self._public_fallbacks = metrics.archive_public_fallbacks
        self._stale_warning = ThrottledWarning(logger, STALE_WARNING_INTERVAL)

    async def frame(self, frame_id: int, authorization: str | None) -> Frame:
        """The frame with this id; ThumbproxyError(404) if missing or not visible to the caller."""
        return await self._lookup("id", frame_id, authorization)

    async def frame_by_basename(self, basename: str, authorization: str | None) -> Frame:
        """The one frame with this basename; ThumbproxyError(404) for none or several."""
        return await self._lookup("basename", basename, authorization)

    def accepted(self, authorization: str) -> bool:
        """Whether the archive accepted this Authorization header within a public record's time to live."""
        verdict = self._verdict(caller_scope(authorization) or "")
        return verdict is not None and verdict[1] is None

    def public_record(self, field: str, value: int | str) -> Frame | None:
        """The remembered public record found by this lookup ("id" or "basename"), without awaiting anything.

        Only a record within its time to live: a stale one is never answered without asking the archive first.
        """
        return self._records.get((_PUBLIC, field, value))

    async def frames(self, filters: Mapping[str, str], authorization: str | None) -> list[Frame]:
        """Every frame matching the filters, always asked of the archive; its public frames only when the archive
        fails a token's call twice with a 500."""
        try:
            return await _tried_twice(lambda: self._archive.frames(filters, authorization))
        except TokenCallFailed:
            # What an anonymous caller is answered holds public frames only.
            public = await self._archive.frames(filters, None)
            self._public_fallbacks.inc()
            return public

    async def newest(self, filters: Mapping[str, str], authorization: str | None) -> Frame | None:
        """The newest frame matching a caller's filters, always asked of the archive."""
        return await self._archive.newest(filters, authorization)

    async def probe(self) -> Outcome:
        """The archive's own probe."""
        return await self._archive.probe()

    def fits_file(self, frame: Frame) -> AbstractAsyncContextManager[Path]:
        """The archive's own FITS file context."""
        return self._archive.fits_file(frame)

    async def close(self) -> None:
        """Cancel the lookups still under way."""
        await self._flights.close()

    async def _lookup(self, field: str, value: int | str, authorization: str | None) -> Frame:
        """A remembered record the caller may see, else one fetch shared by the caller's identical lookups."""
        scope = caller_scope(authorization)
        if scope is None:
            remembered: tuple[str, ...] = (_PUBLIC,)
        else:
            verdict = self._verdict(scope)
            if verdict is None:
                # The archive has not judged this token lately: it must, even for a public frame.
                remembered = ()
            elif verdict[1] is not None:
                raise verdict[1].again()
            else:
                remembered = (_PUBLIC, scope)
        for candidate in remembered:
            cached = self._records.get((candidate, field, value))
            if cached is not None:
                return cached

        async def fetch_and_remember() -> Frame:
            frame = await self._fetch(field, value, authorization)
            self._remember(frame, scope, field, value)
            return frame

        try:
            frame, _ = await self._flights.run((scope, field, value), fetch_and_remember)
        except ThumbproxyError as error:
            return await self._instead_of(error, field, value, authorization)
        return frame

    async def _fetch(self, field: str, value: int | str, authorization: str | None) -> Frame:
        """The record from the archive, the token's verdict kept; a token's call the archive fails with a 500
        is tried once more."""
        try:
            frame = await _tried_twice(lambda: self._ask(field, value, authorization))
        except ThumbproxyError as error:
            if error.status == 401:
                self._judge(authorization, error)
            raise
        self._judge(authorization, None)
        return frame

    async def _ask(self, field: str, value: int | str, authorization: str | None) -> Frame:
        if field == "id":
            return await self._archive.frame(int(value), authorization)
        return await self._archive.frame_by_basename(str(value), authorization)

    def _verdict(self, scope: str) -> _Verdict | None:
        """The archive's verdict on the token of this scope, while it holds."""
        verdict = self._verdicts.get(scope)
        return verdict if verdict is not None and verdict[0] > self._clock() else None

    def _judge(self, authorization: str | None, refusal: ThumbproxyError | None) -> None:
        """Keep the archive's verdict on a caller's token for as long as a public record."""
        scope = caller_scope(authorization)
        if scope is not None:
            self._verdicts.put(scope, (self._clock() + self._public_ttl, refusal))

    async def _instead_of(
        self, error: ThumbproxyError, field: str, value: int | str, authorization: str | None
    ) -> Frame:
        """The public record answered instead of an archive failure, else `error` raised.

        A token the archive failed twice with a 500 is answered the public record, as anyone would be; any
        caller is answered a stale public record while the archive fails, and an anonymous one while it
        throttles the service.
        """
        if isinstance(error, TokenCallFailed):
            try:
                frame = await self._lookup(field, value, None)
            except ThumbproxyError:
                raise error from None
            self._public_fallbacks.inc()
            return frame
        stale = self._records.usable((_PUBLIC, field, value))
        if stale is None:
            raise error
        if error.status == 404:
            # Gone or no longer public: no record of the frame may be answered again, by id or basename.
            self._records.forget(_PUBLIC, stale.id)
            raise error
        # Other 4xx are the caller's (a bad token, its own quota spent); a 429 to an anonymous lookup is the
        # service's shared quota spent, which leaves the archive as unusable as an outage does.
        shared_quota_spent = error.status == 429 and authorization is None
        if error.status < 500 and not shared_quota_spent:
            raise error
        self._stale_records.inc()
        self._stale_warning.warn(
            "archive failing (%d: %s): answering frame records past their time to live", error.status, error.message
        )
        return stale

    def _remember(self, frame: Frame, scope: str | None, field: str, value: int | str) -> None:
        """Keep a fetched record for everyone if public, else for its caller alone (never anonymous)."""
        if frame.is_public():
            scope, ttl, stale_ttl = _PUBLIC, self._public_ttl, self._stale_ttl
        elif scope is not None:
            ttl, stale_ttl = self._private_ttl, 0.0
        else:
            return
        # A frame found by basename is also the answer to a lookup of its id; not the reverse,
        # since the archive refuses a basename that several frames share.
        for key in {(scope, field, value), (scope, "id", frame.id)}:
            self._records.put(key, frame, ttl, stale_ttl)


async def _tried_twice(call: Callable[[], Awaitable[T]]) -> T:
    """`call()`, made once more when the archive fails a token's call with a 500: a portal that hiccups."""
    try:
        return await call()
    except TokenCallFailed:
        return await call()


class _ExpiringRecords:
    """Frame records that expire after a time to live, at most `max_records`, least recently used dropped.

    An expired record is kept for its stale time more, for `usable` alone.
    """

    def __init__(self, max_records: int, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._entries: LruMap[_Key, _Entry] = LruMap(max_records)

    def get(self, key: _Key) -> Frame | None:
        """The record kept under `key`, unless missing or past its time to live."""
        # Peeked: an expired record is not a use.
        entry = self._entries.peek(key)
        if entry is None:
            return None
        fresh_until, usable_until, frame = entry
        now = self._clock()
        if now >= fresh_until:
            if now >= usable_until:
                self._entries.forget(key)
            return None
        self._entries.mark_used(key)
        return frame

    def usable(self, key: _Key) -> Frame | None:
        """The record kept under `key`, even past its time to live, until its stale time has passed too."""
        entry = self._entries.peek(key)
        if entry is None or self._clock() >= entry[1]:
            return None
        return entry[2]

    def put(self, key: _Key, frame: Frame, ttl: float, stale_ttl: float) -> None:
        """Keep `frame` under `key`: fresh for `ttl` seconds, usable by `usable` for `stale_ttl` more."""
        now = self._clock()
        self._entries.put(key, (now + ttl, now + ttl + stale_ttl, frame))

    def forget(self, scope: str, frame_id: int) -> None:
        """Drop every record of this frame kept for `scope`, whatever it was looked up by."""
        for key in [key for key, (_, _, frame) in self._entries.items() if key[0] == scope and frame.id == frame_id]:
            self._entries.forget(key)
