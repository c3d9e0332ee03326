"""The lean hit path: image answers already given for public frames, found again by request target.

A repeat of `/<frame>/?image=true&...` for a public frame needs no query parsing, no archive
call, no await and no thread: the request line finds the frame record it was answered from and
the thumbnail key. The entry holds only while that same record is still the one remembered
for everyone (so a new version, a record past its time to live, or a frame no longer public
falls back to the full path) and while the thumbnail can be had without waiting: from the memory
level (no copy), or from the disk level's file kept open when the page cache holds it (one copy).
The answer is written whole (WholeResponse), with its headers serialized when it was remembered.
"""

from typing import NamedTuple

from aiohttp import hdrs, web

from thumbproxy.archive.base import Frame
from thumbproxy.archive.cached import CachedArchive
from thumbproxy.cache.tiered import TieredCache
from thumbproxy.web.caching import CachePolicy, etag, image_headers, not_modified
from thumbproxy.web.observe import SERVED_FROM, Served
from thumbproxy.web.wholeresponse import WholeResponse, serialized_headers

# An entry is a few hundred bytes; this bounds the table to a few megabytes.
MAX_ENTRIES = 16_384


class _Entry(NamedTuple):
    # How the frame was looked up ("id" or "basename", and the value), the record answered from.
    field: str
    value: int | str
    frame: Frame
    key: str
    etag: str
    # The answers' own headers, serialized once.
    headers: bytes
    not_modified_headers: bytes


class HotAnswers:
    """Request target -> what its image answer was made from, and that answer's headers."""

    def __init__(
        self, archive: CachedArchive, cache: TieredCache, policy: CachePolicy, max_entries: int = MAX_ENTRIES
    ) -> None:
        self._archive = archive
        self._cache = cache
        self._cache_control = policy.public_image
        self._max_entries = max_entries
        self._entries: dict[str, _Entry] = {}

    def answer(self, request: web.Request) -> web.StreamResponse | None:
        """The answer given to this very request line before, if every reason for it still holds; else None."""
        target = request.raw_path
        entry = self._entries.get(target)
        if entry is None:
            return None
        authorization = request.headers.get(hdrs.AUTHORIZATION)
        # A token the archive has not accepted lately must hear its verdict, even for a public frame.
        if authorization is not None and not self._archive.accepted(authorization):
            return None
        # Identity, not equality: the very record the answer came from, still fresh and public.
        if self._archive.public_record(entry.field, entry.value) is not entry.frame:
            del self._entries[target]
            return None
        found = self._cache.hit_nowait(entry.key)
        if found is None:
            return None
        data, level = found
        request[SERVED_FROM] = Served(entry.key, level, False)
        if hdrs.IF_NONE_MATCH in request.headers and not_modified(request, entry.etag):
            return WholeResponse(304, entry.not_modified_headers)
        return WholeResponse(200, entry.headers, data)

    def remember(self, target: str, field: str, value: int | str, frame: Frame, key: str) -> None:
        """Keep an image answer of a frame, if its record is the public one everybody is answered from."""
        if self._archive.public_record(field, value) is not frame:
            return
        if len(self._entries) >= self._max_entries and target not in self._entries:
            # Oldest first: cheaper than keeping recency on every hit, and a hot target comes straight back.
            del self._entries[next(iter(self._entries))]
        # Public and of one format: nothing to vary on.
        headers = serialized_headers(image_headers(key, self._cache_control))
        not_modified_headers = serialized_headers(image_headers(key, self._cache_control, status=304))
        self._entries[target] = _Entry(field, value, frame, key, etag(key), headers, not_modified_headers)


HOT_ANSWERS = web.AppKey("hot_answers", HotAnswers)
