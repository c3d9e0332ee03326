"""Colour composites end to end: frames of one request chosen through the archive, one per channel."""

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from conftest import Service, ServiceFactory
from fakearchive import FUTURE_DATE, FakeArchive
from thumbproxy.demo import sampledata

REQUEST_ID = 1766530
START = datetime(2019, 3, 21, 8, 0, tzinfo=UTC)


def _at(minutes: float) -> str:
    return (START + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


class Request:
    """The frames of one observing request registered with the fake archive."""

    def __init__(self, archive: FakeArchive, directory: Path) -> None:
        self.archive = archive
        self.directory = directory
        self.frames: dict[str, dict[str, Any]] = {}

    def add(self, name: str, filter_name: str, minutes: float, **overrides: Any) -> dict[str, Any]:
        path = sampledata.star_field(
            self.directory / f"{name}.fits.fz",
            size=192,
            filter_name=filter_name,
            request_id=REQUEST_ID,
            frame_number=len(self.frames) + 280,
        )
        fields = {
            "basename": name,
            "request_id": REQUEST_ID,
            "reduction_level": 91,
            "primary_optical_element": filter_name,
            "observation_date": _at(minutes),
            **overrides,
        }
        record = self.archive.add_frame(path, **fields)
        self.frames[name] = record
        return record

    def downloads(self, name: str) -> int:
        return self.archive.downloads[self.frames[name]["id"]]


@pytest.fixture
def request_frames(fake_archive: FakeArchive, tmp_path: Path) -> Request:
    frames = Request(fake_archive, tmp_path)
    frames.add("red", "rp", 0)
    frames.add("visual", "V", 2)
    frames.add("blue", "B", 4)
    return frames


async def _image(service: Service, path: str, **kwargs: Any) -> Image.Image:
    response = await service.get(path, **kwargs)
    assert response.status == 200, await response.text()
    image = Image.open(io.BytesIO(await response.read()))
    image.load()
    return image


async def test_composite_of_the_request_frames(service: Service, request_frames: Request) -> None:
    image = await _image(service, f"/{request_frames.frames['visual']['id']}/?color=true&image=true")
    assert image.mode == "RGB" and image.size == (192, 192)
    assert [request_frames.downloads(name) for name in ("red", "visual", "blue")] == [1, 1, 1]
    assert service.metric("thumbproxy_renders_total", kind="color", result="ok") == 1
    assert service.metric("thumbproxy_color_alignments_total", method="wcs") == 1
    # Cached like any thumbnail: no second download or render.
    await _image(service, f"/{request_frames.frames['red']['basename']}/?color=true&image=true")
    assert [request_frames.downloads(name) for name in ("red", "visual", "blue")] == [1, 1, 1]
    assert service.metric("thumbproxy_renders_total", kind="color", result="ok") == 1


async def test_channels_are_not_grey(service: Service, request_frames: Request) -> None:
    image = await _image(service, f"/{request_frames.frames['red']['id']}/?color=true&image=true&stretch=lupton")
    red, _, blue = image.split()
    assert red.tobytes() != blue.tobytes()


async def test_json_url_answers_the_composite(service: Service, request_frames: Request) -> None:
    body = await (await service.get(f"/{request_frames.frames['red']['id']}/?color=true&width=100")).json()
    assert "color=true" in body["url"] and body["propid"] == "LCOEPO2018B-002"
    followed = await service.get(body["url"].split(str(service.client.make_url("")), 1)[1])
    assert followed.status == 200 and Image.open(io.BytesIO(await followed.read())).mode == "RGB"


async def test_never_mixes_reduction_levels_and_follows_pages(
    service: Service, request_frames: Request, fake_archive: FakeArchive
) -> None:
    for name, filter_name in (("raw-red", "rp"), ("raw-visual", "V"), ("raw-blue", "B")):
        request_frames.add(name, filter_name, 0, reduction_level=0)
    fake_archive.max_limit = 2  # the listing spans several pages
    await _image(service, f"/{request_frames.frames['red']['id']}/?color=true&image=true")
    assert [request_frames.downloads(name) for name in ("raw-red", "raw-visual", "raw-blue")] == [0, 0, 0]
    listings = [request for request in fake_archive.received("api") if request.path == "/frames/"]
    assert len(listings) >= 2 and all(request.query.get("reduction_level") == "91" for request in listings)


async def test_closest_in_time_wins(service: Service, request_frames: Request) -> None:
    request_frames.add("late-visual", "V", 60)
    request_frames.add("early-red", "R", -1)
    await _image(service, f"/{request_frames.frames['blue']['id']}/?color=true&image=true")
    assert request_frames.downloads("late-visual") == 0 and request_frames.downloads("visual") == 1
    assert request_frames.downloads("early-red") == 0 and request_frames.downloads("red") == 1


async def test_missing_channel_is_404(service: Service, fake_archive: FakeArchive, tmp_path: Path) -> None:
    frames = Request(fake_archive, tmp_path)
    frames.add("red", "rp", 0)
    frames.add("visual", "V", 2)
    response = await service.get(f"/{frames.frames['red']['id']}/?color=true")
    assert response.status == 404
    assert await response.json() == {"message": "RVB frames not found"}


async def test_wrong_configuration_type_is_400(service: Service, request_frames: Request) -> None:
    request_frames.archive.record(request_frames.frames["red"]["id"])["configuration_type"] = "SKYFLAT"
    response = await service.get(f"/{request_frames.frames['red']['id']}/?color=true")
    assert response.status == 400
    assert await response.json() == {"message": "Cannot generate color thumbnail for configuration_type=SKYFLAT"}


async def test_caller_gets_a_composite_only_of_frames_it_may_see(
    service: Service, request_frames: Request, fake_archive: FakeArchive
) -> None:
    secret = request_frames.add("secret-blue", "B", 3.5, proposal_id="SECRET-1", public_date=FUTURE_DATE)
    fake_archive.add_token("alice", "SECRET-1")
    path = f"/{request_frames.frames['red']['id']}/?color=true&image=true"
    await _image(service, path, headers={"Authorization": "Token alice"})
    assert fake_archive.downloads[secret["id"]] == 1
    # An anonymous caller gets the composite of the public frames: another thumbnail.
    await _image(service, path)
    assert request_frames.downloads("blue") == 1
    assert service.metric("thumbproxy_renders_total", kind="color", result="ok") == 2


async def test_channel_filters_are_a_setting(
    start_service: ServiceFactory, fake_archive: FakeArchive, tmp_path: Path
) -> None:
    service = await start_service(THUMBPROXY_COLOR_FILTERS="ip;rp;gp")
    frames = Request(fake_archive, tmp_path)
    for name, filter_name, minutes in (("i", "ip", 0), ("r", "rp", 1), ("g", "gp", 2), ("v", "V", 3)):
        frames.add(name, filter_name, minutes)
    await _image(service, f"/{frames.frames['r']['id']}/?color=true&image=true")
    assert [frames.downloads(name) for name in ("i", "r", "g", "v")] == [1, 1, 1, 0]
