"""Frame previews: later thumbnails of a frame need no download and no decompression, bands read
by several workers join into exactly the preview read whole, and bytes never depend on either."""

import asyncio
import io
import logging
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from PIL import Image

import thumbproxy.render.display as display_module
import thumbproxy.render.preview as preview_module
from conftest import WIDE, Service, ServiceFactory, write_fits_file
from fakearchive import FakeArchive
from test_bad_fits import BAD_FILES, assert_cannot_render
from test_render import structural_similarity
from thumbproxy.app import RENDER_POOL
from thumbproxy.cache.disk import DiskCache
from thumbproxy.config import SettingsError, load_settings
from thumbproxy.demo.sampledata import raw_frame, star_field
from thumbproxy.pipeline.cachekeys import preview_key
from thumbproxy.pipeline.previewjobs import WORKER_PREVIEWS
from thumbproxy.render import RenderOptions, thumbnail_from_file
from thumbproxy.render.fitsread import open_image
from thumbproxy.render.pixelrows import ScaledRows
from thumbproxy.render.preview import Preview, join_bands, read_band
from thumbproxy.render.samples import band_samples, joined, pixel_samples
from thumbproxy.render.thumbnail import (
    preview_at_size,
    thumbnail_and_preview_from_file,
    thumbnail_from_preview,
    thumbnail_from_resampled,
)
from thumbproxy.web.routes import THUMBNAILER

# The later thumbnails a user asks for: another size, a label, another stretch, another format.
NEXT_QUERIES = ("width=120", "label=M42", "median=true&percentile=90", "format=png&width=250")


# --- jobs the tests hand the render pool (module level: workers import them by name), and a tally


def counted(counter: str, job: Callable[..., object], *args: object) -> object:
    """job(*args), after adding a line to the file counter: the pool runs it in another process."""
    with open(counter, "a") as lines:
        lines.write("run\n")
    return job(*args)


def refused(*_: object) -> object:
    raise AssertionError("this thumbnail should not need the FITS file")


def count(counter: Path) -> int:
    return len(counter.read_text().splitlines()) if counter.exists() else 0


# --- bands join into exactly the preview read whole ------------------------------------------


def assert_same_preview(banded: Preview, whole: Preview) -> None:
    assert (banded.shape, banded.factor, dict(banded.cards)) == (whole.shape, whole.factor, dict(whole.cards))
    for ours, theirs in (
        (banded.image, whole.image),
        (banded.samples.limit_samples, whole.samples.limit_samples),
        (banded.samples.median_samples, whole.samples.median_samples),
    ):
        assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs, equal_nan=True)
    assert banded.samples.noise == whole.samples.noise


def whole_preview(path: Path, preview_size: int) -> Preview:
    """The preview of the frame at path read in one job, as a single render reads it."""
    return join_bands([read_band(path, 0, 1, preview_size)])


@pytest.fixture(scope="module")
def big_field(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4096x4096 RICE-compressed star field, as the archive serves reduced frames."""
    return star_field(tmp_path_factory.mktemp("field") / "field.fits.fz", 4096)


@pytest.mark.parametrize("bands", [2, 3, 8])
def test_bands_of_a_compressed_frame_join_into_its_whole_preview(big_field: Path, bands: int) -> None:
    whole = whole_preview(big_field, 1024)
    assert whole.image.shape == (1024, 1024) and whole.factor == 4
    assert_same_preview(join_bands([read_band(big_field, band, bands, 1024) for band in range(bands)]), whole)


@pytest.mark.parametrize("bands", [2, 5])
def test_bands_of_a_scaled_int16_frame_join_into_its_whole_preview(tmp_path: Path, bands: int) -> None:
    # 700 rows in blocks of 3 leave a row over, as uneven frames do.
    path = raw_frame(tmp_path / "raw.fits", 1000, height=700, compression=None)
    with fits.open(path, do_not_scale_image_data=True) as hdul:
        assert hdul[0].header["BITPIX"] == 16 and hdul[0].header["BZERO"] == 32768
    whole = whole_preview(path, 256)
    assert whole.factor == 3
    assert_same_preview(join_bands([read_band(path, band, bands, 256) for band in range(bands)]), whole)


# Tiles narrower than a row (read by astropy), and whole rows undithered (read as scaled integers).
@pytest.mark.parametrize(
    "tiles",
    [
        {"tile_shape": (16, 45)},
        {"tile_shape": (16, 90), "quantize_method": -1},
        {"tile_shape": (1, 90), "quantize_method": -1},
    ],
)
def test_bands_keep_to_tiles_of_several_rows_and_tolerate_more_bands_than_rows(tmp_path: Path, tiles: dict) -> None:
    data = np.random.default_rng(2).normal(100.0, 10.0, (70, 90)).astype(np.float32)
    # Blank blocks, and blocks with a blank pixel; no row all blank, which would store its tile losslessly.
    data[5:9, :80] = np.nan
    data[30, 7] = np.nan
    path = tmp_path / "tiled.fits.fz"
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, compression_type="RICE_1", **tiles)]).writeto(path)
    with open_image(path, memory_mapped=True) as image:
        assert isinstance(image.read_rows(slice(0, 16)), ScaledRows) == ("quantize_method" in tiles)
    for size, bands in ((30, 3), (30, 12), (200, 40)):
        whole = whole_preview(path, size)
        assert_same_preview(join_bands([read_band(path, band, bands, size) for band in range(bands)]), whole)


def test_samples_whose_neighbour_starts_the_next_band_join_exactly() -> None:
    flat = np.random.default_rng(3).normal(0.0, 1.0, 20_000).astype(np.float32)
    # 10 pixels between samples: the pair (10, 11) straddles a cut after pixel 10.
    cut = 11
    bands = [band_samples(flat[:cut], 0, flat.size, lambda: flat[cut]), band_samples(flat[cut:], cut, flat.size)]
    whole = pixel_samples(flat)
    assert joined(bands).noise == whole.noise
    assert np.array_equal(joined(bands).limit_samples, whole.limit_samples)


# --- what a preview makes ---------------------------------------------------------------------


def test_a_stored_preview_makes_the_same_bytes_as_the_one_just_built(big_field: Path) -> None:
    built = whole_preview(big_field, 1024)
    stored = Preview.from_bytes(built.to_bytes())
    for options in (RenderOptions(width=500, height=500), RenderOptions(label="M42", median=True, format="png")):
        assert thumbnail_from_preview(stored, options) == thumbnail_from_preview(built, options)
    assert thumbnail_from_preview(built, RenderOptions(width=500, height=500)) == thumbnail_from_file(
        big_field, RenderOptions(width=500, height=500)
    )


def test_a_stored_preview_keeps_its_display_limits(big_field: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built = whole_preview(big_field, 1024)
    options = RenderOptions(width=300, height=300)
    expected = thumbnail_from_preview(built, options)
    stored = Preview.from_bytes(built.to_bytes())
    # A worker reading it draws its first size without measuring them again.
    monkeypatch.setattr(preview_module, "display_limits", refused)
    monkeypatch.setattr(display_module, "display_limits", refused)
    assert stored.sample_limits == built.sample_limits
    assert thumbnail_from_preview(stored, options) == expected


def test_thumbnails_of_one_size_share_the_preview_resampled_to_it(big_field: Path) -> None:
    preview = whole_preview(big_field, 1024)
    shared = preview_at_size(preview, RenderOptions(width=300, height=300))
    untouched = shared.pixels.copy()
    for options in (
        RenderOptions(width=300, height=300),
        RenderOptions(width=300, height=300, label="M42"),
        RenderOptions(width=300, height=300, median=True, percentile=90, format="png"),
    ):
        assert thumbnail_from_resampled(preview, shared, options) == thumbnail_from_preview(preview, options)
    assert np.array_equal(shared.pixels, untouched)


def test_a_damaged_stored_preview_is_refused(big_field: Path) -> None:
    stored = whole_preview(big_field, 1024).to_bytes()
    for damaged in (b"", b"not a preview", stored[:200], stored[: len(stored) // 2]):
        with pytest.raises(ValueError):
            Preview.from_bytes(damaged)


def test_a_thumbnail_needing_finer_pixels_is_made_from_the_whole_frame(big_field: Path) -> None:
    options = RenderOptions(width=1500, height=1500)
    thumbnail, preview = thumbnail_and_preview_from_file(big_field, options, 1024)
    assert preview is not None and not preview.covers(options)
    assert Image.open(io.BytesIO(thumbnail)).size == (1500, 1500)
    assert thumbnail == thumbnail_from_file(big_field, options, preview_size=0)


def test_a_thumbnail_from_the_preview_looks_like_one_from_the_whole_frame(big_field: Path) -> None:
    # At the preview's own block size the preview changes nothing.
    box = RenderOptions(width=500, height=500)
    assert thumbnail_from_file(big_field, box, 1024) == thumbnail_from_file(big_field, box, preview_size=0)
    # Smaller ones are averaged over fewer pixels before Lanczos: star cores differ, the picture does not.
    for width in (120, 200, 300):
        box = RenderOptions(width=width, height=width, quality=95)
        ours, whole = (
            np.asarray(Image.open(io.BytesIO(thumbnail_from_file(big_field, box, size)))).astype(int)
            for size in (1024, 0)
        )
        assert structural_similarity(ours, whole) > 0.9 and np.abs(ours - whole).mean() < 3, width


def test_the_preview_size_setting_is_a_whole_number_from_zero() -> None:
    assert load_settings(env={}, config_file=None).preview_size == 1024
    assert load_settings(env={"THUMBPROXY_PREVIEW_SIZE": "0"}, config_file=None).preview_size == 0
    with pytest.raises(SettingsError, match="THUMBPROXY_PREVIEW_SIZE"):
        load_settings(env={"THUMBPROXY_PREVIEW_SIZE": "-1"}, config_file=None)


# --- through the service ----------------------------------------------------------------------


async def image_bytes(service: Service, path: str) -> bytes:
    response = await service.get(path)
    assert response.status == 200, await response.text()
    return await response.read()


async def later_thumbnails_from_the_preview(
    start_service: ServiceFactory, frame: dict, queries: Sequence[str], fresh_cache: Path
) -> list[bytes]:
    """The thumbnails of queries asked after the frame's first one, which no request may read the FITS file
    for again; each checked against what a service that never saw the frame draws for it."""
    service = await start_service()
    await image_bytes(service, f"/{frame['id']}/?image=true")
    # Anything reading the FITS file now fails the request.
    previews = service.app[THUMBNAILER].previews
    previews.read_file = refused
    previews.read_band = refused
    later = [await image_bytes(service, f"/{frame['id']}/?image=true&{query}") for query in queries]
    assert service.archive.downloads[frame["id"]] == 1

    fresh = await start_service(THUMBPROXY_CACHE_DIR=str(fresh_cache))
    for query, seen in zip(queries, later):
        assert await image_bytes(fresh, f"/{frame['id']}/?image=true&{query}") == seen, query
    return later


async def test_later_thumbnails_need_no_download_and_match_a_fresh_service(
    start_service: ServiceFactory, frame: dict, tmp_path: Path
) -> None:
    later = await later_thumbnails_from_the_preview(start_service, frame, NEXT_QUERIES, tmp_path / "fresh-cache")
    assert Image.open(io.BytesIO(later[3])).format == "PNG"


async def test_a_thumbnail_larger_than_the_preview_is_made_from_the_whole_frame(
    start_service: ServiceFactory, fake_archive: FakeArchive, tmp_path: Path
) -> None:
    path = write_fits_file(tmp_path / "ogg0m404-kb82-20190321-0274-e91.fits.fz", shape=WIDE, compressed=True)
    frame = fake_archive.add_frame(path)
    # A 64 px preview of the 400 x 300 frame is 66 x 50: a full-size thumbnail needs every pixel.
    service = await start_service(THUMBPROXY_PREVIEW_SIZE="64")
    full = await image_bytes(service, f"/{frame['id']}/?image=true&width=400&height=400")
    assert Image.open(io.BytesIO(full)).size == (400, 300)
    assert full == thumbnail_from_file(path, RenderOptions(width=400, height=400), preview_size=0)
    # The preview was made on the way: a small thumbnail needs the file no more, a large one again.
    await image_bytes(service, f"/{frame['id']}/?image=true&width=30&height=30")
    assert fake_archive.downloads[frame["id"]] == 1
    await image_bytes(service, f"/{frame['id']}/?image=true&width=400&height=400&label=M42")
    assert fake_archive.downloads[frame["id"]] == 2


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_concurrent_sizes_of_a_cold_frame_share_one_download_and_one_preview(
    start_service: ServiceFactory, frame: dict, tmp_path: Path, workers: str
) -> None:
    service = await start_service(THUMBPROXY_WORKERS=workers)
    previews = service.app[THUMBNAILER].previews
    renders, bands = tmp_path / "renders", tmp_path / "bands"
    previews.read_file = partial(counted, str(renders), previews.read_file)
    previews.read_band = partial(counted, str(bands), read_band)
    sizes = [60, 90, 120, 150, 180]
    answers = await asyncio.gather(
        *(image_bytes(service, f"/{frame['id']}/?image=true&width={size}") for size in sizes)
    )
    assert [Image.open(io.BytesIO(answer)).width for answer in answers] == sizes
    assert service.archive.downloads[frame["id"]] == 1
    # One worker: one job renders the first thumbnail and makes the preview. Two idle workers: each reads a band.
    assert (count(renders), count(bands)) == ((1, 0) if workers == "1" else (0, 2))
    assert service.temp_files() == []


async def test_banded_and_single_job_renders_give_the_same_bytes(
    start_service: ServiceFactory, fake_archive: FakeArchive, tmp_path: Path
) -> None:
    path = write_fits_file(tmp_path / "ogg0m404-kb82-20190321-0275-e91.fits.fz", shape=WIDE, compressed=True)
    frame = fake_archive.add_frame(path)
    query = f"/{frame['id']}/?image=true&width=30&height=30"
    answers = []
    for workers in ("2", "1"):
        service = await start_service(
            THUMBPROXY_WORKERS=workers,
            THUMBPROXY_PREVIEW_SIZE="64",
            THUMBPROXY_CACHE_DIR=str(tmp_path / f"cache-{workers}"),
        )
        answers.append(await image_bytes(service, query))
    assert answers[0] == answers[1] == thumbnail_from_file(path, RenderOptions(width=30, height=30), preview_size=64)


async def test_a_restart_keeps_the_preview(start_service: ServiceFactory, frame: dict) -> None:
    first = await start_service()
    await image_bytes(first, f"/{frame['id']}/?image=true")
    await first.client.close()
    second = await start_service()
    await image_bytes(second, f"/{frame['id']}/?image=true&width=90")
    assert second.archive.downloads[frame["id"]] == 1


async def test_a_new_version_gets_a_new_preview(start_service: ServiceFactory, frame: dict, tmp_path: Path) -> None:
    service = await start_service(THUMBPROXY_METADATA_TTL="0.3")
    old = await image_bytes(service, f"/{frame['id']}/?image=true&width=90")
    new_path = write_fits_file(tmp_path / "v2.fits.fz", shape=WIDE, compressed=True, seed=3)
    service.archive.new_version(frame["id"], new_path)
    await asyncio.sleep(0.4)
    new = await image_bytes(service, f"/{frame['id']}/?image=true&width=120")
    assert service.archive.downloads[frame["id"]] == 2
    assert new == thumbnail_from_file(new_path, RenderOptions(width=120, height=120))
    assert await image_bytes(service, f"/{frame['id']}/?image=true&width=90") != old
    assert service.archive.downloads[frame["id"]] == 2


async def test_damaged_files_answer_422_when_read_in_bands(
    start_service: ServiceFactory, fake_archive: FakeArchive, tmp_path: Path
) -> None:
    service = await start_service(THUMBPROXY_WORKERS="2")
    workers = sorted(service.app[RENDER_POOL].worker_pids())
    for number, (kind, (make, reason)) in enumerate(BAD_FILES.items(), start=2):
        bad = fake_archive.add_frame(make(tmp_path / f"ogg0m404-kb82-20190321-{number:04d}-e91.fits.fz"))
        response = await service.get(f"/{bad['id']}/?image=true")
        assert response.status == 422, f"{kind}: {await response.text()}"
        assert_cannot_render((await response.json())["message"], bad["filename"], reason, service.tmp_dir)
    assert service.temp_files() == []
    assert sorted(service.app[RENDER_POOL].worker_pids()) == workers


async def test_previews_off_renders_every_thumbnail_from_the_file(
    start_service: ServiceFactory, frame: dict, fake_archive: FakeArchive, tmp_path: Path
) -> None:
    service = await start_service(THUMBPROXY_PREVIEW_SIZE="0")
    for width in (90, 120):
        answer = await image_bytes(service, f"/{frame['id']}/?image=true&width={width}")
        path = fake_archive.record(frame["id"])["filename"]
        assert answer == thumbnail_from_file(tmp_path / path, RenderOptions(width=width, height=width), preview_size=0)
    assert service.archive.downloads[frame["id"]] == 2


async def test_a_damaged_stored_preview_is_built_again(
    start_service: ServiceFactory, frame: dict, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = await start_service()
    await image_bytes(first, f"/{frame['id']}/?image=true")
    key = preview_key((frame["id"], first.archive.record(frame["id"])["version_set"][0]["md5"]), 1024)
    # The service's disk level, opened beside it as another process would: the worker that made the
    # preview stored it there before the thumbnail was answered.
    disk = DiskCache(tmp_path / "cache" / "thumbnails", 2**30)
    assert await disk.get(key) is not None
    await disk.put(key, b"\x93NUMPY damaged")
    # Restarted: no worker still holds the preview it made.
    await first.client.close()
    service = await start_service()
    with caplog.at_level(logging.WARNING):
        later = await image_bytes(service, f"/{frame['id']}/?image=true&width=90")
    assert "cannot be read" in caplog.text
    assert Image.open(io.BytesIO(later)).width == 90
    assert service.archive.downloads[frame["id"]] == 2
    # Stored again, whole: the next thumbnail needs no download.
    await image_bytes(service, f"/{frame['id']}/?image=true&width=60")
    assert service.archive.downloads[frame["id"]] == 2


async def test_a_frames_next_thumbnails_run_on_the_worker_that_keeps_its_preview(
    start_service: ServiceFactory, frame: dict, tmp_path: Path
) -> None:
    service = await start_service(THUMBPROXY_WORKERS="2")
    await image_bytes(service, f"/{frame['id']}/?image=true")
    # Whichever worker reads the stored preview from now on finds it damaged and has the file read again.
    key = preview_key((frame["id"], service.archive.record(frame["id"])["version_set"][0]["md5"]), 1024)
    await DiskCache(tmp_path / "cache" / "thumbnails", 2**30).put(key, b"\x93NUMPY damaged")
    for query in NEXT_QUERIES:
        await image_bytes(service, f"/{frame['id']}/?image=true&{query}")
    # The worker that made the preview drew every next thumbnail from its own copy.
    assert service.archive.downloads[frame["id"]] == 1


async def test_a_damaged_stored_preview_a_worker_reads_is_built_again(
    service: Service, frame: dict, fake_archive: FakeArchive, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await image_bytes(service, f"/{frame['id']}/?image=true")
    key = preview_key((frame["id"], service.archive.record(frame["id"])["version_set"][0]["md5"]), 1024)
    await DiskCache(tmp_path / "cache" / "thumbnails", 2**30).put(key, b"\x93NUMPY damaged")
    # Previews of other frames push it out of the one worker's memory: the worker reads it from the disk level.
    for number in range(WORKER_PREVIEWS):
        path = write_fits_file(tmp_path / f"ogg0m404-kb82-20190321-{300 + number:04d}-e91.fits.fz", shape=WIDE)
        await image_bytes(service, f"/{fake_archive.add_frame(path)['id']}/?image=true")
    with caplog.at_level(logging.WARNING):
        later = await image_bytes(service, f"/{frame['id']}/?image=true&width=90")
    assert f"stored preview {key} cannot be read" in caplog.text
    assert Image.open(io.BytesIO(later)).width == 90
    assert service.archive.downloads[frame["id"]] == 2


# Display parameters whose cuts differ from the default look's, after which the next query reuses the worker's
# resampled preview when the cuts agree.
DISPLAY_QUERIES = (
    "stretch=linear&zmax=60000",
    "stretch=log&cmap=viridis",
    "stretch=histeq&invert=true",
    "min_percent=1&max_percent=99.99&gamma=1",
    "contrast=0.3",
)


async def test_display_parameters_draw_from_the_stored_preview_as_a_fresh_service_draws_them(
    start_service: ServiceFactory, fake_archive: FakeArchive, tmp_path: Path
) -> None:
    frame = fake_archive.add_frame(star_field(tmp_path / "ogg0m404-kb82-20190321-0274-e91.fits.fz", 1536))
    # The default look first: the worker keeps the preview resampled to its size, clipped to its limits.
    drawn = await later_thumbnails_from_the_preview(start_service, frame, DISPLAY_QUERIES, tmp_path / "fresh-cache")
    # White far above the default look's: star cores keep their shape instead of a flat white top.
    linear = np.asarray(Image.open(io.BytesIO(drawn[0])))
    assert 64 < linear.max() < 255
