"""Level 0: the hottest thumbnails in process memory, so a hit needs no thread, no disk and no copy."""

from collections import OrderedDict


class MemoryCache:
    """A least-recently-used map of thumbnail key to bytes, bounded by total size."""

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._size = 0
        self._entries: OrderedDict[str, bytes] = OrderedDict()

    def get(self, key: str) -> bytes | None:
        """The thumbnail under key, or None; a hit becomes the most recently used."""
        thumbnail = self._entries.get(key)
        if thumbnail is not None:
            self._entries.move_to_end(key)
        return thumbnail

    def put(self, key: str, thumbnail: bytes | bytearray) -> None:
        """Keep a thumbnail, evicting the least recently used past the bound; too large ones are not kept."""
        if len(thumbnail) > self._max_bytes:
            return
        # Kept unchangeable: a bytearray (read from a disk-level file) is copied once, bytes are not.
        thumbnail = bytes(thumbnail)
        previous = self._entries.pop(key, None)
        if previous is not None:
            self._size -= len(previous)
        self._entries[key] = thumbnail
        self._size += len(thumbnail)
        while self._size > self._max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._size -= len(evicted)

    def keys(self) -> list[str]:
        """The keys held, least recently used first."""
        return list(self._entries)

    @property
    def size(self) -> int:
        """Bytes held."""
        return self._size
