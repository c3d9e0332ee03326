"""Warnings about a failing dependency, logged once per interval instead of once per request."""

import logging
import time
from collections.abc import Callable


class ThrottledWarning:
    """A warning logged at most once per interval; the next one says how many were held back."""

    def __init__(
        self,
        logger: logging.Logger,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
        level: int = logging.WARNING,
    ) -> None:
        self._logger = logger
        self._level = level
        self._interval = interval
        self._clock = clock
        self._last: float | None = None
        self._suppressed = 0

    def warn(self, message: str, *args: object, exc_info: BaseException | None = None) -> None:
        """Log `message % args` (with exc_info's traceback) unless one went out less than `interval` seconds ago."""
        now = self._clock()
        if self._last is not None and now - self._last < self._interval:
            self._suppressed += 1
            return
        if self._suppressed:
            message += " (and %d more since the last warning)"
            args += (self._suppressed,)
        self._logger.log(self._level, message, *args, exc_info=exc_info)
        self._last = now
        self._suppressed = 0
