"""The archive as it really answers: estimated counts, loose filters, refused values, tokens checked every
time, frames without files and a portal that goes down; one right answer to the caller for each."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import WIDE, Service, ServiceFactory
from fakearchive import FUTURE_DATE, FakeArchive
from thumbproxy.archive import ocs
from thumbproxy.archive.ocs import OcsArchive

DOME = "site_id=lsc&telescope_id=1m0a&instrument_id=fa15"


@pytest.fixture
def frames(fake_archive: FakeArchive, write_fits: Callable[..., Path], tmp_path: Path) -> list[dict[str, Any]]:
    """Five public frames of one instrument, an hour apart, oldest first."""
    return [
        fake_archive.add_frame(
            write_fits(tmp_path / f"lsc-{hour}.fits.fz", shape=WIDE, compressed=True, seed=hour),
            site_id="lsc",
            telescope_id="1m0a",
            instrument_id="fa15",
            observation_date=f"2026-11-20T0{hour}:00:00Z",
        )
        for hour in range(5)
    ]


def frame_id_of(body: dict[str, Any]) -> int:
    """The frame id in a JSON answer's url."""
    return int(body["url"].split("/")[3])


# Estimated counts and unreliable next links --------------------------------------------------


@pytest.mark.parametrize("estimate", [lambda matches, rows: 1, lambda matches, rows: 0], ids=["underestimate", "zero"])
async def test_every_page_is_read_when_the_count_is_an_underestimate(
    make_archive: Callable[..., OcsArchive],
    fake_archive: FakeArchive,
    frames: list[dict[str, Any]],
    estimate: Callable[[int, int], int],
) -> None:
    fake_archive.max_limit = 2
    fake_archive.count_estimate = estimate

    found = await make_archive().frames({"site_id": "lsc"}, None)

    assert sorted(frame.id for frame in found) == sorted(frame["id"] for frame in frames)
    # Two full pages of two, then the short one that ends the list.
    assert [request.query["offset"] for request in fake_archive.received("api")] == ["0", "2", "4"]


async def test_a_next_link_on_a_short_page_does_not_lead_on(
    make_archive: Callable[..., OcsArchive], fake_archive: FakeArchive, frames: list[dict[str, Any]]
) -> None:
    fake_archive.count_estimate = lambda matches, rows: matches + 5000

    found = await make_archive().frames({"site_id": "lsc"}, None)

    assert len(found) == 5 and fake_archive.api_calls == 1


async def test_a_list_stops_after_its_page_cap(
    make_archive: Callable[..., OcsArchive],
    fake_archive: FakeArchive,
    frames: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ocs, "MAX_PAGES", 2)
    fake_archive.max_limit = 1
    fake_archive.count_estimate = lambda matches, rows: 10**6

    found = await make_archive().frames({"site_id": "lsc"}, None)

    assert len(found) == 2 and fake_archive.api_calls == 2


async def test_latest_is_the_same_frame_on_every_replica_when_times_tie(
    service: Service,
    fake_archive: FakeArchive,
    frames: list[dict[str, Any]],
    write_fits: Callable[..., Path],
    tmp_path: Path,
) -> None:
    # A second frame at the newest time, registered later: the database may list either first, so the id decides.
    twin = fake_archive.add_frame(
        write_fits(tmp_path / "twin.fits.fz", shape=WIDE, compressed=True, seed=9),
        site_id="lsc",
        telescope_id="1m0a",
        instrument_id="fa15",
        observation_date=frames[-1]["observation_date"],
    )
    fake_archive.count_estimate = lambda matches, rows: 0
    body = await (await service.get(f"/latest/?{DOME}")).json()
    assert frame_id_of(body) == max(twin["id"], frames[-1]["id"])
    listing = [request for request in fake_archive.received("api") if request.path == "/frames/"]
    assert listing[0].query["ordering"] == "-observation_date,-id"


# Filters ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("request_id=abc", "request_id", "Enter a number."),
        ("start=notadate", "start", "Enter a valid date/time."),
        ("exposure_time=long", "exposure_time", "Enter a number."),
    ],
)
async def test_a_filter_value_the_archive_refuses_is_the_callers_400(
    service: Service, fake_archive: FakeArchive, frames: list[dict[str, Any]], query: str, field: str, message: str
) -> None:
    for _ in range(2):
        response = await service.get(f"/latest/?{query}&image=true")
        body = await response.json()
        assert response.status == 400
        assert body["errors"] == {field: [message]}
        assert field in body["message"] and message in body["message"]
    # The refusal is remembered like an answer: a dashboard refreshing a broken panel costs one call per interval.
    assert fake_archive.api_calls == 1


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("start=2026-11-20&end=2026-11-21T00:00:00Z", "end"),
        ("start=11/20/2026&end=2026-11-21", "start"),
    ],
)
async def test_a_start_and_end_the_archive_cannot_compare_is_the_callers_400(
    service: Service, fake_archive: FakeArchive, frames: list[dict[str, Any]], query: str, field: str
) -> None:
    # The archive itself answers these with a 500.
    response = await service.get(f"/latest/?{query}&image=true")
    assert response.status == 400
    assert list((await response.json())["errors"]) == [field]
    assert fake_archive.api_calls == 0
    assert (await service.get("/latest/?start=2026-11-20T01:30:00Z&end=2026-11-21T00:00:00Z")).status == 200


@pytest.mark.parametrize("query", ["siteid=lsc", "site_id=lsc&telescope=1m0a&instrument=fa15"])
async def test_a_filter_name_the_archive_does_not_know_is_refused_before_asking(
    service: Service, fake_archive: FakeArchive, frames: list[dict[str, Any]], query: str
) -> None:
    response = await service.get(f"/latest/?{query}&image=true")
    body = await response.json()
    assert response.status == 400
    unknown = [pair.split("=")[0] for pair in query.split("&") if not pair.startswith("site_id")]
    assert all(name in body["message"] for name in unknown)
    assert fake_archive.api_calls == 0


async def test_substring_and_at_least_filters_reach_the_archive(
    service: Service, fake_archive: FakeArchive, frames: list[dict[str, Any]]
) -> None:
    fake_archive.record(frames[1]["id"]).update(exposure_time=300.0)
    body = await (await service.get("/latest/?basename=LSC-&exposure_time=120")).json()
    assert frame_id_of(body) == frames[1]["id"]


# Tokens, files, and the portal -----------------------------------------------------------------


@pytest.mark.parametrize("path", ["/{id}/?image=true", "/{id}/", "/{basename}/?image=true"])
async def test_a_bad_token_is_refused_even_when_the_public_frame_is_cached(
    service: Service, fake_archive: FakeArchive, frames: list[dict[str, Any]], path: str
) -> None:
    target = path.format(**frames[0])
    for _ in range(2):  # the full path and then the repeat-hit path, for an anonymous caller
        assert (await service.get(target)).status == 200
    for authorization in ("Token not-a-token", "Bearer not-a-token"):
        for _ in range(2):
            response = await service.get(target, headers={"Authorization": authorization})
            assert response.status == 401, authorization
            assert (await response.json())["message"].startswith("Got error response from the archive: ")
    # Each bad token was asked about once; its refusal is remembered as long as a public record.
    assert len([request for request in fake_archive.received("api") if "Authorization" in request.headers]) == 2


async def test_a_good_token_is_checked_once_then_served_from_the_shared_record(
    service: Service, fake_archive: FakeArchive, frames: list[dict[str, Any]]
) -> None:
    fake_archive.add_token("alice", "SECRET-1")
    target = f"/{frames[0]['id']}/?image=true"
    assert (await service.get(target)).status == 200
    for _ in range(3):
        assert (await service.get(target, headers={"Authorization": "Token alice"})).status == 200
    assert len([request for request in fake_archive.received("api") if "Authorization" in request.headers]) == 1


async def test_a_frame_without_a_file_is_not_found_by_id_as_by_basename(
    service: Service, fake_archive: FakeArchive
) -> None:
    record = fake_archive.add_frame(None, basename="ogg0m404-kb82-20190321-0274-e91")
    answers = [await service.get(f"/{record[field]}/?image=true") for field in ("id", "basename")]
    assert [answer.status for answer in answers] == [404, 404]
    assert [await answer.json() for answer in answers] == [{"message": "Not found"}] * 2


async def test_while_the_portal_is_down_token_callers_get_public_frames_and_not_proprietary_ones(
    service: Service,
    fake_archive: FakeArchive,
    frames: list[dict[str, Any]],
    write_fits: Callable[..., Path],
    tmp_path: Path,
) -> None:
    fake_archive.add_token("alice", "SECRET-1")
    secret = fake_archive.add_frame(
        write_fits(tmp_path / "secret.fits.fz", shape=WIDE, compressed=True),
        proposal_id="SECRET-1",
        public_date=FUTURE_DATE,
    )
    alice = {"Authorization": "Token alice"}
    fake_archive.portal_down = True

    public = await service.get(f"/{frames[0]['id']}/?image=true", headers=alice)
    proprietary = await service.get(f"/{secret['id']}/?image=true", headers=alice)

    assert public.status == 200 and public.headers["Cache-Control"].startswith("public")
    assert proprietary.status == 502
    assert service.metric("thumbproxy_archive_public_fallbacks_total") == 1
    # Each was tried twice with the token before the public record was asked for.
    token_calls = [request for request in fake_archive.received("api") if "Authorization" in request.headers]
    assert len(token_calls) == 4
    fake_archive.portal_down = False
    assert (await service.get(f"/{secret['id']}/?image=true", headers=alice)).status == 200


async def test_a_proprietary_frames_record_is_never_answered_to_an_unchecked_token(
    start_service: ServiceFactory, fake_archive: FakeArchive, write_fits: Callable[..., Path], tmp_path: Path
) -> None:
    service = await start_service()
    fake_archive.add_token("alice", "SECRET-1")
    fake_archive.add_token("bob", "OTHER-1")
    secret = fake_archive.add_frame(
        write_fits(tmp_path / "secret.fits.fz", shape=WIDE, compressed=True),
        proposal_id="SECRET-1",
        public_date=FUTURE_DATE,
    )
    assert (await service.get(f"/{secret['id']}/?image=true", headers={"Authorization": "Token alice"})).status == 200
    fake_archive.portal_down = True
    for caller in ({"Authorization": "Token bob"}, {"Authorization": "Token nobody"}, {}):
        response = await service.get(f"/{secret['id']}/?image=true", headers=caller)
        # Refused, not found, or failing: never the frame.
        assert response.status in (401, 404, 502), caller


async def test_while_the_portal_is_down_a_token_callers_colour_composite_of_public_frames_is_made(
    service: Service, fake_archive: FakeArchive, frames: list[dict[str, Any]]
) -> None:
    fake_archive.add_token("alice", "SECRET-1")
    for frame, filter_name in zip(frames[:3], ("rp", "V", "B")):
        fake_archive.record(frame["id"]).update(primary_optical_element=filter_name, request_id=1766530)
    fake_archive.portal_down = True

    response = await service.get(f"/{frames[0]['id']}/?color=true&image=true", headers={"Authorization": "Token alice"})

    assert response.status == 200
    # The frame lookup and the request's list, each answered from the public view.
    assert service.metric("thumbproxy_archive_public_fallbacks_total") == 2


async def test_while_the_portal_is_down_the_service_tokens_calls_are_made_anonymously(
    start_service: ServiceFactory, fake_archive: FakeArchive, frames: list[dict[str, Any]]
) -> None:
    fake_archive.add_token("service", staff=True)
    service = await start_service(ARCHIVE_API_TOKEN="service")
    fake_archive.portal_down = True

    assert (await service.get(f"/{frames[0]['id']}/?image=true")).status == 200
    assert (await service.get(f"/latest/?{DOME}")).status == 200

    assert service.metric("thumbproxy_archive_public_fallbacks_total") == 2
    assert fake_archive.quota_used(None) == 2
