"""The memory level keeps the most recently used thumbnails within its byte bound."""

from thumbproxy.cache.memory import MemoryCache


def test_keeps_recent_thumbnails_within_the_bound() -> None:
    cache = MemoryCache(max_bytes=1000)
    cache.put("a", b"a" * 400)
    cache.put("b", b"b" * 400)
    assert cache.get("a") == b"a" * 400  # "a" is now the most recent
    cache.put("c", b"c" * 400)
    assert cache.get("b") is None
    assert cache.get("a") is not None and cache.get("c") is not None
    assert cache.size == 800


def test_replacing_and_oversized_entries_keep_the_count_right() -> None:
    cache = MemoryCache(max_bytes=1000)
    cache.put("a", b"x" * 600)
    cache.put("a", b"y" * 300)
    assert cache.size == 300 and cache.get("a") == b"y" * 300
    cache.put("huge", b"z" * 1001)
    assert cache.get("huge") is None and cache.size == 300
