"""The lean hit path: image answers already given for public frames, found again by request target.

A repeat of `/<frame>/?image=true&...` for a public frame needs no query parsing, no archive
call, no await and no copy: the request line finds the frame record it was answered from and
the thumbnail key. The entry holds only while that same record is still the one remembered
for everyone (so a new version, a record past its time to live, or a frame no longer public
falls back to the full path) and while the memory level still holds the thumbnail.
"""

from aiohttp import web

from thumbproxy.archive.base import Frame
from thumbproxy.archive.cached import CachedArchive
from thumbproxy.cache.tiered import TieredCache

# An entry is a few hundred bytes; this bounds the table to a few megabytes.
MAX_ENTRIES = 16_384


class HotAnswers:
    """Request target -> (how its frame was looked up, the record answered from, the thumbnail key)."""

    def __init__(self, archive: CachedArchive, cache: TieredCache, max_entries: int = MAX_ENTRIES) -> None:
        self._archive = archive
        self._cache = cache
        self._max_entries = max_entries
        self._entries: dict[str, tuple[str, int | str, Frame, str]] = {}

    def get(self, target: str) -> tuple[str, bytes] | None:
        """The thumbnail key and bytes answered to this target before, if every reason for them still holds."""
        entry = self._entries.get(target)
        if entry is None:
            return None
        field, value, frame, key = entry
        # Identity, not equality: the very record the answer came from, still fresh and public.
        if self._archive.public_record(field, value) is not frame:
            del self._entries[target]
            return None
        data = self._cache.memory_hit(key)
        return None if data is None else (key, data)

    def remember(self, target: str, field: str, value: int | str, frame: Frame, key: str) -> None:
        """Keep an image answer of a frame, if its record is the public one everybody is answered from."""
        if self._archive.public_record(field, value) is not frame:
            return
        if len(self._entries) >= self._max_entries and target not in self._entries:
            # Oldest first: cheaper than keeping recency on every hit, and a hot target comes straight back.
            del self._entries[next(iter(self._entries))]
        self._entries[target] = (field, value, frame, key)


HOT_ANSWERS = web.AppKey("hot_answers", HotAnswers)
