"""Trying an archive call again after a failure that may pass, with backoff, within the request deadline."""

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from thumbproxy.errors import ThumbproxyError
from thumbproxy.support.deadline import seconds_left

T = TypeVar("T")


class TransientArchiveError(ThumbproxyError):
    """An archive failure worth trying again: no connection, one dropped mid-answer, or HTTP 502, 503 or 504."""


@dataclass(frozen=True)
class RetryPolicy:
    """How many times an archive call is tried again, and how long to wait before each retry.

    The wait before retry n (counted from 0) is drawn uniformly from [0, min(cap, base * 2**n)]
    ("full jitter"): callers that failed together do not all come back at the same moment.
    """

    retries: int = 0
    base: float = 0.1
    cap: float = 2.0
    # Injectable so tests can fix the waits.
    uniform: Callable[[float, float], float] = field(default=random.uniform, repr=False, compare=False)

    def wait(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (0 for the first retry)."""
        return self.uniform(0.0, min(self.cap, self.base * 2**retry))

    async def run(self, attempt: Callable[[], Awaitable[T]], on_retry: Callable[[], None]) -> T:
        """The outcome of `attempt()`, tried again after each TransientArchiveError while allowed.

        `on_retry` is called before each retry. The last error is raised once `retries` retries
        were made, or when the wait before the next one would pass the request's deadline.
        """
        retry = 0
        while True:
            try:
                return await attempt()
            except TransientArchiveError:
                if retry >= self.retries:
                    raise
                wait = self.wait(retry)
                left = seconds_left()
                # A retry after the deadline would be answered 504 anyway: the archive's own error says more.
                if left is not None and wait >= left:
                    raise
            on_retry()
            await asyncio.sleep(wait)
            retry += 1


# The policy of a client that gives up at the first failure.
NO_RETRIES = RetryPolicy()
