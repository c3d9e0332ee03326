"""The newest frame matching archive filters, for dashboards and status pages; remembered briefly per caller.

A Grafana panel refreshing every few seconds asks the same question over and over: the answer
(and a "nothing matches") is kept THUMBPROXY_LATEST_TTL seconds per filter set and caller, so
the archive is asked at most once per interval, and never answers one caller with another's frame.
"""

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping

from thumbproxy.archive.base import Archive, Frame, caller_scope
from thumbproxy.errors import ThumbproxyError
from thumbproxy.singleflight import SingleFlight

NO_MATCH_MESSAGE = "No frame matches these filters"
NEWEST_FIRST = {"ordering": "-observation_date", "limit": "1"}
# Different filter sets and callers remembered at once; the least recently used go first.
MAX_ENTRIES = 4096

_Key = tuple[tuple[tuple[str, str], ...], str | None]


class LatestFrames:
    """`newest(filters, authorization)`: the archive's newest matching frame, reused for `ttl` seconds."""

    def __init__(self, archive: Archive, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._archive = archive
        self._ttl = ttl
        self._clock = clock
        self._answers: OrderedDict[_Key, tuple[float, Frame | None]] = OrderedDict()
        self._flights: SingleFlight[_Key, Frame | None] = SingleFlight()

    async def newest(self, filters: Mapping[str, str], authorization: str | None) -> Frame:
        """The newest frame (by observation date) the caller may see among those matching; 404 if none."""
        key = (tuple(sorted(filters.items())), caller_scope(authorization))
        remembered = self._answers.get(key)
        if remembered is not None and remembered[0] > self._clock():
            self._answers.move_to_end(key)
            frame = remembered[1]
        else:
            frame, _ = await self._flights.run(key, lambda: self._ask(key, filters, authorization))
        if frame is None:
            raise ThumbproxyError(404, NO_MATCH_MESSAGE)
        return frame

    async def close(self) -> None:
        """Cancel the archive calls still under way."""
        await self._flights.close()

    async def _ask(self, key: _Key, filters: Mapping[str, str], authorization: str | None) -> Frame | None:
        found = await self._archive.frames({**filters, **NEWEST_FIRST}, authorization)
        frame = found[0] if found else None
        self._answers[key] = (self._clock() + self._ttl, frame)
        self._answers.move_to_end(key)
        while len(self._answers) > MAX_ENTRIES:
            self._answers.popitem(last=False)
        return frame
