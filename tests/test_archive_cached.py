"""Frame records remembered in front of the fake archive, over real HTTP, without crossing callers."""

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from fakearchive import FUTURE_DATE, FakeArchive, Fault
from thumbproxy.archive.cached import CachedArchive
from thumbproxy.archive.ocs import OcsArchive
from thumbproxy.errors import ThumbproxyError
from thumbproxy.ops.metrics import Metrics

PROPOSAL = "LCO2019A-001"
MEMBER = "Token member-token"
OTHER_MEMBER = "Token other-member-token"
OUTSIDER = "Token outsider-token"
PUBLIC_TTL = 300.0
PRIVATE_TTL = 60.0
STALE_TTL = 600.0


class FakeClock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def make_cached(
    fake_archive: FakeArchive, tmp_path: Path, clock: FakeClock, metrics: Metrics
) -> AsyncIterator[Callable[..., CachedArchive]]:
    """Build a CachedArchive over an OcsArchive on the fake archive, with the fake clock."""
    fake_archive.add_token("member-token", PROPOSAL)
    fake_archive.add_token("other-member-token", PROPOSAL)
    fake_archive.add_token("outsider-token", "SOMEONE-ELSES")
    async with aiohttp.ClientSession() as session:

        def make(max_records: int = 10_000, timeout: float = 5.0) -> CachedArchive:
            ocs = OcsArchive(
                session,
                fake_archive.base_url,
                connect_timeout=2.0,
                timeout=timeout,
                download_timeout=5.0,
                tmp_dir=tmp_path / "tmp",
                max_fits_bytes=8 * 2**20,
            )
            return CachedArchive(
                ocs,
                public_ttl=PUBLIC_TTL,
                private_ttl=PRIVATE_TTL,
                stale_ttl=STALE_TTL,
                max_records=max_records,
                clock=clock,
                metrics=metrics,
            )

        yield make


@pytest.fixture
def cached(make_cached: Callable[..., CachedArchive]) -> CachedArchive:
    return make_cached()


async def not_found(lookup: object) -> bool:
    """Whether the lookup answers 404, as the archive does for a frame the caller may not see."""
    with pytest.raises(ThumbproxyError) as caught:
        await lookup  # type: ignore[misc]
    return caught.value.status == 404


async def test_a_public_record_is_shared_by_every_caller(
    cached: CachedArchive, fake_archive: FakeArchive, fits_path: Path
) -> None:
    frame_id = fake_archive.add_frame(fits_path)["id"]

    first = await cached.frame(frame_id, MEMBER)
    assert fake_archive.api_calls == 1

    for caller in (MEMBER, None, MEMBER):
        assert await cached.frame(frame_id, caller) == first
    assert fake_archive.api_calls == 1
    # A token not seen before is judged by the archive once, then shares the record too.
    for _ in range(2):
        assert await cached.frame(frame_id, OUTSIDER) == first
    assert fake_archive.api_calls == 2


async def test_a_public_record_found_by_basename_answers_later_lookups(
    cached: CachedArchive, fake_archive: FakeArchive, fits_path: Path
) -> None:
    record = fake_archive.add_frame(fits_path)

    first = await cached.frame_by_basename(record["basename"], None)
    assert fake_archive.api_calls == 1

    assert await cached.frame(record["id"], None) == first
    assert fake_archive.api_calls == 1
    assert await cached.frame_by_basename(record["basename"], OUTSIDER) == first
    assert await cached.frame(record["id"], OUTSIDER) == first
    assert fake_archive.api_calls == 2


async def test_a_public_record_is_asked_again_after_its_time_to_live(
    cached: CachedArchive, fake_archive: FakeArchive, fits_path: Path, clock: FakeClock
) -> None:
    frame_id = fake_archive.add_frame(fits_path)["id"]
    await cached.frame(frame_id, None)

    clock.now += PUBLIC_TTL - 1
    await cached.frame(frame_id, None)
    assert fake_archive.api_calls == 1

    clock.now += 1
    await cached.frame(frame_id, None)
    assert fake_archive.api_calls == 2


@pytest.mark.parametrize("public_date", [FUTURE_DATE, None])
async def test_a_proprietary_record_is_kept_for_its_caller_alone(
    cached: CachedArchive, fake_archive: FakeArchive, fits_path: Path, clock: FakeClock, public_date: str | None
) -> None:
    record = fake_archive.add_frame(fits_path, proposal_id=PROPOSAL, public_date=public_date)

    first = await cached.frame(record["id"], MEMBER)
    assert await cached.frame(record["id"], MEMBER) == first
    assert fake_archive.api_calls == 1

    # Right after the member's lookups, others are still asked of the archive, which refuses them.
    assert await not_found(cached.frame(record["id"], OUTSIDER))
    assert await not_found(cached.frame(record["id"], None))
    assert await not_found(cached.frame_by_basename(record["basename"], None))
    assert fake_archive.api_calls == 4

    # Another member is another caller: the archive answers them itself.
    assert await cached.frame(record["id"], OTHER_MEMBER) == first
    assert fake_archive.api_calls == 5

    clock.now += PRIVATE_TTL
    await cached.frame(record["id"], MEMBER)
    assert fake_archive.api_calls == 6


async def test_the_same_token_in_another_header_is_another_caller(
    cached: CachedArchive, fake_archive: FakeArchive, fits_path: Path
) -> None:
    frame_id = fake_archive.add_frame(fits_path, proposal_id=PROPOSAL, public_date=FUTURE_DATE)["id"]

    await cached.frame(frame_id, "Token member-token")
    await cached.frame(frame_id, "Bearer member-token")

    assert fake_archive.api_calls == 2


async def test_a_proprietary_record_found_by_basename_answers_its_caller_by_id(
    cached: CachedArchive, fake_archive: FakeArchive, fits_path: Path
) -> None:
    record = fake_archive.add_frame(fits_path, proposal_id=PROPOSAL, public_date=FUTURE_DATE)

    first = await cached.frame_by_basename(record["basename"], MEMBER)
    assert await cached.frame(record["id"], MEMBER) == first
    assert await cached.frame_by_basename(record["basename"], MEMBER) == first
    assert fake_archive.api_calls == 1
    assert await not_found(cached.frame(record["id"], None))


async def test_concurrent_identical_lookups_make_one_call(
    cached: CachedArchive, fake_archive: FakeArchive, fits_path: Path
) -> None:
    frame_id = fake_archive.add_frame(fits_path, proposal_id=PROPOSAL, public_date=FUTURE_DATE)["id"]
    fake_archive.api_fault = Fault(delay=0.1)

    frames = await asyncio.gather(*(cached.frame(frame_id, MEMBER) for _ in range(10)))

    assert fake_archive.api_calls == 1
    assert {frame.id for frame in frames} == {frame_id}


async def test_concurrent_lookups_of_different_callers_are_not_shared(
    cached: CachedArchive, fake_archive: FakeArchive, fits_path: Path
) -> None:
    frame_id = fake_archive.add_frame(fits_path, proposal_id=PROPOSAL, public_date=FUTURE_DATE)["id"]
    fake_archive.api_fault = Fault(delay=0.1)

    member, anonymous = await asyncio.gather(
        cached.frame(frame_id, MEMBER), cached.frame(frame_id, None), return_exceptions=True
    )

    assert not isinstance(member, BaseException) and member.id == frame_id
    assert isinstance(anonymous, ThumbproxyError) and anonymous.status == 404
    assert fake_archive.api_calls == 2


async def test_errors_are_not_remembered(cached: CachedArchive, fake_archive: FakeArchive, fits_path: Path) -> None:
    frame_id = fake_archive.add_frame(fits_path)["id"]
    fake_archive.api_fault = Fault(status=500, times=1)

    with pytest.raises(ThumbproxyError):
        await cached.frame(frame_id, None)
    assert (await cached.frame(frame_id, None)).id == frame_id

    assert fake_archive.api_calls == 2


async def test_the_least_recently_used_record_makes_room(
    make_cached: Callable[..., CachedArchive], fake_archive: FakeArchive, fits_path: Path
) -> None:
    cached = make_cached(max_records=2)
    first, second, third = (fake_archive.add_frame(fits_path)["id"] for _ in range(3))
    await cached.frame(first, None)
    await cached.frame(second, None)
    await cached.frame(first, None)

    await cached.frame(third, None)
    await cached.frame(first, None)
    assert fake_archive.api_calls == 3

    await cached.frame(second, None)
    assert fake_archive.api_calls == 4


async def test_lists_are_always_asked_of_the_archive(
    cached: CachedArchive, fake_archive: FakeArchive, fits_path: Path
) -> None:
    frame_id = fake_archive.add_frame(fits_path, request_id=77)["id"]

    for _ in range(2):
        assert [frame.id for frame in await cached.frames({"request_id": "77"}, None)] == [frame_id]

    assert fake_archive.api_calls == 2


async def test_files_come_from_the_archive(cached: CachedArchive, fake_archive: FakeArchive, fits_path: Path) -> None:
    frame = await cached.frame(fake_archive.add_frame(fits_path)["id"], None)

    async with cached.fits_file(frame) as path:
        assert path.read_bytes() == fits_path.read_bytes()


async def test_close_cancels_lookups_under_way(
    cached: CachedArchive, fake_archive: FakeArchive, fits_path: Path
) -> None:
    frame_id = fake_archive.add_frame(fits_path)["id"]
    fake_archive.api_fault = Fault(delay=5.0)
    lookup = asyncio.create_task(cached.frame(frame_id, None))
    await asyncio.sleep(0.05)

    async with asyncio.timeout(1.0):
        await cached.close()
        with pytest.raises(asyncio.CancelledError):
            await lookup


# Stale records ----------------------------------------------------------------------------


def stale_answers(metrics: Metrics) -> float:
    return metrics.registry.get_sample_value("thumbproxy_stale_records_total") or 0.0


@pytest.mark.parametrize("fault", [Fault(status=503), Fault(status=500), Fault(delay=10), Fault(body=b"<html>")])
async def test_a_failing_archive_is_answered_from_a_stale_public_record(
    make_cached: Callable[..., CachedArchive],
    fake_archive: FakeArchive,
    fits_path: Path,
    clock: FakeClock,
    metrics: Metrics,
    fault: Fault,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cached = make_cached(timeout=0.2)
    record = fake_archive.add_frame(fits_path)
    first = await cached.frame_by_basename(record["basename"], None)
    clock.now += PUBLIC_TTL + STALE_TTL - 1
    fake_archive.api_fault = fault

    assert await cached.frame(record["id"], None) is first
    assert await cached.frame_by_basename(record["basename"], None) is first

    assert fake_archive.api_calls == 3
    assert stale_answers(metrics) == 2
    # The lean hit path trusts fresh records only; and an outage is one warning, not one per answer.
    assert cached.public_record("id", record["id"]) is None
    assert len([line for line in caplog.records if "past their time to live" in line.getMessage()]) == 1


async def test_a_record_past_its_stale_time_is_not_answered(
    cached: CachedArchive, fake_archive: FakeArchive, fits_path: Path, clock: FakeClock, metrics: Metrics
) -> None:
    frame_id = fake_archive.add_frame(fits_path)["id"]
    await cached.frame(frame_id, None)
    clock.now += PUBLIC_TTL + STALE_TTL
    fake_archive.api_fault = Fault(status=503)

    with pytest.raises(ThumbproxyError) as caught:
        await cached.frame(frame_id, None)

    assert caught.value.status == 502
    assert stale_answers(metrics) == 0


async def test_a_stale_record_is_replaced_once_the_archive_answers_again(
    cached: CachedArchive, fake_archive: FakeArchive, fits_path: Path, clock: FakeClock
) -> None:
    frame_id = fake_archive.add_frame(fits_path)["id"]
    await cached.frame(frame_id, None)
    clock.now += PUBLIC_TTL
    fake_archive.api_fault = Fault(status=503, times=1)
    await cached.frame(frame_id, None)

    fresh = await cached.frame(frame_id, None)

    assert cached.public_record("id", frame_id) is fresh
    assert fake_archive.api_calls == 3


async def test_a_proprietary_record_is_never_answered_stale(
    cached: CachedArchive, fake_archive: FakeArchive, fits_path: Path, clock: FakeClock, metrics: Metrics
) -> None:
    frame_id = fake_archive.add_frame(fits_path, proposal_id=PROPOSAL, public_date=FUTURE_DATE)["id"]
    await cached.frame(frame_id, MEMBER)
    clock.now += PRIVATE_TTL
    fake_archive.api_fault = Fault(status=503)

    with pytest.raises(ThumbproxyError) as caught:
        await cached.frame(frame_id, MEMBER)

    assert caught.value.status == 502
    assert stale_answers(metrics) == 0


@pytest.mark.parametrize(
    ("fault", "status"), [(Fault(status=401), 401), (Fault(status=403), 403), (Fault(status=429), 429)]
)
async def test_a_refusal_of_the_caller_is_not_hidden_by_a_stale_record(
    cached: CachedArchive,
    fake_archive: FakeArchive,
    fits_path: Path,
    clock: FakeClock,
    metrics: Metrics,
    fault: Fault,
    status: int,
) -> None:
    frame_id = fake_archive.add_frame(fits_path)["id"]
    await cached.frame(frame_id, None)
    clock.now += PUBLIC_TTL
    fake_archive.api_fault = fault

    with pytest.raises(ThumbproxyError) as caught:
        await cached.frame(frame_id, OUTSIDER)

    assert caught.value.status == status
    assert stale_answers(metrics) == 0


@pytest.mark.parametrize("field", ["id", "basename"])
async def test_a_frame_the_archive_no_longer_shows_is_never_answered_stale(
    cached: CachedArchive,
    fake_archive: FakeArchive,
    fits_path: Path,
    clock: FakeClock,
    metrics: Metrics,
    field: str,
) -> None:
    record = fake_archive.add_frame(fits_path)
    await cached.frame_by_basename(record["basename"], None)
    clock.now += PUBLIC_TTL
    # Made proprietary: the archive answers 404 to anyone outside the proposal.
    record["public_date"] = FUTURE_DATE
    lookups = {
        "id": lambda: cached.frame(record["id"], None),
        "basename": lambda: cached.frame_by_basename(record["basename"], None),
    }
    assert await not_found(lookups[field]())

    fake_archive.api_fault = Fault(status=503)
    for lookup in lookups.values():
        with pytest.raises(ThumbproxyError) as caught:
            await lookup()
        assert caught.value.status == 502
    assert stale_answers(metrics) == 0


async def test_concurrent_lookups_share_one_failing_call_and_each_gets_the_stale_record(
    cached: CachedArchive, fake_archive: FakeArchive, fits_path: Path, clock: FakeClock, metrics: Metrics
) -> None:
    frame_id = fake_archive.add_frame(fits_path)["id"]
    first = await cached.frame(frame_id, None)
    clock.now += PUBLIC_TTL
    fake_archive.api_fault = Fault(status=503, delay=0.1)

    frames = await asyncio.gather(*(cached.frame(frame_id, None) for _ in range(10)))

    assert all(frame is first for frame in frames)
    assert fake_archive.api_calls == 2
    assert stale_answers(metrics) == 10
