"""How the archive is doing, judged from the outcomes of the calls real traffic makes; a probe only when
there has been none for a while.

Asking the archive on every readiness probe spends its quota: the OCS archive lets anonymous callers
make 1000 calls a day per client address, and a Kubernetes probe every 5 s is 17,280 a day. So the
archive's health is the outcome of the latest archive call, whatever made it, and a probe is sent
only when no call has been made for TRAFFIC_WINDOW seconds, at most once every PROBE_INTERVAL
seconds: an idle replica asks 60 times an hour, a busy one never.
"""

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import NamedTuple

# An outcome this recent tells how the archive is now.
TRAFFIC_WINDOW = 60.0
# At most one probe a minute per replica: 1440 calls a day.
PROBE_INTERVAL = 60.0
# Within readiness's own time limit for a check, so a hanging archive is reported, not just cut off.
PROBE_TIMEOUT = 4.0
# Assumed when a 429 carries no usable Retry-After.
UNSAID_THROTTLE_SECONDS = 60.0


class Outcome(NamedTuple):
    """How one archive call ended: its HTTP status (or "timeout", "error"), the Retry-After of a 429, and
    whether it was made on the service's own quota (anonymously or with the service token) rather than
    on a caller's token."""

    status: str
    retry_after: float | None = None
    shared: bool = True

    @property
    def throttled(self) -> bool:
        """Whether the archive refused the service's own quota (a caller's spent token is the caller's)."""
        return self.status == "429" and self.shared

    @property
    def healthy(self) -> bool:
        """Whether the archive answered as a working archive does: any status below 500, except throttling."""
        return self.status.isdigit() and int(self.status) < 500 and not self.throttled


def retry_after_seconds(value: str | None) -> float | None:
    """The seconds of a Retry-After header given as a number; None for none or an HTTP date."""
    try:
        seconds = float(value) if value is not None else math.nan
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


class ArchiveHealth:
    """The latest outcome of an archive call, and until when the archive throttles the service's quota."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # When the latest outcome was recorded, the outcome, and whether a probe made it.
        self._latest: tuple[float, Outcome, bool] | None = None
        self._last_probe = -math.inf
        self._throttled_until = -math.inf

    def record(self, outcome: Outcome, probe: bool = False) -> None:
        """Take the outcome of an archive call as the archive's state now."""
        now = self._clock()
        self._latest = (now, outcome, probe)
        if outcome.throttled:
            self._throttled_until = now + (outcome.retry_after or UNSAID_THROTTLE_SECONDS)
        elif outcome.healthy and outcome.shared:
            # The shared quota answered again: it came back before the Retry-After said.
            self._throttled_until = -math.inf

    def throttled_seconds(self) -> float:
        """Seconds until the archive takes the service's own calls again; 0 when it does now."""
        return max(0.0, self._throttled_until - self._clock())

    async def check(self, probe: Callable[[], Awaitable[Outcome]]) -> tuple[bool, Mapping[str, object]]:
        """Whether the archive works and takes the service's calls, and what that was judged from.

        `probe` is awaited only when no outcome is recent and no probe was sent within PROBE_INTERVAL.
        """
        now = self._clock()
        stale = self._latest is None or now - self._latest[0] >= TRAFFIC_WINDOW
        if stale and now - self._last_probe >= PROBE_INTERVAL:
            self._last_probe = now
            try:
                async with asyncio.timeout(PROBE_TIMEOUT):
                    outcome = await probe()
            except TimeoutError:
                outcome = Outcome("timeout")
            self.record(outcome, probe=True)
        if self._latest is None:
            return False, {"judged_by": "nothing yet"}
        seen, outcome, probed = self._latest
        throttled = self.throttled_seconds()
        details: dict[str, object] = {
            "judged_by": "probe" if probed else "traffic",
            "last_status": outcome.status,
            "seconds_since": round(self._clock() - seen, 1),
            "throttled": throttled > 0,
        }
        if throttled > 0:
            details["retry_after_seconds"] = math.ceil(throttled)
        return outcome.healthy and throttled == 0, details
