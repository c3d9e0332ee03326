"""Colour composites end to end: frames of one request chosen through the archive, one per channel."""

import io
from dataclasses import field, fields, make_dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
from PIL import Image

from conftest import Service, ServiceFactory
from fakearchive import FUTURE_DATE, FakeArchive
from thumbproxy.demo import sampledata
from thumbproxy.pipeline.cachekeys import thumbnail_key
from thumbproxy.render import RenderOptions

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


# Weights ---------------------------------------------------------------------------------------


def _channel_means(image: Image.Image) -> np.ndarray:
    return np.asarray(image).reshape(-1, 3).mean(axis=0)


async def test_weights_change_the_balance_and_the_etag(service: Service, request_frames: Request) -> None:
    # Half the frames' size: the sky's grain is averaged into a steady grey.
    path = f"/{request_frames.frames['red']['id']}/?color=true&image=true&width=96"
    plain = await service.get(path)
    bluer = await service.get(path + "&weights=1,1,2")
    assert plain.status == bluer.status == 200
    assert bluer.headers["ETag"] != plain.headers["ETag"]
    plain_means = _channel_means(Image.open(io.BytesIO(await plain.read())))
    bluer_means = _channel_means(Image.open(io.BytesIO(await bluer.read())))
    # Twice the blue light: through the gamma curve about 2 ** (1 / 2.5) = 1.32 times the blue grey levels;
    # the other channels stay as they were.
    assert bluer_means[2] > 1.2 * plain_means[2]
    assert np.abs(bluer_means[:2] - plain_means[:2]).max() < 1.0
    assert service.metric("thumbproxy_renders_total", kind="color", result="ok") == 2
    # Written another way, or left at their default, weights name the same thumbnail: no render.
    for same, as_plain in (("weights=1.0,%201,1e0", True), ("weights=1,1.0,2.00", False)):
        again = await service.get(f"{path}&{same}")
        assert again.headers["ETag"] == (plain if as_plain else bluer).headers["ETag"], same
    assert service.metric("thumbproxy_renders_total", kind="color", result="ok") == 2


async def test_json_url_carries_the_weights(service: Service, request_frames: Request) -> None:
    frame_id = request_frames.frames["red"]["id"]
    body = await (await service.get(f"/{frame_id}/?color=true&weights=0.5,1,1")).json()
    assert f"weights={quote('0.5,1.0,1.0', safe='')}" in body["url"]
    followed = await service.get(body["url"].split(str(service.client.make_url("")), 1)[1])
    direct = await service.get(f"/{frame_id}/?color=true&image=true&weights=0.5,1,1")
    assert followed.status == 200 and followed.headers["ETag"] == direct.headers["ETag"]


@pytest.mark.parametrize(
    "value",
    [
        # Not three numbers.
        *("", "1,1", "1,1,1,1", "a,1,1", "1,,1", "1;1;1", "0x1,1,1"),
        # Not positive, not finite, or out of range.
        *("1,-1,1", "0,1,1", "nan,1,1", "1,inf,1", "1,1,1e999", "1,1,2000", "1,1,0.0001"),
    ],
)
async def test_bad_weights_are_a_400_naming_them(service: Service, request_frames: Request, value: str) -> None:
    response = await service.get(f"/{request_frames.frames['red']['id']}/?color=true&image=true&weights={quote(value)}")
    assert response.status == 400
    message = (await response.json())["message"]
    assert message == (
        "Invalid parameter weights: must be three comma-separated numbers from 0.001 to 1000 (red, visual, blue)"
    )
    assert [request_frames.downloads(name) for name in ("red", "visual", "blue")] == [0, 0, 0]


@pytest.mark.parametrize("value", ["1,1,2", "1,1,1"])
async def test_weights_without_color_are_a_400(service: Service, request_frames: Request, value: str) -> None:
    response = await service.get(f"/{request_frames.frames['red']['id']}/?image=true&weights={value}")
    assert response.status == 400
    assert await response.json() == {"message": "Invalid parameter weights: applies to colour thumbnails (color=true)"}


def test_options_left_at_their_default_leave_the_cache_key_as_it_was() -> None:
    frames = ((1, "a"), (2, "b"), (3, "c"))
    key = thumbnail_key(frames, RenderOptions(), 1024)
    # RenderOptions as it was before it had weights: the key of a request without them is unchanged.
    before = make_dataclass(
        "RenderOptions",
        [
            (option.name, option.type, field(default=option.default))
            for option in fields(RenderOptions)
            if option.name != "weights"
        ],
        frozen=True,
    )
    assert thumbnail_key(frames, before(), 1024) == key
    assert thumbnail_key(frames, RenderOptions(weights=(1.0, 1.0, 2.0)), 1024) != key
    # And so for any option added later.
    later = make_dataclass("Later", [("shade", str, field(default="none"))], bases=(RenderOptions,), frozen=True)
    assert thumbnail_key(frames, later(), 1024) == key
    assert thumbnail_key(frames, later(shade="some"), 1024) != key
