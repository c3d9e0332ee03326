"""The frame record and the small interface every archive implementation offers."""

import hashlib
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from thumbproxy.archive.health import Outcome
from thumbproxy.errors import ThumbproxyError

# What a client hears about a frame that is missing or that it may not see: the same answer.
NOT_FOUND_MESSAGE = "Not found"


@dataclass(frozen=True)
class Frame:
    """The fields of an archive frame record that thumbproxy reads, plus the record itself."""

    id: int
    basename: str
    filename: str | None
    url: str | None
    proposal_id: str | None
    configuration_type: str | None
    request_id: int | None
    reduction_level: int | None
    primary_optical_element: str | None
    observation_date: datetime | None
    public_date: datetime | None
    # Newest version_set entry's md5 (or key): a re-processed frame gets a new thumbnail.
    version: str
    record: Mapping[str, Any] = field(repr=False, compare=False)

    def is_public(self) -> bool:
        """Whether everyone may see the frame now: its public date has passed (as the archive decides it)."""
        return self.public_date is not None and self.public_date < datetime.now(UTC)


class TokenCallFailed(ThumbproxyError):
    """A 500 the archive answered a call made with a token: what the OCS archive answers token users, even
    for public frames, while the Observation Portal it checks tokens against is down."""


def caller_scope(authorization: str | None) -> str | None:
    """Whose view of the archive an answer is: None for anonymous callers, else a hash of the exact
    Authorization header, so the credential itself is never kept."""
    if authorization is None:
        return None
    # surrogateescape: how aiohttp decodes header bytes that are not UTF-8.
    return hashlib.sha256(authorization.encode("utf-8", "surrogateescape")).hexdigest()


def only_frame(matches: Sequence[Frame]) -> Frame:
    """The single frame of a basename lookup; ThumbproxyError(404) for none or several."""
    if len(matches) != 1:
        raise ThumbproxyError(404, NOT_FOUND_MESSAGE)
    return matches[0]


class Archive(Protocol):
    """Where frames come from. Every call takes the caller's Authorization header, or None."""

    async def frame(self, frame_id: int, authorization: str | None) -> Frame:
        """The frame with this id; ThumbproxyError(404) if missing or not visible to the caller."""
        ...

    async def frame_by_basename(self, basename: str, authorization: str | None) -> Frame:
        """The one frame with this basename; ThumbproxyError(404) for none or several."""
        ...

    async def frames(self, filters: Mapping[str, str], authorization: str | None) -> list[Frame]:
        """Every frame matching these filters of the service's own making, all pages read."""
        ...

    async def newest(self, filters: Mapping[str, str], authorization: str | None) -> Frame | None:
        """The newest frame (by observation date, then id) matching a caller's filters; None if none.

        ThumbproxyError(400) naming the fields when the archive refuses a filter's value.
        """
        ...

    async def probe(self) -> Outcome:
        """One call that says whether the archive answers, for readiness when no traffic says so."""
        ...

    def fits_file(self, frame: Frame) -> AbstractAsyncContextManager[Path]:
        """A local path to the frame's FITS file for the duration of the context."""
        ...
