"""Level 0: the hottest thumbnails in process memory, so a hit needs no thread, no disk and no copy."""

from thumbproxy.support.lrumap import LruMap


class MemoryCache(LruMap[str, bytes]):
    """A least-recently-used map of thumbnail key to bytes, bounded by total size (each weighs its length).

    A map itself rather than a wrapper around one: `get` is on the hot path of every hit.
    """

    def __init__(self, max_bytes: int) -> None:
        super().__init__(max_bytes, weight=len)

    def put(self, key: str, thumbnail: bytes | bytearray) -> None:
        """Keep a thumbnail, evicting the least recently used past the bound; too large ones are not kept."""
        # Refused before the copy below, which would be for nothing (always, with the level turned off).
        if len(thumbnail) > self.limit:
            return
        # Kept unchangeable: a bytearray (read from a disk-level file) is copied once, bytes are not.
        super().put(key, bytes(thumbnail))
