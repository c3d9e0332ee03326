"""The fake archive itself, over real HTTP: it must answer as the real OCS Science Archive does."""

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDictProxy
from yarl import URL

from fakearchive import FUTURE_DATE, PAST_DATE, QUOTA_SECONDS, FakeArchive

SECRET = "SECRET-1"
# A footprint around RA 10, Dec 20, as GeoJSON writes the archive's areas.
AREA = {"type": "Polygon", "coordinates": [[[9.0, 19.0], [11.0, 19.0], [11.0, 21.0], [9.0, 21.0], [9.0, 19.0]]]}


@dataclass
class Answer:
    status: int
    headers: CIMultiDictProxy[str]
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


class Clock:
    """A monotonic clock a test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


Get = Callable[..., Awaitable[Answer]]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
def get(session: aiohttp.ClientSession) -> Get:
    """``get(archive, path, auth=None, headers=None, **query)``: one request to a fake archive."""

    async def fetch(
        archive: FakeArchive, path: str, auth: str | None = None, headers: dict[str, str] | None = None, **query: Any
    ) -> Answer:
        sent = dict(headers or {})
        if auth is not None:
            sent["Authorization"] = auth
        url = URL(archive.base_url + path.lstrip("/"))
        url = url.update_query(query) if query else url
        async with session.get(url, headers=sent) as response:
            return Answer(response.status, response.headers, await response.text())

    return fetch


@pytest.fixture
async def make_archive() -> AsyncIterator[Callable[..., Awaitable[FakeArchive]]]:
    """Start fake archives built with these arguments; all closed at the end."""
    archives: list[FakeArchive] = []

    async def make(**arguments: Any) -> FakeArchive:
        archive = FakeArchive(**arguments)
        await archive.start()
        archives.append(archive)
        return archive

    yield make
    for archive in archives:
        await archive.close()


def ids(answer: Answer) -> list[int]:
    return [record["id"] for record in answer.json()["results"]]


# Authentication ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("authorization", "detail"),
    [
        ("Token nobody", "Invalid token."),
        ("Token", "Invalid token header. No credentials provided."),
        ("Token a b", "Invalid token header. Token string should not contain spaces."),
        ("Bearer nobody", "No Such User"),
    ],
)
async def test_refused_credentials_are_401_with_drf_detail(
    fake_archive: FakeArchive, get: Get, authorization: str, detail: str
) -> None:
    answer = await get(fake_archive, "/frames/", authorization)
    assert (answer.status, answer.json()) == (401, {"detail": detail})
    assert answer.headers["WWW-Authenticate"] == "Token"


async def test_other_schemes_are_anonymous(fake_archive: FakeArchive, get: Get, fits_path: Path) -> None:
    public = fake_archive.add_frame(fits_path)
    fake_archive.add_frame(fits_path, proposal_id=SECRET, public_date=FUTURE_DATE)
    answer = await get(fake_archive, "/frames/", "Basic dXNlcjpwYXNz")
    assert (answer.status, ids(answer)) == (200, [public["id"]])


async def test_visibility_by_account(fake_archive: FakeArchive, get: Get, fits_path: Path) -> None:
    fake_archive.add_token("member", SECRET)
    fake_archive.add_token("root", superuser=True)
    public = fake_archive.add_frame(fits_path, observation_date="2019-01-02T00:00:00Z")["id"]
    secret = fake_archive.add_frame(
        fits_path, proposal_id=SECRET, public_date=FUTURE_DATE, observation_date="2019-01-03T00:00:00Z"
    )["id"]
    other = fake_archive.add_frame(
        fits_path, proposal_id="OTHER", public_date=None, observation_date="2019-01-01T00:00:00Z"
    )["id"]
    assert ids(await get(fake_archive, "/frames/")) == [public]
    assert ids(await get(fake_archive, "/frames/", "Token member")) == [secret, public]
    assert ids(await get(fake_archive, "/frames/", "Bearer member")) == [secret, public]
    assert ids(await get(fake_archive, "/frames/", "Token root")) == [secret, public, other]


async def test_portal_down_fails_every_caller_whose_proposals_it_needs(
    fake_archive: FakeArchive, get: Get, fits_path: Path
) -> None:
    frame = fake_archive.add_frame(fits_path)
    fake_archive.add_token("member", SECRET)
    fake_archive.add_token("staff", staff=True)
    fake_archive.add_token("root", superuser=True)
    fake_archive.portal_down = True
    path = f"/frames/{frame['id']}/"
    for authorization in ("Token member", "Token staff", "Bearer member", "Bearer root", "Bearer nobody"):
        answer = await get(fake_archive, path, authorization)
        assert answer.status == 500, authorization
        assert answer.headers["Content-Type"].startswith("text/html")
        assert "<h1>Server Error (500)</h1>" in answer.text
    # Anonymous callers, superusers' tokens and unknown tokens never reach the portal.
    assert (await get(fake_archive, path)).status == 200
    assert (await get(fake_archive, path, "Token root")).status == 200
    assert (await get(fake_archive, path, "Token nobody")).json() == {"detail": "Invalid token."}


# Throttling -------------------------------------------------------------------------------------------


async def test_anonymous_quota_then_429_with_retry_after(
    make_archive: Callable[..., Awaitable[FakeArchive]], get: Get
) -> None:
    archive = await make_archive(anonymous_quota=3)
    for _ in range(3):
        assert (await get(archive, "/frames/")).status == 200
    answer = await get(archive, "/frames/")
    assert answer.status == 429
    wait = int(answer.headers["Retry-After"])
    assert QUOTA_SECONDS - 60 < wait <= QUOTA_SECONDS
    assert answer.json() == {"detail": f"Request was throttled. Expected available in {wait} seconds."}
    assert archive.quota_used() == 3


async def test_404_and_400_count_but_401_and_500_do_not(
    make_archive: Callable[..., Awaitable[FakeArchive]], get: Get
) -> None:
    archive = await make_archive(token_quota=5)
    archive.add_token("member", SECRET)
    assert (await get(archive, "/frames/1/", "Token member")).status == 404
    assert (await get(archive, "/frames/", "Token member", request_id="x")).status == 400
    assert (await get(archive, "/frames/", "Token nobody")).status == 401
    archive.portal_down = True
    assert (await get(archive, "/frames/", "Bearer member")).status == 500
    assert archive.quota_used("member") == 2
    assert (await get(archive, "/frames/", "Token member")).status == 500
    # That 500 comes from the view, after the throttle counted the request.
    assert archive.quota_used("member") == 3


async def test_throttled_before_the_view(make_archive: Callable[..., Awaitable[FakeArchive]], get: Get) -> None:
    archive = await make_archive(anonymous_quota=1)
    assert (await get(archive, "/frames/999/")).status == 404
    assert (await get(archive, "/frames/999/")).status == 429
    assert (await get(archive, "/frames/", request_id="bad")).status == 429
    assert archive.quota_used() == 1


async def test_staff_are_not_throttled(make_archive: Callable[..., Awaitable[FakeArchive]], get: Get) -> None:
    archive = await make_archive(token_quota=1)
    archive.add_token("staff", staff=True)
    archive.add_token("member")
    for _ in range(3):
        assert (await get(archive, "/frames/", "Token staff")).status == 200
    assert (await get(archive, "/frames/", "Token member")).status == 200
    assert (await get(archive, "/frames/", "Token member")).status == 429
    assert archive.quota_used("staff") == 0


async def test_quota_comes_back_when_the_day_has_passed(
    make_archive: Callable[..., Awaitable[FakeArchive]], get: Get
) -> None:
    clock = Clock()
    archive = await make_archive(anonymous_quota=2, clock=clock)
    await get(archive, "/frames/")
    clock.now += 3600
    await get(archive, "/frames/")
    answer = await get(archive, "/frames/")
    assert (answer.status, answer.headers["Retry-After"]) == (429, str(QUOTA_SECONDS - 3600))
    clock.now += QUOTA_SECONDS - 3600
    # The oldest request left the window: one more fits, not two.
    assert (await get(archive, "/frames/")).status == 200
    assert (await get(archive, "/frames/")).status == 429
    clock.now += 3600
    assert (await get(archive, "/frames/")).status == 200


async def test_buckets_are_per_address_and_per_token(
    make_archive: Callable[..., Awaitable[FakeArchive]], get: Get
) -> None:
    archive = await make_archive(anonymous_quota=1, token_quota=1)
    archive.add_token("alice")
    archive.add_token("bob")
    assert (await get(archive, "/frames/")).status == 200
    assert (await get(archive, "/frames/")).status == 429
    # DRF takes X-Forwarded-For as the client address when it is sent.
    assert (await get(archive, "/frames/", headers={"X-Forwarded-For": "10.0.0.7"})).status == 200
    assert archive.quota_used(address="10.0.0.7") == 1
    assert (await get(archive, "/frames/", "Token alice")).status == 200
    assert (await get(archive, "/frames/", "Bearer alice")).status == 429
    assert (await get(archive, "/frames/", "Token bob")).status == 200


# By id ----------------------------------------------------------------------------------------------


async def test_frame_without_version_is_answered_by_id_but_never_listed(fake_archive: FakeArchive, get: Get) -> None:
    record = fake_archive.add_frame(None)
    answer = await get(fake_archive, f"/frames/{record['id']}/")
    assert answer.status == 200
    assert (answer.json()["url"], answer.json()["filename"], answer.json()["version_set"]) == (None, None, [])
    assert ids(await get(fake_archive, "/frames/")) == []


@pytest.mark.parametrize(
    ("path", "detail"),
    [
        ("/frames/999/", "No Frame matches the given query."),
        ("/frames/abc/", "Not found."),
    ],
)
async def test_missing_frame_messages(fake_archive: FakeArchive, get: Get, path: str, detail: str) -> None:
    answer = await get(fake_archive, path)
    assert (answer.status, answer.json()) == (404, {"detail": detail})


async def test_hidden_or_undated_frames_are_404_by_id(fake_archive: FakeArchive, get: Get, fits_path: Path) -> None:
    secret = fake_archive.add_frame(fits_path, proposal_id=SECRET, public_date=FUTURE_DATE)
    undated = fake_archive.add_frame(fits_path, observation_date=None)
    for frame in (secret, undated):
        answer = await get(fake_archive, f"/frames/{frame['id']}/")
        assert (answer.status, answer.json()) == (404, {"detail": "No Frame matches the given query."})
    assert ids(await get(fake_archive, "/frames/")) == []


async def test_filters_apply_to_a_frame_by_id(fake_archive: FakeArchive, get: Get, fits_path: Path) -> None:
    frame = fake_archive.add_frame(fits_path)
    path = f"/frames/{frame['id']}/"
    assert (await get(fake_archive, path, proposal_id=frame["proposal_id"])).status == 200
    assert (await get(fake_archive, path, proposal_id="OTHER")).status == 404
    assert (await get(fake_archive, path, start="yesterday")).json() == {"start": ["Enter a valid date/time."]}


# Filters ------------------------------------------------------------------------------------------


async def test_exact_filters_and_their_legacy_names(fake_archive: FakeArchive, get: Get, fits_path: Path) -> None:
    wanted = fake_archive.add_frame(
        fits_path,
        basename="lsc-1",
        site_id="lsc",
        instrument_id="fa15",
        request_id=7,
        primary_optical_element="V",
        target_name="NGC 1",
    )["id"]
    fake_archive.add_frame(
        fits_path,
        basename="lsc-12",
        site_id="coj",
        instrument_id="fa16",
        request_id=8,
        primary_optical_element="rp",
        target_name="NGC 12",
    )
    for name, value in [
        ("site_id", "lsc"),
        ("SITEID", "lsc"),
        ("instrument_id", "fa15"),
        ("INSTRUME", "fa15"),
        ("request_id", "7"),
        ("REQNUM", "7.0"),
        ("FILTER", "V"),
        ("target_name_exact", "NGC 1"),
        ("basename_exact", "lsc-1"),
        ("site_id", " lsc "),
    ]:
        assert ids(await get(fake_archive, "/frames/", **{name: value})) == [wanted], name
    # An empty value filters nothing.
    assert len(ids(await get(fake_archive, "/frames/", site_id=""))) == 2


async def test_substring_at_least_and_unknown_parameters(fake_archive: FakeArchive, get: Get, fits_path: Path) -> None:
    long = fake_archive.add_frame(fits_path, basename="ogg-e91-long", target_name="Messier 42", exposure_time=120.0)[
        "id"
    ]
    short = fake_archive.add_frame(fits_path, basename="coj-e91-short", target_name="M1", exposure_time=5.0)["id"]
    assert ids(await get(fake_archive, "/frames/", basename="E91-LO")) == [long]
    assert ids(await get(fake_archive, "/frames/", OBJECT="messier")) == [long]
    assert ids(await get(fake_archive, "/frames/", target_name="m")) == [long, short]
    assert ids(await get(fake_archive, "/frames/", exposure_time="120")) == [long]
    assert ids(await get(fake_archive, "/frames/", EXPTIME="5")) == [long, short]
    assert ids(await get(fake_archive, "/frames/", not_a_filter="x", basename_exactly="x")) == [long, short]


async def test_date_filters(fake_archive: FakeArchive, get: Get, fits_path: Path) -> None:
    early = fake_archive.add_frame(fits_path, observation_date="2020-01-01T00:00:00Z")["id"]
    late = fake_archive.add_frame(fits_path, observation_date="2020-01-02T12:00:00.5Z", public_date=PAST_DATE)["id"]
    assert ids(await get(fake_archive, "/frames/", start="2020-01-02")) == [late]
    assert ids(await get(fake_archive, "/frames/", end="2020-01-01T00:00:00Z")) == [early]
    assert ids(await get(fake_archive, "/frames/", DATE_OBS="2020-01-02 12:00:00.5")) == [late]
    assert ids(await get(fake_archive, "/frames/", dayobs="2020-01-02")) == [late]
    assert ids(await get(fake_archive, "/frames/", DAY_OBS="01/01/2020")) == [early]
    assert ids(await get(fake_archive, "/frames/", L1PUBDAT="2020-03-21T10:11:12Z")) == [late, early]


async def test_configuration_type_choices(fake_archive: FakeArchive, get: Get, fits_path: Path) -> None:
    bias = fake_archive.add_frame(fits_path, configuration_type="BIAS", observation_date="2020-01-01T00:00:00Z")["id"]
    expose = fake_archive.add_frame(fits_path, configuration_type="EXPOSE")["id"]
    included = await get(fake_archive, "/frames/?include_configuration_type=BIAS&include_configuration_type=ARC")
    assert ids(included) == [bias]
    assert ids(await get(fake_archive, "/frames/", exclude_OBSTYPE="BIAS")) == [expose]
    assert ids(await get(fake_archive, "/frames/", exclude_calibrations="true")) == [expose]
    assert ids(await get(fake_archive, "/frames/", exclude_calibrations="yes")) == [bias, expose]
    answer = await get(fake_archive, "/frames/", exclude_configuration_type="FLAT")
    assert (answer.status, answer.json()) == (
        400,
        {"exclude_configuration_type": ["Select a valid choice. FLAT is not one of the available choices."]},
    )


async def test_public_filter_as_the_archive_reads_it(fake_archive: FakeArchive, get: Get, fits_path: Path) -> None:
    fake_archive.add_token("member", SECRET)
    fake_archive.add_token("root", superuser=True)
    fake_archive.add_token("nobody")
    public = fake_archive.add_frame(fits_path, observation_date="2020-01-01T00:00:00Z")["id"]
    secret = fake_archive.add_frame(fits_path, proposal_id=SECRET, public_date=FUTURE_DATE)["id"]
    # public=true restricts nothing.
    assert ids(await get(fake_archive, "/frames/", "Token member", public="True")) == [public, secret]
    assert ids(await get(fake_archive, "/frames/", "Token member", public="0")) == [secret]
    assert ids(await get(fake_archive, "/frames/", "Token root", public="false")) == [secret]
    assert ids(await get(fake_archive, "/frames/", public="false")) == []
    assert ids(await get(fake_archive, "/frames/", public="maybe")) == [public]
    # A non-superuser without proposals makes the archive's filter return None: 500.
    assert (await get(fake_archive, "/frames/", "Token nobody", public="false")).status == 500


async def test_covers_and_intersects_a_point(fake_archive: FakeArchive, get: Get, fits_path: Path) -> None:
    inside = fake_archive.add_frame(fits_path, area=AREA)["id"]
    fake_archive.add_frame(fits_path)
    assert ids(await get(fake_archive, "/frames/", covers="POINT(10 20)")) == [inside]
    assert ids(await get(fake_archive, "/frames/", intersects="POINT(11 21)")) == [inside]
    assert ids(await get(fake_archive, "/frames/", covers="POINT(12 20)")) == []
    answer = await get(fake_archive, "/frames/", intersects="POINT(10)")
    assert (answer.status, answer.json()) == (
        400,
        ["Error with intersects query: Point must be specified with exact format 'POINT(RA DEC)'"],
    )
    # Not even WKT: GEOS raises an error the archive does not catch.
    assert (await get(fake_archive, "/frames/", covers="10 20")).status == 500


async def test_every_bad_value_is_answered_at_once(fake_archive: FakeArchive, get: Get) -> None:
    answer = await get(
        fake_archive,
        "/frames/",
        request_id="one",
        start="soon",
        DAY_OBS="2020-13-01",
        RLEVEL="nan",
        limit="x",
        offset="y",
    )
    assert answer.status == 400
    assert answer.json() == {
        "request_id": ["Enter a number."],
        "start": ["Enter a valid date/time."],
        "DAY_OBS": ["Enter a valid date."],
        "RLEVEL": ["Enter a number."],
    }


# Ordering and pagination --------------------------------------------------------------------------


async def test_ordering(fake_archive: FakeArchive, get: Get, fits_path: Path) -> None:
    def add(day: int, site: str, exposure: float) -> int:
        return fake_archive.add_frame(
            fits_path, observation_date=f"2020-01-0{day}T00:00:00Z", site_id=site, exposure_time=exposure
        )["id"]

    first, second, third = add(1, "a", 1.0), add(3, "b", 2.0), add(2, "c", 1.0)
    assert ids(await get(fake_archive, "/frames/")) == [second, third, first]
    assert ids(await get(fake_archive, "/frames/", ordering="id")) == [first, second, third]
    by_exposure = await get(fake_archive, "/frames/", ordering="exposure_time,-observation_date")
    assert ids(by_exposure) == [third, first, second]
    # site_id is no ordering field: dropped, so the default applies.
    assert ids(await get(fake_archive, "/frames/", ordering="site_id,nonsense")) == [second, third, first]


async def test_limit_and_offset(make_archive: Callable[..., Awaitable[FakeArchive]], get: Get, fits_path: Path) -> None:
    archive = await make_archive(max_limit=2)
    frames = [
        archive.add_frame(fits_path, request_id=5, observation_date=f"2020-01-0{day}T00:00:00Z")["id"]
        for day in (3, 2, 1)
    ]
    assert ids(await get(archive, "/frames/", request_id=5, limit=50)) == frames[:2]
    assert ids(await get(archive, "/frames/", request_id=5, limit=1, offset=2)) == frames[2:]
    assert ids(await get(archive, "/frames/", request_id=5, limit=0, offset=-1)) == frames
    assert ids(await get(archive, "/frames/", request_id=5, limit="x", offset="y")) == frames


async def test_estimated_count_has_no_next_while_rows_remain(
    make_archive: Callable[..., Awaitable[FakeArchive]], get: Get, fits_path: Path
) -> None:
    archive = await make_archive(count_estimate=lambda matches, rows: 1)
    frames = [archive.add_frame(fits_path)["id"] for _ in range(4)]
    answer = (await get(archive, "/frames/", site_id="ogg", limit=2)).json()
    assert (answer["count"], answer["count_estimated"], answer["next"]) == (1, True, None)
    assert [record["id"] for record in answer["results"]] == frames[:2]


async def test_estimated_count_has_a_next_past_the_last_row(fake_archive: FakeArchive, get: Get) -> None:
    answer = (await get(fake_archive, "/frames/", site_id="nowhere", limit=5)).json()
    # No frame at all: the planner-like guess still says 12.
    assert (answer["count"], answer["count_estimated"], answer["results"]) == (12, True, [])
    next_url = URL(answer["next"])
    assert (next_url.query["limit"], next_url.query["offset"], next_url.query["site_id"]) == ("5", "5", "nowhere")
    assert next_url.host == "127.0.0.1"


async def test_small_queries_are_counted_exactly(
    make_archive: Callable[..., Awaitable[FakeArchive]], get: Get, fits_path: Path
) -> None:
    archive = await make_archive(count_estimate=lambda matches, rows: 1000)
    archive.add_token("member")
    for _ in range(3):
        archive.add_frame(fits_path, request_id=5, observation_date="2020-01-05T00:00:00Z")
    week = {"start": "2020-01-01T00:00:00Z", "end": "2020-01-08T00:00:00Z"}
    nine_weeks = {"start": "2020-01-01T00:00:00Z", "end": "2020-03-04T00:00:00Z"}
    exact = [
        ({"request_id": 5}, None),
        ({"observation_id": 292809554}, None),
        (week, None),
        ({"start": "2020-01-01", "end": "2020-01-07"}, None),
        ({**nine_weeks, "proposal_id": "LCOEPO2018B-002"}, None),
        ({"force_count": 1}, "Token member"),
    ]
    for query, auth in exact:
        answer = (await get(archive, "/frames/", auth, **query)).json()
        assert (answer["count"], answer["count_estimated"]) == (3, False), query
    for query, auth in [(nine_weeks, None), ({"force_count": 1}, None)]:
        assert (await get(archive, "/frames/", auth, **query)).json()["count"] == 1000, query


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2020-01-01", "2020-01-02T00:00:00Z"),  # a naive and an aware date-time cannot be subtracted
        ("01/01/2020", "01/02/2020"),  # the form reads these, Django's parse_datetime does not
    ],
)
async def test_time_span_the_archive_cannot_compute_is_500(
    fake_archive: FakeArchive, get: Get, start: str, end: str
) -> None:
    answer = await get(fake_archive, "/frames/", start=start, end=end)
    assert (answer.status, answer.headers["Content-Type"].split(";")[0]) == (500, "text/html")
    assert "<h1>Server Error (500)</h1>" in answer.text
    # Validation comes first; an indexed parameter skips the span.
    assert (await get(fake_archive, "/frames/", start=start, end="never")).status == 400
    assert (await get(fake_archive, "/frames/", start=start, end=end, request_id=1)).status == 200


async def test_previous_link(make_archive: Callable[..., Awaitable[FakeArchive]], get: Get, fits_path: Path) -> None:
    archive = await make_archive()
    for _ in range(5):
        archive.add_frame(fits_path, request_id=5)
    first = (await get(archive, "/frames/", request_id=5, limit=2)).json()
    assert first["previous"] is None
    assert URL(first["next"]).query == {"limit": "2", "offset": "2", "request_id": "5"}
    middle = (await get(archive, "/frames/", request_id=5, limit=2, offset=3)).json()
    assert URL(middle["previous"]).query == {"limit": "2", "offset": "1", "request_id": "5"}
    assert URL((await get(archive, "/frames/", request_id=5, limit=2, offset=1)).json()["previous"]).query == {
        "limit": "2",
        "request_id": "5",
    }
    assert (await get(archive, "/frames/", request_id=5, limit=2, offset=4)).json()["next"] is None


# Records --------------------------------------------------------------------------------------------


async def test_record_shape_and_dates(fake_archive: FakeArchive, get: Get, fits_path: Path) -> None:
    record = fake_archive.add_frame(
        fits_path,
        configuration_type="BIAS",
        reduction_level=0,
        observation_date="2026-03-01T03:12:45.123+00:00",
        public_date=PAST_DATE,
    )
    answer = (await get(fake_archive, f"/frames/{record['id']}/")).json()
    assert answer == record
    assert (answer["observation_date"], answer["observation_day"]) == ("2026-03-01T03:12:45.123000Z", "2026-03-01")
    assert answer["public_date"] == answer["L1PUBDAT"] == "2020-03-21T10:11:12Z"
    assert (answer["OBSTYPE"], answer["RLEVEL"], answer["DATE_OBS"]) == ("BIAS", 0, answer["observation_date"])
    assert "area" not in answer and answer["related_frames"] == []
    [version] = answer["version_set"]
    assert set(version) == {"id", "created", "key", "md5", "extension", "url"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z", version["created"])
    assert answer["url"] == version["url"] and "X-Amz-Expires=172800" in answer["url"]
    assert answer["filename"] == record["basename"] + ".fits"
    with pytest.raises(TypeError):
        fake_archive.add_frame(fits_path, OBSTYPE="BIAS")


async def test_versions_newest_first_and_optional_parts(
    fake_archive: FakeArchive, get: Get, fits_path: Path, tmp_path: Path
) -> None:
    record = fake_archive.add_frame(fits_path, area=AREA, related_frames=[7])
    newer = tmp_path / "newer.fits.fz"
    newer.write_bytes(b"other bytes")
    fake_archive.new_version(record["id"], newer)
    answer = (await get(fake_archive, f"/frames/{record['id']}/")).json()
    assert [version["extension"] for version in answer["version_set"]] == [".fits.fz", ".fits"]
    assert answer["filename"].endswith(".fits.fz") and answer["url"] == answer["version_set"][0]["url"]
    assert (answer["area"], answer["related_frames"]) == (AREA, [7])
    trimmed = (await get(fake_archive, f"/frames/{record['id']}/", include_related_frames="False")).json()
    assert "related_frames" not in trimmed


async def test_legacy_copies_follow_a_changed_record(fake_archive: FakeArchive, get: Get, fits_path: Path) -> None:
    record = fake_archive.add_frame(fits_path)
    fake_archive.record(record["id"])["configuration_type"] = "SKYFLAT"
    answer = (await get(fake_archive, f"/frames/{record['id']}/")).json()
    assert answer["OBSTYPE"] == "SKYFLAT"


# What the fake already did ----------------------------------------------------------------------------


async def test_downloads_refuse_authorization_and_changed_queries(
    fake_archive: FakeArchive, session: aiohttp.ClientSession, fits_path: Path
) -> None:
    url = URL(fake_archive.add_frame(fits_path)["url"], encoded=True)
    async with session.get(url) as response:
        assert (response.status, await response.read()) == (200, fits_path.read_bytes())
    async with session.get(url, headers={"Authorization": "Token x"}) as response:
        assert response.status == 400
    async with session.get(URL(str(url) + "&x=1", encoded=True)) as response:
        assert response.status == 403
    await fake_archive.close()
    await fake_archive.start()
    async with session.get(url) as response:
        assert response.status == 200
    assert fake_archive.downloads == {int(url.parts[2]): 2}
