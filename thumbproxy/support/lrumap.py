"""A bounded map that lets go of its least recently used entries first.

Bounded by entry count, or by total weight (bytes, say) given a `weight` function; values it lets go
of (pushed out, replaced, forgotten, cleared, or heavier than the bound) are handed to `on_evict`,
so the values that hold something (open files) release it. Only the event loop uses one: no locks.
"""

from collections import OrderedDict
from collections.abc import Callable, ItemsView
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


def _one(_: object) -> int:
    """Every entry weighs one: the bound counts entries."""
    return 1


class LruMap(Generic[K, V]):
    """At most `limit` entries (or total `weight`); getting or putting one makes it the most recently used.

    Values are never None: None means missing.
    """

    def __init__(
        self, limit: int, weight: Callable[[V], int] = _one, on_evict: Callable[[V], None] | None = None
    ) -> None:
        self._limit = limit
        self._weight = weight
        self._on_evict = on_evict
        self._size = 0
        self._entries: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        """The value under key, or None; a hit becomes the most recently used."""
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def peek(self, key: K) -> V | None:
        """The value under key, or None, leaving it where it is: for a caller that decides whether it was used."""
        return self._entries.get(key)

    def mark_used(self, key: K) -> None:
        """Make the entry under key (which must be there) the most recently used."""
        self._entries.move_to_end(key)

    def put(self, key: K, value: V) -> None:
        """Keep value under key as the most recently used, letting the least recently used go past the bound.

        A value heavier than the whole bound is let go of at once, and the entries kept stay.
        """
        weight = self._weight(value)
        if weight > self._limit:
            self._let_go(value)
            return
        previous = self._entries.pop(key, None)
        if previous is not None:
            self._size -= self._weight(previous)
            self._let_go(previous)
        self._entries[key] = value
        self._size += weight
        while self._size > self._limit:
            _, evicted = self._entries.popitem(last=False)
            self._size -= self._weight(evicted)
            self._let_go(evicted)

    def forget(self, key: K) -> None:
        """Let go of the entry under key, if there is one."""
        value = self._entries.pop(key, None)
        if value is not None:
            self._size -= self._weight(value)
            self._let_go(value)

    def clear(self) -> None:
        """Let go of every entry."""
        while self._entries:
            self._let_go(self._entries.popitem()[1])
        self._size = 0

    def keys(self) -> list[K]:
        """The keys held, least recently used first."""
        return list(self._entries)

    def items(self) -> ItemsView[K, V]:
        """The entries held, least recently used first; a live view, not to be iterated while changing the map."""
        return self._entries.items()

    @property
    def limit(self) -> int:
        """The bound: most entries, or most total weight."""
        return self._limit

    @property
    def size(self) -> int:
        """Entries held, or their total weight."""
        return self._size

    def _let_go(self, value: V) -> None:
        if self._on_evict is not None:
            self._on_evict(value)
