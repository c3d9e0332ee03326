"""The bounded least-recently-used map behind every cache: by count, by weight, closing what it lets go of."""

from thumbproxy.support.lrumap import LruMap


def test_the_least_recently_used_entry_goes_first() -> None:
    recent: LruMap[str, int] = LruMap(2)
    recent.put("a", 1)
    recent.put("b", 2)
    assert recent.get("a") == 1  # now b is the least recently used
    recent.put("c", 3)
    assert (recent.get("a"), recent.get("b"), recent.get("c")) == (1, None, 3)


def test_putting_again_replaces_and_refreshes() -> None:
    recent: LruMap[str, int] = LruMap(2)
    recent.put("a", 1)
    recent.put("b", 2)
    recent.put("a", 10)
    recent.put("c", 3)
    assert (recent.get("a"), recent.get("b"), recent.get("c")) == (10, None, 3)


def test_forgotten_entries_are_gone() -> None:
    recent: LruMap[str, int] = LruMap(2)
    recent.put("a", 1)
    recent.forget("a")
    recent.forget("never there")
    assert recent.get("a") is None


def test_peeking_leaves_the_order_and_marking_used_changes_it() -> None:
    recent: LruMap[str, int] = LruMap(3)
    for key, value in (("a", 1), ("b", 2), ("c", 3)):
        recent.put(key, value)
    assert recent.peek("a") == 1 and recent.peek("never there") is None
    assert recent.keys() == ["a", "b", "c"]
    recent.mark_used("a")
    assert recent.keys() == ["b", "c", "a"]
    assert dict(recent.items()) == {"b": 2, "c": 3, "a": 1}


def test_a_weighed_map_is_bounded_by_total_weight() -> None:
    byte_bounded: LruMap[str, bytes] = LruMap(10, weight=len)
    byte_bounded.put("a", b"a" * 4)
    byte_bounded.put("b", b"b" * 4)
    byte_bounded.put("c", b"c" * 4)
    assert byte_bounded.keys() == ["b", "c"] and byte_bounded.size == 8
    byte_bounded.put("b", b"B")
    assert byte_bounded.keys() == ["c", "b"] and byte_bounded.size == 5
    # Heavier than the whole bound: not kept, and nothing kept is pushed out for it.
    byte_bounded.put("c", b"x" * 11)
    assert byte_bounded.keys() == ["c", "b"] and byte_bounded.get("c") == b"c" * 4
    byte_bounded.forget("c")
    assert byte_bounded.size == 1


def test_every_value_let_go_of_is_handed_to_on_evict() -> None:
    evicted: list[str] = []
    closing: LruMap[str, str] = LruMap(2, on_evict=evicted.append)
    closing.put("a", "a1")
    closing.put("b", "b1")
    closing.put("a", "a2")  # replaced
    closing.put("c", "c1")  # pushes out b, the least recently used
    closing.forget("a")
    closing.forget("never there")
    assert evicted == ["a1", "b1", "a2"]
    closing.clear()
    assert evicted == ["a1", "b1", "a2", "c1"] and closing.keys() == [] and closing.size == 0
    LruMap[str, str](0, on_evict=evicted.append).put("d", "d1")  # a bound of nothing keeps nothing
    assert evicted[-1] == "d1"
