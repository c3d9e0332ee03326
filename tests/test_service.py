"""The thumbnail endpoints end to end: real HTTP to the service, real HTTP to a fake archive."""

import asyncio
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from PIL import Image

from conftest import WIDE, Service, ServiceFactory
from fakearchive import FUTURE_DATE, FakeArchive, Fault
from thumbproxy.archive.tempfiles import temp_path


def assert_json_error(body: dict[str, Any], *words: str) -> None:
    assert set(body) == {"message"}
    assert "Traceback" not in body["message"]
    for word in words:
        assert word in body["message"]


# Answers -----------------------------------------------------------------------------------


async def test_image_mode_answers_a_jpeg_fitting_the_default_box(service: Service, frame: dict) -> None:
    image = await service.image(f"/{frame['id']}/?image=true")
    assert image.format == "JPEG"
    assert image.size == (200, 150)


async def test_width_and_height_bound_the_thumbnail(service: Service, frame: dict) -> None:
    assert (await service.image(f"/{frame['id']}/?image=1&width=100&height=100")).size == (100, 75)
    assert (await service.image(f"/{frame['id']}/?image=1&width=1000&height=30")).size == (40, 30)
    # Never upscaled: the frame is 400x300.
    assert (await service.image(f"/{frame['id']}/?image=1&width=2000&height=2000")).size == (400, 300)


async def test_json_answer_has_a_working_url_and_the_proposal(service: Service, frame: dict) -> None:
    response = await service.get(f"/{frame['id']}/?width=120&label=M42")
    assert response.status == 200
    body = await response.json()
    assert body["propid"] == "LCOEPO2018B-002"
    assert set(body) == {"url", "propid"}
    url = body["url"]
    assert url.startswith(str(service.client.make_url("/")))
    async with aiohttp.ClientSession() as session, session.get(url) as followed:
        assert followed.status == 200
        assert followed.content_type == "image/jpeg"
        direct = await service.get(f"/{frame['id']}/?image=yes&width=120&label=M42")
        assert await followed.read() == await direct.read()


async def test_public_url_setting_is_the_base_of_the_json_url(start_service: ServiceFactory, frame: dict) -> None:
    service = await start_service(THUMBPROXY_PUBLIC_URL="https://thumbs.example.org/")
    body = await (await service.get(f"/{frame['id']}")).json()
    assert body["url"].startswith(f"https://thumbs.example.org/{frame['id']}/?")
    assert "image=true" in body["url"]


@pytest.mark.parametrize("suffix", ["/", ""])
async def test_basename_and_id_routes_answer_with_or_without_slash(service: Service, frame: dict, suffix: str) -> None:
    by_id = await (await service.get(f"/{frame['id']}{suffix}?image=true")).read()
    by_name = await (await service.get(f"/{frame['basename']}{suffix}?image=true")).read()
    assert by_id == by_name and by_id[:2] == b"\xff\xd8"


async def test_second_identical_request_downloads_nothing(service: Service, frame: dict) -> None:
    first = await (await service.get(f"/{frame['id']}/?image=true")).read()
    assert service.archive.downloads[frame["id"]] == 1
    second = await (await service.get(f"/{frame['basename']}/?image=true")).read()
    json_answer = await service.get(f"/{frame['id']}/")
    assert json_answer.status == 200
    assert first == second
    assert service.archive.downloads[frame["id"]] == 1


async def test_new_version_of_a_frame_gets_a_new_thumbnail(
    start_service: ServiceFactory, frame: dict, write_fits: Callable[..., Path], tmp_path: Path
) -> None:
    # Public records are reused for THUMBPROXY_METADATA_TTL; a new version shows once it is re-read.
    service = await start_service(THUMBPROXY_METADATA_TTL="0.3")
    old = await (await service.get(f"/{frame['id']}/?image=true")).read()
    reprocessed = write_fits(tmp_path / "v2.fits.fz", shape=WIDE, compressed=True, seed=7)
    service.archive.new_version(frame["id"], reprocessed)
    await asyncio.sleep(0.4)
    new = await (await service.get(f"/{frame['id']}/?image=true")).read()
    assert new != old
    assert service.archive.downloads[frame["id"]] == 2


# Parameters --------------------------------------------------------------------------------


async def test_label_is_drawn_in_the_lower_left(service: Service, frame: dict) -> None:
    plain = np.asarray((await service.image(f"/{frame['id']}/?image=true&width=400")).convert("L"), float)
    labelled = np.asarray(
        (await service.image(f"/{frame['id']}/?image=true&width=400&label=NGC%201976")).convert("L"), float
    )
    difference = np.abs(plain - labelled)
    height, width = difference.shape
    assert difference[height - 30 :, : width // 2].max() > 100
    assert difference[: height // 2].max() < 40


async def test_line_breaks_in_labels_draw_as_spaces(service: Service, frame: dict) -> None:
    broken = await (await service.get(f"/{frame['id']}/?image=true&label=M42%0D%0A%09Orion")).read()
    spaced = await (await service.get(f"/{frame['id']}/?image=true&label=M42%20Orion")).read()
    assert broken == spaced
    assert service.archive.downloads[frame["id"]] == 1


async def test_median_and_percentile_change_the_stretch(service: Service, frame: dict) -> None:
    plain = await (await service.get(f"/{frame['id']}/?image=true")).read()
    median = await (await service.get(f"/{frame['id']}/?image=true&median=true")).read()
    median_low = await (await service.get(f"/{frame['id']}/?image=true&median=on&percentile=50")).read()
    assert len({plain, median, median_low}) == 3


async def test_quality_and_progressive(service: Service, frame: dict) -> None:
    low = await (await service.get(f"/{frame['id']}/?image=true&quality=10")).read()
    high = await (await service.get(f"/{frame['id']}/?image=true&quality=95")).read()
    assert len(low) < len(high)
    progressive = await service.image(f"/{frame['id']}/?image=true&progressive=true")
    baseline = await service.image(f"/{frame['id']}/?image=true")
    assert progressive.info.get("progressive") and not baseline.info.get("progressive")


async def test_unknown_parameters_are_ignored_and_share_the_cache(service: Service, frame: dict) -> None:
    await service.get(f"/{frame['id']}/?image=true")
    response = await service.get(f"/{frame['id']}/?image=true&_=1712345")
    assert response.status == 200
    assert service.archive.downloads[frame["id"]] == 1


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("width=0", "width"),
        ("width=abc", "width"),
        ("width=2001", "width"),
        ("width=12.5", "width"),
        ("height=-5", "height"),
        ("height=99999999999999999999", "height"),
        ("percentile=0", "percentile"),
        ("percentile=100.5", "percentile"),
        ("percentile=nan", "percentile"),
        ("percentile=inf", "percentile"),
        ("quality=0", "quality"),
        ("quality=96", "quality"),
        ("median=maybe", "median"),
        ("progressive=2", "progressive"),
        ("color=perhaps", "color"),
        ("stretch=swirl&color=true", "stretch"),
        ("stretch=lupton", "stretch"),
        ("zmin=abc", "zmin"),
        ("zmax=1e999", "zmax"),
        ("zmin=500&zmax=500", "zmax"),
        ("zmin=20&min_percent=1", "min_percent"),
        ("min_percent=-1", "min_percent"),
        ("min_percent=90&max_percent=10", "max_percent"),
        ("max_percent=101", "max_percent"),
        ("contrast=0", "contrast"),
        ("contrast=1", "contrast"),
        ("contrast=0.2&stretch=log", "contrast"),
        ("gamma=0", "gamma"),
        ("gamma=11", "gamma"),
        ("invert=sometimes", "invert"),
        ("cmap=rainbowish", "cmap"),
        ("cmap=viridis&color=true", "cmap"),
        ("stretch=histeq&median=true", "median"),
        ("label=" + "x" * 201, "label"),
        ("width=100&width=200", "width"),
    ],
)
async def test_bad_parameter_is_a_400_naming_it(service: Service, frame: dict, query: str, parameter: str) -> None:
    response = await service.get(f"/{frame['id']}/?image=true&{query}")
    assert response.status == 400
    assert_json_error(await response.json(), parameter)
    assert service.archive.downloads[frame["id"]] == 0


@pytest.mark.parametrize("value", ["false", "0", "No", "OFF"])
async def test_false_ish_image_answers_json(service: Service, frame: dict, value: str) -> None:
    response = await service.get(f"/{frame['id']}/?image={value}")
    assert response.content_type == "application/json"


async def test_max_size_setting_bounds_width(start_service: ServiceFactory, frame: dict) -> None:
    service = await start_service(THUMBPROXY_MAX_SIZE="300")
    assert (await service.get(f"/{frame['id']}/?image=true&width=300")).status == 200
    assert (await service.get(f"/{frame['id']}/?image=true&width=301")).status == 400


# Frame checks ------------------------------------------------------------------------------


async def test_color_preconditions_are_checked_first(
    service: Service, fake_archive: FakeArchive, write_fits: Callable[..., Path], tmp_path: Path
) -> None:
    path = write_fits(tmp_path / "c.fits.fz", compressed=True)
    bias = fake_archive.add_frame(path, basename="bias", configuration_type="BIAS")
    no_request = fake_archive.add_frame(path, basename="manual", request_id=None)
    response = await service.get(f"/{bias['id']}/?color=true")
    assert response.status == 400
    assert_json_error(await response.json(), "Cannot generate color thumbnail for configuration_type=BIAS")
    response = await service.get(f"/{no_request['id']}/?color=true")
    assert response.status == 400
    assert_json_error(await response.json(), "does not have a request")
    assert fake_archive.downloads == {}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"configuration_type": "CATALOG"}, "Cannot generate thumbnail for configuration_type=CATALOG"),
        ({"filename": "ogg-e91-cat.txt"}, "Cannot generate thumbnail for non FITS-type frame"),
    ],
)
async def test_frames_that_get_no_thumbnail(service: Service, frame: dict, overrides: dict, message: str) -> None:
    service.archive.record(frame["id"]).update(overrides)
    response = await service.get(f"/{frame['id']}/?image=true")
    assert response.status == 400
    assert_json_error(await response.json(), message)
    assert service.archive.downloads[frame["id"]] == 0


async def test_frame_missing_a_required_key(service: Service, frame: dict) -> None:
    del service.archive.record(frame["id"])["request_id"]
    response = await service.get(f"/{frame['id']}/")
    assert response.status == 400
    assert_json_error(await response.json(), "Cannot generate thumbnail for given frame")


async def test_required_keys_and_types_are_settings(start_service: ServiceFactory, frame: dict) -> None:
    service = await start_service(VALID_CONFIGURATION_TYPES="BIAS", REQUIRED_FRAME_VALIDATION_KEYS="filename")
    del service.archive.record(frame["id"])["request_id"]
    response = await service.get(f"/{frame['id']}/")
    assert_json_error(await response.json(), "configuration_type=EXPOSE")


async def test_basename_matching_none_or_several_is_404(
    service: Service, frame: dict, fake_archive: FakeArchive, write_fits: Callable[..., Path], tmp_path: Path
) -> None:
    assert (await service.get("/ogg0m404-kb82-20190321-9999-e91/")).status == 404
    twin = write_fits(tmp_path / "twin.fits", shape=WIDE)
    fake_archive.add_frame(twin, basename=frame["basename"])
    response = await service.get(f"/{frame['basename']}/")
    assert response.status == 404
    assert_json_error(await response.json(), "Not found")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("POST", "/healthz", {"GET", "HEAD", "OPTIONS"}),
        ("DELETE", "/11245132/", {"GET", "HEAD", "OPTIONS"}),
        ("PUT", "/latest/", {"GET", "HEAD", "OPTIONS"}),
    ],
)
async def test_a_method_a_route_does_not_take_is_a_json_405_naming_those_it_does(
    service: Service, method: str, path: str, allowed: set[str]
) -> None:
    response = await service.client.request(method, path)
    assert response.status == 405
    assert set(response.headers["Allow"].replace(" ", "").split(",")) == allowed
    assert_json_error(await response.json())
    assert "X-Request-ID" in response.headers
    assert service.metric("thumbproxy_requests_total", route="unmatched", status="405") == 1


@pytest.mark.parametrize("path", ["/..%2F..%2Fetc%2Fpasswd/", "/a b/", "/frame$1/", "/x/y/z/"])
async def test_paths_outside_the_routes_are_json_404(service: Service, path: str) -> None:
    response = await service.get(path)
    assert response.status in (400, 404)
    assert_json_error(await response.json())


# Authorization -----------------------------------------------------------------------------


async def test_proprietary_frame_only_for_its_proposal(
    service: Service, fake_archive: FakeArchive, write_fits: Callable[..., Path], tmp_path: Path
) -> None:
    path = write_fits(tmp_path / "secret.fits.fz", shape=WIDE, compressed=True)
    secret = fake_archive.add_frame(path, proposal_id="SECRET-1", public_date=FUTURE_DATE)
    fake_archive.add_token("alice", "SECRET-1")
    fake_archive.add_token("bob", "OTHER")
    alice = await service.get(f"/{secret['id']}/?image=true", headers={"Authorization": "Token alice"})
    assert alice.status == 200
    # Cached now, and still nobody else's.
    for headers in ({"Authorization": "Token bob"}, {}):
        response = await service.get(f"/{secret['id']}/?image=true", headers=headers)
        assert response.status == 404
        assert_json_error(await response.json(), "Not found")
    assert (await service.get(f"/{secret['id']}/?image=true", headers={"Authorization": "Bearer alice"})).status == 200
    downloads = fake_archive.received("download")
    assert downloads and all("Authorization" not in request.headers for request in downloads)


# Archive failures --------------------------------------------------------------------------


async def test_archive_throttling_keeps_retry_after(service: Service, frame: dict) -> None:
    service.archive.api_fault = Fault(status=429, headers={"Retry-After": "17"})
    response = await service.get(f"/{frame['id']}/")
    assert response.status == 429
    assert response.headers["Retry-After"] == "17"


# Temporary files ---------------------------------------------------------------------------


async def test_temp_files_removed_after_success_and_failure(
    service: Service, frame: dict, fake_archive: FakeArchive, tmp_path: Path
) -> None:
    assert (await service.get(f"/{frame['id']}/?image=true")).status == 200
    assert service.temp_files() == []
    broken = tmp_path / "broken.fits.fz"
    broken.write_bytes(b"SIMPLE  =                    T" + b"\0" * 100)
    bad = fake_archive.add_frame(broken)
    response = await service.get(f"/{bad['id']}/?image=true")
    assert response.status == 422
    assert_json_error(await response.json(), "cannot render")
    assert service.temp_files() == []
    # The pool is unharmed.
    assert (await service.get(f"/{frame['id']}/?image=true&width=50")).status == 200


async def test_fits_over_the_size_limit_is_refused(
    start_service: ServiceFactory, fake_archive: FakeArchive, write_fits: Callable[..., Path], tmp_path: Path
) -> None:
    service = await start_service(THUMBPROXY_MAX_FITS_MB="1")
    big = fake_archive.add_frame(write_fits(tmp_path / "big.fits", shape=(800, 800)))
    response = await service.get(f"/{big['id']}/?image=true")
    assert response.status == 413
    assert_json_error(await response.json(), "1 MB")
    assert service.temp_files() == []


async def test_temp_file_removed_when_the_client_disconnects(service: Service, frame: dict) -> None:
    # The download stalls half-way, so the client gives up while the file is being written.
    service.archive.download_fault = Fault(stall_after_bytes=2880, delay=1.0)
    with pytest.raises(asyncio.TimeoutError):
        await service.get(f"/{frame['id']}/?image=true", timeout=aiohttp.ClientTimeout(total=0.4))
    assert service.temp_files() != []
    for _ in range(50):
        await asyncio.sleep(0.1)
        if not service.temp_files():
            break
    assert service.temp_files() == []


async def test_stale_temp_files_are_swept_at_start(start_service: ServiceFactory, tmp_path: Path) -> None:
    tmp_dir = tmp_path / "tmp"
    tmp_dir.mkdir()
    leftover = temp_path(tmp_dir, "frame.fits.fz")
    leftover.write_bytes(b"partial")
    dead = leftover.with_name(leftover.name.replace(f"-{os.getpid()}-", "-999999999-", 1))
    leftover.rename(dead)
    unrelated = tmp_dir / "someone-elses.txt"
    unrelated.write_text("keep")
    await start_service()
    assert not dead.exists() and unrelated.exists()


# Fixed pages -------------------------------------------------------------------------------


async def test_index_robots_and_favicon(service: Service) -> None:
    index = await service.get("/")
    assert index.status == 200 and "thumbproxy" in await index.text()
    robots = await service.get("/robots.txt")
    assert "Disallow: /" in await robots.text()
    favicon = await service.get("/favicon.ico")
    assert favicon.content_type == "image/x-icon"
    assert Image.open(io.BytesIO(await favicon.read())).format == "ICO"
