"""The newest frame matching archive filters, for dashboards and status pages; remembered briefly per caller.

A Grafana panel refreshing every few seconds asks the same question over and over: the answer
(and a "nothing matches", and the archive refusing a filter's value) is kept THUMBPROXY_LATEST_TTL
seconds per filter set and caller, so the archive is asked at most once per interval, and never
answers one caller with another's frame. A filter name the archive does not know is refused before
the archive is asked: it would ignore it and answer frames the caller did not mean.
"""

import time
from collections.abc import Callable, Mapping

from thumbproxy.archive.base import Archive, Frame, caller_scope
from thumbproxy.archive.filters import unknown_filters, window_mistakes
from thumbproxy.errors import ThumbproxyError
from thumbproxy.support.lrumap import LruMap
from thumbproxy.support.singleflight import SingleFlight

NO_MATCH_MESSAGE = "No frame matches these filters"
# Different filter sets and callers remembered at once; the least recently used go first.
MAX_ENTRIES = 4096

_Key = tuple[tuple[tuple[str, str], ...], str | None]
# The newest frame, None for no match, or the archive's refusal of the filters.
_Answer = Frame | ThumbproxyError | None


class LatestFrames:
    """`newest(filters, authorization)`: the archive's newest matching frame, reused for `ttl` seconds."""

    def __init__(self, archive: Archive, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._archive = archive
        self._ttl = ttl
        self._clock = clock
        # Until when each answer holds (it expires), and the answer.
        self._answers: LruMap[_Key, tuple[float, _Answer]] = LruMap(MAX_ENTRIES)
        self._flights: SingleFlight[_Key, _Answer] = SingleFlight()

    async def newest(self, filters: Mapping[str, str], authorization: str | None) -> Frame:
        """The newest frame (by observation date) the caller may see among those matching; 404 if none.

        400 naming them for filters the archive does not know, whose values it refuses, or a start and end
        it cannot compare.
        """
        unknown = unknown_filters(filters)
        if unknown:
            raise ThumbproxyError(
                400,
                f"Unknown archive filter{'s' if len(unknown) > 1 else ''}: "
                f"{', '.join(unknown)} (the archive's frame filters are listed in the README)",
            )
        mistakes = window_mistakes(filters)
        if mistakes:
            raise ThumbproxyError(
                400,
                "The archive cannot compare these start and end: "
                + "; ".join(f"{name}: {' '.join(messages)}" for name, messages in mistakes.items()),
                errors=mistakes,
            )
        key = (tuple(sorted(filters.items())), caller_scope(authorization))
        # Peeked: an expired answer is not a use.
        remembered = self._answers.peek(key)
        if remembered is not None and remembered[0] > self._clock():
            self._answers.mark_used(key)
            answer = remembered[1]
        else:
            answer, _ = await self._flights.run(key, lambda: self._ask(key, filters, authorization))
        if isinstance(answer, ThumbproxyError):
            raise answer.again()
        if answer is None:
            raise ThumbproxyError(404, NO_MATCH_MESSAGE)
        return answer

    async def close(self) -> None:
        """Cancel the archive calls still under way."""
        await self._flights.close()

    async def _ask(self, key: _Key, filters: Mapping[str, str], authorization: str | None) -> _Answer:
        answer: _Answer
        try:
            answer = await self._archive.newest(filters, authorization)
        except ThumbproxyError as error:
            if error.status != 400:
                raise
            answer = error
        self._answers.put(key, (self._clock() + self._ttl, answer))
        return answer
