"""The archive's quota: readiness that does not spend it, throttling that shows, and a service token that
spends its own quota without widening what any caller sees."""

import asyncio
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from conftest import WIDE, Service, ServiceFactory
from fakearchive import FUTURE_DATE, FakeArchive, Fault
from thumbproxy.archive import health, ocs
from thumbproxy.ops import readiness

SERVICE_TOKEN = "service-staff-token"
DOME = {"site_id": "lsc", "telescope_id": "1m0a", "instrument_id": "fa15"}


@pytest.fixture(autouse=True)
def fresh_readiness(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every /readyz runs its checks, as probes spread over minutes would: only the archive check's own rules hold back.
    monkeypatch.setattr(readiness, "CACHE_SECONDS", 0.0)


def add_frames(
    archive: FakeArchive, write_fits: Callable[..., Path], directory: Path, count: int, **overrides: Any
) -> list[dict[str, Any]]:
    """`count` public frames of their own, each a different file."""
    return [
        archive.add_frame(
            write_fits(directory / f"f{number}.fits.fz", shape=WIDE, compressed=True, seed=number), **overrides
        )
        for number in range(count)
    ]


async def archive_check(service: Service) -> dict[str, Any]:
    return (await (await service.get("/readyz")).json())["checks"]["archive"]


# Readiness -----------------------------------------------------------------------------------


async def test_an_idle_replica_probes_the_archive_at_most_once_a_minute(
    service: Service, fake_archive: FakeArchive
) -> None:
    for _ in range(30):
        check = await archive_check(service)
        assert check["status"] == "ok" and check["judged_by"] == "probe"
    assert fake_archive.api_calls == 1


async def test_traffic_judges_the_archive_and_no_probe_is_sent(
    service: Service, fake_archive: FakeArchive, write_fits: Callable[..., Path], tmp_path: Path
) -> None:
    frame = add_frames(fake_archive, write_fits, tmp_path, 1)[0]
    assert (await service.get(f"/{frame['id']}/?image=true")).status == 200
    calls = fake_archive.api_calls
    for _ in range(10):
        check = await archive_check(service)
        assert check["status"] == "ok" and check["judged_by"] == "traffic" and check["last_status"] == "200"
    assert fake_archive.api_calls == calls


async def test_a_probe_is_sent_again_once_traffic_and_the_last_probe_are_old(
    service: Service, fake_archive: FakeArchive, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(health, "TRAFFIC_WINDOW", 0.3)
    monkeypatch.setattr(health, "PROBE_INTERVAL", 0.3)
    await archive_check(service)
    await archive_check(service)
    assert fake_archive.api_calls == 1
    await asyncio.sleep(0.35)
    await archive_check(service)
    assert fake_archive.api_calls == 2


async def test_throttling_reaches_the_caller_and_shows_in_readiness(
    start_service: ServiceFactory, fake_archive: FakeArchive, write_fits: Callable[..., Path], tmp_path: Path
) -> None:
    service = await start_service(THUMBPROXY_READY_REQUIRED="pool,archive")
    frames = add_frames(fake_archive, write_fits, tmp_path, 3)
    fake_archive.anonymous_quota = 2
    for frame in frames[:2]:
        assert (await service.get(f"/{frame['id']}/?image=true")).status == 200
    assert (await service.get("/readyz")).status == 200

    refused = await service.get(f"/{frames[2]['id']}/?image=true")

    assert refused.status == 429
    assert 86000 < int(refused.headers["Retry-After"]) <= 86400
    response = await service.get("/readyz")
    check = (await response.json())["checks"]["archive"]
    assert response.status == 503
    assert check["status"] == "failing" and check["throttled"] is True and check["last_status"] == "429"
    assert 86000 < check["retry_after_seconds"] <= 86400
    assert 86000 < service.metric("thumbproxy_archive_throttled_seconds") <= 86400
    # Frames already seen are still served: their records and thumbnails need no archive call.
    assert (await service.get(f"/{frames[0]['id']}/?image=true")).status == 200


async def test_a_hanging_archive_fails_the_probe_within_readiness_time(
    start_service: ServiceFactory, fake_archive: FakeArchive, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(health, "PROBE_TIMEOUT", 0.3)
    service = await start_service(THUMBPROXY_ARCHIVE_TIMEOUT="30")
    fake_archive.api_fault = Fault(delay=5)
    check = await archive_check(service)
    assert check["status"] == "failing" and check["last_status"] == "timeout"


# The service token ---------------------------------------------------------------------------


async def test_probes_and_anonymous_callers_spend_the_service_tokens_quota_not_the_anonymous_one(
    start_service: ServiceFactory, fake_archive: FakeArchive, write_fits: Callable[..., Path], tmp_path: Path
) -> None:
    fake_archive.add_token(SERVICE_TOKEN, staff=True)
    fake_archive.anonymous_quota = 1
    service = await start_service(ARCHIVE_API_TOKEN=SERVICE_TOKEN)
    frames = add_frames(fake_archive, write_fits, tmp_path, 3, **DOME)
    await archive_check(service)
    for frame in frames:
        assert (await service.get(f"/{frame['id']}/?image=true")).status == 200
        assert (await service.get(f"/{frame['basename']}/?image=true&width=64")).status == 200
    assert (await service.get("/latest/?site_id=lsc&image=true")).status == 200
    assert fake_archive.quota_used(None) == 0
    assert {request.headers.get("Authorization") for request in fake_archive.received("api")} == {
        f"Token {SERVICE_TOKEN}"
    }


@pytest.fixture
def mixed_night(fake_archive: FakeArchive, write_fits: Callable[..., Path], tmp_path: Path) -> dict[str, Any]:
    """One request's public red, visual and blue frames, and a proprietary red frame taken last, closer in time
    to the blue one than the public red is."""
    frames = {}
    for name, filter_name, hour, public in (
        ("red", "rp", "01", True),
        ("visual", "V", "03", True),
        ("blue", "B", "05", True),
        ("secret", "rp", "04", False),
    ):
        path = write_fits(tmp_path / f"{name}.fits.fz", shape=WIDE, compressed=True, seed=len(frames))
        overrides: dict[str, Any] = {
            "basename": f"lsc1m005-fa15-20261120-00{hour}-e91",
            "request_id": 1766530,
            "primary_optical_element": filter_name,
            **DOME,
            "observation_date": f"2026-11-20T{hour}:00:00Z",
        }
        if not public:
            overrides.update(proposal_id="SECRET-1", public_date=FUTURE_DATE, observation_date="2026-11-20T06:00:00Z")
        frames[name] = fake_archive.add_frame(path, **overrides)
    fake_archive.add_token("alice", "SECRET-1")
    return frames


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "after-its-member"])
async def test_a_service_token_that_sees_everything_shows_anonymous_callers_only_public_frames(
    start_service: ServiceFactory, fake_archive: FakeArchive, mixed_night: dict[str, Any], warm: bool
) -> None:
    fake_archive.add_token(SERVICE_TOKEN, superuser=True)
    service = await start_service(ARCHIVE_API_TOKEN=SERVICE_TOKEN)
    secret = mixed_night["secret"]
    alice = {"Authorization": "Token alice"}
    if warm:
        # Its member fills every cache level first: none of it may reach anyone else.
        for path in (
            f"/{secret['id']}/?image=true",
            f"/{secret['basename']}/",
            "/latest/?site_id=lsc&image=true",
            f"/{mixed_night['blue']['id']}/?color=true&image=true",
        ):
            assert (await service.get(path, headers=alice)).status == 200

    for path in (f"/{secret['id']}/", f"/{secret['id']}/?image=true", f"/{secret['basename']}/?image=true"):
        response = await service.get(path)
        assert response.status == 404 and await response.json() == {"message": "Not found"}
    latest = await (await service.get("/latest/?site_id=lsc")).json()
    assert latest["url"].split("/")[3] == str(mixed_night["blue"]["id"])
    downloads_before = fake_archive.downloads[secret["id"]]
    colour = await service.get(f"/{mixed_night['blue']['id']}/?color=true&image=true")
    assert colour.status == 200 and Image.open(io.BytesIO(await colour.read())).mode == "RGB"
    assert fake_archive.downloads[secret["id"]] == downloads_before
    assert fake_archive.downloads[mixed_night["red"]["id"]] >= 1


async def test_latest_for_anonymous_callers_looks_past_the_service_tokens_proprietary_frames(
    start_service: ServiceFactory,
    fake_archive: FakeArchive,
    write_fits: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ocs, "NEWEST_PAGE_SIZE", 2)
    fake_archive.add_token(SERVICE_TOKEN, superuser=True)
    service = await start_service(ARCHIVE_API_TOKEN=SERVICE_TOKEN)
    public = add_frames(fake_archive, write_fits, tmp_path, 1, observation_date="2026-11-20T00:00:00Z", **DOME)[0]
    for hour in range(1, 4):
        fake_archive.add_frame(
            write_fits(tmp_path / f"p{hour}.fits.fz", compressed=True),
            proposal_id="SECRET-1",
            public_date=FUTURE_DATE,
            observation_date=f"2026-11-20T0{hour}:00:00Z",
            **DOME,
        )
    body = await (await service.get("/latest/?site_id=lsc")).json()
    assert body["url"].split("/")[3] == str(public["id"])

    # Past NEWEST_PAGES pages of proprietary frames, the anonymous view (public frames only) is asked.
    for hour in range(4, 10):
        fake_archive.add_frame(
            write_fits(tmp_path / f"p{hour}.fits.fz", compressed=True),
            proposal_id="SECRET-1",
            public_date=FUTURE_DATE,
            observation_date=f"2026-11-20T0{hour}:00:00Z",
            **DOME,
        )
    body = await (await service.get("/latest/?site_id=lsc&telescope_id=1m0a")).json()
    assert body["url"].split("/")[3] == str(public["id"])
    assert fake_archive.quota_used(None) == 1


async def test_a_callers_own_spent_quota_is_the_callers_and_leaves_readiness_alone(
    service: Service, fake_archive: FakeArchive, write_fits: Callable[..., Path], tmp_path: Path
) -> None:
    fake_archive.add_token("alice")
    fake_archive.token_quota = 1
    frames = add_frames(fake_archive, write_fits, tmp_path, 2)
    alice = {"Authorization": "Token alice"}
    assert (await service.get(f"/{frames[0]['id']}/?image=true", headers=alice)).status == 200

    refused = await service.get(f"/{frames[1]['id']}/?image=true", headers=alice)

    assert refused.status == 429 and int(refused.headers["Retry-After"]) > 86000
    check = await archive_check(service)
    assert check["status"] == "ok" and check["throttled"] is False and check["last_status"] == "429"
    assert (await service.get(f"/{frames[1]['id']}/?image=true")).status == 200


def test_the_service_is_throttled_until_its_quota_answers_again() -> None:
    now = [0.0]
    archive_health = health.ArchiveHealth(clock=lambda: now[0])
    archive_health.record(health.Outcome("429", retry_after=100.0))
    now[0] = 40.0
    assert archive_health.throttled_seconds() == 60.0
    # A caller's token answered: the archive works, but the service's own quota is still spent.
    archive_health.record(health.Outcome("200", shared=False))
    assert archive_health.throttled_seconds() == 60.0
    archive_health.record(health.Outcome("200"))
    assert archive_health.throttled_seconds() == 0.0
    archive_health.record(health.Outcome("429", retry_after=None))
    assert archive_health.throttled_seconds() == health.UNSAID_THROTTLE_SECONDS
