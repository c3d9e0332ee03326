"""The bounded recently-used map behind previews, outlines and resampled previews."""

from thumbproxy.support.recent import Recent


def test_the_least_recently_used_entry_goes_first() -> None:
    recent: Recent[str, int] = Recent(2)
    recent.put("a", 1)
    recent.put("b", 2)
    assert recent.get("a") == 1  # now b is the least recently used
    recent.put("c", 3)
    assert (recent.get("a"), recent.get("b"), recent.get("c")) == (1, None, 3)


def test_putting_again_replaces_and_refreshes() -> None:
    recent: Recent[str, int] = Recent(2)
    recent.put("a", 1)
    recent.put("b", 2)
    recent.put("a", 10)
    recent.put("c", 3)
    assert (recent.get("a"), recent.get("b"), recent.get("c")) == (10, None, 3)


def test_forgotten_entries_are_gone() -> None:
    recent: Recent[str, int] = Recent(2)
    recent.put("a", 1)
    recent.forget("a")
    recent.forget("never there")
    assert recent.get("a") is None
