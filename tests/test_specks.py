"""Cosmic rays and hot pixels: a frame full of particle hits shows about as few bright specks as
fits2image shows, its stars as bright as in the same frame without hits, through the renderer and
through the service, whichever way the frame is read."""

import dataclasses
import io
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from PIL import Image

from conftest import ServiceFactory
from fakearchive import FakeArchive
from specks import count_specks
from test_preview import assert_same_preview, whole_preview
from test_render import decode, render
from thumbproxy.demo.sampledata import cosmic_ray_field, raw_frame, spectrum
from thumbproxy.render import RenderOptions, thumbnail_from_file
from thumbproxy.render.preview import join_bands, read_band, read_reductions
from thumbproxy.render.reduce import block_mean
from thumbproxy.render.thumbnail import thumbnail_from_preview

# The bound: at most a fifth more specks than fits2image shows, and a couple of dozen.
SPECK_RATIO = 1.2
SPECK_ALLOWANCE = 24
# Stars' grey levels in a thumbnail of the frame with hits and of the same frame without them.
STAR_TOLERANCE = 5


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 2048 x 2048 field of stars on a dark sky struck by 4000 hits, the same field without them, a 1000 x 1000
    one (its preview is the frame itself) with 1000 hits, a 2-D spectrum and a raw frame of 16-bit counts; named as
    the archive names frames."""
    directory = tmp_path_factory.mktemp("hits")
    return {
        "hits": cosmic_ray_field(directory / "ogg0m404-kb82-20190321-0300-e91.fits.fz"),
        "clean": cosmic_ray_field(directory / "ogg0m404-kb82-20190321-0301-e91.fits.fz", hits=0),
        "small": cosmic_ray_field(directory / "ogg0m404-kb82-20190321-0302-e91.fits.fz", 1000, hits=1000),
        "spectrum": spectrum(directory / "ogg2m001-en06-20190321-0303-e00.fits.fz", 1024, 256),
        "raw": raw_frame(directory / "ogg0m404-kb82-20190321-0304-e00.fits", 1024, compression=None),
    }


def fits2image_specks(path: Path, size: int) -> int:
    """The specks in fits2image 1.1's thumbnail of the frame at path fitting size x size."""
    from fits2image.conversions import fits_to_jpg

    output = path.with_name(f"{path.name}-fits2image-{size}.jpg")
    assert fits_to_jpg(str(path), str(output), width=size, height=size)
    return count_specks(decode(output.read_bytes()))


def assert_few_specks(grey: np.ndarray, path: Path) -> None:
    """No more specks in grey than the bound allows against fits2image's thumbnail of the frame, of its size."""
    reference = fits2image_specks(path, max(grey.shape))
    assert count_specks(grey) <= SPECK_RATIO * reference + SPECK_ALLOWANCE, (count_specks(grey), reference)


@pytest.mark.parametrize(("frame", "size"), [("hits", 200), ("hits", 500), ("small", 200)])
def test_a_frame_full_of_hits_shows_about_as_few_specks_as_fits2image(
    frames: dict[str, Path], frame: str, size: int
) -> None:
    assert_few_specks(render(frames[frame], width=size, height=size), frames[frame])


def test_the_hits_would_show_as_specks_if_averaged_in(frames: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    # The same thumbnail with every block averaged whole: hundreds of specks, so the bound above judges something.
    monkeypatch.setattr("thumbproxy.render.hits.HIT_SIGMAS", np.inf)
    assert count_specks(render(frames["hits"], width=200, height=200)) > 10 * fits2image_specks(frames["hits"], 200)


def stars(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, columns) of the stars of a thumbnail without hits: pixels at least 48 grey levels above the sky (the
    median) and no darker than their eight neighbours."""
    padded = np.pad(grey.astype(int), 1, mode="edge")
    rows, columns = grey.shape
    brightest = np.max([padded[dy : dy + rows, dx : dx + columns] for dy in range(3) for dx in range(3)], axis=0)
    return np.nonzero((grey >= np.median(grey) + 48) & (grey >= brightest))


@pytest.mark.parametrize("size", [200, 500])
def test_stars_are_as_bright_as_in_the_frame_without_hits(frames: dict[str, Path], size: int) -> None:
    # The hits move the display limits, as they move fits2image's: the frame without them is drawn at the same ones.
    options = RenderOptions(width=size, height=size, format="png")
    hit = read_reductions(frames["hits"], lambda image: [2])[0][0]
    clean = read_reductions(frames["clean"], lambda image: [2])[0][0]
    hit_grey = decode_png(thumbnail_from_preview(hit, options))
    clean_grey = decode_png(thumbnail_from_preview(dataclasses.replace(clean, samples=hit.samples), options))
    rows, columns = stars(clean_grey)
    assert rows.size >= 5
    assert np.abs(hit_grey[rows, columns].astype(int) - clean_grey[rows, columns]).max() <= STAR_TOLERANCE


def decode_png(image: bytes) -> np.ndarray:
    decoded = Image.open(io.BytesIO(image))
    assert decoded.format == "PNG"
    return np.asarray(decoded.convert("L"))


@pytest.mark.parametrize("frame", ["clean", "spectrum", "raw"])
def test_a_frame_without_hits_keeps_every_block_mean(frames: dict[str, Path], frame: str) -> None:
    # Every block of the stars, the saturated ones too, of a raw frame's 16-bit counts, and of a spectrum's trace
    # and sky lines averages all its pixels; unreduced, every pixel is kept.
    with fits.open(frames[frame]) as hdul:
        pixels = (hdul["SCI"] if "SCI" in hdul else hdul[0]).data.astype(np.float32)
    for factor in (1, 2, 4, 10):
        [reduced], _ = read_reductions(frames[frame], lambda image, factor=factor: [factor])
        np.testing.assert_allclose(reduced.image, block_mean(pixels, factor), rtol=1e-5, atol=0.01)


@pytest.mark.parametrize("bands", [2, 3, 5])
def test_bands_of_a_frame_full_of_hits_join_into_its_whole_preview(frames: dict[str, Path], bands: int) -> None:
    for size in (1024, 300):
        whole = whole_preview(frames["hits"], size)
        assert_same_preview(join_bands([read_band(frames["hits"], band, bands, size) for band in range(bands)]), whole)


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_the_first_thumbnail_and_a_later_size_are_free_of_specks(
    start_service: ServiceFactory, fake_archive: FakeArchive, frames: dict[str, Path], workers: str
) -> None:
    # Two idle workers read the cold frame in bands, one reads it whole; the later size is drawn from the stored
    # preview.
    frame = fake_archive.add_frame(frames["hits"])
    service = await start_service(THUMBPROXY_WORKERS=workers)
    first = await service.image(f"/{frame['id']}/?image=true")
    later = await service.image(f"/{frame['id']}/?image=true&width=300&height=300")
    assert fake_archive.downloads[frame["id"]] == 1
    for image in (first, later):
        grey = np.asarray(image.convert("L"))
        assert_few_specks(grey, frames["hits"])
    assert np.array_equal(np.asarray(first), decode(thumbnail_from_file(frames["hits"], RenderOptions())))
