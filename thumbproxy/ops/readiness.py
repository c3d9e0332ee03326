"""Readiness: can this instance serve? Each dependency checked, results kept a few seconds."""

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any

from thumbproxy.support.singleflight import SingleFlight

# A probe storm (every kubelet, every load balancer) then costs one round of checks per interval.
CACHE_SECONDS = 3.0
CHECK_TIMEOUT_SECONDS = 5.0

# A check answers whether it passed, or that and details worth showing beside its status.
CheckResult = bool | tuple[bool, Mapping[str, Any]]
Check = Callable[[], Awaitable[CheckResult]]


class Readiness:
    """Runs the named checks concurrently; ready when every required one passes and not shutting down."""

    def __init__(
        self,
        checks: Mapping[str, Check],
        required: Collection[str],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._checks = dict(checks)
        self._required = frozenset(required) & set(checks)
        self._clock = clock
        self._flights: SingleFlight[str, dict[str, Any]] = SingleFlight()
        self._last: tuple[float, dict[str, Any]] | None = None
        self.shutting_down = False

    async def report(self) -> tuple[bool, dict[str, Any]]:
        """Whether ready, and {"status", "checks": {name: {"status", "latency_ms", "required", ...details}}}."""
        if self.shutting_down:
            return False, {"status": "shutting down", "checks": {}}
        if self._last is None or self._clock() - self._last[0] > CACHE_SECONDS:
            checks, _ = await self._flights.run("checks", self._run_checks)
            self._last = (self._clock(), checks)
        checks = self._last[1]
        ready = all(checks[name]["status"] == "ok" for name in self._required)
        return ready, {"status": "ready" if ready else "not ready", "checks": checks}

    async def close(self) -> None:
        """Stop checks still under way."""
        await self._flights.close()

    async def _run_checks(self) -> dict[str, Any]:
        names = list(self._checks)
        outcomes = await asyncio.gather(*(self._timed(self._checks[name]) for name in names))
        return {
            name: {
                "status": "ok" if passed else "failing",
                "latency_ms": round(seconds * 1000, 1),
                "required": name in self._required,
                **details,
            }
            for name, (passed, details, seconds) in zip(names, outcomes)
        }

    async def _timed(self, check: Check) -> tuple[bool, Mapping[str, Any], float]:
        started = time.perf_counter()
        details: Mapping[str, Any] = {}
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
                result = await check()
            passed, details = result if isinstance(result, tuple) else (result, {})
        except (TimeoutError, OSError):
            passed = False
        return passed, details, time.perf_counter() - started
