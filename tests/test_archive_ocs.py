"""The OCS archive client against the fake archive over real HTTP, and frame record parsing."""

import asyncio
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import aiohttp
import pytest

from fakearchive import FUTURE_DATE, FakeArchive, Fault
from thumbproxy.archive.base import Frame
from thumbproxy.archive.ocs import OcsArchive
from thumbproxy.archive.records import MALFORMED_RECORD, frame_from_record, parse_datetime
from thumbproxy.archive.retry import RetryPolicy
from thumbproxy.errors import ThumbproxyError
from thumbproxy.ops.metrics import Metrics
from thumbproxy.support.deadline import request_deadline

MEMBER_TOKEN = "member-token"
OUTSIDER_TOKEN = "outsider-token"
PROPRIETARY_PROPOSAL = "LCO2019A-001"


@pytest.fixture
def archive(make_archive: Callable[..., OcsArchive]) -> OcsArchive:
    return make_archive()


@pytest.fixture
def big_fits(tmp_path: Path, write_fits: Callable[..., Path]) -> Path:
    """A FITS file of about 1.4 MB: several network chunks and more than one write batch."""
    return write_fits(tmp_path / "lsc1m005-fa15-20190321-0100-e91.fits", shape=(600, 600), seed=1)


def files_in(directory: Path) -> list[Path]:
    return sorted(directory.iterdir()) if directory.exists() else []


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def raised(awaitable: object) -> ThumbproxyError:
    """The ThumbproxyError an awaitable raises."""
    with pytest.raises(ThumbproxyError) as caught:
        await awaitable  # type: ignore[misc]
    return caught.value


async def read_fits(archive: OcsArchive, frame: Frame) -> bytes:
    async with archive.fits_file(frame) as path:
        return await asyncio.to_thread(path.read_bytes)


# Frame records ----------------------------------------------------------------------------


def test_record_fields_come_from_lower_case_names(fake_archive: FakeArchive, fits_path: Path) -> None:
    # The archive's legacy upper-case copies always equal the lower-case fields; altered here by hand
    # so that the test tells which names are read.
    record = {**fake_archive.add_frame(fits_path, request_id=None), "OBSTYPE": "BIAS", "RLEVEL": 0}

    frame = frame_from_record(record)

    assert frame.id == record["id"]
    assert frame.basename == "ogg0m404-kb82-20190321-0273-e91"
    assert frame.filename == "ogg0m404-kb82-20190321-0273-e91.fits"
    assert frame.url == record["url"]
    assert frame.configuration_type == "EXPOSE"
    assert frame.reduction_level == 91
    assert frame.request_id is None
    assert frame.primary_optical_element == "rp"
    assert frame.proposal_id == "LCOEPO2018B-002"
    assert frame.observation_date == datetime(2019, 3, 21, 10, 11, 12, tzinfo=UTC)
    assert frame.version == record["version_set"][0]["md5"]
    assert frame.record is record


def test_version_is_the_newest_entry_whatever_the_order() -> None:
    version_set = [
        {"id": 7, "created": "2020-01-01T00:00:00Z", "md5": "old", "key": "k-old"},
        {"id": 8, "created": "2021-06-01T00:00:00.123456Z", "md5": "new", "key": "k-new"},
        {"id": 6, "created": None, "md5": "undated", "key": "k-undated"},
    ]
    assert frame_from_record({"id": 1, "version_set": version_set}).version == "new"
    assert frame_from_record({"id": 1, "version_set": version_set[::-1]}).version == "new"
    without_md5 = [{"id": 1, "created": "2020-01-01T00:00:00Z", "md5": None, "key": "the-key"}]
    assert frame_from_record({"id": 1, "version_set": without_md5}).version == "the-key"
    same_date = [
        {"id": 2, "created": "2020-01-01T00:00:00Z", "md5": "second"},
        {"id": 1, "created": "2020-01-01T00:00:00Z", "md5": "first"},
    ]
    assert frame_from_record({"id": 1, "version_set": same_date}).version == "second"
    assert frame_from_record({"id": 1, "version_set": []}).version == ""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2019-03-21T10:11:12Z", datetime(2019, 3, 21, 10, 11, 12, tzinfo=UTC)),
        ("2019-03-21T10:11:12.500Z", datetime(2019, 3, 21, 10, 11, 12, 500000, tzinfo=UTC)),
        ("2019-03-21T10:11:12", datetime(2019, 3, 21, 10, 11, 12, tzinfo=UTC)),
        (
            "2019-03-21T10:11:12.123456+02:00",
            datetime(2019, 3, 21, 10, 11, 12, 123456, tzinfo=timezone(timedelta(hours=2))),
        ),
        ("not a date", None),
        ("", None),
        (None, None),
    ],
)
def test_dates_parse_to_aware_datetimes(text: str | None, expected: datetime | None) -> None:
    parsed = parse_datetime(text)
    assert parsed == expected
    assert parsed is None or parsed.tzinfo is not None


def test_record_with_only_an_id_is_tolerated() -> None:
    frame = frame_from_record({"id": 42, "url": None, "request_id": None, "observation_date": None})
    assert (frame.id, frame.basename, frame.url, frame.request_id, frame.observation_date, frame.version) == (
        42,
        "",
        None,
        None,
        None,
        "",
    )


@pytest.mark.parametrize("record", [{}, {"id": "42"}, {"id": None}, {"id": True}, ["id", 42], "frame"])
def test_record_without_integer_id_is_a_bad_gateway(record: object) -> None:
    with pytest.raises(ThumbproxyError) as caught:
        frame_from_record(record)
    assert (caught.value.status, caught.value.message) == (502, MALFORMED_RECORD)


# Looking frames up ------------------------------------------------------------------------


async def test_frame_by_id(archive: OcsArchive, fake_archive: FakeArchive, fits_path: Path) -> None:
    record = fake_archive.add_frame(fits_path, primary_optical_element="V")

    frame = await archive.frame(record["id"], None)

    assert frame == frame_from_record(record)
    assert frame.primary_optical_element == "V"
    assert fake_archive.received("api")[0].path == f"/frames/{record['id']}/"


async def test_unknown_frame_is_not_found(archive: OcsArchive) -> None:
    error = await raised(archive.frame(999, None))
    assert (error.status, error.message) == (404, "Not found")


async def test_frame_by_basename_needs_exactly_one_match(
    archive: OcsArchive, fake_archive: FakeArchive, fits_path: Path
) -> None:
    record = fake_archive.add_frame(fits_path)
    fake_archive.add_frame(fits_path, basename="twin")
    fake_archive.add_frame(fits_path, basename="twin")

    assert (await archive.frame_by_basename(record["basename"], None)).id == record["id"]
    assert (await raised(archive.frame_by_basename("twin", None))).status == 404
    assert (await raised(archive.frame_by_basename("absent", None))).status == 404


async def test_frames_follows_every_page(archive: OcsArchive, fake_archive: FakeArchive, fits_path: Path) -> None:
    fake_archive.max_limit = 2
    wanted = [fake_archive.add_frame(fits_path, request_id=77, reduction_level=91)["id"] for _ in range(5)]
    fake_archive.add_frame(fits_path, request_id=77, reduction_level=0)
    fake_archive.add_frame(fits_path, request_id=78, reduction_level=91)

    frames = await archive.frames({"request_id": "77", "reduction_level": "91"}, None)

    assert [frame.id for frame in frames] == wanted
    requests = fake_archive.received("api")
    assert len(requests) == 3
    assert requests[0].query == {"request_id": "77", "reduction_level": "91", "limit": "1000", "offset": "0"}
    assert [request.query.get("offset") for request in requests] == ["0", "2", "4"]


async def test_newest_asks_for_one_frame(archive: OcsArchive, fake_archive: FakeArchive, fits_path: Path) -> None:
    for day in (20, 22, 21):
        fake_archive.add_frame(fits_path, observation_date=f"2019-03-{day}T00:00:00Z", site_id="lsc")

    newest = await archive.newest({"site_id": "lsc"}, None)

    assert newest is not None and newest.observation_date == datetime(2019, 3, 22, tzinfo=UTC)
    assert [request.query for request in fake_archive.received("api")] == [
        {"site_id": "lsc", "ordering": "-observation_date,-id", "limit": "1", "offset": "0"}
    ]
    assert await archive.newest({"site_id": "cpt"}, None) is None


async def test_frames_with_no_match_is_empty(archive: OcsArchive, fake_archive: FakeArchive, fits_path: Path) -> None:
    fake_archive.add_frame(fits_path)
    assert await archive.frames({"request_id": "1"}, None) == []


# Authorization ----------------------------------------------------------------------------


@pytest.fixture
def proprietary(fake_archive: FakeArchive, fits_path: Path) -> dict:
    """A frame only members of PROPRIETARY_PROPOSAL may see."""
    fake_archive.add_token(MEMBER_TOKEN, PROPRIETARY_PROPOSAL)
    fake_archive.add_token(OUTSIDER_TOKEN, "SOMEONE-ELSE")
    return fake_archive.add_frame(fits_path, proposal_id=PROPRIETARY_PROPOSAL, public_date=FUTURE_DATE, request_id=5)


@pytest.mark.parametrize("authorization", [None, f"Token {OUTSIDER_TOKEN}"])
async def test_proprietary_frame_is_hidden_from_others(
    archive: OcsArchive, proprietary: dict, authorization: str | None
) -> None:
    assert (await raised(archive.frame(proprietary["id"], authorization))).status == 404
    assert (await raised(archive.frame_by_basename(proprietary["basename"], authorization))).status == 404
    assert await archive.frames({"request_id": "5"}, authorization) == []


@pytest.mark.parametrize("authorization", [f"Token {MEMBER_TOKEN}", f"Bearer {MEMBER_TOKEN}"])
async def test_proprietary_frame_is_shown_to_members(
    archive: OcsArchive, fake_archive: FakeArchive, proprietary: dict, authorization: str
) -> None:
    assert (await archive.frame(proprietary["id"], authorization)).id == proprietary["id"]
    assert [frame.id for frame in await archive.frames({"request_id": "5"}, authorization)] == [proprietary["id"]]
    assert {request.headers["Authorization"] for request in fake_archive.received("api")} == {authorization}


async def test_anonymous_calls_send_no_authorization(
    archive: OcsArchive, fake_archive: FakeArchive, fits_path: Path
) -> None:
    record = fake_archive.add_frame(fits_path)
    await archive.frame(record["id"], None)
    assert "Authorization" not in fake_archive.received("api")[0].headers


async def test_authorization_never_reaches_the_download_url(
    archive: OcsArchive, fake_archive: FakeArchive, proprietary: dict, fits_path: Path
) -> None:
    frame = await archive.frame(proprietary["id"], f"Token {MEMBER_TOKEN}")

    assert await read_fits(archive, frame) == fits_path.read_bytes()

    [download] = fake_archive.received("download")
    assert "Authorization" not in download.headers
    assert "X-Amz-Signature" in download.query


# Archive failures -------------------------------------------------------------------------


async def test_bad_token_is_unauthorized_with_the_archive_detail(archive: OcsArchive) -> None:
    error = await raised(archive.frame(1, "Token nobody-knows-me"))
    assert error.status == 401
    assert error.message == "Got error response from the archive: Invalid token."


@pytest.mark.parametrize(
    ("fault", "status", "message_part"),
    [
        (Fault(status=403, body=b'{"detail": "You do not have permission."}'), 403, "You do not have permission."),
        (Fault(status=403, body=b"<html>" + b"x" * 5000 + b"</html>"), 403, "Got error response"),
        (Fault(status=404), 404, "Not found"),
        (Fault(status=500, body=b"Traceback (most recent call last): secret"), 502, "archive"),
        (Fault(status=503), 502, "archive"),
        (Fault(status=400), 502, "archive"),
        (Fault(body=b"<html><body>Maintenance</body></html>"), 502, "not JSON"),
        (Fault(body=b'{"id": 11245132, "basen'), 502, "not JSON"),
        (Fault(truncate=True), 502, "cut short"),
        (Fault(body=b"[1, 2]"), 502, "malformed"),
    ],
)
async def test_archive_failures_map_to_client_answers(
    archive: OcsArchive, fake_archive: FakeArchive, fits_path: Path, fault: Fault, status: int, message_part: str
) -> None:
    record = fake_archive.add_frame(fits_path)
    fake_archive.api_fault = fault

    for call in (archive.frame(record["id"], None), archive.frames({"basename_exact": record["basename"]}, None)):
        error = await raised(call)
        assert error.status == status
        assert message_part in error.message
        assert "Traceback" not in error.message
        assert fake_archive.base_url not in error.message


async def test_throttling_keeps_retry_after(archive: OcsArchive, fake_archive: FakeArchive) -> None:
    fake_archive.api_fault = Fault(status=429, headers={"Retry-After": "17"})
    error = await raised(archive.frame(1, None))
    assert (error.status, error.headers) == (429, {"Retry-After": "17"})


async def test_slow_archive_times_out(make_archive: Callable[..., OcsArchive], fake_archive: FakeArchive) -> None:
    archive = make_archive(timeout=0.3)
    fake_archive.api_fault = Fault(delay=10)

    started = time.monotonic()
    error = await raised(archive.frame(1, None))

    assert (error.status, error.message) == (504, "Timeout while accessing resource")
    assert time.monotonic() - started < 2


async def test_unreachable_archive_is_a_bad_gateway(http_session: aiohttp.ClientSession, tmp_dir: Path) -> None:
    base_url = f"http://127.0.0.1:{free_port()}/"
    archive = OcsArchive(http_session, base_url, 1.0, 2.0, 2.0, tmp_dir, 2**20)

    error = await raised(archive.frame(1, None))

    assert error.status == 502
    assert "archive" in error.message
    assert base_url not in error.message and "127.0.0.1" not in error.message


async def test_fault_for_one_request_only_then_recovery(
    archive: OcsArchive, fake_archive: FakeArchive, fits_path: Path
) -> None:
    record = fake_archive.add_frame(fits_path)
    fake_archive.api_fault = Fault(status=503, times=1)
    assert (await raised(archive.frame(record["id"], None))).status == 502
    assert (await archive.frame(record["id"], None)).id == record["id"]


# Downloads --------------------------------------------------------------------------------


async def test_download_yields_identical_bytes_and_removes_the_file(
    archive: OcsArchive, fake_archive: FakeArchive, big_fits: Path, tmp_dir: Path
) -> None:
    frame = await archive.frame(fake_archive.add_frame(big_fits)["id"], None)

    async with archive.fits_file(frame) as path:
        assert path.parent == tmp_dir
        assert path.name.endswith(frame.filename or "")
        assert await asyncio.to_thread(path.read_bytes) == big_fits.read_bytes()

    assert files_in(tmp_dir) == []
    assert fake_archive.downloads[frame.id] == 1


async def test_new_version_gives_a_new_version_and_new_bytes(
    archive: OcsArchive, fake_archive: FakeArchive, fits_path: Path, big_fits: Path
) -> None:
    record = fake_archive.add_frame(fits_path)
    before = await archive.frame(record["id"], None)

    fake_archive.new_version(record["id"], big_fits)
    after = await archive.frame(record["id"], None)

    assert after.version != before.version
    assert await read_fits(archive, after) == big_fits.read_bytes()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "no-content-length"])
async def test_too_large_file_is_refused_and_removed(
    make_archive: Callable[..., OcsArchive], fake_archive: FakeArchive, big_fits: Path, tmp_dir: Path, chunked: bool
) -> None:
    archive = make_archive(max_fits_bytes=2**20)
    frame = frame_from_record(fake_archive.add_frame(big_fits))
    fake_archive.download_fault = Fault(chunked=chunked)

    error = await raised(read_fits(archive, frame))

    assert (error.status, error.message) == (413, "FITS file larger than 1 MB")
    assert files_in(tmp_dir) == []


@pytest.mark.parametrize(
    ("fault", "status"),
    [
        (Fault(status=403), 502),
        (Fault(status=500), 502),
        (Fault(truncate=True), 502),
        (Fault(delay=10), 504),
        (Fault(stall_after_bytes=100_000, delay=10), 504),
    ],
)
async def test_download_failures_map_to_client_answers(
    make_archive: Callable[..., OcsArchive],
    fake_archive: FakeArchive,
    big_fits: Path,
    tmp_dir: Path,
    fault: Fault,
    status: int,
) -> None:
    archive = make_archive(download_timeout=0.3)
    frame = frame_from_record(fake_archive.add_frame(big_fits))
    fake_archive.download_fault = fault

    error = await raised(read_fits(archive, frame))

    assert error.status == status
    assert "X-Amz" not in error.message and fake_archive.base_url not in error.message
    assert files_in(tmp_dir) == []


async def test_download_of_a_refused_signature_is_a_bad_gateway(
    archive: OcsArchive, fake_archive: FakeArchive, fits_path: Path, tmp_dir: Path
) -> None:
    record = fake_archive.add_frame(fits_path)
    frame = frame_from_record({**record, "url": record["url"].replace("X-Amz-Signature=", "X-Amz-Signature=0")})

    assert (await raised(read_fits(archive, frame))).status == 502
    assert files_in(tmp_dir) == []


async def test_frame_without_a_file_is_not_found_by_id_as_by_basename(
    archive: OcsArchive, fake_archive: FakeArchive
) -> None:
    record = fake_archive.add_frame(None)

    by_id = await raised(archive.frame(record["id"], None))
    by_basename = await raised(archive.frame_by_basename(record["basename"], None))

    assert (by_id.status, by_id.message) == (by_basename.status, by_basename.message) == (404, "Not found")


async def test_file_is_removed_when_the_consumer_fails(
    archive: OcsArchive, fake_archive: FakeArchive, fits_path: Path, tmp_dir: Path
) -> None:
    frame = frame_from_record(fake_archive.add_frame(fits_path))

    with pytest.raises(RuntimeError):
        async with archive.fits_file(frame):
            raise RuntimeError("renderer crashed")

    assert files_in(tmp_dir) == []


async def wait_for_file(directory: Path) -> None:
    deadline = time.monotonic() + 5
    while not files_in(directory):
        assert time.monotonic() < deadline, "no temporary file appeared"
        await asyncio.sleep(0.01)


async def test_file_is_removed_when_cancelled_mid_download(
    archive: OcsArchive, fake_archive: FakeArchive, big_fits: Path, tmp_dir: Path
) -> None:
    frame = frame_from_record(fake_archive.add_frame(big_fits))
    fake_archive.download_fault = Fault(stall_after_bytes=200_000, delay=10)
    download = asyncio.create_task(read_fits(archive, frame))
    await wait_for_file(tmp_dir)

    download.cancel()
    with pytest.raises(asyncio.CancelledError):
        await download

    assert files_in(tmp_dir) == []


async def test_file_is_removed_when_the_consumer_is_cancelled(
    archive: OcsArchive, fake_archive: FakeArchive, fits_path: Path, tmp_dir: Path
) -> None:
    frame = frame_from_record(fake_archive.add_frame(fits_path))
    holding = asyncio.Event()

    async def render_forever() -> None:
        async with archive.fits_file(frame):
            holding.set()
            await asyncio.Event().wait()

    consumer = asyncio.create_task(render_forever())
    await holding.wait()
    assert len(files_in(tmp_dir)) == 1

    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer

    assert files_in(tmp_dir) == []


# Retries ----------------------------------------------------------------------------------


def no_wait(low: float, high: float) -> float:
    return low


def longest_wait(low: float, high: float) -> float:
    return high


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def retrying(make_archive: Callable[..., OcsArchive], metrics: Metrics) -> OcsArchive:
    """An archive client that tries a failing call twice more, without waiting."""
    return make_archive(metrics=metrics, retry_policy=RetryPolicy(retries=2, uniform=no_wait))


def retries(metrics: Metrics, operation: str) -> float:
    return metrics.registry.get_sample_value("thumbproxy_archive_retries_total", {"operation": operation}) or 0.0


def calls(metrics: Metrics, operation: str, status: str) -> float:
    labels = {"operation": operation, "status": status}
    return metrics.registry.get_sample_value("thumbproxy_archive_requests_total", labels) or 0.0


@pytest.mark.parametrize(
    "fault",
    [Fault(status=502, times=2), Fault(status=503, times=2), Fault(status=504, times=2), Fault(truncate=True, times=2)],
)
async def test_a_failure_that_may_pass_is_retried_and_counted(
    retrying: OcsArchive, fake_archive: FakeArchive, fits_path: Path, metrics: Metrics, fault: Fault
) -> None:
    record = fake_archive.add_frame(fits_path)
    fake_archive.api_fault = fault

    assert (await retrying.frame(record["id"], None)).id == record["id"]

    assert fake_archive.api_calls == 3
    assert retries(metrics, "frame") == 2
    assert calls(metrics, "frame", "200") == (1 if fault.status else 3)


async def test_retries_are_bounded(
    retrying: OcsArchive, fake_archive: FakeArchive, fits_path: Path, metrics: Metrics
) -> None:
    record = fake_archive.add_frame(fits_path)
    fake_archive.api_fault = Fault(status=503)

    error = await raised(retrying.frame(record["id"], None))

    assert (error.status, error.message) == (502, "The archive failed (HTTP 503)")
    assert fake_archive.api_calls == 3
    assert retries(metrics, "frame") == 2


@pytest.mark.parametrize(
    ("fault", "status"),
    [
        (Fault(status=404), 404),
        (Fault(status=401), 401),
        (Fault(status=403), 403),
        (Fault(status=429), 429),
        (Fault(status=500), 502),
        (Fault(body=b"<html><body>Maintenance</body></html>"), 502),
        (Fault(body=b'{"id": 11245132, "basen'), 502),
    ],
)
async def test_an_answer_that_would_not_change_is_not_retried(
    retrying: OcsArchive, fake_archive: FakeArchive, fits_path: Path, metrics: Metrics, fault: Fault, status: int
) -> None:
    record = fake_archive.add_frame(fits_path)
    fake_archive.api_fault = fault

    assert (await raised(retrying.frame(record["id"], None))).status == status

    assert fake_archive.api_calls == 1
    assert retries(metrics, "frame") == 0


async def test_a_timeout_is_not_retried(
    make_archive: Callable[..., OcsArchive], fake_archive: FakeArchive, fits_path: Path, metrics: Metrics
) -> None:
    archive = make_archive(timeout=0.3, metrics=metrics, retry_policy=RetryPolicy(retries=2, uniform=no_wait))
    record = fake_archive.add_frame(fits_path)
    fake_archive.api_fault = Fault(delay=10)

    started = time.monotonic()
    assert (await raised(archive.frame(record["id"], None))).status == 504

    assert time.monotonic() - started < 1
    assert fake_archive.api_calls == 1
    assert calls(metrics, "frame", "timeout") == 1


async def test_a_refused_connection_is_retried(
    http_session: aiohttp.ClientSession, tmp_dir: Path, metrics: Metrics
) -> None:
    archive = OcsArchive(
        http_session,
        f"http://127.0.0.1:{free_port()}/",
        1.0,
        2.0,
        2.0,
        tmp_dir,
        2**20,
        metrics=metrics,
        retry_policy=RetryPolicy(retries=2, uniform=no_wait),
    )

    assert (await raised(archive.frame(1, None))).status == 502

    assert calls(metrics, "frame", "error") == 3
    assert retries(metrics, "frame") == 2


async def test_list_pages_are_retried(
    retrying: OcsArchive, fake_archive: FakeArchive, fits_path: Path, metrics: Metrics
) -> None:
    record = fake_archive.add_frame(fits_path)
    fake_archive.api_fault = Fault(status=502, times=1)

    assert [frame.id for frame in await retrying.frames({"basename_exact": record["basename"]}, None)] == [record["id"]]

    assert retries(metrics, "list") == 1


def test_waits_double_up_to_the_cap_with_full_jitter() -> None:
    assert [RetryPolicy(base=0.1, cap=2.0, uniform=longest_wait).wait(retry) for retry in range(7)] == pytest.approx(
        [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    )
    # Full jitter: anywhere from no wait to the bound, so callers failing together spread out.
    waits = [RetryPolicy(base=0.1, cap=2.0).wait(10) for _ in range(100)]
    assert all(0 <= wait <= 2.0 for wait in waits)
    assert min(waits) < 0.5 and max(waits) > 1.5


async def test_retries_stop_before_a_wait_would_pass_the_deadline(
    make_archive: Callable[..., OcsArchive], fake_archive: FakeArchive, fits_path: Path, metrics: Metrics
) -> None:
    archive = make_archive(
        metrics=metrics, retry_policy=RetryPolicy(retries=5, base=0.2, cap=0.2, uniform=longest_wait)
    )
    record = fake_archive.add_frame(fits_path)
    fake_archive.api_fault = Fault(status=503)

    started = time.monotonic()
    async with request_deadline(0.5):
        error = await raised(archive.frame(record["id"], None))

    # Tried at 0, 0.2 and 0.4 s; a third wait would end at 0.6 s, past the deadline: the archive's error, not 504.
    assert (error.status, fake_archive.api_calls, retries(metrics, "frame")) == (502, 3, 2)
    assert time.monotonic() - started < 0.5


@pytest.mark.parametrize("fault", [Fault(status=503, times=1), Fault(truncate=True, times=1)])
async def test_a_failed_download_is_retried_from_scratch(
    make_archive: Callable[..., OcsArchive],
    fake_archive: FakeArchive,
    big_fits: Path,
    tmp_dir: Path,
    metrics: Metrics,
    fault: Fault,
) -> None:
    archive = make_archive(metrics=metrics, retry_policy=RetryPolicy(retries=2, uniform=no_wait))
    frame = frame_from_record(fake_archive.add_frame(big_fits))
    fake_archive.download_fault = fault

    assert await read_fits(archive, frame) == big_fits.read_bytes()

    assert retries(metrics, "download") == 1
    assert files_in(tmp_dir) == []


async def test_a_download_failing_every_time_leaves_no_file(
    make_archive: Callable[..., OcsArchive],
    fake_archive: FakeArchive,
    big_fits: Path,
    tmp_dir: Path,
    metrics: Metrics,
) -> None:
    archive = make_archive(metrics=metrics, retry_policy=RetryPolicy(retries=2, uniform=no_wait))
    frame = frame_from_record(fake_archive.add_frame(big_fits))
    fake_archive.download_fault = Fault(truncate=True)

    error = await raised(read_fits(archive, frame))

    assert (error.status, fake_archive.downloads[frame.id]) == (502, 3)
    assert "cut short" in error.message
    assert files_in(tmp_dir) == []
